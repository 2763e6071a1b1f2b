//! `atom serve`: the scheduler host (8600), the hybrid agent host (8700) and the in-process node
//! agent, on axum. Handlers parse bodies strictly (400 malformed, 422 invalid with the field,
//! 413 too large), authenticate (P5), then call the synchronous core on a blocking thread.

pub mod app;

use app::{ApiError, App, Settings};
use atom_fabric::hybrid::JobSubmission;
use atom_fabric::{GpuDevice, NodeSpec, RequestId, ScheduleRequest};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, MatchedPath, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Largest request body (bytes).
pub const MAX_BODY: usize = 1 << 20;

/// Every route: (method, path, host). The OpenAPI document lists exactly these (a test checks).
#[cfg_attr(not(test), allow(dead_code))]
pub const ROUTES: &[(&str, &str, &str)] = &[
    ("get", "/health", "scheduler"),
    ("get", "/metrics", "scheduler"),
    ("post", "/schedule", "scheduler"),
    ("get", "/schedule/{id}", "scheduler"),
    ("post", "/schedule/{id}/release", "scheduler"),
    ("post", "/node/register", "scheduler"),
    ("post", "/node/launch", "scheduler"),
    ("post", "/node/metrics", "scheduler"),
    ("post", "/autoscale/sets", "scheduler"),
    ("get", "/autoscale/plan", "scheduler"),
    ("post", "/autoscale/reconcile", "scheduler"),
    ("get", "/resources", "scheduler"),
    ("post", "/resources/register", "scheduler"),
    ("get", "/slo/{tenant}/{model}", "scheduler"),
    ("get", "/pqc/handshake", "scheduler"),
    ("post", "/failover/promote", "scheduler"),
    ("get", "/audit/checkpoint", "scheduler"),
    ("get", "/audit/proof/{index}", "scheduler"),
    ("get", "/policy/matrix", "scheduler"),
    ("get", "/openapi.json", "scheduler"),
    ("post", "/agent/submit", "agent"),
    ("get", "/agent/status/{id}", "agent"),
    ("get", "/health", "agent"),
    ("get", "/metrics", "agent"),
    ("get", "/openapi.json", "agent"),
];

/// The OpenAPI document served at `/openapi.json`.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Arguments of `atom serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Scheduler host port (`SCHEDULER_PORT`, default 8600; 0 picks a free port).
    #[arg(long, env = "SCHEDULER_PORT", default_value_t = 8600)]
    pub scheduler_port: u16,
    /// Hybrid agent host port (0 picks a free port).
    #[arg(long, default_value_t = 8700)]
    pub agent_port: u16,
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: String,
    /// Data directory (state, audit log, keys, run files).
    #[arg(long, default_value = "./data")]
    pub data_dir: PathBuf,
    /// The defaults file.
    #[arg(long, default_value = ".env.default")]
    pub env_default: PathBuf,
    /// TLS certificate chain (PEM); needs --tls-key.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Log format.
    #[arg(long, value_parser = ["text", "json"], default_value = "text")]
    pub log_format: String,
    /// Write the bound ports as JSON to this file once listening (for tests and scripts).
    #[arg(long)]
    pub ports_file: Option<PathBuf>,
}

type Shared = Arc<App>;

fn error_response(e: &ApiError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(e.body())).into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error_response(&self)
    }
}

/// Parses a JSON body strictly: 400 for malformed JSON, 422 (with the field path) for JSON of
/// the wrong shape.
fn parse_body<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: &[u8],
    normalize: fn(&mut serde_json::Value) -> Result<(), ApiError>,
) -> Result<T, ApiError> {
    // `curl -d` labels JSON as form data; any content type is read as JSON, except multipart.
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or("");
        if ct.to_ascii_lowercase().starts_with("multipart/") {
            return Err(ApiError::new(
                415,
                "unsupported_media_type",
                format!("expected application/json, got {ct:?}"),
            ));
        }
    }
    let mut value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            400,
            "malformed_json",
            format!("request body is not valid JSON: {e}"),
        )
    })?;
    if !value.is_object() {
        return Err(ApiError::new(
            422,
            "invalid",
            "the request body must be a JSON object",
        ));
    }
    normalize(&mut value)?;
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        ApiError::new(422, "invalid", format!("{path}: {}", e.inner())).field(path)
    })
}

