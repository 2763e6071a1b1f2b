//! `atom_fabric.hybrid`: the hybrid job coordinator, embedded. Jobs, pipelines and statuses cross
//! the boundary as dicts in the same JSON form the agent host accepts.

use crate::errors::BindError;
use crate::fabric::{from_json, parse, to_json};
use crate::policy::{SigningKey, VerifyingKey, mode};
use atom_fabric::hybrid::{
    CatalogModel, Coordinator as CoreCoordinator, CoordinatorConfig, JobMode, JobStatement,
    JobSubmission, Pipeline, QuantumTarget,
};
use atom_fabric::runtime::{LoadedModel, Runtime, RuntimeError, Tensor};
use atom_policy::keyring::{KeyRing, KeyStatus, TrustedKey};
use numpy::PyArrayMethods;
use pyo3::prelude::*;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// A quantum provider implemented in Python: `run(qasm, shots, seed) -> {bitstring: count}`.
/// The router calls it with the GIL released elsewhere; it takes the GIL for the call only.
struct PyProvider {
    name: String,
    run: Py<PyAny>,
}

impl atom_quantum::QuantumBackend for PyProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn run(
        &self,
        circuit: &atom_quantum::Circuit,
        options: &atom_quantum::RunOptions,
    ) -> atom_quantum::Result<atom_quantum::BackendResult> {
        let qasm = circuit.to_qasm()?;
        let started = std::time::Instant::now();
        let counts = Python::attach(|py| -> PyResult<BTreeMap<String, u64>> {
            let out = self.run.call1(py, (qasm, options.shots, options.seed))?;
            out.bind(py).extract()
        })
        .map_err(|e| atom_quantum::Error::Backend(format!("provider {}: {e}", self.name)))?;
        let shots = counts.values().sum();
        if shots != options.shots {
            return Err(atom_quantum::Error::Backend(format!(
                "provider {} returned {shots} shots, {} asked",
                self.name, options.shots
            )));
        }
        Ok(atom_quantum::BackendResult {
            backend: self.name.clone(),
            counts,
            shots,
            seconds: started.elapsed().as_secs_f64(),
            metadata: BTreeMap::new(),
        })
    }
}

/// A neural runtime implemented in Python: `load(path: str)` returns a callable that maps a list
/// of float32 numpy arrays to a list of array-likes. Calls take the GIL for their duration only.
struct PyRuntime {
    framework: String,
    load: Py<PyAny>,
}

struct PyLoadedModel {
    framework: String,
    model: Py<PyAny>,
}

impl Runtime for PyRuntime {
    fn load(&self, model: &std::path::Path) -> Result<Arc<dyn LoadedModel>, RuntimeError> {
        let err = |reason: String| RuntimeError::Load {
            framework: self.framework.clone(),
            model: model.display().to_string(),
            reason,
        };
        let loaded = Python::attach(|py| -> PyResult<Py<PyAny>> {
            let m = self.load.call1(py, (model.display().to_string(),))?;
            if !m.bind(py).is_callable() {
                return Err(pyo3::exceptions::PyTypeError::new_err(
                    "load() must return a callable",
                ));
            }
            Ok(m)
        })
        .map_err(|e| err(e.to_string()))?;
        Ok(Arc::new(PyLoadedModel {
            framework: self.framework.clone(),
            model: loaded,
        }))
    }
}

impl LoadedModel for PyLoadedModel {
    fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, RuntimeError> {
        let err = |reason: String| RuntimeError::Run {
            framework: self.framework.clone(),
            reason,
        };
        Python::attach(|py| -> PyResult<Vec<Tensor>> {
            let mut arrays = Vec::with_capacity(inputs.len());
            for t in inputs {
                let a = numpy::ndarray::ArrayD::from_shape_vec(t.shape.clone(), t.data.clone())
                    .map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))?;
                arrays.push(numpy::PyArrayDyn::from_owned_array(py, a));
            }
            let out = self.model.call1(py, (arrays,))?;
            let np = py.import("numpy")?;
            let mut tensors = Vec::new();
            for item in out.bind(py).try_iter()? {
                let a = np.call_method1("ascontiguousarray", (item?, "float32"))?;
                let a = a.cast::<numpy::PyArrayDyn<f32>>()?;
                let ro = a.readonly();
                let view = ro.as_array();
                tensors.push(Tensor {
                    shape: view.shape().to_vec(),
                    data: view.iter().copied().collect(),
                });
            }
            Ok(tensors)
        })
        .map_err(|e| err(e.to_string()))
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn job_mode(s: &str) -> Result<JobMode, BindError> {
    parse("mode", &format!("{s:?}"))
}

/// The hybrid job coordinator: verifies (P2, P5), queues per tenant, routes each stage (P6),
/// fails over, and keeps per-stage results. Runs in-process; the local simulator is a target.
#[pyclass(module = "atom_fabric._native", frozen)]
pub struct Coordinator {
    inner: Mutex<CoreCoordinator>,
}

