//! The hosts' shared state and their synchronous operations. HTTP handlers only parse, call one
//! of these, and encode; everything here is plain library calls under locks.

use atom_fabric::autoscale::controller::{Controller, PlannedAction, ReplicaSetSpec};
use atom_fabric::autoscale::feed::ReplicaReport;
use atom_fabric::hybrid::{
    CatalogModel, Coordinator, CoordinatorConfig, HybridError, JobMode, JobSubmission, Observable,
    Pipeline, QuantumTarget, Stage, StageOp, Value,
};
use atom_fabric::metrics::Metrics;
use atom_fabric::{
    Command, DirStore, Fabric, FabricError, NodeSpec, Outcome, RequestId, ScheduleRequest,
    SchedulerConfig,
};
use atom_policy::audit::{
    Actor, AuditEntry, AuditLog, Decision, KeyedId, LogConfig, OpenOptions,
    Outcome as AuditOutcome, Subject, SyncPolicy,
};
use atom_policy::config::{Env, Mode};
use atom_policy::handshake::HybridKeyPair;
use atom_policy::jwt::JwtValidator;
use atom_policy::keyring::KeyRing;
use atom_policy::note::{CheckpointMode, NoteSigner};
use atom_policy::policy::{PolicyId, PolicyMatrix};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

/// An API error: HTTP status, a stable code, the message, and the field when one is at fault.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// Stable machine code.
    pub code: &'static str,
    /// Human message.
    pub message: String,
    /// The offending field.
    pub field: Option<String>,
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
        }
    }
    pub fn field(mut self, f: impl Into<String>) -> Self {
        self.field = Some(f.into());
        self
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "internal", message)
    }
    pub fn body(&self) -> serde_json::Value {
        let mut e = json!({"code": self.code, "message": self.message});
        if let Some(f) = &self.field {
            e["field"] = json!(f);
        }
        json!({ "error": e })
    }
}

impl From<FabricError> for ApiError {
    fn from(e: FabricError) -> Self {
        match &e {
            FabricError::InvalidInput(m) => {
                let field = m.split([' ', ':']).next().unwrap_or("").to_owned();
                let err = ApiError::new(422, "invalid", e.to_string());
                if field.contains('.') || field.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                {
                    err.field(field)
                } else {
                    err
                }
            }
            FabricError::RequestNotFound(_) | FabricError::NodeNotFound(_) => {
                ApiError::new(404, "not_found", e.to_string())
            }
            FabricError::InvalidTransition { .. } => ApiError::new(409, "conflict", e.to_string()),
            FabricError::PolicyDenied { .. } => ApiError::new(403, "policy_denied", e.to_string()),
            FabricError::NodeSpecConflict { .. } => ApiError::new(409, "conflict", e.to_string()),
            _ => ApiError::internal(e.to_string()),
        }
    }
}

impl From<HybridError> for ApiError {
    fn from(e: HybridError) -> Self {
        let m = e.to_string();
        match e {
            HybridError::Invalid { field, .. } => ApiError::new(422, "invalid", m).field(field),
            HybridError::Unauthenticated(_) => ApiError::new(401, "unauthenticated", m),
            HybridError::Forbidden(_) => ApiError::new(403, "forbidden", m),
            HybridError::Unsigned | HybridError::Manifest(_) | HybridError::ManifestMismatch(_) => {
                ApiError::new(403, "manifest", m).field("manifest")
            }
            HybridError::QueueFull { .. } => ApiError::new(429, "queue_full", m),
            HybridError::NotFound(_) => ApiError::new(404, "not_found", m),
            _ => ApiError::internal(m),
        }
    }
}

/// Host settings (from flags, the environment and `.env.default`).
#[derive(Debug, Clone)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub mode: Mode,
    pub max_tenant_gpus: u64,
    pub max_queue_per_tenant: usize,
    pub gpu_driver_mock: bool,
    pub jwt_hs256_secret: Option<Vec<u8>>,
    pub quantum_memory_bytes: u64,
    /// `ATOM_AUTOSCALE_INTERVAL_S`: how often the host reconciles replica sets (0 = only on
    /// `POST /autoscale/reconcile`).
    pub autoscale_interval_s: u64,
    /// `PROM_URL`: read the autoscaler's inputs from this Prometheus server instead of the
    /// node agents' pushed reports.
    pub prom_url: Option<String>,
}

