//! `atom_fabric.fabric`: the embedded fabric (scheduler + state) from Python.
//!
//! Requests, nodes, quotas and outcomes cross the boundary as JSON-compatible dicts in the
//! scheduler's own serde format, so the binding stays a thin layer over the core.

use crate::errors::BindError;
use atom_fabric::metrics::{Metrics, SloBudget};
use atom_fabric::store::SystemClock;
use atom_fabric::{
    Command, DirStore, Fabric as CoreFabric, MemoryStore, RequestId, SchedulerConfig,
};
use pyo3::prelude::*;
use std::path::PathBuf;
use std::sync::Mutex;

enum Inner {
    Memory(CoreFabric<MemoryStore>),
    Dir(CoreFabric<DirStore>),
}

impl Inner {
    fn execute(&mut self, c: Command) -> atom_fabric::Result<atom_fabric::Outcome> {
        match self {
            Inner::Memory(f) => f.execute(c),
            Inner::Dir(f) => f.execute(c),
        }
    }

    fn scheduler(&self) -> &atom_fabric::Scheduler {
        match self {
            Inner::Memory(f) => f.scheduler(),
            Inner::Dir(f) => f.scheduler(),
        }
    }

    fn take_events(&mut self) -> Vec<atom_fabric::Event> {
        match self {
            Inner::Memory(f) => f.take_events(),
            Inner::Dir(f) => f.take_events(),
        }
    }
}

fn fabric_err(e: atom_fabric::FabricError) -> BindError {
    BindError::Fabric(e)
}

pub(crate) fn to_json(py: Python<'_>, obj: &Bound<'_, PyAny>) -> Result<String, BindError> {
    if let Ok(s) = obj.extract::<String>() {
        return Ok(s);
    }
    py.import("json")
        .and_then(|m| m.call_method1("dumps", (obj,)))
        .and_then(|s| s.extract::<String>())
        .map_err(|e| BindError::Value(format!("not JSON-serialisable: {e}")))
}

pub(crate) fn from_json<'py>(
    py: Python<'py>,
    value: &impl serde::Serialize,
) -> Result<Bound<'py, PyAny>, BindError> {
    let text = serde_json::to_string(value).map_err(|e| BindError::Value(e.to_string()))?;
    py.import("json")
        .and_then(|m| m.call_method1("loads", (text,)))
        .map_err(|e| BindError::Value(e.to_string()))
}

pub(crate) fn parse<T: serde::de::DeserializeOwned>(
    what: &str,
    json: &str,
) -> Result<T, BindError> {
    serde_json::from_str(json).map_err(|e| BindError::Value(format!("invalid {what}: {e}")))
}

/// The embedded fabric: in memory, or persistent in `data_dir` (snapshot + journal; survives
/// restarts and crashes).
#[pyclass(module = "atom_fabric._native", frozen)]
pub struct Fabric {
    inner: Mutex<(Inner, Metrics)>,
}

impl Fabric {
    fn run(&self, c: Command) -> Result<atom_fabric::Outcome, BindError> {
        let mut g = self
            .inner
            .lock()
            .map_err(|_| BindError::Value("fabric lock poisoned".into()))?;
        let (inner, metrics) = &mut *g;
        let started = std::time::Instant::now();
        let out = inner.execute(c).map_err(fabric_err);
        metrics.observe_decision(started.elapsed().as_secs_f64());
        let events = inner.take_events();
        metrics.observe_events(&events);
        metrics.refresh(inner.scheduler());
        out
    }

    fn read<T>(
        &self,
        f: impl FnOnce(&atom_fabric::Scheduler, &Metrics) -> T,
    ) -> Result<T, BindError> {
        let g = self
            .inner
            .lock()
            .map_err(|_| BindError::Value("fabric lock poisoned".into()))?;
        Ok(f(g.0.scheduler(), &g.1))
    }
}