impl Coordinator {
    fn with<T>(
        &self,
        f: impl FnOnce(&mut CoreCoordinator) -> Result<T, BindError>,
    ) -> Result<T, BindError> {
        let mut g = self
            .inner
            .lock()
            .map_err(|_| BindError::Value("coordinator lock poisoned".into()))?;
        f(&mut g)
    }
}

#[pymethods]
impl Coordinator {
    /// A coordinator. Outside simulation, jobs need a manifest signed by one of `trusted_keys`.
    #[new]
    #[pyo3(signature = (simulation=true, pqc_mode="hybrid", trusted_keys=None, quantum_memory_bytes=4_294_967_296u64, max_queue_per_tenant=1024))]
    fn new(
        simulation: bool,
        pqc_mode: &str,
        trusted_keys: Option<Vec<PyRef<'_, VerifyingKey>>>,
        quantum_memory_bytes: u64,
        max_queue_per_tenant: usize,
    ) -> Result<Self, BindError> {
        let m = mode(pqc_mode, simulation)?;
        let mut ring = KeyRing::new();
        for k in trusted_keys.unwrap_or_default() {
            ring.add(TrustedKey {
                key: k.0.clone(),
                status: KeyStatus::Active,
                not_before: 0,
                not_after: None,
                approved_by: None,
            });
        }
        let mut c = CoreCoordinator::new(
            CoordinatorConfig {
                mode: m,
                max_queue_per_tenant,
                ..CoordinatorConfig::default()
            },
            ring,
        );
        c.router_mut()
            .add_quantum(QuantumTarget::local(quantum_memory_bytes, 1.5e9));
        c.router_mut()
            .add_neural(atom_fabric::hybrid::NeuralTarget::in_process(1));
        Ok(Self {
            inner: Mutex::new(c),
        })
    }

    /// Registers a quantum provider: `run(qasm: str, shots: int, seed: int | None)` returns
    /// counts keyed as Qiskit does. Quantum stages use it when they name it (`"provider"`), or
    /// when the router prefers it; a provider that raises is failed over like any other target.
    #[pyo3(signature = (name, run, max_qubits=32))]
    fn register_provider(
        &self,
        py: Python<'_>,
        name: &str,
        run: Py<PyAny>,
        max_qubits: u32,
    ) -> Result<(), BindError> {
        if !run.bind(py).is_callable() {
            return Err(BindError::Value(format!(
                "provider {name}: run is not callable"
            )));
        }
        if name.is_empty() || name == "local" {
            return Err(BindError::Value(format!(
                "provider name {name:?} is empty or reserved"
            )));
        }
        let backend = Arc::new(PyProvider {
            name: name.to_owned(),
            run,
        });
        self.with(|c| {
            c.router_mut()
                .add_quantum(QuantumTarget::provider(backend, max_qubits));
            Ok(())
        })
    }

    /// Registers a neural runtime under `framework`: `load(path)` returns a callable taking a list
    /// of float32 numpy arrays and returning a list of arrays (see `hybrid.onnxruntime_runtime`).
    /// Models registered with that framework load through it; a load or run that raises fails
    /// the stage with the Python error's text.
    fn register_runtime(
        &self,
        py: Python<'_>,
        framework: &str,
        load: Py<PyAny>,
    ) -> Result<(), BindError> {
        if !load.bind(py).is_callable() {
            return Err(BindError::Value(format!(
                "runtime {framework}: load is not callable"
            )));
        }
        if framework.is_empty() || framework == "auto" {
            return Err(BindError::Value(format!(
                "framework name {framework:?} is empty or reserved"
            )));
        }
        let rt = Arc::new(PyRuntime {
            framework: framework.to_owned(),
            load,
        });
        self.with(|c| {
            c.register_runtime(framework, rt);
            Ok(())
        })
    }