impl Settings {
    /// Reads the variables of SPEC.md from `env`.
    pub fn from_env(env: &Env, data_dir: PathBuf) -> Result<Self, String> {
        let mode = Mode::from_env(env).map_err(|e| e.to_string())?;
        mode.check().map_err(|e| e.to_string())?;
        let num = |name: &str, default: u64| -> Result<u64, String> {
            match env.get(name).map(str::trim).filter(|v| !v.is_empty()) {
                None => Ok(default),
                Some(v) => v
                    .parse()
                    .map_err(|_| format!("{name}={v:?}: expected a non-negative integer")),
            }
        };
        let flag = |name: &str, default: bool| match env.get(name).map(str::trim) {
            Some(v) if !v.is_empty() => {
                matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes")
            }
            _ => default,
        };
        Ok(Self {
            data_dir,
            mode,
            max_tenant_gpus: num("MAX_TENANT_GPUs", 2)?,
            max_queue_per_tenant: usize::try_from(num("ATOM_MAX_QUEUE_PER_TENANT", 1000)?)
                .unwrap_or(usize::MAX),
            gpu_driver_mock: flag("GPU_DRIVER_MOCK", true),
            jwt_hs256_secret: env
                .get("ATOM_JWT_HS256_SECRET")
                .filter(|s| !s.is_empty())
                .map(|s| s.as_bytes().to_vec()),
            quantum_memory_bytes: num("ATOM_QUANTUM_MEMORY_BYTES", 4 << 30)?,
            autoscale_interval_s: num("ATOM_AUTOSCALE_INTERVAL_S", 15)?,
            prom_url: env
                .get("PROM_URL")
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
        })
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub const ORIGIN: &str = "atom-fabric/audit";

/// Everything the hosts share.
pub struct App {
    pub settings: Settings,
    pub started: Instant,
    fabric: Mutex<Fabric<DirStore>>,
    metrics: Mutex<Metrics>,
    pub coordinator: Mutex<Coordinator>,
    pub audit: Arc<Mutex<AuditLog>>,
    note_signer: NoteSigner,
    kem: HybridKeyPair,
    pub jwt: Option<JwtValidator>,
    matrix: Mutex<PolicyMatrix>,
    registry: prometheus_client::registry::Registry,
    pub run_dir: PathBuf,
    runs: Mutex<RunFiles>,
    audit_key: Vec<u8>,
    pub http_requests: Mutex<BTreeMap<(String, u16), u64>>,
    committer: std::sync::OnceLock<std::sync::mpsc::Sender<Stage1>>,
    agent: std::sync::OnceLock<std::sync::mpsc::SyncSender<AgentWork>>,
    /// Set when a thread of the `POST /schedule` pipeline has exited (health reports it).
    pipeline_stopped: AtomicBool,
    autoscaler: Mutex<Controller>,
}

/// The answer channel of one `POST /schedule`.
pub type ScheduleReply = tokio::sync::oneshot::Sender<Result<ScheduleAnswer, ApiError>>;

/// One `POST /schedule` on its way through the pipeline.
pub struct ScheduleCall {
    req: ScheduleRequest,
    auth: Option<String>,
    /// SHA-256 of the canonical request (the audit entry's payload digest).
    digest: String,
    reply: ScheduleReply,
}

/// One `POST /schedule/{id}/release` on its way to the committer.
pub struct ReleaseCall {
    tenant: String,
    request: RequestId,
    reply: tokio::sync::oneshot::Sender<Result<serde_json::Value, ApiError>>,
}

/// What the committer receives: requests, releases, and the node agent's reports.
enum Stage1 {
    /// Boxed: the request is large, the other messages are small.
    Schedule(Box<ScheduleCall>),
    Release(ReleaseCall),
    Launched(Vec<Command>),
    /// A barrier (shutdown): answered once everything sent before it is launched and its
    /// reports are journaled. It travels committer → agent → committer.
    Drain(std::sync::mpsc::Sender<()>),
    /// The barrier on its way back from the agent.
    Drained(std::sync::mpsc::Sender<()>),
}

/// One request's decision, as the client will see it (the JSON is built on the HTTP worker).
#[derive(Debug)]
pub struct ScheduleAnswer {
    decision: Answer,
    audit_index: Option<u64>,
}

#[derive(Debug)]
enum Answer {
    /// 201.
    Placed {
        request_id: RequestId,
        placement: std::sync::Arc<atom_fabric::Placement>,
    },
    /// 202.
    Queued {
        request_id: RequestId,
        reason: atom_fabric::QueueReason,
        detail: String,
    },
    /// 200: a retry with a known idempotency key.
    Existing {
        request_id: RequestId,
        phase: atom_fabric::Phase,
        placement: Option<atom_fabric::Placement>,
    },
}

impl ScheduleAnswer {
    fn request_id(&self) -> RequestId {
        match &self.decision {
            Answer::Placed { request_id, .. }
            | Answer::Queued { request_id, .. }
            | Answer::Existing { request_id, .. } => *request_id,
        }
    }

    /// The HTTP status.
    pub fn code(&self) -> u16 {
        match self.decision {
            Answer::Placed { .. } => 201,
            Answer::Queued { .. } => 202,
            Answer::Existing { .. } => 200,
        }
    }

    /// The response body.
    pub fn body(&self) -> serde_json::Value {
        let mut v = match &self.decision {
            Answer::Placed {
                request_id,
                placement,
            } => {
                json!({"request_id": request_id.to_string(), "status": "placed", "placement": placement})
            }
            Answer::Queued {
                request_id,
                reason,
                detail,
            } => {
                json!({"request_id": request_id.to_string(), "status": "queued", "reason": reason, "detail": detail})
            }
            Answer::Existing {
                request_id,
                phase,
                placement,
            } => {
                json!({"request_id": request_id.to_string(), "status": phase, "placement": placement, "idempotent_replay": true})
            }
        };
        if let Some(idx) = self.audit_index {
            v["audit_index"] = json!(idx);
        }
        v
    }
}

/// A replica set the in-process node agent launches.
#[derive(Debug)]
struct Launch {
    request: RequestId,
    tenant: String,
    model_id: String,
    model_version: String,
    /// (node, devices) per replica.
    replicas: Vec<(String, Vec<u32>)>,
    at_ms: u64,
}

/// One thing the node agent does.
#[derive(Debug)]
enum AgentAction {
    Launch(Launch),
    /// The request's replicas (this many) stopped.
    Stop(RequestId, u32),
}

impl Launch {
    /// The launch of `placement` (an event's, or the request's current one).
    fn new(
        st: &atom_fabric::RequestStatus,
        placement: &atom_fabric::Placement,
        at_ms: u64,
    ) -> Self {
        Self {
            request: st.id,
            tenant: st.tenant_id.clone(),
            model_id: st.model_id.clone(),
            model_version: st.model_version.clone(),
            replicas: placement
                .replicas
                .iter()
                .map(|r| (r.node.clone(), r.devices.clone()))
                .collect(),
            at_ms,
        }
    }
}

/// The node agent's work from one batch of events, in event order (a request evicted and
/// placed again is stopped, then launched).
#[derive(Debug, Default)]
struct AgentWork {
    actions: Vec<AgentAction>,
    /// Barriers to pass back to the committer after the actions.
    drains: Vec<std::sync::mpsc::Sender<()>>,
}

impl AgentWork {
    fn is_empty(&self) -> bool {
        self.actions.is_empty() && self.drains.is_empty()
    }
}

/// Stage 1's output: each request's answer (in decision order) and the agent's work.
struct Decided {
    answers: Vec<(Result<ScheduleAnswer, ApiError>, ScheduleCall)>,
    work: AgentWork,
}

impl Decided {
    /// Every call fails with `e`; nothing for the agent.
    fn failed(calls: Vec<ScheduleCall>, e: &ApiError) -> Self {
        Self {
            answers: calls.into_iter().map(|c| (Err(e.clone()), c)).collect(),
            work: AgentWork::default(),
        }
    }
}

/// Replica reports older than this do not count (ms).
const REPORT_STALE_MS: u64 = 30_000;

/// Most requests the committer decides with one journal sync.
const MAX_BATCH: usize = 1024;

/// The node agent's run files. A stopped replica's file is renamed into `.recycle/` and
/// renamed back (rewritten) for a later launch instead of being unlinked and created again:
/// ext4 skips recently freed inodes when it allocates, so a create/unlink churn of thousands
/// per second makes every create scan the inode tables (measured: the agent thread at a full
/// core at 5k launches/s, in `recently_deleted`/`find_inode_bit`).
struct RunFiles {
    recycle: PathBuf,
    free: Vec<PathBuf>,
    next: u64,
}

/// Stopped run files kept for reuse.
const RECYCLE_MAX: usize = 4096;

impl RunFiles {
    fn open(dir: &Path) -> std::io::Result<Self> {
        let recycle = dir.join(".recycle");
        // Left from the last run: they hold stale records and are not reused.
        match std::fs::remove_dir_all(&recycle) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        std::fs::create_dir_all(&recycle)?;
        Ok(Self {
            recycle,
            free: Vec::new(),
            next: 0,
        })
    }

    /// Writes `bytes` as the whole content of `path`.
    fn write(&mut self, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        if let Some(old) = self.free.pop()
            && std::fs::rename(&old, path).is_ok()
        {
            let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
            f.write_all(bytes)?;
            return f.set_len(bytes.len() as u64);
        }
        std::fs::write(path, bytes)
    }

    /// Takes `path` out of the run directory (a missing file is not an error).
    fn retire(&mut self, path: &Path) -> std::io::Result<()> {
        let result = if self.free.len() < RECYCLE_MAX {
            let to = self.recycle.join(self.next.to_string());
            self.next += 1;
            std::fs::rename(path, &to).map(|()| self.free.push(to))
        } else {
            std::fs::remove_file(path)
        };
        match result {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// Raises its flag when dropped: a pipeline thread that returns or panics marks the host
/// degraded.
struct StopFlag<'a>(&'a AtomicBool);
impl Drop for StopFlag<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Batches of launches the node agent may have waiting before the committer waits for it.
const AGENT_QUEUE: usize = 64;

/// A request id from a path (`req-12` or `12`); anything else is an unknown request (404).
fn parse_request_id(id: &str) -> Result<RequestId, ApiError> {
    id.parse()
        .map_err(|_| ApiError::new(404, "not_found", format!("request {id} not found")))
}

fn lock<T>(m: &Mutex<T>) -> Result<MutexGuard<'_, T>, ApiError> {
    m.lock()
        .map_err(|_| ApiError::internal("state lock poisoned"))
}

fn read_or_create_secret(
    path: &Path,
    make: impl FnOnce() -> Result<String, String>,
) -> Result<String, String> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(s),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let s = make()?;
            if let Some(p) = path.parent() {
                std::fs::create_dir_all(p).map_err(|e| format!("create {}: {e}", p.display()))?;
            }
            let mut o = std::fs::OpenOptions::new();
            o.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                o.mode(0o600);
            }
            use std::io::Write;
            let mut f = o
                .open(path)
                .map_err(|e| format!("create {}: {e}", path.display()))?;
            f.write_all(s.as_bytes())
                .and_then(|()| f.sync_all())
                .map_err(|e| format!("write {}: {e}", path.display()))?;
            Ok(s)
        }
        Err(e) => Err(format!("read {}: {e}", path.display())),
    }
}

