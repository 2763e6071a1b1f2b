//! The data model: node specs, GPU devices, requests, placements and lifecycle phases.
//!
//! Units: CPU in millicores, memory in MiB, GPU shares in milli-GPUs (1000 = one whole device,
//! as the Alibaba trace's `gpu_milli`), time in milliseconds of the injected clock.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use crate::error::FabricError;

/// Node label holding the region (used by the region constraint and the latency scorer).
pub const LABEL_REGION: &str = "region";
/// Node label holding the zone.
pub const LABEL_ZONE: &str = "zone";
/// Node label holding the price of one device-hour (a decimal number), read by the cost scorer.
pub const LABEL_PRICE: &str = "price_per_device_hour";
/// Most GPU devices one node may hold (device sets are 64-bit masks).
pub const MAX_GPUS_PER_NODE: usize = 64;

/// One GPU device of a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuDevice {
    /// Model name, e.g. `"V100M32"` or `"A100"`.
    pub model: String,
    /// Device memory in MiB.
    #[serde(default)]
    pub memory_mib: u64,
}

/// What a node offers. Registered with [`crate::Command::RegisterNode`].
///
/// ```
/// use atom_fabric::NodeSpec;
/// let node = NodeSpec::new("n1", 32_000, 131_072)
///     .with_gpus("A100", 8, 81_920)
///     .with_label("region", "eu-west");
/// assert_eq!(node.gpus.len(), 8);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSpec {
    /// Unique node id.
    pub id: String,
    /// Labels: `region`, `zone`, `price_per_device_hour`, or any key.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Allocatable CPU in millicores.
    pub cpu_milli: u64,
    /// Allocatable memory in MiB.
    pub memory_mib: u64,
    /// GPU devices (at most [`MAX_GPUS_PER_NODE`]).
    #[serde(default)]
    pub gpus: Vec<GpuDevice>,
    /// TPU devices (whole units).
    #[serde(default)]
    pub tpus: u32,
    /// Quantum capacity: the largest circuit width (qubits) this node can simulate.
    #[serde(default)]
    pub quantum_qubits: u32,
    /// Models (`model_id`) already cached on this node, for the locality scorer.
    #[serde(default)]
    pub cached_models: BTreeSet<String>,
}

impl NodeSpec {
    /// A node with CPU and memory only.
    pub fn new(id: impl Into<String>, cpu_milli: u64, memory_mib: u64) -> Self {
        Self {
            id: id.into(),
            labels: BTreeMap::new(),
            cpu_milli,
            memory_mib,
            gpus: Vec::new(),
            tpus: 0,
            quantum_qubits: 0,
            cached_models: BTreeSet::new(),
        }
    }

    /// Adds `count` GPU devices of one model.
    pub fn with_gpus(mut self, model: &str, count: usize, memory_mib: u64) -> Self {
        for _ in 0..count {
            self.gpus.push(GpuDevice {
                model: model.to_string(),
                memory_mib,
            });
        }
        self
    }

    /// Sets a label.
    pub fn with_label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.to_string(), value.to_string());
        self
    }

    /// Sets the TPU count.
    pub fn with_tpus(mut self, tpus: u32) -> Self {
        self.tpus = tpus;
        self
    }

    /// Sets the quantum capacity in simulated qubits.
    pub fn with_quantum_qubits(mut self, qubits: u32) -> Self {
        self.quantum_qubits = qubits;
        self
    }

    /// Marks a model as cached on the node.
    pub fn with_cached_model(mut self, model_id: &str) -> Self {
        self.cached_models.insert(model_id.to_string());
        self
    }

    pub(crate) fn validate(&self) -> Result<(), FabricError> {
        if self.id.is_empty() {
            return Err(FabricError::InvalidInput("node id is empty".into()));
        }
        if self.gpus.len() > MAX_GPUS_PER_NODE {
            return Err(FabricError::InvalidInput(format!(
                "node {}: {} GPUs, at most {MAX_GPUS_PER_NODE} are supported",
                self.id,
                self.gpus.len()
            )));
        }
        if let Some(p) = self.labels.get(LABEL_PRICE) {
            match p.parse::<f64>() {
                Ok(v) if v.is_finite() && v >= 0.0 => {}
                _ => {
                    return Err(FabricError::InvalidInput(format!(
                        "node {}: label {LABEL_PRICE}={p:?} is not a non-negative number",
                        self.id
                    )));
                }
            }
        }
        Ok(())
    }
}