/// `"4GB"`, `"512MiB"`, `"2Gi"` or a number of MiB → MiB.
fn mib(v: &serde_json::Value, field: &str) -> Result<Option<u64>, ApiError> {
    let bad = |why: String| ApiError::new(422, "invalid", format!("{field}: {why}")).field(field);
    match v {
        serde_json::Value::Number(n) => n
            .as_u64()
            .map(Some)
            .ok_or_else(|| bad("expected a non-negative integer of MiB".into())),
        serde_json::Value::String(s) => {
            let t = s.trim();
            let split = t
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(t.len());
            let (num, unit) = t.split_at(split);
            let x: f64 = num
                .parse()
                .map_err(|_| bad(format!("{s:?} is not a size such as \"4GB\"")))?;
            let f = match unit.trim().to_ascii_lowercase().as_str() {
                "" | "m" | "mb" | "mi" | "mib" => 1.0,
                "g" | "gb" | "gi" | "gib" => 1024.0,
                "t" | "tb" | "ti" | "tib" => 1024.0 * 1024.0,
                "k" | "kb" | "ki" | "kib" => 1.0 / 1024.0,
                other => return Err(bad(format!("unknown unit {other:?}"))),
            };
            let m = (x * f).ceil();
            if !m.is_finite() || m < 0.0 || m > u64::MAX as f64 {
                return Err(bad(format!("{s:?} is out of range")));
            }
            Ok(Some(m as u64))
        }
        serde_json::Value::Null => Ok(None),
        _ => Err(bad("expected a size".into())),
    }
}

fn normalize_schedule(v: &mut serde_json::Value) -> Result<(), ApiError> {
    // P2: `manifest_verified` is a fact the verifier records, never a client's claim. The
    // host has no manifest-carrying deploy path yet, so a client asserting it is refused (a
    // production deploy without it is denied by P2, or allowed-in-simulation).
    if v.pointer("/deploy/manifest_verified")
        .is_some_and(|m| m != &serde_json::Value::Bool(false))
    {
        return Err(ApiError::new(
            422,
            "invalid",
            "deploy.manifest_verified is recorded by the verifier; a client cannot assert it",
        )
        .field("deploy.manifest_verified"));
    }
    if let Some(mem) = v.pointer("/resources/mem").cloned()
        && let Some(m) = mib(&mem, "resources.mem")?
        && let Some(r) = v.get_mut("resources")
    {
        r["mem"] = serde_json::json!(m);
    }
    Ok(())
}

fn no_normalize(_: &mut serde_json::Value) -> Result<(), ApiError> {
    Ok(())
}

/// The documents' node body (`{"node_id": "node-sim-1", "gpus": 1}`) and the full node model.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterBody {
    #[serde(alias = "id")]
    node_id: String,
    #[serde(default)]
    gpus: Option<Gpus>,
    #[serde(default)]
    gpu_model: Option<String>,
    #[serde(default)]
    gpu_memory_mib: Option<u64>,
    #[serde(default)]
    cpu_milli: Option<u64>,
    #[serde(default, alias = "memory")]
    memory_mib: Option<serde_json::Value>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    tpus: u32,
    #[serde(default)]
    quantum_qubits: u32,
    #[serde(default)]
    cached_models: BTreeSet<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Gpus {
    Count(u32),
    Devices(Vec<GpuDevice>),
}