    /// The frameworks neural stages can use: `[{"name", "available", "version", "mock"}]`.
    fn frameworks<'py>(&self, py: Python<'py>) -> Result<Bound<'py, PyAny>, BindError> {
        let detected = self.with(|c| Ok(c.runtimes().detect()))?;
        from_json(py, &detected)
    }

    /// Makes a model file loadable by neural stages under `name`.
    #[pyo3(signature = (name, path, framework="onnx"))]
    fn register_model(&self, name: &str, path: PathBuf, framework: &str) -> Result<(), BindError> {
        if !path.exists() {
            return Err(BindError::Value(format!(
                "{}: no such file",
                path.display()
            )));
        }
        self.with(|c| {
            c.register_model(
                name,
                CatalogModel {
                    path,
                    framework: framework.into(),
                },
            );
            Ok(())
        })
    }

    /// Registers a pipeline (`{"stages": [...], "inputs": {...}}`) for `mode`; with
    /// `default=True`, payloads without stages use it.
    #[pyo3(signature = (name, pipeline, mode, default=false))]
    fn register_pipeline(
        &self,
        py: Python<'_>,
        name: &str,
        pipeline: &Bound<'_, PyAny>,
        mode: &str,
        default: bool,
    ) -> Result<(), BindError> {
        let p: Pipeline = parse("pipeline", &to_json(py, pipeline)?)?;
        let m = job_mode(mode)?;
        self.with(|c| {
            c.register_pipeline(name, p, m, default)
                .map_err(BindError::Hybrid)
        })
    }

    /// Verifies and queues `{"tenant", "mode", "payload", "manifest"?}`; returns the job id.
    /// `tenant` is the caller's authenticated tenant (required outside simulation, P5).
    #[pyo3(signature = (job, tenant=None))]
    fn submit(
        &self,
        py: Python<'_>,
        job: &Bound<'_, PyAny>,
        tenant: Option<&str>,
    ) -> Result<String, BindError> {
        let j: JobSubmission = parse("job", &to_json(py, job)?)?;
        py.detach(|| self.with(|c| c.submit(j, tenant, now_ms()).map_err(BindError::Hybrid)))
    }

    /// Runs every queued job (tenants round robin); returns how many ran. Releases the GIL.
    fn run_all(&self, py: Python<'_>) -> Result<usize, BindError> {
        py.detach(|| self.with(|c| Ok(c.run_all(now_ms()))))
    }

    /// A job's status: state, per-stage reports, outputs, audit indices.
    #[pyo3(signature = (job_id, tenant=None))]
    fn status<'py>(
        &self,
        py: Python<'py>,
        job_id: &str,
        tenant: Option<&str>,
    ) -> Result<Bound<'py, PyAny>, BindError> {
        let s = self.with(|c| {
            match tenant {
                Some(t) => c.status(t, job_id),
                None => c.status_any(job_id),
            }
            .map_err(BindError::Hybrid)
        })?;
        from_json(py, &s)
    }

    /// The hybrid metrics in the Prometheus text format.
    fn metrics_text(&self) -> Result<String, BindError> {
        self.with(|c| {
            let mut reg = prometheus_client::registry::Registry::default();
            c.telemetry().register(&mut reg);
            let mut text = String::new();
            prometheus_client::encoding::text::encode(&mut text, &reg)
                .map_err(|e| BindError::Value(e.to_string()))?;
            Ok(text)
        })
    }
}

/// Signs a job: returns a copy of `job` with `manifest`, a DSSE envelope over its statement
/// (tenant, mode, payload digest), signed with `key` under `pqc_mode`.
#[pyfunction]
#[pyo3(signature = (job, key, pqc_mode="hybrid"))]
pub fn sign_job<'py>(
    py: Python<'py>,
    job: &Bound<'py, PyAny>,
    key: PyRef<'_, SigningKey>,
    pqc_mode: &str,
) -> Result<Bound<'py, PyAny>, BindError> {
    let mut j: JobSubmission = parse("job", &to_json(py, job)?)?;
    let m = mode(pqc_mode, false)?;
    let env = JobStatement::for_job(&j.tenant, j.mode, &j.payload)
        .sign(&key.0, m)
        .map_err(BindError::Hybrid)?;
    j.manifest = Some(env);
    from_json(py, &j)
}

/// The two-moons dataset (scikit-learn's `make_moons`), as `(points, labels)`.
#[pyfunction]
#[pyo3(signature = (n, noise=0.1, seed=0))]
pub fn make_moons(n: usize, noise: f64, seed: u64) -> (Vec<[f64; 2]>, Vec<u8>) {
    let d = atom_fabric::hybrid::vqc::make_moons(n, noise, seed);
    (d.x, d.y)
}

/// Trains the worked variational quantum classifier and writes its encoder as ONNX to
/// `encoder_path`; returns `(pipeline, losses)` where `pipeline` uses the catalog model
/// `encoder_name`. Releases the GIL.
#[pyfunction]
#[pyo3(signature = (points, labels, encoder_path, encoder_name="vqc-encoder", epochs=40, seed=3))]
#[allow(clippy::too_many_arguments)]
pub fn train_vqc<'py>(
    py: Python<'py>,
    points: Vec<[f64; 2]>,
    labels: Vec<u8>,
    encoder_path: PathBuf,
    encoder_name: &str,
    epochs: usize,
    seed: u64,
) -> Result<(Bound<'py, PyAny>, Vec<f64>), BindError> {
    if points.len() != labels.len() || points.is_empty() {
        return Err(BindError::Value(format!(
            "{} points and {} labels",
            points.len(),
            labels.len()
        )));
    }
    if let Some(bad) = labels.iter().find(|&&y| y > 1) {
        return Err(BindError::Value(format!(
            "labels must be 0 or 1, got {bad}"
        )));
    }
    let data = atom_fabric::hybrid::vqc::Dataset {
        x: points,
        y: labels,
    };
    let (model, losses) = py.detach(|| atom_fabric::hybrid::vqc::train(&data, epochs, seed))?;
    std::fs::write(&encoder_path, model.encoder_onnx())?;
    Ok((from_json(py, &model.pipeline(encoder_name))?, losses))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Coordinator>()?;
    m.add_function(wrap_pyfunction!(sign_job, m)?)?;
    m.add_function(wrap_pyfunction!(make_moons, m)?)?;
    m.add_function(wrap_pyfunction!(train_vqc, m)?)?;
    Ok(())
}