/// Resources of one replica.
///
/// `gpu` devices, each with a `gpu_milli` share (0 or 1000 = the whole device; 1..999 = a
/// fractional share of a shared device, as the Alibaba trace's `gpu_milli`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    /// GPU devices per replica.
    #[serde(default)]
    pub gpu: u32,
    /// Share of each device in milli-GPUs (0 means whole devices).
    #[serde(default)]
    pub gpu_milli: u32,
    /// CPU in millicores.
    #[serde(default)]
    pub cpu: u64,
    /// Memory in MiB.
    #[serde(default)]
    pub mem: u64,
    /// TPU devices.
    #[serde(default)]
    pub tpu: u32,
    /// Qubits of simulated quantum capacity needed (a capability, not consumed).
    #[serde(default)]
    pub qubits: u32,
}

impl Resources {
    /// Milli-GPUs taken on each device (0 when no GPU is requested).
    pub fn milli_per_device(&self) -> u32 {
        if self.gpu == 0 {
            0
        } else if self.gpu_milli == 0 {
            1000
        } else {
            self.gpu_milli
        }
    }

    /// Total milli-GPUs of one replica.
    pub fn gpu_milli_total(&self) -> u64 {
        u64::from(self.gpu) * u64::from(self.milli_per_device())
    }

    pub(crate) fn validate(&self) -> Result<(), FabricError> {
        if self.gpu_milli > 1000 {
            return Err(FabricError::InvalidInput(format!(
                "resources.gpu_milli = {} exceeds 1000 (one whole device)",
                self.gpu_milli
            )));
        }
        if self.gpu == 0 && self.gpu_milli > 0 {
            return Err(FabricError::InvalidInput(
                "resources.gpu_milli > 0 needs resources.gpu >= 1".into(),
            ));
        }
        if self.gpu as usize > MAX_GPUS_PER_NODE {
            return Err(FabricError::InvalidInput(format!(
                "resources.gpu = {} exceeds {MAX_GPUS_PER_NODE} devices per replica",
                self.gpu
            )));
        }
        Ok(())
    }
}

/// Placement constraints of a request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Constraints {
    /// Round-trip budget from `region` to the node's region (needs `region`; uses the latency table).
    #[serde(default)]
    pub latency_ms: Option<u32>,
    /// The caller's region. Without `latency_ms` the node must be in this region; with it, any
    /// region within the round-trip budget is accepted.
    #[serde(default)]
    pub region: Option<String>,
    /// Accepted GPU models, `|`-separated (as the trace's `gpu_spec`, e.g. `V100M16|V100M32`).
    #[serde(default)]
    pub gpu_model: Option<String>,
    /// Node labels that must all match exactly.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

impl Constraints {
    pub(crate) fn is_empty(&self) -> bool {
        self.latency_ms.is_none()
            && self.region.is_none()
            && self.gpu_model.is_none()
            && self.labels.is_empty()
    }
}

/// Deploy approval facts for production deploys (policies P2 and P3).
///
/// The manifest verification itself happens before the scheduler (atom-policy); the scheduler
/// only checks that it was done and that a production deploy names its approver.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployApproval {
    /// This is a production deploy (P2 and P3 apply).
    #[serde(default)]
    pub production: bool,
    /// The signed manifest was verified (P2).
    #[serde(default)]
    pub manifest_verified: bool,
    /// Who approved the promotion (P3).
    #[serde(default)]
    pub approved_by: Option<String>,
}

