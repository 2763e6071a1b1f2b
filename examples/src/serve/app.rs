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
    audit_key: Vec<u8>,
    pub http_requests: Mutex<BTreeMap<(String, u16), u64>>,
    committer: std::sync::OnceLock<std::sync::mpsc::Sender<ScheduleCall>>,
    autoscaler: Mutex<Controller>,
}

/// The answer channel of one `POST /schedule`.
pub type ScheduleReply = tokio::sync::oneshot::Sender<Result<(u16, serde_json::Value), ApiError>>;
/// One `POST /schedule` on its way to the committer.
pub type ScheduleCall = (ScheduleRequest, Option<String>, ScheduleReply);

/// Replica reports older than this do not count (ms).
const REPORT_STALE_MS: u64 = 30_000;

/// Most requests the committer decides with one journal sync.
const MAX_BATCH: usize = 1024;

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
        .map_err(|e| e.to_string())?;
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
            audit_key,
            http_requests: Mutex::new(BTreeMap::new()),
            committer: std::sync::OnceLock::new(),
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

    /// The in-process node agent launches every replica placed on a node (simulation: a JSON
    /// run file per replica in the run directory), and reports them running (one group commit).
    fn launch_placed(
        &self,
        f: &mut Fabric<DirStore>,
        events: &[atom_fabric::Event],
    ) -> Result<(), ApiError> {
        let mut running = Vec::new();
        for e in events {
            if let (atom_fabric::EventKind::Placed { placement, .. }, Some(rid), Some(tenant)) =
                (&e.kind, e.request_id, &e.tenant_id)
            {
                let status = f.scheduler().status(tenant, rid)?;
                std::fs::create_dir_all(&self.run_dir)
                    .map_err(|e| ApiError::internal(format!("run dir: {e}")))?;
                for (i, r) in placement.replicas.iter().enumerate() {
                    let record = json!({
                        "id": format!("{}-{}", rid.0, i),
                        "request_id": rid.0,
                        "replica": i,
                        "node": r.node,
                        "devices": r.devices,
                        "tenant_id": tenant,
                        "model_id": status.model_id,
                        "model_version": status.model_version,
                        "execution": if self.settings.gpu_driver_mock { "simulated (GPU_DRIVER_MOCK=true)" } else { "launched" },
                        "started_at_ms": e.at_ms,
                    });
                    // One file per replica, written once (no temp + rename: a torn record is
                    // invalid JSON, and the journal, not this file, is the source of truth).
                    let path = self.run_dir.join(format!("{}-{}.json", rid.0, i));
                    std::fs::write(&path, serde_json::to_vec(&record).unwrap_or_default())
                        .map_err(|e| ApiError::internal(format!("run file: {e}")))?;
                }
                running.push(Command::MarkRunning {
                    tenant_id: tenant.clone(),
                    request: rid,
                });
            }
        }
        if !running.is_empty() {
            f.execute_batch(running)?;
            let more = f.take_events();
            lock(&self.metrics)?.observe_events(&more);
        }
        Ok(())
    }

    /// `POST /schedule`, for a batch of requests gathered by the host's committer: one journal
    /// sync for the batch (group commit), then each request's own answer.
    pub fn schedule_batch(
        &self,
        reqs: Vec<(ScheduleRequest, Option<String>)>,
    ) -> Vec<Result<(u16, serde_json::Value), ApiError>> {
        let n = reqs.len();
        let mut f = match lock(&self.fabric) {
            Ok(f) => f,
            Err(e) => return vec![Err(e); n],
        };
        // 429: a tenant's queue is full (counting this batch's requests conservatively).
        let mut pending: BTreeMap<String, usize> = BTreeMap::new();
        let mut answers: Vec<Option<Result<(u16, serde_json::Value), ApiError>>> = vec![None; n];
        let mut cmds = Vec::new();
        let mut slots = Vec::new();
        for (i, (req, _)) in reqs.iter().enumerate() {
            let p = pending.entry(req.tenant_id.clone()).or_insert(0);
            if f.scheduler().queue_depth(&req.tenant_id) + *p >= self.settings.max_queue_per_tenant
            {
                answers[i] = Some(Err(ApiError::new(
                    429,
                    "queue_full",
                    format!(
                        "tenant {}'s queue holds {} requests",
                        req.tenant_id, self.settings.max_queue_per_tenant
                    ),
                )));
                continue;
            }
            *p += 1;
            cmds.push(Command::Schedule {
                request: req.clone(),
            });
            slots.push(i);
        }
        let started = Instant::now();
        let outs = match f.execute_batch(cmds) {
            Ok(o) => o,
            Err(e) => {
                let e = ApiError::from(e);
                return answers
                    .into_iter()
                    .map(|a| a.unwrap_or_else(|| Err(e.clone())))
                    .collect();
            }
        };
        if let Ok(mut m) = lock(&self.metrics) {
            let per = started.elapsed().as_secs_f64() / outs.len().max(1) as f64;
            for _ in 0..outs.len() {
                m.observe_decision(per);
            }
        }
        let events = match self.after_command(&mut f) {
            Ok(e) => e,
            Err(e) => return vec![Err(e); n],
        };
        let mut audits = Vec::new();
        for (slot, out) in slots.into_iter().zip(outs) {
            let (req, auth) = &reqs[slot];
            let answer = (|| {
                let out = out?;
                let (code, body, rid) = match &out {
                    Outcome::Placed {
                        request_id,
                        placement,
                    } => (
                        201,
                        json!({"request_id": request_id.to_string(), "status": "placed", "placement": placement}),
                        *request_id,
                    ),
                    Outcome::Queued {
                        request_id,
                        reason,
                        detail,
                    } => (
                        202,
                        json!({"request_id": request_id.to_string(), "status": "queued", "reason": reason, "detail": detail}),
                        *request_id,
                    ),
                    Outcome::Existing { request_id, phase } => {
                        // The same key with a different request is a conflict, not a retry.
                        let st = f.scheduler().status(&req.tenant_id, *request_id)?;
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
                        (
                            200,
                            json!({"request_id": request_id.to_string(), "status": phase, "placement": st.placement, "idempotent_replay": true}),
                            *request_id,
                        )
                    }
                    other => {
                        return Err(ApiError::internal(format!("unexpected outcome {other:?}")));
                    }
                };
                Ok((code, body, rid))
            })();
            match answer {
                Ok((code, body, rid)) => {
                    let outcome = if auth.is_none() && self.settings.mode.simulation {
                        AuditOutcome::AllowInSimulation
                    } else {
                        AuditOutcome::Allow
                    };
                    audits.push((
                        slot,
                        req.tenant_id.clone(),
                        rid,
                        outcome,
                        atom_fabric::hybrid::payload_digest(
                            &serde_json::to_value(req).unwrap_or_default(),
                        ),
                    ));
                    answers[slot] = Some(Ok((code, body)));
                }
                Err(e) => answers[slot] = Some(Err(e)),
            }
        }
        if let Err(e) = self.launch_placed(&mut f, &events) {
            return vec![Err(e); n];
        }
        drop(f);
        for (slot, tenant, rid, outcome, digest) in audits {
            match self.audit_decision(
                "schedule.request",
                &tenant,
                "request",
                &rid.to_string(),
                outcome,
                &[PolicyId::P5, PolicyId::P6],
                None,
                Some(digest),
            ) {
                Ok(idx) => {
                    if let Some(Ok((_, body))) = &mut answers[slot] {
                        body["audit_index"] = json!(idx);
                    }
                }
                Err(e) => answers[slot] = Some(Err(e)),
            }
        }
        answers
            .into_iter()
            .map(|a| a.unwrap_or_else(|| Err(ApiError::internal("no answer"))))
            .collect()
    }

    /// Starts the committer thread: it takes every waiting `POST /schedule`, decides them in one
    /// batch (one journal sync), and answers each.
    pub fn start_committer(self: &Arc<Self>) {
        let (tx, rx) = std::sync::mpsc::channel::<ScheduleCall>();
        if self.committer.set(tx).is_err() {
            return;
        }
        let app = Arc::clone(self);
        std::thread::Builder::new()
            .name("atom-committer".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut batch = vec![first];
                    while batch.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(c) => batch.push(c),
                            Err(_) => break,
                        }
                    }
                    let (reqs, replies): (Vec<_>, Vec<_>) =
                        batch.into_iter().map(|(r, a, tx)| ((r, a), tx)).unzip();
                    for (answer, reply) in app.schedule_batch(reqs).into_iter().zip(replies) {
                        let _ = reply.send(answer);
                    }
                }
            })
            .ok();
    }

    /// `POST /schedule` through the committer (or directly when none runs).
    pub async fn schedule(
        self: &Arc<Self>,
        req: ScheduleRequest,
        auth: Option<String>,
    ) -> Result<(u16, serde_json::Value), ApiError> {
        match self.committer.get() {
            Some(tx) => {
                let (rtx, rrx) = tokio::sync::oneshot::channel();
                tx.send((req, auth, rtx))
                    .map_err(|_| ApiError::internal("committer stopped"))?;
                rrx.await
                    .map_err(|_| ApiError::internal("committer dropped the request"))?
            }
            None => {
                let app = Arc::clone(self);
                tokio::task::spawn_blocking(move || {
                    app.schedule_batch(vec![(req, auth)])
                        .pop()
                        .unwrap_or_else(|| Err(ApiError::internal("no answer")))
                })
                .await
                .map_err(|e| ApiError::internal(e.to_string()))?
            }
        }
    }

    /// `GET /schedule/{id}`.
    pub fn request_status(
        &self,
        id: &str,
        tenant: Option<&str>,
    ) -> Result<serde_json::Value, ApiError> {
        let rid: RequestId = id
            .parse()
            .map_err(|_| ApiError::new(404, "not_found", format!("request {id} not found")))?;
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

    /// `POST /schedule/{id}/release`.
    pub fn release(&self, id: &str, tenant: &str) -> Result<serde_json::Value, ApiError> {
        let rid: RequestId = id
            .parse()
            .map_err(|_| ApiError::new(404, "not_found", format!("request {id} not found")))?;
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
        let fabric_ok = self
            .fabric
            .lock()
            .map(|f| f.scheduler().check_invariants().is_ok())
            .unwrap_or(false);
        let audit = self.audit.lock().map(|l| l.size()).ok();
        json!({
            "status": if fabric_ok && audit.is_some() { "ok" } else { "degraded" },
            "component": component,
            "uptime_s": self.started.elapsed().as_secs_f64(),
            "mode": {"simulation": self.settings.mode.simulation, "pqc": self.settings.mode.pqc.as_str()},
            "components": {"scheduler": if fabric_ok {"ok"} else {"error"}, "audit_log": audit.map_or("error", |_| "ok"), "node_agent": "ok", "hybrid_coordinator": "ok"},
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

    /// Flushes everything for shutdown.
    pub fn close(&self) {
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
