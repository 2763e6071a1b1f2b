//! Circuits and the statevector simulator behind `atom::Circuit` and `atom::simulate`.

use crate::error::{BridgeResult, Error, guard};
use crate::ffi;
use atom_quantum::{Circuit, GateKind, Param, PauliSum, Precision, SimOptions, SimResult};

/// A quantum circuit. Gate calls check their arguments at once (unknown gate, wrong parameter
/// count, qubit out of range or repeated), so a bad call fails where it is made.
///
/// ```
/// use atom_fabric_cxx::circuit_new;
/// let mut c = circuit_new(2, 2).unwrap();
/// c.gate("h", &[], &[0]).unwrap();
/// c.gate("cx", &[], &[0, 1]).unwrap();
/// assert!(c.gate("cx", &[], &[0, 2]).is_err());
/// assert_eq!(c.depth(), 2);
/// ```
#[derive(Debug)]
pub struct CircuitCore(Circuit);

/// Most qubits a circuit built from C++ may declare (a statevector of more would not fit any
/// machine; the simulator checks the real memory limit).
pub const MAX_QUBITS: usize = 64;

/// An empty circuit with a quantum register `q` and, if `num_clbits > 0`, a classical register `c`.
pub fn circuit_new(num_qubits: usize, num_clbits: usize) -> BridgeResult<Box<CircuitCore>> {
    guard(|| {
        if num_qubits > MAX_QUBITS {
            return Err(Error::InvalidInput(format!(
                "{num_qubits} qubits: at most {MAX_QUBITS} are supported"
            )));
        }
        if num_clbits > 1 << 20 {
            return Err(Error::InvalidInput(format!(
                "{num_clbits} classical bits is too many"
            )));
        }
        Ok(Box::new(CircuitCore(Circuit::new(num_qubits, num_clbits))))
    })
}

/// Parses OpenQASM 2.0 text (errors carry `line:column`).
pub fn circuit_from_qasm(text: &str) -> BridgeResult<Box<CircuitCore>> {
    guard(|| Ok(Box::new(CircuitCore(Circuit::from_qasm(text)?))))
}

impl CircuitCore {
    /// OpenQASM 2.0 text of this circuit.
    pub fn to_qasm(&self) -> BridgeResult<String> {
        guard(|| Ok(self.0.to_qasm()?))
    }

    /// Number of qubits.
    pub fn num_qubits(&self) -> usize {
        self.0.num_qubits()
    }

    /// Number of classical bits.
    pub fn num_clbits(&self) -> usize {
        self.0.num_clbits()
    }

    /// Circuit depth.
    pub fn depth(&self) -> usize {
        self.0.depth()
    }

    /// Number of instructions.
    pub fn size(&self) -> usize {
        self.0.instructions().len()
    }

    /// A copy.
    pub fn duplicate(&self) -> Box<CircuitCore> {
        Box::new(CircuitCore(self.0.clone()))
    }

    fn check_qubits(&self, qubits: &[usize]) -> Result<(), Error> {
        let n = self.0.num_qubits();
        for (i, &q) in qubits.iter().enumerate() {
            if q >= n {
                return Err(Error::Circuit(format!(
                    "qubit {q} is out of range (the circuit has {n} qubits)"
                )));
            }
            if qubits[..i].contains(&q) {
                return Err(Error::Circuit(format!(
                    "qubit {q} is used twice by one gate"
                )));
            }
        }
        Ok(())
    }

    /// Appends gate `name` (OpenQASM names: `h`, `rx`, `cx`, `ccx`, `u`, ...) with `params` on
    /// `qubits`.
    pub fn gate(&mut self, name: &str, params: &[f64], qubits: &[usize]) -> BridgeResult<()> {
        guard(|| {
            let kind = GateKind::from_name(name)
                .ok_or_else(|| Error::Circuit(format!("unknown gate {name:?}")))?;
            if kind.num_qubits() != qubits.len() {
                return Err(Error::Circuit(format!(
                    "gate {name} acts on {} qubits, {} given",
                    kind.num_qubits(),
                    qubits.len()
                )));
            }
            if kind.num_params() != params.len() {
                return Err(Error::Circuit(format!(
                    "gate {name} takes {} parameters, {} given",
                    kind.num_params(),
                    params.len()
                )));
            }
            if let Some(p) = params.iter().find(|p| !p.is_finite()) {
                return Err(Error::Circuit(format!(
                    "gate {name}: parameter {p} is not finite"
                )));
            }
            self.check_qubits(qubits)?;
            let params: Vec<Param> = params.iter().map(|&p| Param::from(p)).collect();
            self.0.gate(kind, &params, qubits);
            Ok(())
        })
    }