fn one() -> u32 {
    1
}

/// A request to place replicas of a model.
///
/// ```
/// use atom_fabric::{Resources, ScheduleRequest};
/// let req = ScheduleRequest::new("acme", "llama", "v1", Resources { gpu: 1, gpu_milli: 500, cpu: 4000, mem: 8192, ..Default::default() })
///     .with_replicas(2)
///     .with_priority(10);
/// assert_eq!(req.replicas, 2);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleRequest {
    /// The tenant (validated upstream, P5).
    pub tenant_id: String,
    /// The model to serve.
    pub model_id: String,
    /// The model version.
    pub model_version: String,
    /// Resources of each replica.
    pub resources: Resources,
    /// Replicas, placed all or none (gang).
    #[serde(default = "one")]
    pub replicas: u32,
    /// Placement constraints.
    #[serde(default)]
    pub constraints: Constraints,
    /// Higher runs first and may preempt lower within the tenant.
    #[serde(default)]
    pub priority: i32,
    /// A retried request with the same key (per tenant) returns the first request id.
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// Production deploy approval (P2, P3).
    #[serde(default)]
    pub deploy: DeployApproval,
}

impl ScheduleRequest {
    /// A one-replica request with no constraints, priority 0.
    pub fn new(tenant_id: &str, model_id: &str, model_version: &str, resources: Resources) -> Self {
        Self {
            tenant_id: tenant_id.to_string(),
            model_id: model_id.to_string(),
            model_version: model_version.to_string(),
            resources,
            replicas: 1,
            constraints: Constraints::default(),
            priority: 0,
            idempotency_key: None,
            deploy: DeployApproval::default(),
        }
    }

    /// Sets the replica count.
    pub fn with_replicas(mut self, replicas: u32) -> Self {
        self.replicas = replicas;
        self
    }

    /// Sets the priority.
    pub fn with_priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// Sets the constraints.
    pub fn with_constraints(mut self, constraints: Constraints) -> Self {
        self.constraints = constraints;
        self
    }

    /// Sets the idempotency key.
    pub fn with_idempotency_key(mut self, key: &str) -> Self {
        self.idempotency_key = Some(key.to_string());
        self
    }

    /// Sets the deploy approval.
    pub fn with_deploy(mut self, deploy: DeployApproval) -> Self {
        self.deploy = deploy;
        self
    }

    pub(crate) fn validate(&self) -> Result<(), FabricError> {
        if self.tenant_id.is_empty() {
            return Err(FabricError::InvalidInput("tenant_id is empty".into()));
        }
        if self.model_id.is_empty() {
            return Err(FabricError::InvalidInput("model_id is empty".into()));
        }
        if self.replicas == 0 {
            return Err(FabricError::InvalidInput("replicas must be >= 1".into()));
        }
        if self.replicas > 10_000 {
            return Err(FabricError::InvalidInput(format!(
                "replicas = {} exceeds 10000",
                self.replicas
            )));
        }
        self.resources.validate()?;
        if let Some(spec) = &self.constraints.gpu_model {
            if self.resources.gpu == 0 {
                return Err(FabricError::InvalidInput(
                    "constraints.gpu_model needs resources.gpu >= 1".into(),
                ));
            }
            if spec.split('|').any(|m| m.trim().is_empty()) {
                return Err(FabricError::InvalidInput(format!(
                    "constraints.gpu_model {spec:?} has an empty alternative"
                )));
            }
        }
        if self.constraints.latency_ms.is_some() && self.constraints.region.is_none() {
            return Err(FabricError::InvalidInput(
                "constraints.latency_ms needs constraints.region (the caller's region)".into(),
            ));
        }
        Ok(())
    }
}

/// A request id, shown as `req-<n>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RequestId(pub u64);

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "req-{}", self.0)
    }
}