/// The default pipelines behind bare payloads such as the documents' `{"x": 1}`.
fn default_pipelines(models: &Path) -> Result<Vec<(String, JobMode, Pipeline)>, String> {
    // A scalar angle encoder: angles = π · tanh([1.0, 0.5] · x).
    let onnx = atom_fabric::hybrid::onnx::dense_tanh(
        &[1.0, 0.5],
        &[0.0, 0.0],
        1,
        2,
        std::f32::consts::PI,
    )?;
    std::fs::create_dir_all(models).map_err(|e| format!("create {}: {e}", models.display()))?;
    std::fs::write(models.join("angle-encoder.onnx"), onnx)
        .map_err(|e| format!("write angle-encoder.onnx: {e}"))?;
    let encode = Stage {
        name: "encode".into(),
        op: StageOp::Neural {
            model: "angle-encoder".into(),
            input: "x".into(),
            shape: Some(vec![1, 1]),
            output: "angles".into(),
        },
        fallback: None,
    };
    let qasm = "OPENQASM 2.0;\ninclude \"qelib1.inc\";\nqreg q[2];\ncreg c[2];\nry(a0) q[0];\nry(a1) q[1];\ncx q[0],q[1];\nmeasure q -> c;\n";
    let quantum = Stage {
        name: "sample".into(),
        op: StageOp::Quantum {
            qasm: qasm.into(),
            bind: BTreeMap::from([
                ("a0".to_string(), "angles[0]".to_string()),
                ("a1".to_string(), "angles[1]".to_string()),
            ]),
            shots: 1024,
            observables: vec![],
            seed: None,
            provider: None,
            output: "counts".into(),
        },
        fallback: None,
    };
    let post = Stage {
        name: "parity".into(),
        op: StageOp::Classical {
            op: atom_fabric::hybrid::ClassicalOp::ParityExpectation {
                input: "counts".into(),
            },
            output: "zz".into(),
        },
        fallback: None,
    };
    let hybrid = Pipeline {
        inputs: BTreeMap::from([("x".to_string(), Value::Number(0.0))]),
        stages: vec![encode.clone(), quantum, post],
    };
    let neural = Pipeline {
        inputs: BTreeMap::from([("x".to_string(), Value::Number(0.0))]),
        stages: vec![encode],
    };
    let quantum_only = Pipeline {
        inputs: BTreeMap::from([("x".to_string(), Value::Number(0.0))]),
        stages: vec![Stage {
            name: "rotate".into(),
            op: StageOp::Quantum {
                qasm: "OPENQASM 2.0;\ninclude \"qelib1.inc\";\nqreg q[1];\nry(x) q[0];\n".into(),
                bind: BTreeMap::from([("x".to_string(), "x".to_string())]),
                shots: 0,
                observables: vec![Observable::Label("Z".into())],
                seed: None,
                provider: None,
                output: "z".into(),
            },
            fallback: None,
        }],
    };
    Ok(vec![
        ("angle-parity".into(), JobMode::Hybrid, hybrid),
        ("angle-encoder".into(), JobMode::Neural, neural),
        ("rotation".into(), JobMode::Quantum, quantum_only),
    ])
}

impl App {
    /// Opens (or creates) the state in the data directory.
    pub fn open(settings: Settings) -> Result<Arc<Self>, String> {
        let dir = settings.data_dir.clone();
        std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let config = SchedulerConfig {
            max_tenant_gpus: settings.max_tenant_gpus,
            simulation_mode: settings.mode.simulation,
            ..SchedulerConfig::default()
        };
        let fabric = Fabric::open(
            config,
            DirStore::open(dir.join("fabric")).map_err(|e| e.to_string())?,
            Box::new(atom_fabric::store::SystemClock),
        )
        .map_err(|e| e.to_string())?
        // The committer holds the fabric lock while a snapshot is taken: off-thread, that
        // is a clone of the state instead of its encoding and fsync.
        .with_background_snapshots(true);
        // The audit log and its checkpoint key live in the data directory.
        let signer_text = read_or_create_secret(&dir.join("keys/audit.signer"), || {
            NoteSigner::generate_ed25519(ORIGIN)
                .map(|s| s.to_signer_key().to_string())
                .map_err(|e| e.to_string())
        })?;
        let note_signer =
            NoteSigner::from_signer_key(signer_text.trim()).map_err(|e| e.to_string())?;
        let audit_dir = dir.join("audit");
        if !audit_dir.join("config.json").exists() {
            AuditLog::create(
                &audit_dir,
                &LogConfig::new(ORIGIN, CheckpointMode::Classical, &[note_signer.verifier()]),
            )
            .map_err(|e| e.to_string())?;
        }
        let (log, _) = AuditLog::open(
            &audit_dir,
            OpenOptions {
                sync: SyncPolicy::GroupCommit {
                    max_entries: 512,
                    max_delay_ms: 5,
                },
                ..OpenOptions::default()
            },
        )
        .map_err(|e| e.to_string())?;
        let audit = Arc::new(Mutex::new(log));
        let audit_key = read_or_create_secret(&dir.join("keys/audit.hmac"), || {
            let mut b = [0u8; 32];
            getrandom(&mut b)?;
            Ok(hex::encode(b))
        })?
        .into_bytes();
        // Job manifests: trust every key in data/keys/trusted/*.pub.
        let mut ring = KeyRing::new();
        if let Ok(rd) = std::fs::read_dir(dir.join("keys/trusted")) {
            for e in rd.flatten() {
                let p = e.path();
                if p.extension().and_then(|x| x.to_str()) == Some("pub") {
                    let text =
                        std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
                    let key = atom_policy::keys::VerifyingKey::from_text(&text)
                        .map_err(|e| format!("{}: {e}", p.display()))?;
                    ring = ring_with(ring, key);
                }
            }
        }
        let run_dir = dir.join("runs");
        let runs = RunFiles::open(&run_dir)
            .map_err(|e| format!("run directory {}: {e}", run_dir.display()))?;
        let mut coordinator = Coordinator::new(
            CoordinatorConfig {
                mode: settings.mode,
                max_queue_per_tenant: settings.max_queue_per_tenant,
                audit_key: audit_key.clone(),
                gpu_driver_mock: settings.gpu_driver_mock,
                ..CoordinatorConfig::default()
            },
            ring,
        )
        .with_audit(Box::new(audit.clone()));
        coordinator
            .router_mut()
            .add_quantum(QuantumTarget::local(settings.quantum_memory_bytes, 1.5e9));
        coordinator
            .router_mut()
            .add_neural(atom_fabric::hybrid::NeuralTarget::in_process(2));
        let models = dir.join("models");
        for (name, mode, p) in default_pipelines(&models)? {
            if name == "angle-parity" {
                coordinator.register_model(
                    "angle-encoder",
                    CatalogModel {
                        path: models.join("angle-encoder.onnx"),
                        framework: "onnx".into(),
                    },
                );
            }
            coordinator
                .register_pipeline(&name, p, mode, true)
                .map_err(|e| e.to_string())?;
        }
        coordinator
            .router_mut()
            .sync_cluster(fabric.scheduler().cluster());
        let mut registry = prometheus_client::registry::Registry::default();
        coordinator.telemetry().register(&mut registry);
        let jwt = settings
            .jwt_hs256_secret
            .as_deref()
            .map(JwtValidator::hs256);
        let mut metrics = Metrics::new();
        metrics.refresh(fabric.scheduler());
        // Replica sets survive restarts beside the journal (their replicas are in the journal).
        let mut autoscaler = Controller::new(REPORT_STALE_MS);
        let sets_file = settings.data_dir.join("autoscale/sets.json");
        if let Ok(text) = std::fs::read_to_string(&sets_file) {
            let sets: Vec<ReplicaSetSpec> =
                serde_json::from_str(&text).map_err(|e| format!("{}: {e}", sets_file.display()))?;
            for set in sets {
                autoscaler
                    .add_set(set)
                    .map_err(|e| format!("{}: {e}", sets_file.display()))?;
            }
        }
        Ok(Arc::new(Self {
            settings,
            started: Instant::now(),
            fabric: Mutex::new(fabric),
            metrics: Mutex::new(metrics),
            coordinator: Mutex::new(coordinator),
            audit,
            note_signer,
            kem: HybridKeyPair::generate(),
            jwt,
            matrix: Mutex::new(PolicyMatrix::new()),
            registry,
            run_dir,
            runs: Mutex::new(runs),
            audit_key,
            http_requests: Mutex::new(BTreeMap::new()),
            committer: std::sync::OnceLock::new(),
            agent: std::sync::OnceLock::new(),
            pipeline_stopped: AtomicBool::new(false),
            autoscaler: Mutex::new(autoscaler),
        }))
    }

