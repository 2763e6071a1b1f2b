//! The coordinator: verifies and queues jobs per tenant, runs their stages through the router,
//! and writes every step to the audit log.

use super::HybridError;
use super::job::{
    ClassicalOp, Fallback, JOB_STATEMENT_TYPE, JobMode, JobStatement, JobSubmission, Pipeline,
    StageOp, Value, ValueRef, payload_digest, resolve_payload,
};
use super::router::{CircuitProfile, QuantumEngine, Rejection, Router, RouterConfig};
use super::telemetry::QuantumTelemetry;
use crate::runtime::{LoadedModel, RuntimeError, RuntimeRegistry, Tensor};
use atom_policy::audit::{
    Actor, AuditEntry, AuditError, AuditLog, Decision, KeyedId, Outcome, Subject,
};
use atom_policy::config::Mode;
use atom_policy::dsse::JOB_PAYLOAD_TYPE;
use atom_policy::keyring::KeyRing;
use atom_policy::policy::PolicyId;
use atom_quantum::{Circuit, Operation, PauliSum, Precision, RunOptions, SimOptions, Simulator};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Where audit entries go.
pub trait AuditSink: Send {
    /// Appends an entry and returns its index in the log.
    fn record(&mut self, entry: &AuditEntry, now_ms: u64) -> Result<u64, AuditError>;
}

impl AuditSink for AuditLog {
    fn record(&mut self, entry: &AuditEntry, now_ms: u64) -> Result<u64, AuditError> {
        Ok(self.append_entry(entry, now_ms)?.index)
    }
}

impl AuditSink for Arc<Mutex<AuditLog>> {
    fn record(&mut self, entry: &AuditEntry, now_ms: u64) -> Result<u64, AuditError> {
        let mut log = self
            .lock()
            .map_err(|_| AuditError::Config("audit log lock poisoned".into()))?;
        Ok(log.append_entry(entry, now_ms)?.index)
    }
}

/// An in-memory sink (tests, the resilience simulator): keeps the entries in order.
#[derive(Debug, Default, Clone)]
pub struct MemoryAudit {
    /// The entries, index = position.
    pub entries: Arc<Mutex<Vec<AuditEntry>>>,
}

impl AuditSink for MemoryAudit {
    fn record(&mut self, entry: &AuditEntry, _now_ms: u64) -> Result<u64, AuditError> {
        entry.validate()?;
        let mut e = self
            .entries
            .lock()
            .map_err(|_| AuditError::Config("audit lock poisoned".into()))?;
        e.push(entry.clone());
        Ok(e.len() as u64 - 1)
    }
}

/// Coordinator settings.
#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    /// `PQC_MODE` and `SIMULATION_MODE`: unsigned jobs only in simulation (P2).
    pub mode: Mode,
    /// Jobs waiting per tenant before submissions are refused (HTTP 429).
    pub max_queue_per_tenant: usize,
    /// Router budgets.
    pub router: RouterConfig,
    /// Key of the keyed hashes that name jobs and principals in the audit log.
    pub audit_key: Vec<u8>,
    /// Sampled runs of circuits up to this width are compared with the exact distribution.
    pub accuracy_max_qubits: u32,
    /// Finished jobs kept for status queries.
    pub retained_jobs: usize,
    /// GPU engines run on the CPU (`GPU_DRIVER_MOCK=true`); recorded in stage reports.
    pub gpu_driver_mock: bool,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        Self {
            mode: Mode::default(),
            max_queue_per_tenant: 1024,
            router: RouterConfig::default(),
            audit_key: b"atom-fabric-audit".to_vec(),
            accuracy_max_qubits: 20,
            retained_jobs: 10_000,
            gpu_driver_mock: true,
        }
    }
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting in its tenant's queue.
    Queued,
    /// Stages running.
    Running,
    /// Every stage produced its output.
    Completed,
    /// A stage failed (see `error`).
    Failed,
}

/// A target that failed during a stage, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FailoverRecord {
    /// The target that failed.
    pub target: String,
    /// Why.
    pub reason: String,
}

/// Facts of a quantum stage.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QuantumFacts {
    /// Qubits.
    pub width: u32,
    /// Depth.
    pub depth: u64,
    /// Operations.
    pub ops: u64,
    /// Fused operations the simulator applied (simulator only).
    pub fused_ops: Option<u64>,
    /// Shots.
    pub shots: u64,
    /// Total variation distance of the counts from the exact distribution, when known.
    pub tvd: Option<f64>,
    /// SHA-256 of the bound circuit's OpenQASM.
    pub circuit_sha256: String,
}

/// What happened in one stage.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageReport {
    /// Stage name.
    pub name: String,
    /// `neural`, `quantum` or `classical`.
    pub kind: String,
    /// Engine or provider that produced the output (`fallback` for a declared fallback).
    pub target: Option<String>,
    /// Its node, for neural stages.
    pub node: Option<String>,
    /// Precision of a quantum stage.
    pub precision: Option<String>,
    /// The router's time estimate (ms).
    pub estimate_ms: Option<f64>,
    /// Why the stage ran degraded, if it did.
    pub degraded: Option<String>,
    /// Targets that failed first.
    pub failovers: Vec<FailoverRecord>,
    /// The declared fallback produced the output.
    pub fallback_used: bool,
    /// Wall time of the stage (ms).
    pub duration_ms: f64,
    /// SHA-256 of the output value's JSON.
    pub output_sha256: String,
    /// Quantum facts.
    pub quantum: Option<QuantumFacts>,
}

/// Manifest verification result (P2).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ManifestCheck {
    /// A manifest was given and verified.
    pub verified: bool,
    /// Key ids whose signatures verified.
    pub key_ids: Vec<String>,
    /// The P2 outcome: `allow` or `allow_in_simulation`.
    pub outcome: Outcome,
}