#[pymethods]
impl Fabric {
    /// An embedded fabric; with `data_dir`, state persists there.
    #[new]
    #[pyo3(signature = (data_dir = None))]
    fn new(data_dir: Option<PathBuf>) -> Result<Self, BindError> {
        let config = SchedulerConfig::default();
        let inner = match data_dir {
            None => Inner::Memory(
                CoreFabric::open(config, MemoryStore::default(), Box::new(SystemClock))
                    .map_err(fabric_err)?,
            ),
            Some(dir) => Inner::Dir(
                CoreFabric::open(
                    config,
                    DirStore::open(&dir).map_err(fabric_err)?,
                    Box::new(SystemClock),
                )
                .map_err(fabric_err)?,
            ),
        };
        let mut metrics = Metrics::new();
        metrics.refresh(inner.scheduler());
        Ok(Self {
            inner: Mutex::new((inner, metrics)),
        })
    }

    /// Runs any scheduler command given as a dict (`{"op": "schedule", "request": {...}}`).
    fn execute<'py>(
        &self,
        py: Python<'py>,
        command: &Bound<'py, PyAny>,
    ) -> Result<Bound<'py, PyAny>, BindError> {
        let c: Command = parse("command", &to_json(py, command)?)?;
        let out = py.detach(|| self.run(c))?;
        from_json(py, &out)
    }

    /// Registers (or updates) a node: `{"id", "cpu_milli", "memory_mib", "gpus": [{"model", "memory_mib"}], "labels", ...}`.
    fn register_node<'py>(
        &self,
        py: Python<'py>,
        node: &Bound<'py, PyAny>,
    ) -> Result<Bound<'py, PyAny>, BindError> {
        let spec = parse("node", &to_json(py, node)?)?;
        let out = self.run(Command::RegisterNode { spec })?;
        from_json(py, &out)
    }

    /// Places a request or queues it: `{"tenant_id", "model_id", "model_version", "resources": {"gpu", "gpu_milli", "cpu", "mem"}, ...}`.
    fn schedule<'py>(
        &self,
        py: Python<'py>,
        request: &Bound<'py, PyAny>,
    ) -> Result<Bound<'py, PyAny>, BindError> {
        let request = parse("request", &to_json(py, request)?)?;
        let out = py.detach(|| self.run(Command::Schedule { request }))?;
        from_json(py, &out)
    }

    /// The status of one of `tenant_id`'s requests (another tenant's id is not found).
    fn status<'py>(
        &self,
        py: Python<'py>,
        tenant_id: &str,
        request_id: u64,
    ) -> Result<Bound<'py, PyAny>, BindError> {
        let st = self
            .read(|s, _| s.status(tenant_id, RequestId(request_id)))?
            .map_err(fabric_err)?;
        from_json(py, &st)
    }

    /// Every request of `tenant_id`.
    fn requests<'py>(
        &self,
        py: Python<'py>,
        tenant_id: &str,
    ) -> Result<Bound<'py, PyAny>, BindError> {
        let list = self.read(|s, _| s.requests_of(tenant_id))?;
        from_json(py, &list)
    }

    /// Releases a request (frees its capacity, or cancels it while queued).
    fn release<'py>(
        &self,
        py: Python<'py>,
        tenant_id: &str,
        request_id: u64,
    ) -> Result<Bound<'py, PyAny>, BindError> {
        let out = self.run(Command::Release {
            tenant_id: tenant_id.to_owned(),
            request: RequestId(request_id),
        })?;
        from_json(py, &out)
    }

    /// Sets a tenant's quota (`{"gpu": 4, ...}` in the scheduler's quota format).
    fn set_quota<'py>(
        &self,
        py: Python<'py>,
        tenant_id: &str,
        quota: &Bound<'py, PyAny>,
    ) -> Result<Bound<'py, PyAny>, BindError> {
        let quota = parse("quota", &to_json(py, quota)?)?;
        let out = self.run(Command::SetQuota {
            tenant_id: tenant_id.to_owned(),
            quota,
        })?;
        from_json(py, &out)
    }

    /// Prometheus text exposition of the fabric's metrics.
    fn metrics_text(&self) -> Result<String, BindError> {
        self.read(|_, m| m.encode())?.map_err(fabric_err)
    }

    /// The SLO check of a tenant/model with the default budget (p95 1 s, placement wait 5 s, 99 %).
    fn slo<'py>(
        &self,
        py: Python<'py>,
        tenant_id: &str,
        model_id: &str,
    ) -> Result<Bound<'py, PyAny>, BindError> {
        let report = self.read(|_, m| m.slo(tenant_id, model_id, &SloBudget::default()))?;
        from_json(py, &report)
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Fabric>()?;
    Ok(())
}