impl RegisterBody {
    fn into_spec(self) -> Result<NodeSpec, ApiError> {
        let memory = match &self.memory_mib {
            Some(v) => mib(v, "memory_mib")?.unwrap_or(65_536),
            None => 65_536,
        };
        let mut spec = NodeSpec::new(self.node_id, self.cpu_milli.unwrap_or(16_000), memory);
        spec.gpus = match self.gpus {
            None => vec![],
            Some(Gpus::Count(n)) => {
                if n as usize > atom_fabric::model::MAX_GPUS_PER_NODE {
                    return Err(ApiError::new(
                        422,
                        "invalid",
                        format!(
                            "gpus: {n} exceeds {} per node",
                            atom_fabric::model::MAX_GPUS_PER_NODE
                        ),
                    )
                    .field("gpus"));
                }
                (0..n)
                    .map(|_| GpuDevice {
                        model: self.gpu_model.clone().unwrap_or_else(|| "sim-gpu".into()),
                        memory_mib: self.gpu_memory_mib.unwrap_or(16_384),
                    })
                    .collect()
            }
            Some(Gpus::Devices(d)) => d,
        };
        spec.labels = self.labels;
        spec.tpus = self.tpus;
        spec.quantum_qubits = self.quantum_qubits;
        spec.cached_models = self.cached_models;
        Ok(spec)
    }
}

fn auth_header(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("worker: {e}")))?
}

fn json_response(code: u16, v: serde_json::Value) -> Response {
    (
        StatusCode::from_u16(code).unwrap_or(StatusCode::OK),
        Json(v),
    )
        .into_response()
}

async fn health_scheduler(State(app): State<Shared>) -> Response {
    Json(app.health("scheduler")).into_response()
}

async fn health_agent(State(app): State<Shared>) -> Response {
    Json(app.health("hybrid-agent")).into_response()
}

