//! The embedded fabric behind `atom::Fabric`.

use crate::error::{BridgeResult, Error, guard};
use crate::ffi;
use atom_fabric::metrics::Metrics;
use atom_fabric::store::SystemClock;
use atom_fabric::{
    Command, Constraints, DeployApproval, DirStore, Fabric, GpuDevice, MemoryStore, Outcome,
    Placement, Quota, RequestId, RequestStatus, ResourceVector, Resources, ScheduleRequest,
    Scheduler, SchedulerConfig,
};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

enum Inner {
    Memory(Fabric<MemoryStore>),
    Dir(Fabric<DirStore>),
}

impl Inner {
    fn execute(&mut self, c: Command) -> atom_fabric::Result<Outcome> {
        match self {
            Inner::Memory(f) => f.execute(c),
            Inner::Dir(f) => f.execute(c),
        }
    }

    fn scheduler(&self) -> &Scheduler {
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

/// The embedded fabric: the scheduler with its state in memory or in a data directory. Every
/// call takes an internal mutex, so one instance may be shared by many C++ threads; commands
/// are applied one at a time, so capacity is never over-committed.
///
/// ```
/// use atom_fabric_cxx::{fabric_open, ffi};
/// let f = fabric_open(&ffi::FabricOptions { data_dir: String::new(), max_tenant_gpus: 0,
///     heartbeat_timeout_ms: 0, simulation_mode: false }).unwrap();
/// let node = ffi::NodeSpec { id: "n1".into(), cpu_milli: 8000, memory_mib: 32768,
///     gpus: vec![ffi::GpuDevice { model: "A100".into(), memory_mib: 40960 }], tpus: 0,
///     quantum_qubits: 0, labels: vec![], cached_models: vec![] };
/// f.register_node(&node).unwrap();
/// let metrics = f.metrics_text().unwrap();
/// assert!(metrics.contains("# TYPE"));
/// ```
pub struct FabricCore {
    inner: Mutex<(Inner, Metrics)>,
}

impl std::fmt::Debug for FabricCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FabricCore").finish_non_exhaustive()
    }
}

fn lock_err() -> Error {
    Error::Internal("fabric lock poisoned by an earlier panic".into())
}

/// Opens an embedded fabric (in memory, or persistent in `options.data_dir`).
pub fn fabric_open(options: &ffi::FabricOptions) -> BridgeResult<Box<FabricCore>> {
    guard(|| {
        let mut config = SchedulerConfig::default();
        if options.max_tenant_gpus > 0 {
            config.max_tenant_gpus = options.max_tenant_gpus;
        }
        if options.heartbeat_timeout_ms > 0 {
            config.heartbeat_timeout_ms = options.heartbeat_timeout_ms;
        }
        config.simulation_mode = options.simulation_mode;
        let inner = if options.data_dir.is_empty() {
            Inner::Memory(Fabric::open(
                config,
                MemoryStore::default(),
                Box::new(SystemClock),
            )?)
        } else {
            Inner::Dir(Fabric::open(
                config,
                DirStore::open(&options.data_dir)?,
                Box::new(SystemClock),
            )?)
        };
        let mut metrics = Metrics::new();
        metrics.refresh(inner.scheduler());
        Ok(Box::new(FabricCore {
            inner: Mutex::new((inner, metrics)),
        }))
    })
}

fn labels(list: &[ffi::Label]) -> BTreeMap<String, String> {
    list.iter()
        .map(|l| (l.key.clone(), l.value.clone()))
        .collect()
}

