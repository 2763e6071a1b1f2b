//! `atom_fabric.quantum`: circuits, OpenQASM 2 and the statevector simulator.
#![allow(unsafe_code)] // numpy views of simulator-owned buffers; see `statevector`.

use crate::errors::BindError;
use atom_quantum::{
    Circuit as CoreCircuit, Complex64, GateKind, Operation, PauliSum, Precision, SimOptions,
    SimResult, StateVector,
};
use numpy::PyArray1;
use numpy::ndarray::ArrayView1;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::collections::BTreeMap;

/// A quantum circuit.
#[pyclass(module = "atom_fabric._native")]
#[derive(Clone)]
pub struct Circuit(pub CoreCircuit);

#[pymethods]
impl Circuit {
    /// An empty circuit with one quantum register `q` and one classical register `c`.
    #[new]
    #[pyo3(signature = (num_qubits, num_clbits = 0))]
    fn new(num_qubits: usize, num_clbits: usize) -> Self {
        Self(CoreCircuit::new(num_qubits, num_clbits))
    }

    /// Parses OpenQASM 2.0 text (errors carry line:column).
    #[staticmethod]
    fn from_qasm(text: &str) -> Result<Self, BindError> {
        Ok(Self(CoreCircuit::from_qasm(text)?))
    }

    /// OpenQASM 2.0 text of this circuit.
    fn to_qasm(&self) -> Result<String, BindError> {
        Ok(self.0.to_qasm()?)
    }

    /// Number of qubits.
    #[getter]
    fn num_qubits(&self) -> usize {
        self.0.num_qubits()
    }

    /// Number of classical bits.
    #[getter]
    fn num_clbits(&self) -> usize {
        self.0.num_clbits()
    }

    /// Circuit depth.
    fn depth(&self) -> usize {
        self.0.depth()
    }

    /// Names of unbound parameters.
    fn parameters(&self) -> Vec<String> {
        self.0.parameters()
    }

    /// A copy with parameters bound: `{"theta": 0.5}`.
    fn bind(&self, values: BTreeMap<String, f64>) -> Self {
        let v: Vec<(&str, f64)> = values.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        Self(self.0.bind(&v))
    }