async fn metrics(State(app): State<Shared>) -> Result<Response, ApiError> {
    let text = blocking(move || app.metrics_text()).await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

async fn schedule(
    State(app): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: ScheduleRequest = parse_body(&headers, &body, normalize_schedule)?;
    let auth = app.authenticate(auth_header(&headers), Some(&req.tenant_id))?;
    let (code, v) = app.schedule(req, auth).await?;
    Ok(json_response(code, v))
}

async fn schedule_status(
    State(app): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let auth = app.authenticate(auth_header(&headers), None)?;
    let v = blocking(move || app.request_status(&id, auth.as_deref())).await?;
    Ok(Json(v).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReleaseBody {
    tenant_id: String,
}

async fn release(
    State(app): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let b: ReleaseBody = parse_body(&headers, &body, no_normalize)?;
    app.authenticate(auth_header(&headers), Some(&b.tenant_id))?;
    let v = app.release_async(id, b.tenant_id).await?;
    Ok(Json(v).into_response())
}

async fn register(
    State(app): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let b: RegisterBody = parse_body(&headers, &body, no_normalize)?;
    let spec = b.into_spec()?;
    if !app.settings.mode.simulation {
        // Registering capacity is an operator action: a valid token is required.
        app.authenticate(auth_header(&headers), None)?;
    }
    let v = blocking(move || app.register_node(spec)).await?;
    Ok(json_response(201, v))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LaunchBody {
    request_id: String,
    #[serde(default)]
    tenant_id: Option<String>,
}

/// `POST /node/launch`: the node agent's launch of a placed request (idempotent: the run files
/// of a placed request are written once by the scheduler host; this returns them).
async fn launch(
    State(app): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let b: LaunchBody = parse_body(&headers, &body, no_normalize)?;
    let auth = app.authenticate(auth_header(&headers), b.tenant_id.as_deref())?;
    let id = b.request_id.clone();
    let status = blocking({
        let app = app.clone();
        move || app.request_status(&id, auth.as_deref().or(b.tenant_id.as_deref()))
    })
    .await?;
    let phase = status["phase"].as_str().unwrap_or("").to_owned();
    if phase != "running" && phase != "placed" {
        return Err(ApiError::new(
            409,
            "not_placed",
            format!("request {} is {phase}", b.request_id),
        ));
    }
    let mut files = vec![];
    let replicas = status["placement"]["replicas"]
        .as_array()
        .map_or(0, Vec::len);
    if let Some(rid) = status["id"].as_u64().map(RequestId) {
        for i in 0..replicas as u32 {
            let p = app.run_file(rid, i);
            if p.exists() {
                files.push(p.display().to_string());
            }
        }
    }
    Ok(json_response(
        200,
        serde_json::json!({"status": "launched", "request_id": b.request_id, "run_files": files}),
    ))
}

/// `POST /autoscale/sets`: a replica set for the caller's tenant (P5).
async fn autoscale_set(
    State(app): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let spec: atom_fabric::autoscale::controller::ReplicaSetSpec =
        parse_body(&headers, &body, no_normalize)?;
    app.authenticate(auth_header(&headers), Some(&spec.tenant_id))?;
    let v = blocking(move || app.autoscale_add(spec)).await?;
    Ok(json_response(201, v))
}

/// `GET /autoscale/plan`: the planned actions with their reasons; nothing is applied.
async fn autoscale_plan(
    State(app): State<Shared>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let auth = app.authenticate(auth_header(&headers), None)?;
    let v = blocking(move || app.autoscale(auth.as_deref(), false)).await?;
    Ok(Json(v).into_response())
}

/// `POST /autoscale/reconcile`: plans and applies the non-dry-run actions (P3).
async fn autoscale_reconcile(
    State(app): State<Shared>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let auth = app.authenticate(auth_header(&headers), None)?;
    let v = blocking(move || app.autoscale(auth.as_deref(), true)).await?;
    Ok(Json(v).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MetricsBody {
    reports: Vec<atom_fabric::autoscale::feed::ReplicaReport>,
}

/// `POST /node/metrics`: node agents push their replicas' counters.
async fn node_metrics(
    State(app): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let b: MetricsBody = parse_body(&headers, &body, no_normalize)?;
    if !app.settings.mode.simulation {
        // Reports come from node agents, an operator credential.
        app.authenticate(auth_header(&headers), None)?;
    }
    let v = blocking(move || app.node_metrics(b.reports)).await?;
    Ok(json_response(202, v))
}

async fn resources(State(app): State<Shared>) -> Result<Response, ApiError> {
    Ok(Json(blocking(move || app.resources()).await?).into_response())
}

async fn slo(
    State(app): State<Shared>,
    Path((tenant, model)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    Ok(Json(blocking(move || app.slo(&tenant, &model)).await?).into_response())
}

async fn handshake(State(app): State<Shared>) -> Result<Response, ApiError> {
    Ok(Json(blocking(move || Ok(app.handshake())).await?).into_response())
}

async fn promote(State(app): State<Shared>, headers: HeaderMap) -> Result<Response, ApiError> {
    if !app.settings.mode.simulation {
        app.authenticate(auth_header(&headers), None)?;
    }
    Ok(Json(blocking(move || app.promote()).await?).into_response())
}

async fn checkpoint(State(app): State<Shared>) -> Result<Response, ApiError> {
    let text = blocking(move || app.checkpoint()).await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}

async fn proof(State(app): State<Shared>, Path(index): Path<String>) -> Result<Response, ApiError> {
    Ok(Json(blocking(move || app.proof(&index)).await?).into_response())
}

async fn matrix(State(app): State<Shared>) -> Response {
    Json(app.policy_matrix()).into_response()
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn submit(
    State(app): State<Shared>,
    State2(wake): State2,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let job: JobSubmission = parse_body(&headers, &body, no_normalize)?;
    let auth = app.authenticate(auth_header(&headers), Some(&job.tenant))?;
    let v = blocking(move || app.submit(job, auth.as_deref())).await?;
    wake.notify_one();
    Ok(json_response(201, v))
}

async fn job_status(
    State(app): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let auth = app.authenticate(auth_header(&headers), None)?;
    Ok(Json(blocking(move || app.job_status(&id, auth.as_deref())).await?).into_response())
}

/// The agent worker's wake-up signal.
#[derive(Clone)]
struct State2(Arc<tokio::sync::Notify>);

impl std::ops::Deref for State2 {
    type Target = tokio::sync::Notify;
    fn deref(&self) -> &tokio::sync::Notify {
        &self.0
    }
}

#[derive(Clone)]
struct AgentState {
    app: Shared,
    wake: State2,
}

impl axum::extract::FromRef<AgentState> for Shared {
    fn from_ref(s: &AgentState) -> Shared {
        s.app.clone()
    }
}

impl axum::extract::FromRef<AgentState> for State2 {
    fn from_ref(s: &AgentState) -> State2 {
        s.wake.clone()
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for State2
where
    State2: axum::extract::FromRef<S>,
{
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(
        _: &mut axum::http::request::Parts,
        s: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(<State2 as axum::extract::FromRef<S>>::from_ref(s))
    }
}

static REQUEST_SEQ: AtomicU64 = AtomicU64::new(1);

/// Request ids, structured logs and per-route counters.
async fn observe(State(app): State<Shared>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 64 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| format!("r{}", REQUEST_SEQ.fetch_add(1, Ordering::Relaxed)));
    let method = req.method().clone();
    let started = std::time::Instant::now();
    let mut resp = next.run(req).await;
    let status = resp.status().as_u16();
    if let Ok(mut m) = app.http_requests.lock() {
        *m.entry((route.clone(), status)).or_insert(0) += 1;
    }
    tracing::info!(request_id = %id, %method, route = %route, status, ms = started.elapsed().as_secs_f64() * 1e3, "request");
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

/// JSON bodies for axum's own rejections (unknown route, wrong method, body too large).
async fn json_errors(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("json"));
    if (status.is_client_error() || status.is_server_error()) && !is_json {
        let (code, msg) = match status.as_u16() {
            404 => ("not_found", "no such route"),
            405 => ("method_not_allowed", "method not allowed on this route"),
            413 => ("payload_too_large", "request body exceeds 1 MiB"),
            _ => ("error", status.canonical_reason().unwrap_or("error")),
        };
        return (
            status,
            Json(ApiError::new(status.as_u16(), code, msg).body()),
        )
            .into_response();
    }
    resp
}

/// The scheduler host's router.
pub fn scheduler_router(app: Shared) -> Router {
    Router::new()
        .route("/health", get(health_scheduler))
        .route("/metrics", get(metrics))
        .route("/schedule", post(schedule))
        .route("/schedule/{id}", get(schedule_status))
        .route("/schedule/{id}/release", post(release))
        .route("/node/register", post(register))
        .route("/node/launch", post(launch))
        .route("/node/metrics", post(node_metrics))
        .route("/autoscale/sets", post(autoscale_set))
        .route("/autoscale/plan", get(autoscale_plan))
        .route("/autoscale/reconcile", post(autoscale_reconcile))
        .route("/resources", get(resources))
        .route("/resources/register", post(register))
        .route("/slo/{tenant}/{model}", get(slo))
        .route("/pqc/handshake", get(handshake))
        .route("/failover/promote", post(promote))
        .route("/audit/checkpoint", get(checkpoint))
        .route("/audit/proof/{index}", get(proof))
        .route("/policy/matrix", get(matrix))
        .route("/openapi.json", get(openapi))
        .layer(middleware::from_fn_with_state(app.clone(), observe))
        .layer(middleware::from_fn(json_errors))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(app)
}

fn agent_router(app: Shared, wake: Arc<tokio::sync::Notify>) -> Router {
    let state = AgentState {
        app: app.clone(),
        wake: State2(wake),
    };
    Router::new()
        .route("/agent/submit", post(submit))
        .route("/agent/status/{id}", get(job_status))
        .route("/health", get(health_agent))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .layer(middleware::from_fn_with_state(app, observe))
        .layer(middleware::from_fn(json_errors))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { () = ctrl_c => {}, () = term => {} }
}

/// Runs `atom serve` until SIGTERM or Ctrl-C.
pub fn run(args: ServeArgs) -> Result<(), crate::cmd::CliError> {
    use crate::cmd::CliError;
    let (defaults, _) = crate::cmd::precheck::load_defaults(&args.env_default)?;
    let env = atom_policy::config::Env::from_process().with_defaults(&defaults);
    let settings = Settings::from_env(&env, args.data_dir.clone()).map_err(CliError::input)?;
    if args.log_format == "json" {
        let _ = tracing_subscriber::fmt()
            .json()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "info".into()),
            )
            .try_init();
    } else {
        let _ = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "info".into()),
            )
            .try_init();
    }
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(c), Some(k)) => {
            let cert =
                std::fs::read(c).map_err(|e| CliError::input(format!("{}: {e}", c.display())))?;
            let key =
                std::fs::read(k).map_err(|e| CliError::input(format!("{}: {e}", k.display())))?;
            Some(Arc::new(
                atom_policy::handshake::tls_server_config(&cert, &key, settings.mode)
                    .map_err(|e| CliError::input(format!("TLS: {e}")))?,
            ))
        }
        _ => None,
    };
    let app = App::open(settings).map_err(CliError::failed)?;
    match app.reconcile_agent() {
        Ok((0, 0)) => {}
        Ok((launched, retired)) => {
            tracing::info!(launched, retired, "node agent caught up with the journal")
        }
        Err(e) => return Err(CliError::failed(format!("node agent: {}", e.message))),
    }
    app.start_committer();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::failed(format!("tokio: {e}")))?;
    rt.block_on(async move {
        let bind = |port: u16| {
            let addr: Result<SocketAddr, _> = format!("{}:{port}", args.bind).parse();
            async move {
                let addr = addr.map_err(|e| CliError::input(format!("--bind: {e}")))?;
                tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|e| CliError::failed(format!("bind {addr}: {e}")))
            }
        };
        let sched_l = bind(args.scheduler_port).await?;
        let agent_l = bind(args.agent_port).await?;
        let ports = (
            sched_l
                .local_addr()
                .map_err(|e| CliError::failed(e.to_string()))?
                .port(),
            agent_l
                .local_addr()
                .map_err(|e| CliError::failed(e.to_string()))?
                .port(),
        );
        let wake = Arc::new(tokio::sync::Notify::new());
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        // Hybrid jobs run on one worker thread, woken on submit.
        let worker = {
            let (app, wake, stop) = (app.clone(), wake.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    wake.notified().await;
                    let a = app.clone();
                    let _ = tokio::task::spawn_blocking(move || a.run_jobs()).await;
                }
            })
        };
        // Group commit of the audit log.
        let ticker = {
            let (app, stop) = (app.clone(), stop.clone());
            tokio::spawn(async move {
                let mut iv = tokio::time::interval(std::time::Duration::from_millis(5));
                while !stop.load(Ordering::Relaxed) {
                    iv.tick().await;
                    app.flush();
                }
            })
        };
        // Replica sets are reconciled on a timer (their own dry-run flag still decides, P3).
        let autoscaler = (app.settings.autoscale_interval_s > 0).then(|| {
            let (app, stop) = (app.clone(), stop.clone());
            let every = std::time::Duration::from_secs(app.settings.autoscale_interval_s);
            tokio::spawn(async move {
                let mut iv = tokio::time::interval(every);
                iv.tick().await;
                while !stop.load(Ordering::Relaxed) {
                    iv.tick().await;
                    let a = app.clone();
                    match tokio::task::spawn_blocking(move || a.autoscale(None, true)).await {
                        Ok(Err(e)) => tracing::warn!(error = %e.message, "autoscale reconcile"),
                        Err(e) => tracing::warn!(error = %e, "autoscale reconcile"),
                        Ok(Ok(_)) => {}
                    }
                }
            })
        });
        let sched = scheduler_router(app.clone());
        let agent = agent_router(app.clone(), wake.clone());
        if let Some(p) = &args.ports_file {
            let text = serde_json::json!({"scheduler": ports.0, "agent": ports.1}).to_string();
            std::fs::write(p, text)
                .map_err(|e| CliError::failed(format!("{}: {e}", p.display())))?;
        }
        tracing::info!(
            scheduler = ports.0,
            agent = ports.1,
            simulation = app.settings.mode.simulation,
            tls = tls.is_some(),
            "listening"
        );
        eprintln!(
            "atom serve: scheduler on {}:{}, hybrid agent on {}:{}",
            args.bind, ports.0, args.bind, ports.1
        );
        let handle = axum_server::Handle::new();
        let result = if let Some(cfg) = tls {
            let rustls_cfg = axum_server::tls_rustls::RustlsConfig::from_config(cfg);
            let h = handle.clone();
            tokio::spawn(async move {
                shutdown_signal().await;
                h.graceful_shutdown(Some(std::time::Duration::from_secs(10)));
            });
            let s1 = axum_server::from_tcp_rustls(
                sched_l
                    .into_std()
                    .map_err(|e| CliError::failed(e.to_string()))?,
                rustls_cfg.clone(),
            )
            .map_err(|e| CliError::failed(e.to_string()))?
            .handle(handle.clone())
            .serve(sched.into_make_service());
            let s2 = axum_server::from_tcp_rustls(
                agent_l
                    .into_std()
                    .map_err(|e| CliError::failed(e.to_string()))?,
                rustls_cfg,
            )
            .map_err(|e| CliError::failed(e.to_string()))?
            .handle(handle)
            .serve(agent.into_make_service());
            tokio::try_join!(s1, s2).map(|_| ())
        } else {
            let (tx, _) = tokio::sync::broadcast::channel::<()>(1);
            let mut rx1 = tx.subscribe();
            let mut rx2 = tx.subscribe();
            tokio::spawn(async move {
                shutdown_signal().await;
                let _ = tx.send(());
            });
            let s1 = axum::serve(sched_l, sched).with_graceful_shutdown(async move {
                let _ = rx1.recv().await;
            });
            let s2 = axum::serve(agent_l, agent).with_graceful_shutdown(async move {
                let _ = rx2.recv().await;
            });
            tokio::try_join!(s1.into_future(), s2.into_future()).map(|_| ())
        };
        stop.store(true, Ordering::Relaxed);
        wake.notify_one();
        let _ = worker.await;
        ticker.abort();
        if let Some(a) = autoscaler {
            a.abort();
        }
        app.close();
        eprintln!("atom serve: stopped; audit log synced");
        result.map_err(|e| CliError::failed(format!("server: {e}")))
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn openapi_lists_exactly_the_routes() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        let mut documented = BTreeSet::new();
        for (path, ops) in doc["paths"].as_object().unwrap() {
            for method in ops.as_object().unwrap().keys() {
                documented.insert((method.clone(), path.clone()));
            }
        }
        let routed: BTreeSet<(String, String)> = ROUTES
            .iter()
            .map(|(m, p, _)| ((*m).to_owned(), (*p).to_owned()))
            .collect();
        assert_eq!(documented, routed);
    }

    #[test]
    fn sizes_parse_in_mib() {
        assert_eq!(mib(&serde_json::json!("4GB"), "m").unwrap(), Some(4096));
        assert_eq!(mib(&serde_json::json!("512MiB"), "m").unwrap(), Some(512));
        assert_eq!(mib(&serde_json::json!(300), "m").unwrap(), Some(300));
        assert_eq!(mib(&serde_json::json!("4XB"), "m").unwrap_err().status, 422);
        assert_eq!(mib(&serde_json::json!(-1), "m").unwrap_err().status, 422);
    }
}