    /// The caller's tenant from `Authorization: Bearer` (P5). In simulation a missing token is
    /// allowed (`None`); a present token is always validated.
    pub fn authenticate(
        &self,
        header: Option<&str>,
        request_tenant: Option<&str>,
    ) -> Result<Option<String>, ApiError> {
        let token = match header {
            None => {
                return if self.settings.mode.simulation {
                    Ok(None)
                } else {
                    Err(ApiError::new(
                        401,
                        "unauthenticated",
                        "Authorization: Bearer <JWT> is required (P5)",
                    ))
                };
            }
            Some(h) => h
                .strip_prefix("Bearer ")
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .ok_or_else(|| {
                    ApiError::new(
                        401,
                        "unauthenticated",
                        "expected `Authorization: Bearer <JWT>`",
                    )
                })?,
        };
        let Some(v) = &self.jwt else {
            return Err(ApiError::new(
                401,
                "unauthenticated",
                "no JWT key is configured (ATOM_JWT_HS256_SECRET)",
            ));
        };
        let claims = v
            .validate(token, None, now_ms() / 1000)
            .map_err(|e| ApiError::new(401, "unauthenticated", e.to_string()))?;
        if let Some(t) = request_tenant
            && t != claims.tenant_id
        {
            return Err(ApiError::new(
                403,
                "forbidden",
                format!(
                    "token is for tenant {:?}, the request names {t:?} (P5)",
                    claims.tenant_id
                ),
            )
            .field("tenant_id"));
        }
        Ok(Some(claims.tenant_id))
    }

    #[allow(clippy::too_many_arguments)]
    fn audit_decision(
        &self,
        action: &str,
        tenant: &str,
        subject_kind: &str,
        subject: &str,
        outcome: AuditOutcome,
        policies: &[PolicyId],
        reason: Option<&str>,
        digest: Option<String>,
    ) -> Result<u64, ApiError> {
        let mut policies = policies.to_vec();
        policies.sort();
        policies.dedup();
        let entry = AuditEntry {
            action: action.into(),
            actor: Actor {
                principal: None,
                tenant: tenant.into(),
            },
            decision: Decision {
                outcome,
                policies,
                reason: reason.map(str::to_owned),
            },
            payload_sha256: digest,
            subject: Subject {
                id: KeyedId::derive(&self.audit_key, subject),
                kind: subject_kind.into(),
            },
            time: now_ms(),
            v: 1,
        };
        let mut log = lock(&self.audit)?;
        log.append_entry(&entry, now_ms())
            .map(|a| a.index)
            .map_err(|e| ApiError::internal(format!("audit log: {e}")))
    }

    fn after_command(
        &self,
        fabric: &mut Fabric<DirStore>,
    ) -> Result<Vec<atom_fabric::Event>, ApiError> {
        let events = fabric.take_events();
        {
            let mut m = lock(&self.metrics)?;
            m.observe_events(&events);
        }
        let mut matrix = lock(&self.matrix)?;
        for e in &events {
            matrix.record_all(e.decisions.iter());
        }
        Ok(events)
    }

    /// `POST /node/register` and `POST /resources/register`.
    pub fn register_node(&self, spec: NodeSpec) -> Result<serde_json::Value, ApiError> {
        let id = spec.id.clone();
        let mut f = lock(&self.fabric)?;
        let out = f.execute(Command::RegisterNode { spec })?;
        let events = self.after_command(&mut f)?;
        self.launch_placed(&mut f, &events)?;
        let mut c = lock(&self.coordinator)?;
        c.router_mut().sync_cluster(f.scheduler().cluster());
        drop(c);
        let idx = self.audit_decision(
            "node.register",
            "system",
            "node",
            &id,
            AuditOutcome::Allow,
            &[PolicyId::P4],
            None,
            None,
        )?;
        Ok(json!({"status": "registered", "node_id": id, "result": out, "audit_index": idx}))
    }

    /// The launches and stops a batch of events asks of the in-process node agent, read while
    /// the fabric is locked (the writing happens without the lock).
    fn agent_work(&self, f: &Fabric<DirStore>, events: &[atom_fabric::Event]) -> AgentWork {
        let mut work = AgentWork::default();
        for e in events {
            let (Some(rid), Some(tenant)) = (e.request_id, &e.tenant_id) else {
                continue;
            };
            match &e.kind {
                atom_fabric::EventKind::Placed { placement, .. } => {
                    let Ok(status) = f.scheduler().status(tenant, rid) else {
                        continue;
                    };
                    work.actions.push(AgentAction::Launch(Launch::new(
                        &status, placement, e.at_ms,
                    )));
                }
                atom_fabric::EventKind::Evicted { .. }
                | atom_fabric::EventKind::Finished { .. } => {
                    if let Ok(status) = f.scheduler().status(tenant, rid) {
                        work.actions.push(AgentAction::Stop(rid, status.replicas));
                    }
                }
                _ => {}
            }
        }
        work
    }

    /// The node agent's side of [`AgentWork`], in order: a JSON run file per launched replica
    /// (simulation), removed again when the replica stops. Returns the `MarkRunning` commands
    /// to journal for the launches that succeeded, and the failures (one failed file does not
    /// hold up the other requests).
    fn run_agent(&self, work: &AgentWork) -> (Vec<Command>, Vec<ApiError>) {
        let mut runs = match lock(&self.runs) {
            Ok(r) => r,
            Err(e) => return (vec![], vec![e]),
        };
        let mut running = Vec::new();
        let mut failed = Vec::new();
        for action in &work.actions {
            match action {
                AgentAction::Stop(rid, replicas) => {
                    for i in 0..*replicas {
                        let path = self.run_file(*rid, i);
                        if let Err(e) = runs.retire(&path) {
                            failed.push(ApiError::internal(format!(
                                "remove run file {}: {e}",
                                path.display()
                            )));
                        }
                    }
                }
                AgentAction::Launch(l) => match self.write_run_files(&mut runs, l) {
                    Ok(()) => running.push(Command::MarkRunning {
                        tenant_id: l.tenant.clone(),
                        request: l.request,
                    }),
                    Err(e) => failed.push(e),
                },
            }
        }
        (running, failed)
    }

    fn write_run_files(&self, runs: &mut RunFiles, l: &Launch) -> Result<(), ApiError> {
        for (i, (node, devices)) in l.replicas.iter().enumerate() {
            let record = json!({
                "id": format!("{}-{}", l.request.0, i),
                "request_id": l.request.0,
                "replica": i,
                "node": node,
                "devices": devices,
                "tenant_id": l.tenant,
                "model_id": l.model_id,
                "model_version": l.model_version,
                "execution": if self.settings.gpu_driver_mock { "simulated (GPU_DRIVER_MOCK=true)" } else { "launched" },
                "started_at_ms": l.at_ms,
            });
            // One file per replica, written once (no temp + rename: a torn record is invalid
            // JSON, and the journal, not this file, is the source of truth).
            let path = self.run_file(l.request, i as u32);
            runs.write(&path, &serde_json::to_vec(&record).unwrap_or_default())
                .map_err(|e| ApiError::internal(format!("run file {}: {e}", path.display())))?;
        }
        Ok(())
    }

    /// `<run_dir>/<request>-<replica>.json`.
    pub fn run_file(&self, request: RequestId, replica: u32) -> PathBuf {
        self.run_dir.join(format!("{}-{replica}.json", request.0))
    }

    /// Runs `work` on the caller's thread and journals its reports (one group commit); the
    /// first failure, if any, after the rest was done.
    fn run_agent_inline(&self, f: &mut Fabric<DirStore>, work: &AgentWork) -> Result<(), ApiError> {
        let (running, failed) = self.run_agent(work);
        if !running.is_empty() {
            f.execute_batch(running)?;
            let events = f.take_events();
            lock(&self.metrics)?.observe_events(&events);
        }
        failed.into_iter().next().map_or(Ok(()), Err)
    }

