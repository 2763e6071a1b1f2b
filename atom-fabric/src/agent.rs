//! The node agent (H.2.4): registers its node's capacity, heartbeats, launches and stops replicas
//! placed on it, loads their models through the runtime hooks and serves inferences.
//!
//! The agent speaks to the scheduler in [`Command`]s that its caller applies: in-process to a
//! [`crate::store::Fabric`], or over HTTP by the hosts. In simulation (`GPU_DRIVER_MOCK=true`) GPU
//! work runs on the CPU and every launch is recorded as a JSON run file in the agent's run directory
//! (`{run_dir}/{request}-{replica}.json`). Per-replica metrics (requests, latency histogram, queue
//! depth) are exported with `prometheus-client`; labels stop at tenant level (P1).
//!
//! ```
//! use atom_fabric::agent::{LaunchSpec, NodeAgent};
//! use atom_fabric::runtime::{RuntimeRegistry, Tensor};
//! use atom_fabric::{NodeSpec, RequestId};
//!
//! let run_dir = tempfile::tempdir().unwrap();
//! let mut agent = NodeAgent::new(NodeSpec::new("node-1", 8_000, 32_768), run_dir.path(), RuntimeRegistry::with_builtins(), true).unwrap();
//! let spec = LaunchSpec {
//!     request: RequestId(7), replica: 0, tenant_id: "t1".into(), model_id: "echo".into(),
//!     model_version: "v1".into(), framework: "mock".into(), model_path: "unused".into(), devices: vec![],
//! };
//! let launched = agent.launch(&spec, 1_000).unwrap();
//! assert!(launched.run_file.exists());
//! let out = agent.infer(&launched.id, &[Tensor::new(vec![1], vec![3.0]).unwrap()]).unwrap();
//! assert_eq!(out[0].data, vec![3.0]);
//! ```

pub use crate::autoscale::feed::ReplicaReport;
use crate::model::{NodeSpec, RequestId};
use crate::runtime::{Loaded, RuntimeError, RuntimeRegistry, Tensor};
use crate::scheduler::Command;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Why an agent operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The placement is for another node.
    #[error("placement is for node {placed_on}, this agent is {this}")]
    WrongNode {
        /// Node in the placement.
        placed_on: String,
        /// This agent's node.
        this: String,
    },
    /// The placement names a GPU device the node does not have.
    #[error("device {device} does not exist on node {node} ({count} GPUs)")]
    NoSuchDevice {
        /// Device index.
        device: u32,
        /// Node id.
        node: String,
        /// GPUs on the node.
        count: usize,
    },
    /// The replica is already running.
    #[error("replica {0} is already running")]
    AlreadyRunning(String),
    /// No such replica.
    #[error("replica {0} is not running on this node")]
    NotRunning(String),
    /// Loading or running the model failed.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// Writing the run file failed.
    #[error("run file {path}: {source}")]
    RunFile {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// What to launch: one replica of a placed request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaunchSpec {
    /// The scheduler's request id.
    pub request: RequestId,
    /// Replica index within the request.
    pub replica: u32,
    /// Owner tenant.
    pub tenant_id: String,
    /// Model id.
    pub model_id: String,
    /// Model version.
    pub model_version: String,
    /// Runtime to load it with (`onnx`, `mock`, `auto`, or a registered one).
    pub framework: String,
    /// Materialised model (file, or directory with `model.onnx`).
    pub model_path: PathBuf,
    /// GPU device indices assigned on this node.
    pub devices: Vec<u32>,
}

/// The record written for each launch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// `{request}-{replica}`.
    pub id: String,
    /// Request id.
    pub request_id: u64,
    /// Replica index.
    pub replica: u32,
    /// Node id.
    pub node: String,
    /// Owner tenant.
    pub tenant_id: String,
    /// Model id.
    pub model_id: String,
    /// Model version.
    pub model_version: String,
    /// The runtime that loaded the model.
    pub framework: String,
    /// True when the mock runtime served the load.
    pub mock_runtime: bool,
    /// GPU devices.
    pub devices: Vec<u32>,
    /// `cpu-simulated` (GPU_DRIVER_MOCK) or `gpu`.
    pub execution: String,
    /// Launch time, ms since the epoch (injected clock).
    pub started_at_ms: u64,
    /// Model load time in ms.
    pub load_ms: f64,
}