    /// Hadamard.
    fn h(mut slf: PyRefMut<'_, Self>, q: usize) -> PyRefMut<'_, Self> {
        slf.0.h(q);
        slf
    }
    /// Pauli X.
    fn x(mut slf: PyRefMut<'_, Self>, q: usize) -> PyRefMut<'_, Self> {
        slf.0.x(q);
        slf
    }
    /// Pauli Y.
    fn y(mut slf: PyRefMut<'_, Self>, q: usize) -> PyRefMut<'_, Self> {
        slf.0.y(q);
        slf
    }
    /// Pauli Z.
    fn z(mut slf: PyRefMut<'_, Self>, q: usize) -> PyRefMut<'_, Self> {
        slf.0.z(q);
        slf
    }
    /// RX(theta).
    fn rx(mut slf: PyRefMut<'_, Self>, theta: f64, q: usize) -> PyRefMut<'_, Self> {
        slf.0.rx(theta, q);
        slf
    }
    /// RY(theta).
    fn ry(mut slf: PyRefMut<'_, Self>, theta: f64, q: usize) -> PyRefMut<'_, Self> {
        slf.0.ry(theta, q);
        slf
    }
    /// RZ(theta).
    fn rz(mut slf: PyRefMut<'_, Self>, theta: f64, q: usize) -> PyRefMut<'_, Self> {
        slf.0.rz(theta, q);
        slf
    }
    /// CNOT.
    fn cx(mut slf: PyRefMut<'_, Self>, control: usize, target: usize) -> PyRefMut<'_, Self> {
        slf.0.cx(control, target);
        slf
    }
    /// Controlled Z.
    fn cz(mut slf: PyRefMut<'_, Self>, control: usize, target: usize) -> PyRefMut<'_, Self> {
        slf.0.cz(control, target);
        slf
    }
    /// Measure qubit `q` into clbit `c`.
    fn measure(mut slf: PyRefMut<'_, Self>, q: usize, c: usize) -> PyRefMut<'_, Self> {
        slf.0.measure(q, c);
        slf
    }
    /// Measure every qubit into the clbit of the same index.
    fn measure_all(mut slf: PyRefMut<'_, Self>) -> PyRefMut<'_, Self> {
        slf.0.measure_all();
        slf
    }

    /// The instructions in order, as tuples `(name, qubits, clbits, params, condition)`: `name` is
    /// the gate's Qiskit name (or `measure`, `reset`, `barrier`), `params` the bound values, and
    /// `condition` is `None` or `(clbits, value)` for `if (creg == value)` over the register's
    /// clbits (bit 0 least significant). Raises `ValueError` while parameters are unbound.
    #[allow(clippy::type_complexity)]
    fn instructions(&self) -> Result<Vec<InstructionTuple>, BindError> {
        let cregs = self.0.cregs();
        self.0
            .instructions()
            .iter()
            .map(|ins| {
                let (name, params) = match &ins.op {
                    Operation::Gate { kind, params } => {
                        let values = params
                            .iter()
                            .map(|p| {
                                p.as_f64().ok_or_else(|| {
                                    BindError::Value(format!(
                                        "{}: parameter is unbound; bind() first",
                                        kind.name()
                                    ))
                                })
                            })
                            .collect::<Result<Vec<f64>, BindError>>()?;
                        (kind.name().to_owned(), values)
                    }
                    Operation::Measure => ("measure".to_owned(), Vec::new()),
                    Operation::Reset => ("reset".to_owned(), Vec::new()),
                    Operation::Barrier => ("barrier".to_owned(), Vec::new()),
                };
                let condition = ins.condition.and_then(|c| {
                    cregs
                        .get(c.creg)
                        .map(|r| ((r.start..r.start + r.size).collect(), c.value))
                });
                Ok((
                    name,
                    ins.qubits.clone(),
                    ins.clbits.clone(),
                    params,
                    condition,
                ))
            })
            .collect()
    }

    fn __repr__(&self) -> String {
        format!(
            "Circuit(num_qubits={}, num_clbits={}, instructions={})",
            self.0.num_qubits(),
            self.0.num_clbits(),
            self.0.instructions().len()
        )
    }
}

type InstructionTuple = (
    String,
    Vec<usize>,
    Vec<usize>,
    Vec<f64>,
    Option<(Vec<usize>, u64)>,
);

/// The unitary of gate `name` (a Qiskit name, as [`Circuit::instructions`] gives it) with `params`
/// over `num_qubits` qubits (needed for `mcx` only), as a complex128 matrix, little-endian over the
/// gate's arguments: argument 0 is the least significant bit of the row and column index (Qiskit's
/// convention).
#[pyfunction]
#[pyo3(signature = (name, params = Vec::new(), num_qubits = None))]
pub fn gate_matrix<'py>(
    py: Python<'py>,
    name: &str,
    params: Vec<f64>,
    num_qubits: Option<usize>,
) -> Result<Bound<'py, numpy::PyArray2<Complex64>>, BindError> {
    let kind = match (name, num_qubits) {
        ("mcx", Some(n)) if (2..=u8::MAX as usize).contains(&n) => GateKind::Mcx((n - 1) as u8),
        ("mcx", _) => {
            return Err(BindError::Value(
                "mcx needs num_qubits (controls + 1, at least 2)".into(),
            ));
        }
        _ => GateKind::from_name(name)
            .ok_or_else(|| BindError::Value(format!("unknown gate {name:?}")))?,
    };
    if params.len() != kind.num_params() {
        return Err(BindError::Value(format!(
            "{name} takes {} parameter(s), got {}",
            kind.num_params(),
            params.len()
        )));
    }
    if let Some(n) = num_qubits
        && n != kind.num_qubits()
    {
        return Err(BindError::Value(format!(
            "{name} acts on {} qubit(s), not {n}",
            kind.num_qubits()
        )));
    }
    let dim = 1usize << kind.num_qubits();
    let m = numpy::ndarray::Array2::from_shape_vec((dim, dim), kind.matrix(&params))
        .map_err(|e| BindError::Value(e.to_string()))?;
    Ok(numpy::PyArray2::from_owned_array(py, m))
}

/// The result of a simulation. It owns the amplitudes; `statevector` is a read-only numpy view
/// of them (no copy), whose base is this object.
#[pyclass(module = "atom_fabric._native", frozen)]
pub struct SimulationResult {
    result: SimResult,
}

#[pymethods]
impl SimulationResult {
    /// The final statevector: a read-only numpy array (complex128, or complex64 in single
    /// precision) viewing the simulator's own buffer.
    #[getter]
    fn statevector<'py>(this: Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let owner = this.clone().into_any();
        let array = match this.get().result.statevector() {
            StateVector::Double(v) => {
                let view = ArrayView1::from(v.as_slice());
                // SAFETY: the buffer belongs to `this`, a frozen pyclass: it is never mutated or
                // reallocated after construction, and numpy keeps `this` alive as the array's
                // base. The array is made read-only below so Python cannot write through it.
                unsafe { PyArray1::borrow_from_array(&view, owner) }.into_any()
            }
            StateVector::Single(v) => {
                let view = ArrayView1::from(v.as_slice());
                // SAFETY: as above.
                unsafe { PyArray1::borrow_from_array(&view, owner) }.into_any()
            }
        };
        let kwargs = PyDict::new(this.py());
        kwargs.set_item("write", false)?;
        array.call_method("setflags", (), Some(&kwargs))?;
        Ok(array)
    }

    /// Probabilities of every basis state (float64, qubit 0 = least significant bit of the index).
    fn probabilities<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        let result = &self.result;
        let p = py.detach(|| result.probabilities());
        PyArray1::from_vec(py, p)
    }

    /// Counts keyed by clbit strings (clbit 0 rightmost, as Qiskit).
    #[getter]
    fn counts<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (k, v) in self.result.counts() {
            d.set_item(k, v)?;
        }
        Ok(d)
    }

    /// Shots sampled.
    #[getter]
    fn shots(&self) -> u64 {
        self.result.shots()
    }

    /// Simulation time in seconds.
    #[getter]
    fn seconds(&self) -> f64 {
        self.result.seconds()
    }

    /// Expectation value of a Pauli sum: `{"ZZ": 1.0, "XI": 0.5}` or `[(1.0, "ZZ")]` (Qiskit labels:
    /// the rightmost letter acts on qubit 0).
    fn expectation(&self, py: Python<'_>, observable: &Bound<'_, PyAny>) -> Result<f64, BindError> {
        let terms: Vec<(f64, String)> = if let Ok(d) = observable.cast::<PyDict>() {
            d.iter()
                .map(|(k, v)| Ok((v.extract::<f64>()?, k.extract::<String>()?)))
                .collect::<PyResult<_>>()
                .map_err(|e| BindError::Value(e.to_string()))?
        } else {
            observable.extract::<Vec<(f64, String)>>().map_err(|_| {
                BindError::Value("observable must be {label: coeff} or [(coeff, label)]".into())
            })?
        };
        let refs: Vec<(f64, &str)> = terms.iter().map(|(c, l)| (*c, l.as_str())).collect();
        let sum = PauliSum::from_terms(&refs)?;
        let result = &self.result;
        Ok(py.detach(|| result.expectation(&sum))?)
    }
}

/// Simulates `circuit`: the statevector, probabilities, and counts when `shots` is given.
#[pyfunction]
#[pyo3(signature = (circuit, shots = None, seed = None, precision = "double"))]
fn simulate(
    py: Python<'_>,
    circuit: &Circuit,
    shots: Option<u64>,
    seed: Option<u64>,
    precision: &str,
) -> Result<SimulationResult, BindError> {
    let precision = match precision {
        "double" => Precision::Double,
        "single" => Precision::Single,
        other => {
            return Err(BindError::Value(format!(
                "precision must be 'double' or 'single', not {other:?}"
            )));
        }
    };
    let options = SimOptions {
        shots: shots.unwrap_or(0),
        seed,
        precision,
        ..SimOptions::default()
    };
    let c = circuit.0.clone();
    let result = py.detach(move || atom_quantum::simulate(&c, &options))?;
    Ok(SimulationResult { result })
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Circuit>()?;
    m.add_class::<SimulationResult>()?;
    m.add_function(wrap_pyfunction!(simulate, m)?)?;
    m.add_function(wrap_pyfunction!(gate_matrix, m)?)?;
    Ok(())
}