/// Status of a job, as `GET /agent/status/{id}` returns it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobStatus {
    /// Job id (`job-N`).
    pub id: String,
    /// Owner.
    pub tenant: String,
    /// Mode.
    pub mode: JobMode,
    /// State.
    pub state: JobState,
    /// Registered pipeline used, if any.
    pub pipeline: Option<String>,
    /// SHA-256 of the canonical payload.
    pub payload_sha256: String,
    /// Manifest verification.
    pub manifest: ManifestCheck,
    /// Submission time (ms).
    pub submitted_ms: u64,
    /// Start time (ms).
    pub started_ms: Option<u64>,
    /// End time (ms).
    pub finished_ms: Option<u64>,
    /// Time in the queue (ms).
    pub queue_wait_ms: Option<u64>,
    /// One report per stage run so far.
    pub stages: Vec<StageReport>,
    /// Every value at the end (inputs and stage outputs).
    pub outputs: BTreeMap<String, Value>,
    /// Why the job failed.
    pub error: Option<String>,
    /// Indices of this job's audit entries (prove each with an inclusion proof).
    pub audit: Vec<u64>,
}

/// A model the coordinator may load (by name only: clients never pass paths).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogModel {
    /// Model file or directory.
    pub path: PathBuf,
    /// Runtime name (`onnx`, `auto`, ...).
    pub framework: String,
}

struct Job {
    status: JobStatus,
    pipeline: Pipeline,
}

/// The hybrid job coordinator.
///
/// ```
/// use atom_fabric::hybrid::{Coordinator, CoordinatorConfig, JobSubmission, QuantumTarget};
/// use atom_policy::config::{Mode, PqcMode};
/// use atom_policy::keyring::KeyRing;
/// let config = CoordinatorConfig { mode: Mode::new(PqcMode::Off, true), ..CoordinatorConfig::default() };
/// let mut c = Coordinator::new(config, KeyRing::new());
/// c.router_mut().add_quantum(QuantumTarget::local(1 << 30, 1e9));
/// let job: JobSubmission = serde_json::from_value(serde_json::json!({
///     "tenant": "t1", "mode": "quantum",
///     "payload": {"stages": [{"name": "bell", "kind": "quantum", "shots": 100, "seed": 1,
///         "qasm": "OPENQASM 2.0;\ninclude \"qelib1.inc\";\nqreg q[2];\ncreg c[2];\nh q[0];\ncx q[0],q[1];\nmeasure q -> c;\n",
///         "output": "counts"}]}
/// })).unwrap();
/// let id = c.submit(job, None, 0).unwrap();
/// c.run_all(5);
/// let s = c.status("t1", &id).unwrap();
/// assert_eq!(s.state, atom_fabric::hybrid::JobState::Completed);
/// let atom_fabric::hybrid::Value::Counts(counts) = &s.outputs["counts"] else { panic!() };
/// assert_eq!(counts.get("00").unwrap_or(&0) + counts.get("11").unwrap_or(&0), 100);
/// ```
pub struct Coordinator {
    config: CoordinatorConfig,
    ring: KeyRing,
    runtimes: RuntimeRegistry,
    models: BTreeMap<String, CatalogModel>,
    loaded: BTreeMap<String, Arc<dyn LoadedModel>>,
    pipelines: BTreeMap<String, Pipeline>,
    defaults: BTreeMap<JobMode, String>,
    router: Router,
    queues: BTreeMap<String, VecDeque<u64>>,
    last_tenant: Option<String>,
    jobs: BTreeMap<u64, Job>,
    finished: VecDeque<u64>,
    next_id: u64,
    audit: Option<Box<dyn AuditSink>>,
    telemetry: QuantumTelemetry,
}