    /// Measures qubit `q` into classical bit `c`.
    pub fn measure(&mut self, q: usize, c: usize) -> BridgeResult<()> {
        guard(|| {
            self.check_qubits(&[q])?;
            if c >= self.0.num_clbits() {
                return Err(Error::Circuit(format!(
                    "clbit {c} is out of range (the circuit has {} classical bits)",
                    self.0.num_clbits()
                )));
            }
            self.0.measure(q, c);
            Ok(())
        })
    }

    /// Measures every qubit into a new classical register `meas`.
    pub fn measure_all(&mut self) {
        self.0.measure_all();
    }
}

/// The result of a simulation (immutable; safe to read from many threads).
#[derive(Debug)]
pub struct SimResultCore(SimResult);

/// Simulates `circuit`: final statevector, probabilities, and counts when `options.shots > 0`.
pub fn simulate(
    circuit: &CircuitCore,
    options: &ffi::SimOptions,
) -> BridgeResult<Box<SimResultCore>> {
    guard(|| {
        let opts = SimOptions {
            shots: options.shots,
            seed: options.has_seed.then_some(options.seed),
            precision: if options.single_precision {
                Precision::Single
            } else {
                Precision::Double
            },
            memory_limit: (options.memory_limit > 0).then_some(options.memory_limit),
            ..SimOptions::default()
        };
        Ok(Box::new(SimResultCore(atom_quantum::simulate(
            &circuit.0, &opts,
        )?)))
    })
}

impl SimResultCore {
    /// Probabilities of every basis state (qubit 0 = least significant bit of the index).
    pub fn probabilities(&self) -> Vec<f64> {
        self.0.probabilities()
    }

    /// Amplitudes as interleaved `(re, im)` pairs, in double precision.
    pub fn amplitudes(&self) -> Vec<f64> {
        let sv = self.0.statevector();
        (0..sv.len())
            .filter_map(|i| sv.get(i))
            .flat_map(|a| [a.re, a.im])
            .collect()
    }

    /// Counts keyed by classical bit strings (clbit 0 rightmost, as Qiskit).
    pub fn counts(&self) -> Vec<ffi::Count> {
        self.0
            .counts()
            .iter()
            .map(|(k, v)| ffi::Count {
                bits: k.clone(),
                count: *v,
            })
            .collect()
    }

    /// Shots sampled.
    pub fn shots(&self) -> u64 {
        self.0.shots()
    }

    /// Simulation time in seconds.
    pub fn seconds(&self) -> f64 {
        self.0.seconds()
    }

    /// Expectation value of `sum coeffs[i] * labels[i]` (Qiskit labels: the rightmost letter
    /// acts on qubit 0).
    pub fn expectation(&self, coeffs: &[f64], labels: Vec<String>) -> BridgeResult<f64> {
        guard(|| {
            if coeffs.len() != labels.len() {
                return Err(Error::InvalidInput(format!(
                    "{} coefficients for {} Pauli labels",
                    coeffs.len(),
                    labels.len()
                )));
            }
            let terms: Vec<(f64, &str)> = coeffs
                .iter()
                .zip(labels.iter())
                .map(|(c, l)| (*c, l.as_str()))
                .collect();
            Ok(self.0.expectation(&PauliSum::from_terms(&terms)?)?)
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn bell_amplitudes_and_errors() {
        let mut c = circuit_new(2, 2).unwrap();
        c.gate("h", &[], &[0]).unwrap();
        c.gate("cx", &[], &[0, 1]).unwrap();
        let opts = ffi::SimOptions {
            shots: 0,
            seed: 0,
            has_seed: false,
            single_precision: false,
            memory_limit: 0,
        };
        let r = simulate(&c, &opts).unwrap();
        let a = r.amplitudes();
        let h = std::f64::consts::FRAC_1_SQRT_2;
        assert!((a[0] - h).abs() < 1e-12 && (a[6] - h).abs() < 1e-12);
        assert!(
            c.gate("rx", &[], &[0])
                .unwrap_err()
                .0
                .starts_with("quantum: ")
        );
        assert!(
            c.gate("h", &[], &[7])
                .unwrap_err()
                .0
                .starts_with("quantum: ")
        );
        assert!(c.measure(0, 2).is_err());
        let e = circuit_from_qasm("OPENQASM 2.0;\nqreg q[1];\nfoo q[0];").unwrap_err();
        assert!(e.0.starts_with("qasm: 3:"), "{e}");
        let zz = r.expectation(&[1.0], vec!["ZZ".into()]).unwrap();
        assert!((zz - 1.0).abs() < 1e-12);
    }
}