impl FromStr for RequestId {
    type Err = FabricError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.strip_prefix("req-")
            .and_then(|n| n.parse::<u64>().ok())
            .map(RequestId)
            .ok_or_else(|| {
                FabricError::InvalidInput(format!("request id {s:?} is not req-<number>"))
            })
    }
}

/// Lifecycle phase of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Waiting in its tenant's queue.
    Queued,
    /// Capacity reserved on nodes.
    Placed,
    /// Reported running by the node agent.
    Running,
    /// Finished or released by the tenant (terminal).
    Completed,
    /// Failed (terminal).
    Failed,
    /// Evicted by an operator (terminal). Preemption and node loss re-queue instead.
    Evicted,
}

impl Phase {
    /// True for completed, failed and evicted.
    pub fn is_terminal(self) -> bool {
        matches!(self, Phase::Completed | Phase::Failed | Phase::Evicted)
    }

    /// True while the request holds capacity.
    pub fn holds_capacity(self) -> bool {
        matches!(self, Phase::Placed | Phase::Running)
    }

    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Queued => "queued",
            Phase::Placed => "placed",
            Phase::Running => "running",
            Phase::Completed => "completed",
            Phase::Failed => "failed",
            Phase::Evicted => "evicted",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a request waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueReason {
    /// The tenant's quota (with any allowed borrowing) does not cover it.
    Quota,
    /// Nodes that satisfy its constraints exist but lack free capacity now.
    Capacity,
    /// No registered node satisfies its constraints.
    Constraint,
}

impl QueueReason {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            QueueReason::Quota => "quota",
            QueueReason::Capacity => "capacity",
            QueueReason::Constraint => "constraint",
        }
    }
}

/// One scorer's contribution to a placement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScorePart {
    /// Scorer name (shared with the scorer set that produced it).
    pub scorer: std::sync::Arc<str>,
    /// Its score for the chosen node (0..=100 for the built-in scorers; higher is better).
    pub score: f64,
    /// Its configured weight.
    pub weight: f64,
}

/// Why a node was chosen: the weighted total and each scorer's part.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScoreBreakdown {
    /// Weighted mean of the parts.
    pub total: f64,
    /// Per-scorer scores.
    pub parts: Vec<ScorePart>,
    /// Feasible nodes that were scored.
    pub candidates: u32,
}

/// Where one replica runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicaPlacement {
    /// Node id.
    pub node: String,
    /// GPU device indices on that node.
    pub devices: Vec<u32>,
    /// Why this node (present in decisions; absent in status queries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<ScoreBreakdown>,
}

/// The placement of all replicas of a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Placement {
    /// One entry per replica.
    pub replicas: Vec<ReplicaPlacement>,
    /// Admitted by borrowing idle quota of its cohort (may be reclaimed by preemption).
    pub borrowed: bool,
}

/// Status of a request, as seen by its tenant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestStatus {
    /// Request id.
    pub id: RequestId,
    /// Owner tenant.
    pub tenant_id: String,
    /// Model id.
    pub model_id: String,
    /// Model version.
    pub model_version: String,
    /// Replicas asked for (placed all or none).
    #[serde(default)]
    pub replicas: u32,
    /// Current phase.
    pub phase: Phase,
    /// Why it waits, when queued.
    pub queue_reason: Option<QueueReason>,
    /// Current placement, when placed or running.
    pub placement: Option<Placement>,
    /// Priority.
    pub priority: i32,
    /// Submission time (ms).
    pub submitted_ms: u64,
    /// Last placement time (ms).
    pub placed_ms: Option<u64>,
    /// Time it was reported running (ms).
    pub running_ms: Option<u64>,
    /// Time it reached a terminal phase (ms).
    pub finished_ms: Option<u64>,
    /// How often it was evicted and re-queued (preemption, node loss, drain).
    pub evictions: u32,
}