impl std::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator")
            .field("jobs", &self.jobs.len())
            .field("models", &self.models.keys().collect::<Vec<_>>())
            .field("pipelines", &self.pipelines.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

fn job_name(id: u64) -> String {
    format!("job-{id}")
}

fn parse_job_id(s: &str) -> Option<u64> {
    s.strip_prefix("job-")?.parse().ok()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn code(s: &str) -> String {
    let c: String = s
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if c.is_empty() { "unknown".into() } else { c }
}

impl Coordinator {
    /// A coordinator trusting `ring` for job manifests, with the built-in runtimes.
    pub fn new(config: CoordinatorConfig, ring: KeyRing) -> Self {
        let router = Router::new(config.router.clone());
        Self {
            config,
            ring,
            runtimes: RuntimeRegistry::with_builtins(),
            models: BTreeMap::new(),
            loaded: BTreeMap::new(),
            pipelines: BTreeMap::new(),
            defaults: BTreeMap::new(),
            router,
            queues: BTreeMap::new(),
            last_tenant: None,
            jobs: BTreeMap::new(),
            finished: VecDeque::new(),
            next_id: 1,
            audit: None,
            telemetry: QuantumTelemetry::new(),
        }
    }

    /// Sends audit entries to `sink` (without one, nothing is audited: tests only).
    pub fn with_audit(mut self, sink: Box<dyn AuditSink>) -> Self {
        self.audit = Some(sink);
        self
    }

    /// Uses `runtimes` (e.g. with frameworks registered from Python).
    pub fn with_runtimes(mut self, runtimes: RuntimeRegistry) -> Self {
        self.runtimes = runtimes;
        self
    }

    /// Registers (or replaces) a runtime under `framework` in this coordinator's registry and
    /// drops the models it had already loaded, so the next neural stage loads them afresh.
    pub fn register_runtime(&mut self, framework: &str, runtime: Arc<dyn crate::runtime::Runtime>) {
        self.runtimes.register(framework, runtime);
        self.loaded.clear();
    }

    /// The runtime registry neural stages load models through.
    pub fn runtimes(&self) -> &RuntimeRegistry {
        &self.runtimes
    }

    /// The metrics.
    pub fn telemetry(&self) -> &QuantumTelemetry {
        &self.telemetry
    }

    /// The router (to add targets or mirror the fleet).
    pub fn router_mut(&mut self) -> &mut Router {
        &mut self.router
    }

    /// The router.
    pub fn router(&self) -> &Router {
        &self.router
    }

    /// The trusted key ring for job manifests.
    pub fn key_ring_mut(&mut self) -> &mut KeyRing {
        &mut self.ring
    }

    /// Makes a model loadable by name.
    pub fn register_model(&mut self, name: &str, model: CatalogModel) {
        self.loaded.remove(name);
        self.models.insert(name.to_owned(), model);
    }

    /// Registers a named pipeline; `default_for` makes it the default of a mode.
    pub fn register_pipeline(
        &mut self,
        name: &str,
        pipeline: Pipeline,
        mode: JobMode,
        default_for: bool,
    ) -> Result<(), HybridError> {
        pipeline.validate(mode)?;
        self.check_models(&pipeline)?;
        self.pipelines.insert(name.to_owned(), pipeline);
        if default_for {
            self.defaults.insert(mode, name.to_owned());
        }
        Ok(())
    }

    fn check_models(&self, p: &Pipeline) -> Result<(), HybridError> {
        for (i, st) in p.stages.iter().enumerate() {
            if let StageOp::Neural { model, .. } = &st.op
                && !self.models.contains_key(model)
            {
                return Err(HybridError::Invalid {
                    field: format!("payload.stages[{i}].model"),
                    reason: format!("no model {model:?} in the catalog"),
                });
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn audit(
        &mut self,
        action: &str,
        tenant: &str,
        job: u64,
        outcome: Outcome,
        policies: &[PolicyId],
        reason: Option<&str>,
        payload_sha256: Option<String>,
        now_ms: u64,
    ) -> Result<Option<u64>, HybridError> {
        let Some(sink) = self.audit.as_mut() else {
            return Ok(None);
        };
        let mut policies = policies.to_vec();
        policies.sort();
        policies.dedup();
        let entry = AuditEntry {
            action: action.into(),
            actor: Actor {
                principal: None,
                tenant: code(tenant),
            },
            decision: Decision {
                outcome,
                policies,
                reason: reason.map(code),
            },
            payload_sha256,
            subject: Subject {
                id: KeyedId::derive(&self.config.audit_key, &job_name(job)),
                kind: "job".into(),
            },
            time: now_ms,
            v: 1,
        };
        let index = sink.record(&entry, now_ms).map_err(HybridError::Audit)?;
        if let Some(j) = self.jobs.get_mut(&job) {
            j.status.audit.push(index);
        }
        Ok(Some(index))
    }

    /// Verifies and queues a job. `auth_tenant` is the tenant of the caller's validated JWT
    /// (P5); `None` is accepted only in simulation.
    pub fn submit(
        &mut self,
        job: JobSubmission,
        auth_tenant: Option<&str>,
        now_ms: u64,
    ) -> Result<String, HybridError> {
        let simulation = self.config.mode.simulation;
        match auth_tenant {
            Some(t) if t != job.tenant => {
                return Err(HybridError::Forbidden(format!(
                    "token is for tenant {t:?}, the job names {:?}",
                    job.tenant
                )));
            }
            None if !simulation => {
                return Err(HybridError::Unauthenticated(
                    "a bearer token is required outside simulation (P5)".into(),
                ));
            }
            _ => {}
        }
        if job.tenant.is_empty()
            || job.tenant.len() > 64
            || !job
                .tenant
                .bytes()
                .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-'))
        {
            return Err(HybridError::Invalid {
                field: "tenant".into(),
                reason: "expected 1-64 characters of [a-z0-9._-]".into(),
            });
        }
        let digest = payload_digest(&job.payload);
        let id = self.next_id;
        // P2: the manifest binds tenant, mode and payload digest.
        let manifest = match &job.manifest {
            Some(env) => {
                let checked = env
                    .verify(&self.ring, self.config.mode, now_ms / 1000, JOB_PAYLOAD_TYPE)
                    .map_err(HybridError::Manifest)
                    .and_then(|(body, verified)| {
                        let st: JobStatement = serde_json::from_slice(&body).map_err(|e| {
                            HybridError::ManifestMismatch(format!("statement: {e}"))
                        })?;
                        let expect = JobStatement::for_job(&job.tenant, job.mode, &job.payload);
                        if st.statement_type != JOB_STATEMENT_TYPE {
                            return Err(HybridError::ManifestMismatch(format!(
                                "_type {:?}",
                                st.statement_type
                            )));
                        }
                        if st != expect {
                            return Err(HybridError::ManifestMismatch(
                                "the signed statement does not match the job's tenant, mode or payload digest".into(),
                            ));
                        }
                        Ok(verified)
                    });
                match checked {
                    Ok(v) => ManifestCheck {
                        verified: true,
                        key_ids: v.key_ids,
                        outcome: Outcome::Allow,
                    },
                    Err(e) => {
                        self.audit(
                            "job.submit",
                            &job.tenant,
                            id,
                            Outcome::Deny,
                            &[PolicyId::P2, PolicyId::P5],
                            Some("manifest_invalid"),
                            Some(digest),
                            now_ms,
                        )?;
                        self.next_id += 1;
                        return Err(e);
                    }
                }
            }
            None if simulation => ManifestCheck {
                verified: false,
                key_ids: vec![],
                outcome: Outcome::AllowInSimulation,
            },
            None => {
                self.audit(
                    "job.submit",
                    &job.tenant,
                    id,
                    Outcome::Deny,
                    &[PolicyId::P2, PolicyId::P5],
                    Some("manifest_missing"),
                    Some(digest),
                    now_ms,
                )?;
                self.next_id += 1;
                return Err(HybridError::Unsigned);
            }
        };
        let (pipeline, pipeline_name) =
            resolve_payload(&job.payload, job.mode, &self.pipelines, &self.defaults)?;
        pipeline.validate(job.mode)?;
        self.check_models(&pipeline)?;
        let depth = self.queues.get(&job.tenant).map_or(0, VecDeque::len);
        if depth >= self.config.max_queue_per_tenant {
            return Err(HybridError::QueueFull {
                tenant: job.tenant.clone(),
                limit: self.config.max_queue_per_tenant,
            });
        }
        self.next_id += 1;
        let outcome = manifest.outcome;
        self.jobs.insert(
            id,
            Job {
                status: JobStatus {
                    id: job_name(id),
                    tenant: job.tenant.clone(),
                    mode: job.mode,
                    state: JobState::Queued,
                    pipeline: pipeline_name,
                    payload_sha256: digest.clone(),
                    manifest,
                    submitted_ms: now_ms,
                    started_ms: None,
                    finished_ms: None,
                    queue_wait_ms: None,
                    stages: vec![],
                    outputs: BTreeMap::new(),
                    error: None,
                    audit: vec![],
                },
                pipeline,
            },
        );
        if let Err(e) = self.audit(
            "job.submit",
            &job.tenant,
            id,
            outcome,
            &[PolicyId::P2, PolicyId::P5],
            None,
            Some(digest.clone()),
            now_ms,
        ) {
            // Not audited means not accepted.
            self.jobs.remove(&id);
            return Err(e);
        }
        tracing::info!(job = %job_name(id), tenant = %job.tenant, mode = job.mode.as_str(), payload_sha256 = %digest, "job queued");
        self.queues.entry(job.tenant).or_default().push_back(id);
        Ok(job_name(id))
    }

    /// Status of a job of `tenant` (other tenants' jobs look missing).
    pub fn status(&self, tenant: &str, id: &str) -> Result<JobStatus, HybridError> {
        parse_job_id(id)
            .and_then(|n| self.jobs.get(&n))
            .filter(|j| j.status.tenant == tenant)
            .map(|j| j.status.clone())
            .ok_or_else(|| HybridError::NotFound(id.to_owned()))
    }

    /// Status of a job whatever its tenant (operators, simulation mode without tokens).
    pub fn status_any(&self, id: &str) -> Result<JobStatus, HybridError> {
        parse_job_id(id)
            .and_then(|n| self.jobs.get(&n))
            .map(|j| j.status.clone())
            .ok_or_else(|| HybridError::NotFound(id.to_owned()))
    }

    /// Jobs waiting, per tenant.
    pub fn queue_depths(&self) -> BTreeMap<String, usize> {
        self.queues
            .iter()
            .filter(|(_, q)| !q.is_empty())
            .map(|(t, q)| (t.clone(), q.len()))
            .collect()
    }

    /// Picks the next job fairly (round robin over tenants with queued work) and runs it.
    /// Returns its id, or `None` when every queue is empty.
    pub fn run_next(&mut self, now_ms: u64) -> Option<String> {
        let tenants: Vec<String> = self
            .queues
            .iter()
            .filter(|(_, q)| !q.is_empty())
            .map(|(t, _)| t.clone())
            .collect();
        if tenants.is_empty() {
            return None;
        }
        let next = match &self.last_tenant {
            Some(last) => tenants
                .iter()
                .find(|t| *t > last)
                .unwrap_or(&tenants[0])
                .clone(),
            None => tenants[0].clone(),
        };
        self.last_tenant = Some(next.clone());
        let id = self.queues.get_mut(&next)?.pop_front()?;
        self.execute(id, now_ms);
        Some(job_name(id))
    }

    /// Runs every queued job; returns how many ran.
    pub fn run_all(&mut self, now_ms: u64) -> usize {
        let mut n = 0;
        while self.run_next(now_ms).is_some() {
            n += 1;
        }
        n
    }

    fn execute(&mut self, id: u64, now_ms: u64) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        job.status.state = JobState::Running;
        job.status.started_ms = Some(now_ms);
        let wait = now_ms.saturating_sub(job.status.submitted_ms);
        job.status.queue_wait_ms = Some(wait);
        let tenant = job.status.tenant.clone();
        let mode = job.status.mode;
        let pipeline = job.pipeline.clone();
        self.telemetry.queue_wait(&tenant, wait as f64 / 1e3);
        let mut values = pipeline.inputs.clone();
        let mut error = None;
        for stage in &pipeline.stages {
            match self.run_stage(id, &tenant, stage, &mut values, now_ms) {
                Ok(report) => {
                    let digest = report.output_sha256.clone();
                    let failed_over = !report.failovers.is_empty() || report.fallback_used;
                    if let Some(j) = self.jobs.get_mut(&id) {
                        j.status.stages.push(report);
                    }
                    let r = self.audit(
                        "job.stage",
                        &tenant,
                        id,
                        Outcome::Allow,
                        if failed_over {
                            &[PolicyId::P1, PolicyId::P6, PolicyId::P7]
                        } else {
                            &[PolicyId::P1, PolicyId::P6]
                        },
                        Some(stage.kind()),
                        Some(digest),
                        now_ms,
                    );
                    if let Err(e) = r {
                        error = Some(e.to_string());
                        break;
                    }
                }
                Err(e) => {
                    error = Some(format!("stage {:?}: {e}", stage.name));
                    break;
                }
            }
        }
        let state = if error.is_some() {
            JobState::Failed
        } else {
            JobState::Completed
        };
        let result_digest = {
            let v = serde_json::to_value(&values).unwrap_or(serde_json::Value::Null);
            payload_digest(&v)
        };
        let _ = self.audit(
            if error.is_some() {
                "job.fail"
            } else {
                "job.complete"
            },
            &tenant,
            id,
            if error.is_some() {
                Outcome::Deny
            } else {
                Outcome::Allow
            },
            &[PolicyId::P5],
            error.as_deref().map(|_| "stage_failed"),
            Some(result_digest),
            now_ms,
        );
        self.telemetry.job_finished(
            &tenant,
            mode.as_str(),
            if error.is_some() {
                "failed"
            } else {
                "completed"
            },
        );
        if let Some(j) = self.jobs.get_mut(&id) {
            j.status.state = state;
            j.status.finished_ms = Some(now_ms);
            j.status.outputs = values;
            j.status.error = error;
        }
        tracing::info!(job = %job_name(id), tenant = %tenant, state = ?state, "job finished");
        self.finished.push_back(id);
        while self.finished.len() > self.config.retained_jobs {
            if let Some(old) = self.finished.pop_front() {
                self.jobs.remove(&old);
            }
        }
    }

    fn resolve(values: &BTreeMap<String, Value>, r: &str) -> Result<Value, HybridError> {
        let vr = ValueRef::parse(r).map_err(|reason| HybridError::Invalid {
            field: "ref".into(),
            reason,
        })?;
        let v = values
            .get(&vr.name)
            .ok_or_else(|| HybridError::Stage(format!("value {:?} is missing", vr.name)))?;
        match vr.index {
            None => Ok(v.clone()),
            Some(i) => v
                .numbers()
                .and_then(|n| n.get(i).copied())
                .map(Value::Number)
                .ok_or_else(|| HybridError::Stage(format!("{r}: no element {i}"))),
        }
    }

    fn run_stage(
        &mut self,
        id: u64,
        tenant: &str,
        stage: &super::job::Stage,
        values: &mut BTreeMap<String, Value>,
        now_ms: u64,
    ) -> Result<StageReport, HybridError> {
        let started = Instant::now();
        let mut report = StageReport {
            name: stage.name.clone(),
            kind: stage.kind().into(),
            target: None,
            node: None,
            precision: None,
            estimate_ms: None,
            degraded: None,
            failovers: vec![],
            fallback_used: false,
            duration_ms: 0.0,
            output_sha256: String::new(),
            quantum: None,
        };
        let produced: Result<Vec<(String, Value)>, HybridError> = match &stage.op {
            StageOp::Classical { op, output } => {
                let input = Self::resolve(values, op.input())?;
                report.target = Some("classical".into());
                op.apply(&input)
                    .map(|v| vec![(output.clone(), v)])
                    .map_err(HybridError::Stage)
            }
            StageOp::Neural {
                model,
                input,
                shape,
                output,
            } => self
                .run_neural(
                    id,
                    tenant,
                    model,
                    input,
                    shape.as_deref(),
                    values,
                    &mut report,
                    now_ms,
                )
                .map(|v| vec![(output.clone(), v)]),
            StageOp::Quantum {
                qasm,
                bind,
                shots,
                observables,
                seed,
                provider,
                output,
            } => self.run_quantum(
                id,
                tenant,
                QuantumStage {
                    qasm,
                    bind,
                    shots: *shots,
                    observables,
                    seed: *seed,
                    provider: provider.as_deref(),
                    output,
                },
                values,
                &mut report,
                now_ms,
            ),
        };
        let produced = match produced {
            Ok(p) => p,
            Err(e) if e.is_unavailable() => match &stage.fallback {
                Some(fb) => {
                    let v = match fb {
                        Fallback::Value(v) => v.clone(),
                        Fallback::Classical(op) => {
                            let input = Self::resolve(values, op.input())?;
                            op.apply(&input).map_err(HybridError::Stage)?
                        }
                    };
                    report.fallback_used = true;
                    report.target = Some("fallback".into());
                    report.failovers.push(FailoverRecord {
                        target: "fallback".into(),
                        reason: e.to_string(),
                    });
                    self.telemetry.failover(stage.kind(), "fallback");
                    self.audit(
                        "job.failover",
                        tenant,
                        id,
                        Outcome::Allow,
                        &[PolicyId::P7],
                        Some("declared_fallback"),
                        Some(sha256_hex(e.to_string().as_bytes())),
                        now_ms,
                    )?;
                    vec![(stage.output().to_owned(), v)]
                }
                None => return Err(e),
            },
            Err(e) => return Err(e),
        };
        let mut digests = Vec::new();
        for (name, v) in produced {
            digests.push(v.digest());
            values.insert(name, v);
        }
        report.output_sha256 = digests.first().cloned().unwrap_or_default();
        report.duration_ms = started.elapsed().as_secs_f64() * 1e3;
        self.telemetry.stage(
            stage.kind(),
            report.target.as_deref().unwrap_or("none"),
            report.duration_ms / 1e3,
        );
        Ok(report)
    }

    fn route_rejected(
        &mut self,
        id: u64,
        tenant: &str,
        kind: &str,
        r: Rejection,
        now_ms: u64,
    ) -> Result<HybridError, HybridError> {
        self.telemetry.rejected(kind, &r.code);
        self.audit(
            "job.route",
            tenant,
            id,
            Outcome::Deny,
            &[r.policy],
            Some(&r.code),
            None,
            now_ms,
        )?;
        Ok(HybridError::Rejected {
            policy: r.policy,
            code: r.code,
            reason: r.reason,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn run_neural(
        &mut self,
        id: u64,
        tenant: &str,
        model: &str,
        input: &str,
        shape: Option<&[usize]>,
        values: &BTreeMap<String, Value>,
        report: &mut StageReport,
        now_ms: u64,
    ) -> Result<Value, HybridError> {
        let plans = match self.router.plan_neural(model, now_ms) {
            Ok(p) => p,
            Err(r) => return Err(self.route_rejected(id, tenant, "neural", r, now_ms)?),
        };
        let x = Self::resolve(values, input)?;
        let data: Vec<f32> = x
            .numbers()
            .ok_or_else(|| HybridError::Stage(format!("{input}: a neural input must be numeric")))?
            .into_iter()
            .map(|v| v as f32)
            .collect();
        let shape = shape
            .map(<[usize]>::to_vec)
            .or_else(|| x.shape())
            .unwrap_or_default();
        let tensor = Tensor::new(shape, data).map_err(|e| HybridError::Stage(e.to_string()))?;
        let loaded = self.load(model)?;
        let mut last: Option<HybridError> = None;
        for plan in plans {
            self.audit(
                "job.route",
                tenant,
                id,
                Outcome::Allow,
                &[PolicyId::P6],
                Some(match plan.kind {
                    super::router::EngineKind::Gpu => "neural.gpu",
                    super::router::EngineKind::Cpu => "neural.cpu",
                }),
                Some(sha256_hex(plan.target.as_bytes())),
                now_ms,
            )?;
            self.router.track(&plan.target, true);
            let t0 = Instant::now();
            let out = loaded.run(std::slice::from_ref(&tensor));
            self.router.track(&plan.target, false);
            match out {
                Ok(outs) => {
                    let ms = t0.elapsed().as_secs_f64() * 1e3;
                    self.router.observe_model(model, ms);
                    self.router.mark_up(&plan.target);
                    let first = outs.into_iter().next().ok_or_else(|| {
                        HybridError::Stage(format!("model {model:?} returned no output"))
                    })?;
                    report.target = Some(plan.target.clone());
                    report.node = Some(plan.node.clone());
                    if plan.kind == super::router::EngineKind::Gpu && self.config.gpu_driver_mock {
                        report.degraded = Some("GPU_DRIVER_MOCK: GPU stage ran on the CPU".into());
                    }
                    return Ok(Value::Tensor {
                        shape: first.shape,
                        data: first.data.into_iter().map(f64::from).collect(),
                    });
                }
                Err(RuntimeError::BadInput(m)) => {
                    return Err(HybridError::Stage(format!("model {model:?}: {m}")));
                }
                Err(e) => {
                    let reason = e.to_string();
                    self.failover(id, tenant, "neural", &plan.target, &reason, report, now_ms)?;
                    last = Some(HybridError::Unavailable(reason));
                }
            }
        }
        Err(last.unwrap_or_else(|| HybridError::Unavailable("no neural engine".into())))
    }

    #[allow(clippy::too_many_arguments)]
    fn failover(
        &mut self,
        id: u64,
        tenant: &str,
        kind: &str,
        target: &str,
        reason: &str,
        report: &mut StageReport,
        now_ms: u64,
    ) -> Result<(), HybridError> {
        self.router.mark_down(target, reason, now_ms);
        report.failovers.push(FailoverRecord {
            target: target.to_owned(),
            reason: reason.to_owned(),
        });
        self.telemetry.failover(kind, "target_error");
        tracing::warn!(job = %job_name(id), target, "stage failed over");
        self.audit(
            "job.failover",
            tenant,
            id,
            Outcome::Allow,
            &[PolicyId::P7],
            Some("target_error"),
            Some(sha256_hex(reason.as_bytes())),
            now_ms,
        )?;
        Ok(())
    }

    fn load(&mut self, model: &str) -> Result<Arc<dyn LoadedModel>, HybridError> {
        if let Some(m) = self.loaded.get(model) {
            return Ok(m.clone());
        }
        let entry = self
            .models
            .get(model)
            .ok_or_else(|| HybridError::Stage(format!("no model {model:?} in the catalog")))?;
        let loaded = self
            .runtimes
            .load_model(&entry.framework, &entry.path)
            .map_err(|e| HybridError::Stage(e.to_string()))?;
        self.loaded.insert(model.to_owned(), loaded.model.clone());
        Ok(loaded.model)
    }

    fn run_quantum(
        &mut self,
        id: u64,
        tenant: &str,
        q: QuantumStage<'_>,
        values: &BTreeMap<String, Value>,
        report: &mut StageReport,
        now_ms: u64,
    ) -> Result<Vec<(String, Value)>, HybridError> {
        let symbols: Vec<&str> = q.bind.keys().map(String::as_str).collect();
        let circuit = Circuit::from_qasm_with_parameters(q.qasm, &symbols)
            .map_err(|e| HybridError::Stage(e.to_string()))?;
        let mut binding = Vec::new();
        for (sym, r) in q.bind {
            let v = Self::resolve(values, r)?;
            let x = match v {
                Value::Number(x) => x,
                other => match other.numbers().as_deref() {
                    Some([x]) => *x,
                    _ => {
                        return Err(HybridError::Stage(format!(
                            "{sym} is bound to {r}, which is not one number"
                        )));
                    }
                },
            };
            binding.push((sym.as_str(), x));
        }
        let bound = circuit.bind(&binding);
        let observables: Vec<PauliSum> = q
            .observables
            .iter()
            .map(|o| {
                let terms = o.terms();
                let refs: Vec<(f64, &str)> = terms.iter().map(|(c, l)| (*c, l.as_str())).collect();
                PauliSum::from_terms(&refs).map_err(|e| HybridError::Stage(e.to_string()))
            })
            .collect::<Result<_, _>>()?;
        let diagonal = q.observables.iter().all(|o| {
            o.terms()
                .iter()
                .all(|(_, l)| l.chars().all(|c| matches!(c, 'I' | 'Z')))
        });
        let profile = CircuitProfile {
            width: u32::try_from(bound.num_qubits()).unwrap_or(u32::MAX),
            ops: bound.instructions().len() as u64,
            depth: bound.depth() as u64,
            shots: q.shots,
            needs_statevector: (!observables.is_empty() && !diagonal)
                || (q.shots == 0 && observables.is_empty())
                || (!observables.is_empty() && q.shots == 0),
        };
        let qasm_out = bound.to_qasm().unwrap_or_default();
        let circuit_sha = sha256_hex(qasm_out.as_bytes());
        let plans = match self.router.plan_quantum(&profile, q.provider, now_ms) {
            Ok(p) => p,
            Err(r) => return Err(self.route_rejected(id, tenant, "quantum", r, now_ms)?),
        };
        let mut last = None;
        for plan in plans {
            self.audit(
                "job.route",
                tenant,
                id,
                Outcome::Allow,
                &[PolicyId::P6],
                Some(if plan.degraded.is_some() {
                    "quantum.degraded"
                } else {
                    "quantum"
                }),
                Some(sha256_hex(
                    serde_json::to_string(&plan).unwrap_or_default().as_bytes(),
                )),
                now_ms,
            )?;
            let Some(target) = self.router.quantum_target(&plan.target).cloned() else {
                continue;
            };
            self.router.track(&plan.target, true);
            let run = self.run_on(&target, &bound, &q, &observables, plan.precision);
            self.router.track(&plan.target, false);
            match run {
                Ok(out) => {
                    self.router.mark_up(&plan.target);
                    let tvd = out.tvd.or_else(|| {
                        // A provider's counts against the exact answer, when it is cheap to know.
                        if profile.width <= self.config.accuracy_max_qubits && q.shots > 0 {
                            out.counts
                                .as_ref()
                                .and_then(|c| exact_tvd(&bound, c, Precision::Double))
                        } else {
                            None
                        }
                    });
                    if let Some(t) = tvd {
                        self.telemetry.observe_tvd(t);
                    }
                    self.telemetry.observe_circuit(
                        &plan.target,
                        profile.width,
                        profile.depth,
                        out.fused_ops.unwrap_or(profile.ops),
                        q.shots,
                    );
                    tracing::info!(job = %job_name(id), circuit_sha256 = %circuit_sha, target = %plan.target, width = profile.width, "quantum stage ran");
                    report.target = Some(plan.target.clone());
                    report.precision = Some(
                        match plan.precision {
                            Precision::Single => "single",
                            Precision::Double => "double",
                        }
                        .into(),
                    );
                    report.estimate_ms = Some(plan.estimate_ms);
                    report.degraded = plan.degraded.clone();
                    report.quantum = Some(QuantumFacts {
                        width: profile.width,
                        depth: profile.depth,
                        ops: profile.ops,
                        fused_ops: out.fused_ops,
                        shots: q.shots,
                        tvd,
                        circuit_sha256: circuit_sha.clone(),
                    });
                    let mut produced = Vec::new();
                    match (out.expectations, out.counts, out.probabilities) {
                        (Some(e), counts, _) => {
                            produced.push((q.output.to_owned(), Value::List(e)));
                            if let Some(c) = counts
                                && q.shots > 0
                            {
                                produced.push((format!("{}_counts", q.output), Value::Counts(c)));
                            }
                        }
                        (None, Some(c), _) => {
                            produced.push((q.output.to_owned(), Value::Counts(c)))
                        }
                        (None, None, Some(p)) => {
                            produced.push((q.output.to_owned(), Value::List(p)));
                        }
                        (None, None, None) => {
                            return Err(HybridError::Stage("the circuit produced nothing".into()));
                        }
                    }
                    return Ok(produced);
                }
                Err(QuantumRunError::Permanent(m)) => return Err(HybridError::Stage(m)),
                Err(QuantumRunError::Target(reason)) => {
                    self.failover(id, tenant, "quantum", &plan.target, &reason, report, now_ms)?;
                    last = Some(HybridError::Unavailable(reason));
                }
            }
        }
        Err(last.unwrap_or_else(|| HybridError::Unavailable("no quantum target".into())))
    }

    fn run_on(
        &self,
        target: &super::router::QuantumTarget,
        circuit: &Circuit,
        q: &QuantumStage<'_>,
        observables: &[PauliSum],
        precision: Precision,
    ) -> Result<QuantumOutput, QuantumRunError> {
        match &target.engine {
            QuantumEngine::Simulator => {
                let sim = Simulator::new(SimOptions {
                    shots: q.shots,
                    seed: q.seed,
                    precision,
                    memory_limit: Some(target.memory_bytes),
                    ..SimOptions::default()
                });
                let r = sim.run(circuit).map_err(|e| match e {
                    atom_quantum::Error::Memory { .. } => QuantumRunError::Target(e.to_string()),
                    other => QuantumRunError::Permanent(other.to_string()),
                })?;
                let expectations = if observables.is_empty() {
                    None
                } else {
                    Some(
                        observables
                            .iter()
                            .map(|o| r.expectation(o))
                            .collect::<Result<Vec<f64>, _>>()
                            .map_err(|e| QuantumRunError::Permanent(e.to_string()))?,
                    )
                };
                let counts = (q.shots > 0).then(|| r.counts().clone());
                let tvd = match &counts {
                    Some(c) if circuit.num_qubits() as u32 <= self.config.accuracy_max_qubits => {
                        exact_distribution(circuit, &r.probabilities()).map(|p| tvd(&p, c))
                    }
                    _ => None,
                };
                let probabilities =
                    (q.shots == 0 && observables.is_empty()).then(|| r.probabilities());
                Ok(QuantumOutput {
                    expectations,
                    counts,
                    probabilities,
                    fused_ops: Some(r.fused_ops() as u64),
                    tvd,
                })
            }
            QuantumEngine::Provider(backend) => {
                let r = backend
                    .run(
                        circuit,
                        &RunOptions {
                            shots: q.shots,
                            seed: q.seed,
                            precision,
                        },
                    )
                    .map_err(|e| QuantumRunError::Target(e.to_string()))?;
                let expectations = if observables.is_empty() {
                    None
                } else {
                    Some(
                        q.observables
                            .iter()
                            .map(|o| z_expectation_from_counts(circuit, &o.terms(), &r.counts))
                            .collect::<Result<Vec<f64>, String>>()
                            .map_err(QuantumRunError::Permanent)?,
                    )
                };
                Ok(QuantumOutput {
                    expectations,
                    counts: Some(r.counts),
                    probabilities: None,
                    fused_ops: None,
                    tvd: None,
                })
            }
        }
    }
}

struct QuantumStage<'a> {
    qasm: &'a str,
    bind: &'a BTreeMap<String, String>,
    shots: u64,
    observables: &'a [super::job::Observable],
    seed: Option<u64>,
    provider: Option<&'a str>,
    output: &'a str,
}

struct QuantumOutput {
    expectations: Option<Vec<f64>>,
    counts: Option<BTreeMap<String, u64>>,
    probabilities: Option<Vec<f64>>,
    fused_ops: Option<u64>,
    tvd: Option<f64>,
}

enum QuantumRunError {
    /// The circuit itself is wrong: failing over would not help.
    Permanent(String),
    /// The target failed: try the next one.
    Target(String),
}

/// Maps each qubit to the clbit its final measurement writes, when every measurement is
/// terminal and unconditional (otherwise the exact clbit distribution is not a function of the
/// final statevector).
fn terminal_measurements(circuit: &Circuit) -> Option<BTreeMap<usize, usize>> {
    let mut map = BTreeMap::new();
    for inst in circuit.instructions() {
        match &inst.op {
            Operation::Measure => {
                if inst.condition.is_some() {
                    return None;
                }
                let (&q, &c) = (inst.qubits.first()?, inst.clbits.first()?);
                map.insert(q, c);
            }
            Operation::Barrier => {}
            _ => {
                if inst.qubits.iter().any(|q| map.contains_key(q)) || inst.condition.is_some() {
                    return None;
                }
                if matches!(inst.op, Operation::Reset) {
                    return None;
                }
            }
        }
    }
    Some(map)
}

/// The exact distribution over clbit strings (clbit 0 rightmost, no register spaces).
fn exact_distribution(circuit: &Circuit, probs: &[f64]) -> Option<BTreeMap<String, f64>> {
    let map = terminal_measurements(circuit)?;
    if map.is_empty() {
        return None;
    }
    let nc = circuit.num_clbits();
    let mut out: BTreeMap<String, f64> = BTreeMap::new();
    for (index, p) in probs.iter().enumerate() {
        if *p == 0.0 {
            continue;
        }
        let mut bits = vec![b'0'; nc];
        for (&q, &c) in &map {
            if (index >> q) & 1 == 1 && c < nc {
                bits[nc - 1 - c] = b'1';
            }
        }
        *out.entry(String::from_utf8(bits).ok()?).or_insert(0.0) += p;
    }
    Some(out)
}

/// Total variation distance between an exact distribution and sampled counts.
pub fn tvd(exact: &BTreeMap<String, f64>, counts: &BTreeMap<String, u64>) -> f64 {
    let total: u64 = counts.values().sum();
    if total == 0 {
        return 0.0;
    }
    let mut keys: std::collections::BTreeSet<String> = exact.keys().cloned().collect();
    let norm = |k: &String| k.replace(' ', "");
    let sampled: BTreeMap<String, f64> = counts
        .iter()
        .map(|(k, v)| (norm(k), *v as f64 / total as f64))
        .collect();
    keys.extend(sampled.keys().cloned());
    0.5 * keys
        .iter()
        .map(|k| {
            (exact.get(k).copied().unwrap_or(0.0) - sampled.get(k).copied().unwrap_or(0.0)).abs()
        })
        .sum::<f64>()
}

fn exact_tvd(
    circuit: &Circuit,
    counts: &BTreeMap<String, u64>,
    precision: Precision,
) -> Option<f64> {
    let r = Simulator::new(SimOptions {
        precision,
        ..SimOptions::default()
    })
    .run(circuit)
    .ok()?;
    exact_distribution(circuit, &r.probabilities()).map(|p| tvd(&p, counts))
}

/// ⟨P⟩ of a Z/I observable from counts: each term's sign is the parity of the clbits that
/// measured its Z qubits.
fn z_expectation_from_counts(
    circuit: &Circuit,
    terms: &[(f64, String)],
    counts: &BTreeMap<String, u64>,
) -> Result<f64, String> {
    let map = terminal_measurements(circuit)
        .ok_or("expectation values from counts need terminal measurements")?;
    let total: u64 = counts.values().sum();
    if total == 0 {
        return Err("expectation values from counts need shots".into());
    }
    let mut acc = 0.0;
    for (coef, label) in terms {
        let n = label.len();
        let mut clbits = Vec::new();
        for (pos, ch) in label.chars().enumerate() {
            let qubit = n - 1 - pos;
            match ch {
                'I' => {}
                'Z' => clbits.push(
                    *map.get(&qubit)
                        .ok_or_else(|| format!("qubit {qubit} is not measured"))?,
                ),
                other => {
                    return Err(format!("a provider's counts cannot estimate {other} terms"));
                }
            }
        }
        let mut e = 0.0;
        for (key, c) in counts {
            let bits: Vec<u8> = key.bytes().filter(|b| *b != b' ').rev().collect();
            let ones = clbits
                .iter()
                .filter(|&&cb| bits.get(cb) == Some(&b'1'))
                .count();
            e += if ones % 2 == 0 { 1.0 } else { -1.0 } * *c as f64;
        }
        acc += coef * e / total as f64;
    }
    Ok(acc)
}

/// Builds the classical stage op used by callers that want a label from an expectation value.
pub fn label_from_expectation(input: &str) -> ClassicalOp {
    ClassicalOp::Threshold {
        input: input.into(),
        at: 0.0,
        above: 0.0,
        below: 1.0,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn tvd_of_identical_distributions_is_zero_and_of_disjoint_is_one() {
        let exact = BTreeMap::from([("00".to_string(), 0.5), ("11".to_string(), 0.5)]);
        let same = BTreeMap::from([("00".to_string(), 50), ("11".to_string(), 50)]);
        assert_eq!(tvd(&exact, &same), 0.0);
        let other = BTreeMap::from([("01".to_string(), 10)]);
        assert!((tvd(&exact, &other) - 1.0).abs() < 1e-12);
        let skew = BTreeMap::from([("00".to_string(), 70), ("11".to_string(), 30)]);
        assert!((tvd(&exact, &skew) - 0.2).abs() < 1e-12);
    }

    #[test]
    fn exact_distribution_follows_the_measurement_map() {
        // x on qubit 0, measured into clbit 1: the key is "10" (clbit 0 rightmost).
        let c = Circuit::from_qasm(
            "OPENQASM 2.0;\ninclude \"qelib1.inc\";\nqreg q[2];\ncreg c[2];\nx q[0];\nmeasure q[0] -> c[1];\nmeasure q[1] -> c[0];\n",
        )
        .unwrap();
        let r = Simulator::new(SimOptions::default()).run(&c).unwrap();
        let d = exact_distribution(&c, &r.probabilities()).unwrap();
        assert_eq!(d.len(), 1);
        assert!((d["10"] - 1.0).abs() < 1e-12);
    }

    #[test]
    fn z_expectations_from_counts() {
        let c = Circuit::from_qasm(
            "OPENQASM 2.0;\ninclude \"qelib1.inc\";\nqreg q[2];\ncreg c[2];\nmeasure q -> c;\n",
        )
        .unwrap();
        let counts = BTreeMap::from([("00".to_string(), 60), ("01".to_string(), 40)]);
        // Z on qubit 0: (60 - 40) / 100; Z on qubit 1: 1; ZZ: 0.2.
        let z0 = z_expectation_from_counts(&c, &[(1.0, "IZ".into())], &counts).unwrap();
        assert!((z0 - 0.2).abs() < 1e-12);
        let z1 = z_expectation_from_counts(&c, &[(1.0, "ZI".into())], &counts).unwrap();
        assert!((z1 - 1.0).abs() < 1e-12);
        assert!(z_expectation_from_counts(&c, &[(1.0, "XI".into())], &counts).is_err());
    }
}