fn opt(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

fn replicas(p: Option<&Placement>) -> Vec<ffi::Replica> {
    p.map(|p| {
        p.replicas
            .iter()
            .map(|r| ffi::Replica {
                node: r.node.clone(),
                devices: r.devices.clone(),
                score: r.score.as_ref().map_or(0.0, |s| s.total),
            })
            .collect()
    })
    .unwrap_or_default()
}

fn to_json(v: &impl serde::Serialize) -> Result<String, Error> {
    serde_json::to_string(v).map_err(|e| Error::Internal(format!("JSON encoding: {e}")))
}

fn outcome(o: &Outcome) -> Result<ffi::Outcome, Error> {
    let mut out = ffi::Outcome {
        kind: String::new(),
        request_id: 0,
        phase: String::new(),
        reason: String::new(),
        detail: String::new(),
        replicas: Vec::new(),
        borrowed: false,
        json: to_json(o)?,
    };
    match o {
        Outcome::Placed {
            request_id,
            placement,
        } => {
            out.kind = "placed".into();
            out.request_id = request_id.0;
            out.phase = "placed".into();
            out.replicas = replicas(Some(placement));
            out.borrowed = placement.borrowed;
        }
        Outcome::Queued {
            request_id,
            reason,
            detail,
        } => {
            out.kind = "queued".into();
            out.request_id = request_id.0;
            out.phase = "queued".into();
            out.reason = reason.as_str().into();
            out.detail = detail.clone();
        }
        Outcome::Existing { request_id, phase } => {
            out.kind = "existing".into();
            out.request_id = request_id.0;
            out.phase = phase.as_str().into();
        }
        Outcome::Phase { request_id, phase } => {
            out.kind = "phase".into();
            out.request_id = request_id.0;
            out.phase = phase.as_str().into();
        }
        Outcome::Node { node, health } => {
            out.kind = "node".into();
            out.detail = node.clone();
            out.phase = serde_json::to_value(health)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
        }
        Outcome::Expired { nodes } => {
            out.kind = "expired".into();
            out.detail = nodes.join(",");
        }
        Outcome::QuotaSet { tenant_id } => {
            out.kind = "quota_set".into();
            out.detail = tenant_id.clone();
        }
    }
    Ok(out)
}

fn status(s: &RequestStatus) -> Result<ffi::Status, Error> {
    Ok(ffi::Status {
        id: s.id.0,
        tenant_id: s.tenant_id.clone(),
        model_id: s.model_id.clone(),
        model_version: s.model_version.clone(),
        phase: s.phase.as_str().into(),
        queue_reason: s
            .queue_reason
            .map(|r| r.as_str().to_owned())
            .unwrap_or_default(),
        replicas: replicas(s.placement.as_ref()),
        priority: s.priority,
        submitted_ms: s.submitted_ms,
        evictions: s.evictions,
        json: to_json(s)?,
    })
}

/// Converts a node description from C++.
pub fn node_spec(spec: &ffi::NodeSpec) -> atom_fabric::NodeSpec {
    let mut n = atom_fabric::NodeSpec::new(spec.id.clone(), spec.cpu_milli, spec.memory_mib);
    n.gpus = spec
        .gpus
        .iter()
        .map(|g| GpuDevice {
            model: g.model.clone(),
            memory_mib: g.memory_mib,
        })
        .collect();
    n.tpus = spec.tpus;
    n.quantum_qubits = spec.quantum_qubits;
    n.labels = labels(&spec.labels);
    n.cached_models = spec.cached_models.iter().cloned().collect::<BTreeSet<_>>();
    n
}

/// Converts a schedule request from C++.
pub fn schedule_request(r: &ffi::ScheduleRequest) -> ScheduleRequest {
    let resources = Resources {
        gpu: r.resources.gpu,
        gpu_milli: r.resources.gpu_milli,
        cpu: r.resources.cpu,
        mem: r.resources.mem,
        tpu: r.resources.tpu,
        qubits: r.resources.qubits,
    };
    let constraints = Constraints {
        latency_ms: (r.latency_ms > 0).then_some(r.latency_ms),
        region: opt(&r.region),
        gpu_model: opt(&r.gpu_model),
        labels: labels(&r.labels),
    };
    let mut req = ScheduleRequest::new(&r.tenant_id, &r.model_id, &r.model_version, resources)
        .with_replicas(r.replicas)
        .with_priority(r.priority)
        .with_constraints(constraints)
        .with_deploy(DeployApproval {
            production: r.production,
            manifest_verified: r.manifest_verified,
            approved_by: opt(&r.approved_by),
        });
    req.idempotency_key = opt(&r.idempotency_key);
    req
}

impl FabricCore {
    fn run(&self, c: Command) -> Result<Outcome, Error> {
        let mut g = self.inner.lock().map_err(|_| lock_err())?;
        let (inner, metrics) = &mut *g;
        let started = std::time::Instant::now();
        let out = inner.execute(c);
        metrics.observe_decision(started.elapsed().as_secs_f64());
        let events = inner.take_events();
        metrics.observe_events(&events);
        metrics.refresh(inner.scheduler());
        Ok(out?)
    }

    fn read<T>(&self, f: impl FnOnce(&Scheduler, &Metrics) -> T) -> Result<T, Error> {
        let g = self.inner.lock().map_err(|_| lock_err())?;
        Ok(f(g.0.scheduler(), &g.1))
    }

    /// Registers (or updates) a node.
    pub fn register_node(&self, spec: &ffi::NodeSpec) -> BridgeResult<ffi::Outcome> {
        guard(|| {
            outcome(&self.run(Command::RegisterNode {
                spec: node_spec(spec),
            })?)
        })
    }

    /// Places a request, or queues it (quota, capacity or constraint).
    pub fn schedule(&self, request: &ffi::ScheduleRequest) -> BridgeResult<ffi::Outcome> {
        guard(|| {
            outcome(&self.run(Command::Schedule {
                request: schedule_request(request),
            })?)
        })
    }

    /// The status of one of `tenant_id`'s requests (another tenant's id is not found).
    pub fn status(&self, tenant_id: &str, request_id: u64) -> BridgeResult<ffi::Status> {
        guard(|| status(&self.read(|s, _| s.status(tenant_id, RequestId(request_id)))??))
    }

    /// Every request of `tenant_id`, oldest first.
    pub fn requests(&self, tenant_id: &str) -> BridgeResult<Vec<ffi::Status>> {
        guard(|| {
            self.read(|s, _| s.requests_of(tenant_id))?
                .iter()
                .map(status)
                .collect()
        })
    }

    /// Releases a request (frees its capacity, or cancels it while queued).
    pub fn release(&self, tenant_id: &str, request_id: u64) -> BridgeResult<ffi::Outcome> {
        guard(|| {
            outcome(&self.run(Command::Release {
                tenant_id: tenant_id.to_owned(),
                request: RequestId(request_id),
            })?)
        })
    }

    /// Sets `tenant_id`'s quota: `gpus` whole GPUs guaranteed, up to `borrow_gpus` more
    /// borrowed from idle quota of `cohort` ("" = `default`).
    pub fn set_quota(
        &self,
        tenant_id: &str,
        gpus: u64,
        borrow_gpus: u64,
        cohort: &str,
    ) -> BridgeResult<ffi::Outcome> {
        guard(|| {
            let mut quota = Quota::gpus(gpus).with_borrow_limit(ResourceVector {
                gpu_milli: borrow_gpus.saturating_mul(1000),
                ..ResourceVector::ZERO
            });
            if !cohort.is_empty() {
                quota.cohort = cohort.to_owned();
            }
            outcome(&self.run(Command::SetQuota {
                tenant_id: tenant_id.to_owned(),
                quota,
            })?)
        })
    }

    /// Runs any scheduler command in its JSON form (`{"op": "complete", ...}`); returns the
    /// outcome as JSON.
    pub fn execute_json(&self, command_json: &str) -> BridgeResult<String> {
        guard(|| {
            let c: Command = serde_json::from_str(command_json)
                .map_err(|e| Error::InvalidInput(format!("invalid command JSON: {e}")))?;
            to_json(&self.run(c)?)
        })
    }

    /// Prometheus text exposition of the fabric's metrics.
    pub fn metrics_text(&self) -> BridgeResult<String> {
        guard(|| Ok(self.read(|_, m| m.encode())??))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn open() -> Box<FabricCore> {
        fabric_open(&ffi::FabricOptions {
            data_dir: String::new(),
            max_tenant_gpus: 0,
            heartbeat_timeout_ms: 0,
            simulation_mode: false,
        })
        .unwrap()
    }

    #[test]
    fn bad_command_json_is_invalid_input() {
        let f = open();
        let e = f.execute_json("{\"op\": 3}").unwrap_err();
        assert!(e.0.starts_with("invalid_input: "), "{e}");
        let e = f.status("acme", 42).unwrap_err();
        assert!(e.0.starts_with("not_found: "), "{e}");
    }
}