/// A launched replica.
#[derive(Debug, Clone)]
pub struct Launched {
    /// `{request}-{replica}`.
    pub id: String,
    /// Where the run record was written.
    pub run_file: PathBuf,
    /// The record.
    pub record: RunRecord,
    /// The command to apply to the scheduler (`MarkRunning`).
    pub report: Command,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReplicaLabels {
    node: String,
    tenant: String,
    model: String,
    replica: String,
}

struct Replica {
    spec: LaunchSpec,
    loaded: Loaded,
    labels: ReplicaLabels,
    stats: ReplicaStats,
}

/// Counters for the report to the fabric (the Prometheus families above are for scraping).
#[derive(Default)]
struct ReplicaStats {
    requests: AtomicU64,
    latency_sum_us: AtomicU64,
    /// Cumulative counts per bound of [`crate::autoscale::feed::LATENCY_BOUNDS_MS`], plus +Inf.
    buckets: [AtomicU64; crate::autoscale::feed::LATENCY_BOUNDS_MS.len() + 1],
    in_flight: AtomicU64,
}

/// A node agent.
pub struct NodeAgent {
    spec: NodeSpec,
    run_dir: PathBuf,
    runtimes: RuntimeRegistry,
    gpu_mock: bool,
    replicas: BTreeMap<String, Replica>,
    requests: Family<ReplicaLabels, Counter>,
    latency: Family<ReplicaLabels, Histogram>,
    in_flight: Family<ReplicaLabels, Gauge>,
}

impl std::fmt::Debug for NodeAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeAgent")
            .field("node", &self.spec.id)
            .field("run_dir", &self.run_dir)
            .field("gpu_mock", &self.gpu_mock)
            .field("replicas", &self.replicas.keys().collect::<Vec<_>>())
            .finish()
    }
}