    /// The in-process node agent launches every replica placed by `events` and reports them
    /// running (one group commit); stopped replicas lose their run files.
    fn launch_placed(
        &self,
        f: &mut Fabric<DirStore>,
        events: &[atom_fabric::Event],
    ) -> Result<(), ApiError> {
        let work = self.agent_work(f, events);
        if let Some(agent) = self.agent.get() {
            // The pipeline's agent thread, in order with the committer's work (the caller
            // holds the fabric lock).
            if !work.is_empty() {
                agent
                    .send(work)
                    .map_err(|_| ApiError::internal("node agent stopped"))?;
            }
            return Ok(());
        }
        self.run_agent_inline(f, &work)
    }

    /// After a start: the node agent catches up with the journal, since a killed host loses
    /// its queue. Every request placed but never reported running is launched (and reported),
    /// and a run file whose request no longer holds capacity is retired. Returns (launched,
    /// retired).
    pub fn reconcile_agent(&self) -> Result<(usize, usize), ApiError> {
        let mut f = lock(&self.fabric)?;
        let mut work = AgentWork::default();
        let mut live: std::collections::HashMap<u64, u32> = std::collections::HashMap::new();
        for tenant in f.scheduler().tenants() {
            for st in f.scheduler().requests_of(&tenant) {
                let Some(placement) = st.placement.as_ref() else {
                    continue;
                };
                live.insert(st.id.0, st.replicas);
                if st.phase == atom_fabric::Phase::Placed {
                    work.actions.push(AgentAction::Launch(Launch::new(
                        &st,
                        placement,
                        st.placed_ms.unwrap_or(st.submitted_ms),
                    )));
                }
            }
        }
        let launched = work.actions.len();
        let mut stale = Vec::new();
        if let Ok(rd) = std::fs::read_dir(&self.run_dir) {
            for e in rd.flatten() {
                let name = e.file_name();
                let Some((rid, replica)) = name
                    .to_str()
                    .and_then(|n| n.strip_suffix(".json"))
                    .and_then(|n| n.split_once('-'))
                    .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u32>().ok()?)))
                else {
                    continue;
                };
                if live.get(&rid).is_none_or(|&n| replica >= n) {
                    stale.push(e.path());
                }
            }
        }
        let retired = stale.len();
        {
            let mut runs = lock(&self.runs)?;
            for p in stale {
                runs.retire(&p)
                    .map_err(|e| ApiError::internal(format!("retire {}: {e}", p.display())))?;
            }
        }
        self.run_agent_inline(&mut f, &work)?;
        Ok((launched, retired))
    }

    /// Stage 1 of `POST /schedule` (the committer, fabric locked): journals `running` (the
    /// agent's reports from the previous batch) and the batch's requests with one sync, then
    /// decides each request.
    fn decide(
        &self,
        f: &mut Fabric<DirStore>,
        calls: Vec<ScheduleCall>,
        releases: Vec<ReleaseCall>,
        running: Vec<Command>,
    ) -> Decided {
        let n_running = running.len();
        // 429: a tenant's queue is full (counting this batch's requests conservatively).
        let mut pending: BTreeMap<&str, usize> = BTreeMap::new();
        let mut full = vec![false; calls.len()];
        let mut cmds = running;
        for (i, c) in calls.iter().enumerate() {
            let p = pending.entry(c.req.tenant_id.as_str()).or_insert(0);
            if f.scheduler().queue_depth(&c.req.tenant_id) + *p
                >= self.settings.max_queue_per_tenant
            {
                full[i] = true;
                continue;
            }
            *p += 1;
            cmds.push(Command::Schedule {
                request: c.req.clone(),
            });
        }
        let n_schedules = cmds.len() - n_running;
        cmds.extend(releases.iter().map(|r| Command::Release {
            tenant_id: r.tenant.clone(),
            request: r.request,
        }));
        let started = Instant::now();
        let mut outs = match f.execute_batch(cmds) {
            Ok(o) => o,
            Err(e) => {
                let e = ApiError::from(e);
                for r in releases {
                    let _ = r.reply.send(Err(e.clone()));
                }
                return Decided::failed(calls, &e);
            }
        };
        // The batch is [reports, schedules, releases]. A report's failure (the request was
        // released meanwhile) changes nothing.
        let release_outs = outs.split_off((n_running + n_schedules).min(outs.len()));
        outs.drain(..n_running.min(outs.len()));
        if let Ok(mut m) = lock(&self.metrics) {
            let per =
                started.elapsed().as_secs_f64() / (outs.len() + release_outs.len()).max(1) as f64;
            for _ in 0..n_schedules {
                m.observe_decision(per);
            }
        }
        for (r, out) in releases.into_iter().zip(release_outs) {
            let _ = r
                .reply
                .send(out.map(|o| json!({"result": o})).map_err(ApiError::from));
        }
        let mut outs = outs.into_iter();
        let work = match self.after_command(f) {
            Ok(events) => self.agent_work(f, &events),
            Err(e) => return Decided::failed(calls, &e),
        };
        let mut answers = Vec::with_capacity(calls.len());
        for (c, full) in calls.into_iter().zip(full) {
            if full {
                let e = ApiError::new(
                    429,
                    "queue_full",
                    format!(
                        "tenant {}'s queue holds {} requests",
                        c.req.tenant_id, self.settings.max_queue_per_tenant
                    ),
                );
                answers.push((Err(e), c));
                continue;
            }
            let answer = match outs.next() {
                Some(out) => Self::answer(f, &c.req, out),
                None => Err(ApiError::internal("no outcome")),
            };
            answers.push((answer, c));
        }
        Decided { answers, work }
    }

    fn answer(
        f: &Fabric<DirStore>,
        req: &ScheduleRequest,
        out: atom_fabric::Result<Outcome>,
    ) -> Result<ScheduleAnswer, ApiError> {
        let decision = match out? {
            Outcome::Placed {
                request_id,
                placement,
            } => Answer::Placed {
                request_id,
                placement,
            },
            Outcome::Queued {
                request_id,
                reason,
                detail,
            } => Answer::Queued {
                request_id,
                reason,
                detail,
            },
            Outcome::Existing { request_id, phase } => {
                // The same key with a different request is a conflict, not a retry.
                let st = f.scheduler().status(&req.tenant_id, request_id)?;
                if st.model_id != req.model_id || st.model_version != req.model_version {
                    return Err(ApiError::new(
                        409,
                        "idempotency_conflict",
                        format!(
                            "idempotency_key was used for request {request_id} ({}/{})",
                            st.model_id, st.model_version
                        ),
                    )
                    .field("idempotency_key"));
                }
                Answer::Existing {
                    request_id,
                    phase,
                    placement: st.placement,
                }
            }
            other => return Err(ApiError::internal(format!("unexpected outcome {other:?}"))),
        };
        Ok(ScheduleAnswer {
            decision,
            audit_index: None,
        })
    }

    /// Stage 2 (the auditor thread, no fabric lock): appends each decision to the audit log in
    /// decision order and answers its request.
    fn audit_answers(&self, answers: Vec<(Result<ScheduleAnswer, ApiError>, ScheduleCall)>) {
        for (answer, call) in answers {
            let answer = answer.and_then(|mut a| {
                let outcome = if call.auth.is_none() && self.settings.mode.simulation {
                    AuditOutcome::AllowInSimulation
                } else {
                    AuditOutcome::Allow
                };
                a.audit_index = Some(self.audit_decision(
                    "schedule.request",
                    &call.req.tenant_id,
                    "request",
                    &a.request_id().to_string(),
                    outcome,
                    &[PolicyId::P5, PolicyId::P6],
                    None,
                    Some(call.digest),
                )?);
                Ok(a)
            });
            let _ = call.reply.send(answer);
        }
    }

    /// Starts the `POST /schedule` pipeline, three threads that overlap:
    /// - the committer takes every waiting request and the node agent's reports, journals them
    ///   with one sync (group commit) and decides them;
    /// - the auditor appends each decision to the audit log and answers its client (a 201
    ///   means the placement is durable and audited);
    /// - the in-process node agent launches the placed replicas (run files) and reports them
    ///   running into the committer's next batch, as a kubelet reports to the API server: a
    ///   reader sees `placed`, then `running`.
    ///
    /// The agent's queue is bounded, so a node agent that falls behind slows the committer
    /// rather than growing memory.
    pub fn start_committer(self: &Arc<Self>) {
        let (tx, rx) = std::sync::mpsc::channel::<Stage1>();
        if self.committer.set(tx.clone()).is_err() {
            return;
        }
        let (audit_tx, audit_rx) =
            std::sync::mpsc::channel::<Vec<(Result<ScheduleAnswer, ApiError>, ScheduleCall)>>();
        let (agent_tx, agent_rx) = std::sync::mpsc::sync_channel::<AgentWork>(AGENT_QUEUE);
        let _ = self.agent.set(agent_tx.clone());
        let app = Arc::clone(self);
        let auditor = std::thread::Builder::new()
            .name("atom-auditor".into())
            .spawn(move || {
                let _stop = StopFlag(&app.pipeline_stopped);
                while let Ok(answers) = audit_rx.recv() {
                    app.audit_answers(answers);
                }
            });
        let app = Arc::clone(self);
        let agent = std::thread::Builder::new()
            .name("atom-agent".into())
            .spawn(move || {
                let _stop = StopFlag(&app.pipeline_stopped);
                while let Ok(mut work) = agent_rx.recv() {
                    // Whatever else is waiting goes in the same round (one report).
                    while let Ok(more) = agent_rx.try_recv() {
                        work.actions.extend(more.actions);
                        work.drains.extend(more.drains);
                    }
                    let (running, failed) = app.run_agent(&work);
                    // A failed launch stays `placed` (never reported running); the operator
                    // sees why in the log.
                    for e in failed {
                        tracing::warn!(error = %e.message, "node agent");
                    }
                    if !running.is_empty() && tx.send(Stage1::Launched(running)).is_err() {
                        break;
                    }
                    for d in work.drains {
                        let _ = tx.send(Stage1::Drained(d));
                    }
                }
            });
        if auditor.is_err() || agent.is_err() {
            return;
        }
        let app = Arc::clone(self);
        std::thread::Builder::new()
            .name("atom-committer".into())
            .spawn(move || {
                let _stop = StopFlag(&app.pipeline_stopped);
                while let Ok(first) = rx.recv() {
                    let mut calls = Vec::new();
                    let mut releases = Vec::new();
                    let mut running = Vec::new();
                    let mut drains = Vec::new();
                    let mut drained = Vec::new();
                    let mut take = |m: Stage1| match m {
                        Stage1::Schedule(c) => calls.push(*c),
                        Stage1::Release(r) => releases.push(r),
                        Stage1::Launched(r) => running.extend(r),
                        Stage1::Drain(d) => drains.push(d),
                        Stage1::Drained(d) => drained.push(d),
                    };
                    take(first);
                    for _ in 1..MAX_BATCH {
                        match rx.try_recv() {
                            Ok(m) => take(m),
                            Err(_) => break,
                        }
                    }
                    let answers = match lock(&app.fabric) {
                        Ok(mut f) => {
                            let mut d = app.decide(&mut f, calls, releases, running);
                            d.work.drains = std::mem::take(&mut drains);
                            // Sent with the fabric locked: the agent sees launches and stops
                            // in decision order, whichever thread decided them.
                            if !d.work.is_empty() && agent_tx.send(d.work).is_err() {
                                break;
                            }
                            d.answers
                        }
                        Err(e) => {
                            for r in releases {
                                let _ = r.reply.send(Err(e.clone()));
                            }
                            Decided::failed(calls, &e).answers
                        }
                    };
                    // The agent's reports that came with these barriers are journaled now.
                    for d in drained {
                        let _ = d.send(());
                    }
                    if !answers.is_empty() && audit_tx.send(answers).is_err() {
                        break;
                    }
                }
            })
            .ok();
    }

    /// `POST /schedule`: through the pipeline, or (no committer running) the same stages in
    /// line.
    pub async fn schedule(
        self: &Arc<Self>,
        req: ScheduleRequest,
        auth: Option<String>,
    ) -> Result<(u16, serde_json::Value), ApiError> {
        // The payload digest for the audit entry is computed here, on the HTTP worker.
        let digest = atom_fabric::hybrid::payload_digest(
            &serde_json::to_value(&req).map_err(|e| ApiError::internal(e.to_string()))?,
        );
        let (reply, rrx) = tokio::sync::oneshot::channel();
        let call = ScheduleCall {
            req,
            auth,
            digest,
            reply,
        };
        match self.committer.get() {
            Some(tx) => {
                tx.send(Stage1::Schedule(Box::new(call)))
                    .map_err(|_| ApiError::internal("committer stopped"))?;
            }
            None => {
                let app = Arc::clone(self);
                tokio::task::spawn_blocking(move || {
                    let mut f = match lock(&app.fabric) {
                        Ok(f) => f,
                        Err(e) => {
                            let _ = call.reply.send(Err(e));
                            return;
                        }
                    };
                    let decided = app.decide(&mut f, vec![call], vec![], vec![]);
                    if let Err(e) = app.run_agent_inline(&mut f, &decided.work) {
                        tracing::warn!(error = %e.message, "node agent");
                    }
                    drop(f);
                    app.audit_answers(decided.answers);
                })
                .await
                .map_err(|e| ApiError::internal(e.to_string()))?;
            }
        }
        let a = rrx
            .await
            .map_err(|_| ApiError::internal("committer dropped the request"))??;
        Ok((a.code(), a.body()))
    }

    /// `GET /schedule/{id}`.
    pub fn request_status(
        &self,
        id: &str,
        tenant: Option<&str>,
    ) -> Result<serde_json::Value, ApiError> {
        let rid = parse_request_id(id)?;
        let f = lock(&self.fabric)?;
        let st = match tenant {
            Some(t) => f.scheduler().status(t, rid)?,
            None => f
                .scheduler()
                .tenants()
                .iter()
                .find_map(|t| f.scheduler().status(t, rid).ok())
                .ok_or_else(|| {
                    ApiError::new(404, "not_found", format!("request {id} not found"))
                })?,
        };
        serde_json::to_value(st).map_err(|e| ApiError::internal(e.to_string()))
    }

    /// `POST /schedule/{id}/release`: through the committer (group commit) when it runs.
    pub async fn release_async(
        self: &Arc<Self>,
        id: String,
        tenant: String,
    ) -> Result<serde_json::Value, ApiError> {
        let Some(tx) = self.committer.get() else {
            let app = Arc::clone(self);
            return tokio::task::spawn_blocking(move || app.release(&id, &tenant))
                .await
                .map_err(|e| ApiError::internal(e.to_string()))?;
        };
        let request = parse_request_id(&id)?;
        let (reply, rrx) = tokio::sync::oneshot::channel();
        tx.send(Stage1::Release(ReleaseCall {
            tenant,
            request,
            reply,
        }))
        .map_err(|_| ApiError::internal("committer stopped"))?;
        rrx.await
            .map_err(|_| ApiError::internal("committer dropped the request"))?
    }

    /// `POST /schedule/{id}/release`, in line.
    pub fn release(&self, id: &str, tenant: &str) -> Result<serde_json::Value, ApiError> {
        let rid = parse_request_id(id)?;
        let mut f = lock(&self.fabric)?;
        let out = f.execute(Command::Release {
            tenant_id: tenant.into(),
            request: rid,
        })?;
        let events = self.after_command(&mut f)?;
        self.launch_placed(&mut f, &events)?;
        Ok(json!({"result": out}))
    }

    /// `POST /autoscale/sets`: adds (or replaces) a replica set and persists the sets.
    pub fn autoscale_add(&self, spec: ReplicaSetSpec) -> Result<serde_json::Value, ApiError> {
        let mut c = lock(&self.autoscaler)?;
        let mut next = c.clone();
        next.add_set(spec.clone())?;
        let sets: Vec<&ReplicaSetSpec> = next.sets().collect();
        let dir = self.settings.data_dir.join("autoscale");
        let text =
            serde_json::to_vec_pretty(&sets).map_err(|e| ApiError::internal(e.to_string()))?;
        std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(dir.join("sets.json.tmp"), text))
            .and_then(|()| std::fs::rename(dir.join("sets.json.tmp"), dir.join("sets.json")))
            .map_err(|e| ApiError::internal(format!("autoscale sets: {e}")))?;
        *c = next;
        drop(c);
        let idx = self.audit_decision(
            "autoscale.set",
            &spec.tenant_id,
            "replica_set",
            &format!("{}/{}", spec.tenant_id, spec.model_id),
            AuditOutcome::Allow,
            &[PolicyId::P3, PolicyId::P6],
            Some(if spec.config.dry_run {
                "dry_run"
            } else {
                "apply"
            }),
            Some(atom_fabric::hybrid::payload_digest(
                &serde_json::to_value(&spec).unwrap_or_default(),
            )),
        )?;
        Ok(json!({"status": "registered", "set": spec, "audit_index": idx}))
    }

    /// `POST /node/metrics`: replica reports from node agents (the autoscaler's own inputs).
    pub fn node_metrics(&self, reports: Vec<ReplicaReport>) -> Result<serde_json::Value, ApiError> {
        let mut c = lock(&self.autoscaler)?;
        let n = reports.len();
        for (i, r) in reports.into_iter().enumerate() {
            c.ingest(r).map_err(|e| {
                ApiError::new(422, "invalid", format!("reports[{i}]: {e}"))
                    .field(format!("reports[{i}]"))
            })?;
        }
        Ok(json!({"status": "accepted", "reports": n}))
    }

    /// `GET /autoscale/plan` (`apply = false`) and `POST /autoscale/reconcile` (`apply = true`):
    /// plans every set; with `apply`, runs the non-dry-run actions through the scheduler (P3),
    /// launches what they place, and audits each applied action. `tenant` limits the answer to
    /// that tenant's sets (P1).
    pub fn autoscale(
        &self,
        tenant: Option<&str>,
        apply: bool,
    ) -> Result<serde_json::Value, ApiError> {
        let mut input_errors = Vec::new();
        if let Some(url) = &self.settings.prom_url {
            // Queried before taking the fabric lock: a slow Prometheus must not stall scheduling.
            let client = atom_fabric::autoscale::prometheus::PromClient::new(
                url,
                std::time::Duration::from_secs(5),
            );
            let mut probe = lock(&self.autoscaler)?.clone();
            for (t, m, e) in probe.observe_prometheus(&client, now_ms()) {
                if tenant.is_none_or(|x| x == t) {
                    input_errors
                        .push(json!({"tenant_id": t, "model_id": m, "error": e.to_string()}));
                }
            }
            *lock(&self.autoscaler)? = probe;
        }
        let mut c = lock(&self.autoscaler)?;
        let mut f = lock(&self.fabric)?;
        let plan = c.plan(f.scheduler(), now_ms());
        drop(c);
        let plan: Vec<PlannedAction> = plan
            .into_iter()
            .filter(|a| tenant.is_none_or(|t| t == a.tenant_id))
            .collect();
        let mut applied = Vec::new();
        let mut commands = Vec::new();
        if apply {
            for a in Controller::apply(&mut f, &plan)? {
                let placed = a
                    .outcomes
                    .iter()
                    .filter(|o| matches!(o, Ok(Outcome::Placed { .. })))
                    .count();
                let errors: Vec<String> = a
                    .outcomes
                    .iter()
                    .filter_map(|o| o.as_ref().err().map(ToString::to_string))
                    .collect();
                for o in a.outcomes.iter().flatten() {
                    let rid = match o {
                        Outcome::Placed { request_id, .. }
                        | Outcome::Queued { request_id, .. }
                        | Outcome::Existing { request_id, .. } => {
                            ("autoscale.schedule", *request_id)
                        }
                        Outcome::Phase { request_id, .. } => ("autoscale.release", *request_id),
                        _ => continue,
                    };
                    commands.push((a.tenant_id.clone(), rid));
                }
                applied.push((a.tenant_id, a.model_id, a.outcomes.len(), placed, errors));
            }
            let events = self.after_command(&mut f)?;
            self.launch_placed(&mut f, &events)?;
        }
        drop(f);
        let outcome = if self.settings.mode.simulation {
            AuditOutcome::AllowInSimulation
        } else {
            AuditOutcome::Allow
        };
        // Each request the controller scheduled or released, like a tenant's own schedule call.
        for (tenant, (action, rid)) in commands {
            self.audit_decision(
                action,
                &tenant,
                "request",
                &rid.to_string(),
                outcome,
                &[PolicyId::P3, PolicyId::P6],
                None,
                None,
            )?;
        }
        let mut out = Vec::new();
        for a in &plan {
            let done = applied
                .iter()
                .find(|(t, m, ..)| *t == a.tenant_id && *m == a.model_id);
            let mut v = json!({
                "tenant_id": a.tenant_id, "model_id": a.model_id, "decision": a.decision,
                "commands": a.commands.len(), "applied": done.is_some(),
            });
            if let Some((_, _, n, placed, errors)) = done {
                v["commands_run"] = json!(n);
                v["placed"] = json!(placed);
                let idx = self.audit_decision(
                    "autoscale.apply",
                    &a.tenant_id,
                    "replica_set",
                    &format!("{}/{}", a.tenant_id, a.model_id),
                    outcome,
                    &[PolicyId::P3, PolicyId::P6],
                    // The reason is a code; the whole decision (numbers, reasons) is in the digest.
                    Some(a.decision.action.as_str()),
                    Some(atom_fabric::hybrid::payload_digest(
                        &serde_json::to_value(&a.decision).unwrap_or_default(),
                    )),
                )?;
                v["audit_index"] = json!(idx);
                v["errors"] = json!(errors);
            }
            out.push(v);
        }
        Ok(json!({"actions": out, "input_errors": input_errors}))
    }

    /// `GET /resources`.
    pub fn resources(&self) -> Result<serde_json::Value, ApiError> {
        let f = lock(&self.fabric)?;
        let s = f.scheduler();
        let nodes: Vec<serde_json::Value> = s
            .cluster()
            .nodes()
            .iter()
            .map(|n| json!({"id": n.id(), "health": format!("{:?}", n.health()).to_lowercase(), "spec": n.spec()}))
            .collect();
        let (alloc, total) = s.allocation();
        let tenants: BTreeMap<String, serde_json::Value> = s
            .tenants()
            .into_iter()
            .map(|t| {
                let usage = s.tenant_usage(&t);
                let depth = s.queue_depth(&t);
                (t, json!({"quota_usage": usage, "queue_depth": depth}))
            })
            .collect();
        Ok(json!({"nodes": nodes, "allocated": alloc, "allocatable": total, "tenants": tenants}))
    }

    /// `GET /slo/{tenant}/{model}`.
    pub fn slo(&self, tenant: &str, model: &str) -> Result<serde_json::Value, ApiError> {
        let m = lock(&self.metrics)?;
        serde_json::to_value(m.slo(tenant, model, &atom_fabric::metrics::SloBudget::default()))
            .map_err(|e| ApiError::internal(e.to_string()))
    }

    /// `GET /pqc/handshake`.
    pub fn handshake(&self) -> serde_json::Value {
        serde_json::to_value(atom_policy::handshake::report(
            &self.kem,
            self.settings.mode,
            None,
        ))
        .unwrap_or_default()
    }

    /// `POST /failover/promote`: a standby takes over after the primary's lease is gone. In
    /// one-process deployments the host is the primary; this re-verifies the state it serves
    /// and records the promotion (P7).
    pub fn promote(&self) -> Result<serde_json::Value, ApiError> {
        let f = lock(&self.fabric)?;
        f.scheduler()
            .check_invariants()
            .map_err(ApiError::internal)?;
        let digest = f.scheduler().state_digest()?;
        drop(f);
        let idx = self.audit_decision(
            "failover.promote",
            "system",
            "host",
            "scheduler",
            AuditOutcome::Allow,
            &[PolicyId::P3, PolicyId::P7],
            None,
            Some(digest.clone()),
        )?;
        Ok(json!({"status": "primary", "state_sha256": digest, "audit_index": idx}))
    }

    /// `GET /metrics`: the scheduler's and the hybrid agent's metrics.
    pub fn metrics_text(&self) -> Result<String, ApiError> {
        let mut text = {
            let f = lock(&self.fabric)?;
            let mut m = lock(&self.metrics)?;
            m.refresh(f.scheduler());
            m.encode()?
        };
        let mut more = String::new();
        prometheus_client::encoding::text::encode(&mut more, &self.registry)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        // One exposition: drop the first document's EOF marker.
        if let Some(stripped) = text.strip_suffix("# EOF\n") {
            text = stripped.to_owned();
        }
        text.push_str("# TYPE nf_http_requests counter\n# HELP nf_http_requests HTTP requests by route and status.\n");
        for ((route, status), n) in lock(&self.http_requests)?.iter() {
            text.push_str(&format!(
                "nf_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}\n"
            ));
        }
        text.push_str(&more);
        Ok(text)
    }

    /// `GET /health`.
    pub fn health(&self, component: &str) -> serde_json::Value {
        // O(1), never waiting behind a batch: a probe must not stall scheduling (the full
        // invariant check is O(state) and belongs to the tests).
        let (fabric_ok, snapshot) = match self.fabric.lock() {
            Ok(f) => (true, f.snapshot_error().map(|e| e.to_string())),
            Err(_) => (false, None),
        };
        let audit = self.audit.lock().map(|l| l.size()).ok();
        let pipeline_ok = !self.pipeline_stopped.load(Ordering::Relaxed);
        let ok = fabric_ok && audit.is_some() && pipeline_ok;
        json!({
            "status": if ok { "ok" } else { "degraded" },
            "component": component,
            "uptime_s": self.started.elapsed().as_secs_f64(),
            "mode": {"simulation": self.settings.mode.simulation, "pqc": self.settings.mode.pqc.as_str()},
            "components": {
                "scheduler": if fabric_ok && pipeline_ok {"ok"} else {"error"},
                "audit_log": audit.map_or("error", |_| "ok"),
                "node_agent": if pipeline_ok {"ok"} else {"error"},
                "hybrid_coordinator": "ok",
                // A failed background snapshot loses nothing (the journal keeps every
                // command); the next one is written in line.
                "state_snapshots": snapshot.map_or_else(|| "ok".to_string(), |e| format!("last failed: {e}")),
            },
            "audit_size": audit,
        })
    }

    /// `GET /audit/checkpoint`: sign a checkpoint of the current tree.
    pub fn checkpoint(&self) -> Result<String, ApiError> {
        let mut log = lock(&self.audit)?;
        log.checkpoint(&[&self.note_signer], now_ms() / 1000)
            .map_err(|e| ApiError::internal(format!("audit log: {e}")))
    }

    /// `GET /audit/proof/{index}`: the record, its inclusion proof against the latest signed
    /// checkpoint (signed now if the record is newer).
    pub fn proof(&self, index: &str) -> Result<serde_json::Value, ApiError> {
        let i: u64 = index
            .parse()
            .map_err(|_| ApiError::new(404, "not_found", format!("no audit record {index:?}")))?;
        let mut log = lock(&self.audit)?;
        if i >= log.size() {
            return Err(ApiError::new(
                404,
                "not_found",
                format!("no audit record {i} (log size {})", log.size()),
            ));
        }
        let needs_new = log.last_checkpoint().is_none_or(|c| c.size <= i);
        if needs_new {
            log.checkpoint(&[&self.note_signer], now_ms() / 1000)
                .map_err(|e| ApiError::internal(format!("audit log: {e}")))?;
        }
        let size = log.last_checkpoint().map(|c| c.size).unwrap_or(0);
        let text = std::fs::read_to_string(self.settings.data_dir.join("audit/checkpoint"))
            .unwrap_or_default();
        let record = log
            .read_record(i)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let proof = log
            .inclusion_proof(i, size)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        Ok(json!({
            "index": i,
            "tree_size": size,
            "record": String::from_utf8_lossy(&record),
            "leaf_hash": b64.encode(atom_policy::merkle::leaf_hash(&record)),
            "proof": proof.iter().map(|h| b64.encode(h)).collect::<Vec<_>>(),
            "checkpoint": text,
            "verifier_key": self.note_signer.verifier().to_vkey(),
        }))
    }

    /// `POST /agent/submit`.
    pub fn submit(
        &self,
        job: JobSubmission,
        auth_tenant: Option<&str>,
    ) -> Result<serde_json::Value, ApiError> {
        use atom_policy::policy::Decision as P;
        let mut c = lock(&self.coordinator)?;
        let signed = job.manifest.is_some();
        let result = c.submit(job, auth_tenant, now_ms());
        drop(c);
        // The policy matrix sees the job checks too (P2 manifest, P5 tenant).
        let decisions = match &result {
            Ok(_) if signed => vec![
                P::Allow {
                    policy: PolicyId::P2,
                },
                P::Allow {
                    policy: PolicyId::P5,
                },
            ],
            Ok(_) => vec![
                P::AllowInSimulation {
                    policy: PolicyId::P2,
                    reason: "unsigned job in simulation".into(),
                },
                P::Allow {
                    policy: PolicyId::P5,
                },
            ],
            Err(
                HybridError::Unsigned | HybridError::Manifest(_) | HybridError::ManifestMismatch(_),
            ) => {
                vec![P::Deny {
                    policy: PolicyId::P2,
                    reason: "job manifest refused".into(),
                }]
            }
            Err(
                HybridError::Forbidden(_)
                | HybridError::Unauthenticated(_)
                | HybridError::QueueFull { .. },
            ) => {
                vec![P::Deny {
                    policy: PolicyId::P5,
                    reason: "tenant check refused the job".into(),
                }]
            }
            Err(_) => vec![],
        };
        lock(&self.matrix)?.record_all(decisions.iter());
        let id = result?;
        Ok(json!({"id": id, "job_id": id, "status": "queued"}))
    }

    /// Runs queued jobs (the hybrid agent's worker).
    pub fn run_jobs(&self) -> usize {
        let Ok(mut c) = self.coordinator.lock() else {
            return 0;
        };
        if let Ok(f) = self.fabric.lock() {
            c.router_mut().sync_cluster(f.scheduler().cluster());
        }
        let mut n = 0;
        while c.run_next(now_ms()).is_some() {
            n += 1;
        }
        n
    }

    /// `GET /agent/status/{id}`.
    pub fn job_status(
        &self,
        id: &str,
        tenant: Option<&str>,
    ) -> Result<serde_json::Value, ApiError> {
        let c = lock(&self.coordinator)?;
        let s = match tenant {
            Some(t) => c.status(t, id)?,
            None => c.status_any(id)?,
        };
        serde_json::to_value(s).map_err(|e| ApiError::internal(e.to_string()))
    }

    /// Syncs the audit log (group commit timer, shutdown).
    pub fn flush(&self) {
        if let Ok(mut l) = self.audit.lock() {
            let _ = l.tick(now_ms());
        }
    }

    /// Waits (up to `timeout`) until every launch decided so far has been run by the node
    /// agent and its report journaled. True when drained (or no pipeline runs).
    pub fn drain(&self, timeout: std::time::Duration) -> bool {
        let Some(tx) = self.committer.get() else {
            return true;
        };
        let (dtx, drx) = std::sync::mpsc::channel();
        tx.send(Stage1::Drain(dtx)).is_ok() && drx.recv_timeout(timeout).is_ok()
    }

    /// Flushes everything for shutdown.
    pub fn close(&self) {
        if !self.drain(std::time::Duration::from_secs(10)) {
            tracing::warn!("node agent did not drain within 10 s");
        }
        if let Ok(mut f) = self.fabric.lock() {
            f.wait_snapshot();
        }
        if let Ok(mut l) = self.audit.lock() {
            let _ = l.sync_all();
        }
    }

    /// The policy matrix of decisions taken so far.
    pub fn policy_matrix(&self) -> serde_json::Value {
        self.matrix.lock().map(|m| m.to_json()).unwrap_or_default()
    }
}

fn ring_with(mut ring: KeyRing, key: atom_policy::keys::VerifyingKey) -> KeyRing {
    ring.add(atom_policy::keyring::TrustedKey {
        key,
        status: atom_policy::keyring::KeyStatus::Active,
        not_before: 0,
        not_after: None,
        approved_by: None,
    });
    ring
}

fn getrandom(buf: &mut [u8]) -> Result<(), String> {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(buf))
        .map_err(|e| format!("random: {e}"))
}