fn latency_histogram() -> Histogram {
    // 0.5 ms .. ~16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

impl NodeAgent {
    /// An agent for the node `spec`, writing run files under `run_dir` (created).
    /// `gpu_mock` = `GPU_DRIVER_MOCK`: GPU work runs on the CPU.
    pub fn new(
        spec: NodeSpec,
        run_dir: &Path,
        runtimes: RuntimeRegistry,
        gpu_mock: bool,
    ) -> Result<Self, AgentError> {
        std::fs::create_dir_all(run_dir).map_err(|source| AgentError::RunFile {
            path: run_dir.to_path_buf(),
            source,
        })?;
        Ok(Self {
            spec,
            run_dir: run_dir.to_path_buf(),
            runtimes,
            gpu_mock,
            replicas: BTreeMap::new(),
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            in_flight: Family::default(),
        })
    }

    /// The node's id.
    pub fn node_id(&self) -> &str {
        &self.spec.id
    }

    /// The registration command.
    pub fn registration(&self) -> Command {
        Command::RegisterNode {
            spec: self.spec.clone(),
        }
    }

    /// A heartbeat, reporting the models loaded on this node (for the locality scorer).
    pub fn heartbeat(&self) -> Command {
        let cached: BTreeSet<String> = self
            .replicas
            .values()
            .map(|r| r.spec.model_id.clone())
            .chain(self.spec.cached_models.iter().cloned())
            .collect();
        Command::Heartbeat {
            node: self.spec.id.clone(),
            cached_models: Some(cached),
        }
    }

    /// Launches a replica: checks the devices, loads the model, writes the run file. On success
    /// returns the `MarkRunning` command for the scheduler.
    pub fn launch(&mut self, spec: &LaunchSpec, now_ms: u64) -> Result<Launched, AgentError> {
        let id = format!("{}-{}", spec.request, spec.replica);
        if self.replicas.contains_key(&id) {
            return Err(AgentError::AlreadyRunning(id));
        }
        for &d in &spec.devices {
            if d as usize >= self.spec.gpus.len() {
                return Err(AgentError::NoSuchDevice {
                    device: d,
                    node: self.spec.id.clone(),
                    count: self.spec.gpus.len(),
                });
            }
        }
        let loaded = self
            .runtimes
            .load_model(&spec.framework, &spec.model_path)?;
        let record = RunRecord {
            id: id.clone(),
            request_id: spec.request.0,
            replica: spec.replica,
            node: self.spec.id.clone(),
            tenant_id: spec.tenant_id.clone(),
            model_id: spec.model_id.clone(),
            model_version: spec.model_version.clone(),
            framework: loaded.framework.clone(),
            mock_runtime: loaded.is_mock(),
            devices: spec.devices.clone(),
            execution: if self.gpu_mock || spec.devices.is_empty() {
                "cpu-simulated"
            } else {
                "gpu"
            }
            .into(),
            started_at_ms: now_ms,
            load_ms: loaded.load_ms,
        };
        let run_file = self.run_dir.join(format!("{id}.json"));
        let json = serde_json::to_vec_pretty(&record).unwrap_or_default();
        let tmp = run_file.with_extension("json.tmp");
        std::fs::write(&tmp, json)
            .and_then(|()| std::fs::rename(&tmp, &run_file))
            .map_err(|source| AgentError::RunFile {
                path: run_file.clone(),
                source,
            })?;
        let labels = ReplicaLabels {
            node: self.spec.id.clone(),
            tenant: spec.tenant_id.clone(),
            model: spec.model_id.clone(),
            replica: id.clone(),
        };
        self.replicas.insert(
            id.clone(),
            Replica {
                spec: spec.clone(),
                loaded,
                labels,
                stats: ReplicaStats::default(),
            },
        );
        Ok(Launched {
            id,
            run_file,
            record,
            report: Command::MarkRunning {
                tenant_id: spec.tenant_id.clone(),
                request: spec.request,
            },
        })
    }

    /// The launch specs for every replica of `placement` that landed on this node: `template`
    /// with each replica's index and devices filled in.
    pub fn launches_for(
        &self,
        template: &LaunchSpec,
        placement: &crate::model::Placement,
    ) -> Vec<LaunchSpec> {
        placement
            .replicas
            .iter()
            .enumerate()
            .filter(|(_, r)| r.node == self.spec.id)
            .map(|(i, r)| LaunchSpec {
                replica: i as u32,
                devices: r.devices.clone(),
                ..template.clone()
            })
            .collect()
    }

    /// Stops a replica (its run file stays as the record of the run).
    pub fn stop(&mut self, id: &str) -> Result<LaunchSpec, AgentError> {
        let r = self
            .replicas
            .remove(id)
            .ok_or_else(|| AgentError::NotRunning(id.to_owned()))?;
        self.in_flight.get_or_create(&r.labels).set(0);
        Ok(r.spec)
    }

    /// Replicas running on this node.
    pub fn running(&self) -> Vec<&LaunchSpec> {
        self.replicas.values().map(|r| &r.spec).collect()
    }

    /// Serves one inference on replica `id`, measuring it.
    pub fn infer(&self, id: &str, inputs: &[Tensor]) -> Result<Vec<Tensor>, AgentError> {
        let r = self
            .replicas
            .get(id)
            .ok_or_else(|| AgentError::NotRunning(id.to_owned()))?;
        let gauge = self.in_flight.get_or_create(&r.labels);
        gauge.inc();
        r.stats.in_flight.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let out = r.loaded.model.run(inputs);
        let elapsed = started.elapsed();
        gauge.dec();
        r.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.latency
            .get_or_create(&r.labels)
            .observe(elapsed.as_secs_f64());
        self.requests.get_or_create(&r.labels).inc();
        let ms = elapsed.as_secs_f64() * 1e3;
        r.stats.requests.fetch_add(1, Ordering::Relaxed);
        r.stats
            .latency_sum_us
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
        let bucket = crate::autoscale::feed::LATENCY_BOUNDS_MS
            .iter()
            .position(|&b| ms <= b)
            .unwrap_or(crate::autoscale::feed::LATENCY_BOUNDS_MS.len());
        r.stats.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        Ok(out?)
    }

    /// What this node's replicas report to the fabric at `now_ms`: cumulative requests, latency
    /// sum and histogram, and requests in flight (the autoscaler's inputs, see
    /// [`crate::autoscale::feed::ReplicaFeed`]).
    pub fn report(&self, now_ms: u64) -> Vec<ReplicaReport> {
        self.replicas
            .iter()
            .map(|(id, r)| {
                let mut cumulative = 0;
                let latency_buckets = r
                    .stats
                    .buckets
                    .iter()
                    .map(|b| {
                        cumulative += b.load(Ordering::Relaxed);
                        cumulative
                    })
                    .collect();
                ReplicaReport {
                    node: self.spec.id.clone(),
                    replica_id: id.clone(),
                    request_id: r.spec.request,
                    tenant_id: r.spec.tenant_id.clone(),
                    model_id: r.spec.model_id.clone(),
                    model_version: r.spec.model_version.clone(),
                    at_ms: now_ms,
                    requests_total: r.stats.requests.load(Ordering::Relaxed),
                    latency_sum_ms: r.stats.latency_sum_us.load(Ordering::Relaxed) as f64 / 1e3,
                    latency_buckets,
                    in_flight: r.stats.in_flight.load(Ordering::Relaxed),
                }
            })
            .collect()
    }

    /// Requests served by replica `id`.
    pub fn requests_served(&self, id: &str) -> u64 {
        self.replicas
            .get(id)
            .map_or(0, |r| self.requests.get_or_create(&r.labels).get())
    }

    /// Adds the per-replica metrics to a Prometheus registry.
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "nf_replica_requests",
            "Inferences served per replica",
            self.requests.clone(),
        );
        registry.register(
            "nf_replica_latency_seconds",
            "Inference latency per replica",
            self.latency.clone(),
        );
        registry.register(
            "nf_replica_queue_depth",
            "Inferences in flight per replica",
            self.in_flight.clone(),
        );
    }
}
