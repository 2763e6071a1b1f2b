//! The chaos plan: fleet, quantum providers, workload and fault plan, read from YAML.
//!
//! Parsing is two steps: `serde` reads the YAML into the `*In` shapes (loose: durations may be
//! numbers or strings), then [`Plan::validate`] checks every field and turns it into the strict
//! [`ValidPlan`] the simulator runs. Every refusal is a [`FabricError::ChaosPlan`] naming the field
//! (`faults[2].duration`) and why.

use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::error::{FabricError, Result};
use crate::model::{NodeSpec, Resources};

fn bad(field: impl Into<String>, detail: impl Into<String>) -> FabricError {
    FabricError::ChaosPlan {
        field: field.into(),
        detail: detail.into(),
    }
}

/// A duration as written in a plan: a number of milliseconds, or a string with a unit
/// (`250ms`, `2s`, `1.5s`, `10m`, `1h`, `1d`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum DurIn {
    /// Milliseconds (integer).
    Int(i64),
    /// Milliseconds (fractional; rounded).
    Float(f64),
    /// A number with a unit.
    Text(String),
}

impl DurIn {
    /// The duration in milliseconds, or an error naming `field`.
    pub fn ms(&self, field: &str) -> Result<u64> {
        let v: f64 = match self {
            DurIn::Int(i) => *i as f64,
            DurIn::Float(f) => *f,
            DurIn::Text(t) => {
                let t = t.trim();
                let split = t
                    .find(|c: char| c.is_ascii_alphabetic())
                    .ok_or_else(|| bad(field, format!("{t:?} has no unit (ms, s, m, h, d)")))?;
                let (num, unit) = t.split_at(split);
                let n: f64 = num
                    .trim()
                    .parse()
                    .map_err(|_| bad(field, format!("{t:?}: {:?} is not a number", num.trim())))?;
                let scale = match unit {
                    "ms" => 1.0,
                    "s" => 1_000.0,
                    "m" | "min" => 60_000.0,
                    "h" => 3_600_000.0,
                    "d" => 86_400_000.0,
                    u => {
                        return Err(bad(
                            field,
                            format!("{t:?}: unknown unit {u:?} (ms, s, m, h, d)"),
                        ));
                    }
                };
                n * scale
            }
        };
        if !v.is_finite() {
            return Err(bad(field, "duration is not a finite number"));
        }
        if v < 0.0 {
            return Err(bad(field, format!("negative duration ({v} ms)")));
        }
        if v > 1e15 {
            return Err(bad(field, format!("duration {v} ms is too large")));
        }
        Ok(v.round() as u64)
    }
}

/// A distribution of durations as written: a single duration (constant) or
/// `{dist: constant|uniform|exponential|lognormal, ...}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum DistIn {
    /// A constant duration.
    Const(DurIn),
    /// A named distribution.
    Spec(DistSpecIn),
}

/// The fields of a named distribution.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistSpecIn {
    /// `constant`, `uniform`, `exponential` or `lognormal`.
    pub dist: String,
    /// For `constant`.
    pub value: Option<DurIn>,
    /// For `uniform`.
    pub min: Option<DurIn>,
    /// For `uniform`.
    pub max: Option<DurIn>,
    /// For `exponential`.
    pub mean: Option<DurIn>,
    /// For `lognormal`.
    pub median: Option<DurIn>,
    /// For `lognormal` (the standard deviation of the log).
    pub sigma: Option<f64>,
}

/// A validated distribution of durations (milliseconds).
#[derive(Debug, Clone, PartialEq)]
pub enum Dist {
    /// Always `ms`.
    Constant(u64),
    /// Uniform in `[min, max]`.
    Uniform(u64, u64),
    /// Exponential with this mean.
    Exponential(u64),
    /// Log-normal with this median and log standard deviation.
    LogNormal(u64, f64),
}

impl DistIn {
    fn validate(&self, field: &str) -> Result<Dist> {
        let spec = match self {
            DistIn::Const(d) => return Ok(Dist::Constant(d.ms(field)?)),
            DistIn::Spec(s) => s,
        };
        let need = |v: &Option<DurIn>, name: &str| -> Result<u64> {
            v.as_ref()
                .ok_or_else(|| {
                    bad(
                        format!("{field}.{name}"),
                        format!("required by dist {}", spec.dist),
                    )
                })?
                .ms(&format!("{field}.{name}"))
        };
        match spec.dist.as_str() {
            "constant" => Ok(Dist::Constant(need(&spec.value, "value")?)),
            "uniform" => {
                let (lo, hi) = (need(&spec.min, "min")?, need(&spec.max, "max")?);
                if lo > hi {
                    return Err(bad(
                        format!("{field}.min"),
                        format!("min {lo} ms > max {hi} ms"),
                    ));
                }
                Ok(Dist::Uniform(lo, hi))
            }
            "exponential" => Ok(Dist::Exponential(need(&spec.mean, "mean")?)),
            "lognormal" => {
                let m = need(&spec.median, "median")?;
                let s = spec
                    .sigma
                    .ok_or_else(|| bad(format!("{field}.sigma"), "required by dist lognormal"))?;
                if !(s.is_finite() && (0.0..=5.0).contains(&s)) {
                    return Err(bad(
                        format!("{field}.sigma"),
                        format!("{s} is not in [0, 5]"),
                    ));
                }
                Ok(Dist::LogNormal(m, s))
            }
            other => Err(bad(
                format!("{field}.dist"),
                format!(
                    "unknown distribution {other:?} (constant, uniform, exponential, lognormal)"
                ),
            )),
        }
    }
}

/// Timing of heartbeats, checks and leases.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TimingIn {
    /// Agent heartbeat period (default 2 s).
    pub heartbeat_interval: Option<DurIn>,
    /// The scheduler marks a node unhealthy after this silence (default 10 s).
    pub heartbeat_timeout: Option<DurIn>,
    /// Period of `CheckHeartbeats` (default 1 s).
    pub check_interval: Option<DurIn>,
    /// Agent lease: work stops when no heartbeat was acknowledged for this long (default 6 s).
    pub lease: Option<DurIn>,
}

/// SLO budgets (policy P6).
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SloIn {
    /// Neural budget (default 1 s).
    pub neural: Option<DurIn>,
    /// Quantum budget (default 2 s).
    pub quantum: Option<DurIn>,
    /// Hybrid budget (default neural + quantum).
    pub hybrid: Option<DurIn>,
}

/// A group of identical nodes `name-0 .. name-(count-1)`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeGroupIn {
    /// Id prefix.
    pub name: String,
    /// How many (default 1).
    pub count: Option<u32>,
    /// GPUs per node (default 0).
    pub gpus: Option<u32>,
    /// GPU model (default `A100`).
    pub gpu_model: Option<String>,
    /// CPU millicores (default 32000).
    pub cpu_milli: Option<u64>,
    /// Memory MiB (default 131072).
    pub memory_mib: Option<u64>,
    /// Region label.
    pub region: Option<String>,
}

/// A quantum provider.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderIn {
    /// Provider name.
    pub name: String,
    /// Calls served at once (default 4); more wait in FIFO order.
    pub concurrency: Option<u32>,
    /// Service time of one call.
    pub service: DistIn,
}

/// Quantum call handling.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct QuantumIn {
    /// A call to a provider that is down fails after this (default 500 ms).
    pub detection_timeout: Option<DurIn>,
    /// A provider seen failing is skipped for this long, then probed again (default 30 s).
    pub backoff: Option<DurIn>,
    /// Classical fallback (statevector simulation on the node) when every provider is down.
    pub fallback: Option<DistIn>,
}

/// One explicit job (workload `source: jobs`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobIn {
    /// Arrival time.
    pub at: DurIn,
    /// `neural`, `quantum` or `hybrid`.
    pub kind: String,
    /// Tenant (default `default`).
    pub tenant: Option<String>,
    /// Node work (neural stage) duration; ignored for `quantum`.
    pub service: Option<DurIn>,
}

/// The workload.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadIn {
    /// `seeded`, `azure` or `jobs`.
    pub source: String,
    /// seeded: mean arrivals per second (Poisson).
    pub rate_per_s: Option<f64>,
    /// seeded: weights of `neural`, `quantum`, `hybrid`.
    pub mix: Option<BTreeMap<String, f64>>,
    /// seeded/azure: tenants (chosen uniformly per job; default `[default]`).
    pub tenants: Option<Vec<String>>,
    /// seeded: neural stage duration.
    pub neural: Option<DistIn>,
    /// azure: the trace CSV (`TIMESTAMP,ContextTokens,GeneratedTokens`).
    pub path: Option<String>,
    /// azure: prefill milliseconds per context token (default 0.05).
    pub prefill_ms_per_token: Option<f64>,
    /// azure: decode milliseconds per generated token (default 8).
    pub decode_ms_per_token: Option<f64>,
    /// azure: multiplies trace inter-arrival times (default 1).
    pub time_scale: Option<f64>,
    /// azure: read at most this many rows.
    pub limit: Option<usize>,
    /// azure: share of requests that also run a quantum stage (hybrid; default 0).
    pub hybrid_share: Option<f64>,
    /// jobs: the explicit list.
    pub jobs: Option<Vec<JobIn>>,
}

/// A fault at a fixed time.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultIn {
    /// `node_crash`, `partition`, `provider_outage`, `latency_spike` or `slow_node`.
    pub kind: String,
    /// Start.
    pub at: DurIn,
    /// Target node (node faults; optional for `latency_spike` = all nodes).
    pub node: Option<String>,
    /// Target provider (`provider_outage`).
    pub provider: Option<String>,
    /// How long (all kinds but `node_crash`).
    pub duration: Option<DurIn>,
    /// `node_crash`: restart after this (absent: the node stays down).
    pub restart_after: Option<DurIn>,
    /// `latency_spike`, `slow_node`: service times are multiplied by this (≥ 1).
    pub factor: Option<f64>,
}

/// Faults generated from the seed.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomFaultsIn {
    /// The kind, as in [`FaultIn::kind`].
    pub kind: String,
    /// How many.
    pub count: u32,
    /// Candidate nodes (default: every node; `latency_spike`: global when absent).
    pub nodes: Option<Vec<String>>,
    /// Candidate providers (default: every provider).
    pub providers: Option<Vec<String>>,
    /// Duration, uniform between `min` and `max` of this distribution's bounds.
    pub duration: Option<DistIn>,
    /// `node_crash`: restart delay (absent: never restarts).
    pub restart_after: Option<DistIn>,
    /// Factor (`latency_spike`, `slow_node`).
    pub factor: Option<f64>,
    /// Start times are uniform in `[window_start, window_end)` (default the workload duration).
    pub window_start: Option<DurIn>,
    /// End of the window.
    pub window_end: Option<DurIn>,
}

/// A chaos plan as read from YAML (see `docs/chaos.md`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// Plan name (in the report).
    pub name: String,
    /// Arrivals stop after this.
    pub duration: DurIn,
    /// Extra time for in-flight work to finish (default 10 min).
    pub drain: Option<DurIn>,
    /// Agent lease fencing and epoch checks (default true).
    pub fencing: Option<bool>,
    /// Accepted jobs still unfinished this long after arrival fail with `deadline exceeded`.
    pub job_deadline: Option<DurIn>,
    /// Heartbeats, checks, lease.
    #[serde(default)]
    pub timing: TimingIn,
    /// SLO budgets.
    #[serde(default)]
    pub slo: SloIn,
    /// Node groups.
    pub fleet: Vec<NodeGroupIn>,
    /// Quantum providers, in failover order.
    #[serde(default)]
    pub providers: Vec<ProviderIn>,
    /// Quantum call handling.
    #[serde(default)]
    pub quantum: QuantumIn,
    /// Per-kind resources of one job (defaults: neural/hybrid 1 GPU, 4 cores, 16 GiB; quantum 2 cores, 4 GiB).
    #[serde(default)]
    pub resources: BTreeMap<String, Resources>,
    /// The workload.
    pub workload: WorkloadIn,
    /// Faults at fixed times.
    #[serde(default)]
    pub faults: Vec<FaultIn>,
    /// Faults generated from the seed.
    #[serde(default)]
    pub random_faults: Vec<RandomFaultsIn>,
    /// Directory relative trace paths are resolved from (set by [`Plan::from_file`]).
    #[serde(skip)]
    pub base_dir: Option<PathBuf>,
}

/// The kind of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum JobKind {
    /// Node work only.
    Neural,
    /// A quantum provider call only.
    Quantum,
    /// Node work, then a quantum call.
    Hybrid,
}

impl JobKind {
    /// The name used in plans and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Neural => "neural",
            JobKind::Quantum => "quantum",
            JobKind::Hybrid => "hybrid",
        }
    }
    fn parse(s: &str, field: &str) -> Result<Self> {
        match s {
            "neural" => Ok(JobKind::Neural),
            "quantum" => Ok(JobKind::Quantum),
            "hybrid" => Ok(JobKind::Hybrid),
            o => Err(bad(
                field,
                format!("unknown job kind {o:?} (neural, quantum, hybrid)"),
            )),
        }
    }
    /// All kinds.
    pub const ALL: [JobKind; 3] = [JobKind::Neural, JobKind::Quantum, JobKind::Hybrid];
}

/// The kind of a fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    /// The node process dies (work lost); optionally restarts.
    NodeCrash,
    /// The node keeps working but its messages do not reach the scheduler.
    Partition,
    /// A quantum provider fails every call.
    ProviderOutage,
    /// Service times multiplied, on one node or all.
    LatencySpike,
    /// One node's service times multiplied.
    SlowNode,
}

impl FaultKind {
    /// The name used in plans and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::NodeCrash => "node_crash",
            FaultKind::Partition => "partition",
            FaultKind::ProviderOutage => "provider_outage",
            FaultKind::LatencySpike => "latency_spike",
            FaultKind::SlowNode => "slow_node",
        }
    }
    fn parse(s: &str, field: &str) -> Result<Self> {
        match s {
            "node_crash" => Ok(FaultKind::NodeCrash),
            "partition" => Ok(FaultKind::Partition),
            "provider_outage" => Ok(FaultKind::ProviderOutage),
            "latency_spike" => Ok(FaultKind::LatencySpike),
            "slow_node" => Ok(FaultKind::SlowNode),
            o => Err(bad(
                field,
                format!(
                    "unknown fault kind {o:?} (node_crash, partition, provider_outage, latency_spike, slow_node)"
                ),
            )),
        }
    }
}

/// A validated fault.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    /// Kind.
    pub kind: FaultKind,
    /// Start (ms).
    pub at_ms: u64,
    /// Node index (node faults; `None` for a global latency spike).
    pub node: Option<usize>,
    /// Provider index (`provider_outage`).
    pub provider: Option<usize>,
    /// Duration (restart delay for a crash; `None`: the node stays down).
    pub duration_ms: Option<u64>,
    /// Factor (latency spike, slow node; 1 otherwise).
    pub factor: f64,
    /// Generated from the seed (`random_faults`) rather than listed.
    pub generated: bool,
}

/// A validated provider.
#[derive(Debug, Clone, PartialEq)]
pub struct Provider {
    /// Name.
    pub name: String,
    /// Concurrent calls.
    pub concurrency: u32,
    /// Service time.
    pub service: Dist,
}

/// Where jobs come from (validated).
#[derive(Debug, Clone, PartialEq)]
pub enum Workload {
    /// Poisson arrivals.
    Seeded {
        /// Mean arrivals per second.
        rate_per_s: f64,
        /// Cumulative weights in [`JobKind::ALL`] order.
        mix: [f64; 3],
        /// Tenants.
        tenants: Vec<String>,
        /// Neural stage.
        neural: Dist,
    },
    /// The Azure LLM inference trace.
    Azure {
        /// Resolved file.
        path: PathBuf,
        /// ms per context token.
        prefill_ms_per_token: f64,
        /// ms per generated token.
        decode_ms_per_token: f64,
        /// Inter-arrival multiplier.
        time_scale: f64,
        /// Row limit.
        limit: Option<usize>,
        /// Tenants.
        tenants: Vec<String>,
        /// Share of hybrid requests.
        hybrid_share: f64,
    },
    /// An explicit list: (arrival ms, kind, tenant, node work ms).
    Jobs(Vec<(u64, JobKind, String, u64)>),
}

/// A validated random-fault generator.
#[derive(Debug, Clone, PartialEq)]
pub struct RandomFaults {
    /// Kind.
    pub kind: FaultKind,
    /// Count.
    pub count: u32,
    /// Candidate node indices (empty: global, for latency spikes).
    pub nodes: Vec<usize>,
    /// Candidate provider indices.
    pub providers: Vec<usize>,
    /// Duration.
    pub duration: Option<Dist>,
    /// Restart delay.
    pub restart_after: Option<Dist>,
    /// Factor.
    pub factor: f64,
    /// Window (ms).
    pub window: (u64, u64),
}

/// A checked plan, ready to run.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidPlan {
    /// Name.
    pub name: String,
    /// Arrivals window (ms).
    pub duration_ms: u64,
    /// Drain (ms).
    pub drain_ms: u64,
    /// Fencing on.
    pub fencing: bool,
    /// Deadline (ms after arrival).
    pub job_deadline_ms: Option<u64>,
    /// Heartbeat period.
    pub heartbeat_interval_ms: u64,
    /// Heartbeat timeout.
    pub heartbeat_timeout_ms: u64,
    /// Check period.
    pub check_interval_ms: u64,
    /// Lease.
    pub lease_ms: u64,
    /// SLO budgets in [`JobKind::ALL`] order.
    pub slo_ms: [u64; 3],
    /// Nodes.
    pub nodes: Vec<NodeSpec>,
    /// Providers in failover order.
    pub providers: Vec<Provider>,
    /// Detection timeout.
    pub detection_timeout_ms: u64,
    /// Backoff.
    pub backoff_ms: u64,
    /// Fallback service time.
    pub fallback: Option<Dist>,
    /// Resources per kind in [`JobKind::ALL`] order.
    pub resources: [Resources; 3],
    /// Workload.
    pub workload: Workload,
    /// Fixed faults.
    pub faults: Vec<Fault>,
    /// Generators.
    pub random_faults: Vec<RandomFaults>,
}

impl Plan {
    /// Parses a plan from YAML text.
    ///
    /// ```
    /// let plan = atom_fabric::chaos::Plan::from_yaml(
    ///     "name: t\nduration: 1m\nfleet: [{name: gpu, count: 2, gpus: 1}]\nworkload: {source: seeded, rate_per_s: 1}\n",
    /// ).unwrap();
    /// assert_eq!(plan.validate().unwrap().nodes.len(), 2);
    /// ```
    pub fn from_yaml(text: &str) -> Result<Self> {
        serde_norway::from_str(text).map_err(|e| {
            let loc = e
                .location()
                .map(|l| format!("line {} column {}", l.line(), l.column()))
                .unwrap_or_else(|| "document".into());
            bad(loc, e.to_string())
        })
    }

    /// Reads a plan file; relative trace paths are then resolved from its directory upwards.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| FabricError::Io {
            op: "read chaos plan",
            path: path.display().to_string(),
            source,
        })?;
        let mut plan = Self::from_yaml(&text)?;
        plan.base_dir = path.parent().map(Path::to_path_buf);
        Ok(plan)
    }

    fn resolve(&self, p: &str) -> PathBuf {
        let path = PathBuf::from(p);
        if path.is_absolute() {
            return path;
        }
        if let Some(base) = &self.base_dir {
            for dir in base.ancestors() {
                let c = dir.join(&path);
                if c.exists() {
                    return c;
                }
            }
        }
        path
    }

    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<ValidPlan> {
        if self.name.trim().is_empty() {
            return Err(bad("name", "must not be empty"));
        }
        let duration_ms = self.duration.ms("duration")?;
        if duration_ms == 0 {
            return Err(bad("duration", "must be > 0"));
        }
        let opt = |d: &Option<DurIn>, field: &str, default: u64| -> Result<u64> {
            d.as_ref().map_or(Ok(default), |d| d.ms(field))
        };
        let drain_ms = opt(&self.drain, "drain", 600_000)?;
        let job_deadline_ms = match &self.job_deadline {
            Some(d) => {
                let v = d.ms("job_deadline")?;
                if v == 0 {
                    return Err(bad("job_deadline", "must be > 0"));
                }
                Some(v)
            }
            None => None,
        };
        let t = &self.timing;
        let heartbeat_interval_ms = opt(&t.heartbeat_interval, "timing.heartbeat_interval", 2_000)?;
        let heartbeat_timeout_ms = opt(&t.heartbeat_timeout, "timing.heartbeat_timeout", 10_000)?;
        let check_interval_ms = opt(&t.check_interval, "timing.check_interval", 1_000)?;
        let lease_ms = opt(&t.lease, "timing.lease", 6_000)?;
        if heartbeat_interval_ms == 0 {
            return Err(bad("timing.heartbeat_interval", "must be > 0"));
        }
        if check_interval_ms == 0 {
            return Err(bad("timing.check_interval", "must be > 0"));
        }
        if heartbeat_timeout_ms <= heartbeat_interval_ms {
            return Err(bad(
                "timing.heartbeat_timeout",
                format!(
                    "{heartbeat_timeout_ms} ms must exceed the heartbeat interval {heartbeat_interval_ms} ms"
                ),
            ));
        }
        if lease_ms <= heartbeat_interval_ms || lease_ms >= heartbeat_timeout_ms {
            return Err(bad(
                "timing.lease",
                format!(
                    "{lease_ms} ms must be longer than the heartbeat interval ({heartbeat_interval_ms} ms) and shorter than the heartbeat timeout ({heartbeat_timeout_ms} ms)"
                ),
            ));
        }
        let neural = opt(&self.slo.neural, "slo.neural", 1_000)?;
        let quantum = opt(&self.slo.quantum, "slo.quantum", 2_000)?;
        let hybrid = opt(&self.slo.hybrid, "slo.hybrid", neural + quantum)?;

        // Fleet.
        if self.fleet.is_empty() {
            return Err(bad("fleet", "needs at least one node group"));
        }
        let mut nodes = Vec::new();
        let mut ids = BTreeSet::new();
        for (i, g) in self.fleet.iter().enumerate() {
            let f = format!("fleet[{i}]");
            if g.name.is_empty() || g.name.contains(char::is_whitespace) {
                return Err(bad(format!("{f}.name"), "must be a non-empty word"));
            }
            let count = g.count.unwrap_or(1);
            if count == 0 || count > 10_000 {
                return Err(bad(
                    format!("{f}.count"),
                    format!("{count} is not in 1..=10000"),
                ));
            }
            let gpus = g.gpus.unwrap_or(0);
            if gpus > 64 {
                return Err(bad(format!("{f}.gpus"), format!("{gpus} > 64")));
            }
            let cpu = g.cpu_milli.unwrap_or(32_000);
            let mem = g.memory_mib.unwrap_or(131_072);
            for k in 0..count {
                let id = format!("{}-{k}", g.name);
                if !ids.insert(id.clone()) {
                    return Err(bad(
                        format!("{f}.name"),
                        format!("node id {id} appears twice"),
                    ));
                }
                let mut spec = NodeSpec::new(id, cpu, mem);
                if gpus > 0 {
                    spec = spec.with_gpus(
                        g.gpu_model.as_deref().unwrap_or("A100"),
                        gpus as usize,
                        40_960,
                    );
                }
                if let Some(r) = &g.region {
                    spec = spec.with_label("region", r);
                }
                nodes.push(spec);
            }
        }
        let node_idx = |name: &str, field: &str| -> Result<usize> {
            nodes
                .iter()
                .position(|n| n.id == name)
                .ok_or_else(|| bad(field, format!("node {name:?} is not in the fleet")))
        };

        // Providers.
        let mut providers = Vec::new();
        for (i, p) in self.providers.iter().enumerate() {
            let f = format!("providers[{i}]");
            if p.name.is_empty() {
                return Err(bad(format!("{f}.name"), "must not be empty"));
            }
            if providers.iter().any(|q: &Provider| q.name == p.name) {
                return Err(bad(
                    format!("{f}.name"),
                    format!("provider {} appears twice", p.name),
                ));
            }
            let concurrency = p.concurrency.unwrap_or(4);
            if concurrency == 0 {
                return Err(bad(format!("{f}.concurrency"), "must be > 0"));
            }
            providers.push(Provider {
                name: p.name.clone(),
                concurrency,
                service: p.service.validate(&format!("{f}.service"))?,
            });
        }
        let prov_idx = |name: &str, field: &str| -> Result<usize> {
            providers
                .iter()
                .position(|p| p.name == name)
                .ok_or_else(|| bad(field, format!("provider {name:?} is not in providers")))
        };
        let q = &self.quantum;
        let detection_timeout_ms = opt(&q.detection_timeout, "quantum.detection_timeout", 500)?;
        let backoff_ms = opt(&q.backoff, "quantum.backoff", 30_000)?;
        let fallback = match &q.fallback {
            Some(d) => Some(d.validate("quantum.fallback")?),
            None => None,
        };

        // Resources.
        let mut resources = [
            Resources {
                gpu: 1,
                cpu: 4_000,
                mem: 16_384,
                ..Default::default()
            },
            Resources {
                cpu: 2_000,
                mem: 4_096,
                ..Default::default()
            },
            Resources {
                gpu: 1,
                cpu: 4_000,
                mem: 16_384,
                ..Default::default()
            },
        ];
        for (k, r) in &self.resources {
            let kind = JobKind::parse(k, &format!("resources.{k}"))?;
            r.validate()
                .map_err(|e| bad(format!("resources.{k}"), e.to_string()))?;
            resources[kind as usize] = *r;
        }

        // Workload.
        let w = &self.workload;
        let tenants = match &w.tenants {
            Some(t) if t.is_empty() => return Err(bad("workload.tenants", "must not be empty")),
            Some(t) => {
                if let Some(e) = t.iter().find(|s| s.is_empty()) {
                    return Err(bad("workload.tenants", format!("empty tenant name {e:?}")));
                }
                t.clone()
            }
            None => vec!["default".to_string()],
        };
        let workload = match w.source.as_str() {
            "seeded" => {
                let rate = w
                    .rate_per_s
                    .ok_or_else(|| bad("workload.rate_per_s", "required by source seeded"))?;
                if !(rate.is_finite() && rate > 0.0 && rate <= 10_000.0) {
                    return Err(bad(
                        "workload.rate_per_s",
                        format!("{rate} is not in (0, 10000]"),
                    ));
                }
                let mut weights = [1.0, 0.0, 0.0];
                if let Some(mix) = &w.mix {
                    weights = [0.0; 3];
                    for (k, v) in mix {
                        let kind = JobKind::parse(k, &format!("workload.mix.{k}"))?;
                        if !(v.is_finite() && *v >= 0.0) {
                            return Err(bad(
                                format!("workload.mix.{k}"),
                                format!("{v} is not a non-negative weight"),
                            ));
                        }
                        weights[kind as usize] = *v;
                    }
                }
                let total: f64 = weights.iter().sum();
                if total <= 0.0 {
                    return Err(bad("workload.mix", "weights sum to 0"));
                }
                if weights[1] + weights[2] > 0.0 && providers.is_empty() && fallback.is_none() {
                    return Err(bad(
                        "providers",
                        "quantum or hybrid jobs need a provider or quantum.fallback",
                    ));
                }
                let mut cum = [0.0; 3];
                let mut acc = 0.0;
                for i in 0..3 {
                    acc += weights[i] / total;
                    cum[i] = acc;
                }
                cum[2] = 1.0;
                let neural = match &w.neural {
                    Some(d) => d.validate("workload.neural")?,
                    None => Dist::LogNormal(200, 0.5),
                };
                Workload::Seeded {
                    rate_per_s: rate,
                    mix: cum,
                    tenants,
                    neural,
                }
            }
            "azure" => {
                let p = w
                    .path
                    .as_deref()
                    .ok_or_else(|| bad("workload.path", "required by source azure"))?;
                let num = |v: Option<f64>, field: &str, default: f64| -> Result<f64> {
                    let v = v.unwrap_or(default);
                    if v.is_finite() && v >= 0.0 {
                        Ok(v)
                    } else {
                        Err(bad(field, format!("{v} is not a non-negative number")))
                    }
                };
                let time_scale = num(w.time_scale, "workload.time_scale", 1.0)?;
                let hybrid_share = num(w.hybrid_share, "workload.hybrid_share", 0.0)?;
                if hybrid_share > 1.0 {
                    return Err(bad("workload.hybrid_share", "must be at most 1"));
                }
                if hybrid_share > 0.0 && providers.is_empty() && fallback.is_none() {
                    return Err(bad(
                        "providers",
                        "hybrid jobs need a provider or quantum.fallback",
                    ));
                }
                Workload::Azure {
                    path: self.resolve(p),
                    prefill_ms_per_token: num(
                        w.prefill_ms_per_token,
                        "workload.prefill_ms_per_token",
                        0.05,
                    )?,
                    decode_ms_per_token: num(
                        w.decode_ms_per_token,
                        "workload.decode_ms_per_token",
                        8.0,
                    )?,
                    time_scale,
                    limit: w.limit,
                    tenants,
                    hybrid_share,
                }
            }
            "jobs" => {
                let jobs = w
                    .jobs
                    .as_ref()
                    .ok_or_else(|| bad("workload.jobs", "required by source jobs"))?;
                let mut out = Vec::new();
                for (i, j) in jobs.iter().enumerate() {
                    let f = format!("workload.jobs[{i}]");
                    let kind = JobKind::parse(&j.kind, &format!("{f}.kind"))?;
                    if kind != JobKind::Neural && providers.is_empty() && fallback.is_none() {
                        return Err(bad(
                            format!("{f}.kind"),
                            "quantum stages need a provider or quantum.fallback",
                        ));
                    }
                    let service = match (&j.service, kind) {
                        (Some(d), _) => d.ms(&format!("{f}.service"))?,
                        (None, JobKind::Quantum) => 0,
                        (None, _) => {
                            return Err(bad(
                                format!("{f}.service"),
                                "required for neural and hybrid jobs",
                            ));
                        }
                    };
                    out.push((
                        j.at.ms(&format!("{f}.at"))?,
                        kind,
                        j.tenant.clone().unwrap_or_else(|| "default".into()),
                        service,
                    ));
                }
                out.sort_by_key(|j| j.0);
                Workload::Jobs(out)
            }
            o => {
                return Err(bad(
                    "workload.source",
                    format!("unknown source {o:?} (seeded, azure, jobs)"),
                ));
            }
        };

        // Faults.
        let factor_of = |f: Option<f64>, kind: FaultKind, field: &str| -> Result<f64> {
            match kind {
                FaultKind::LatencySpike | FaultKind::SlowNode => {
                    let v =
                        f.ok_or_else(|| bad(field, format!("required by {}", kind.as_str())))?;
                    if !(v.is_finite() && (1.0..=1000.0).contains(&v)) {
                        return Err(bad(field, format!("{v} is not in [1, 1000]")));
                    }
                    Ok(v)
                }
                _ => {
                    if f.is_some() {
                        return Err(bad(field, format!("not used by {}", kind.as_str())));
                    }
                    Ok(1.0)
                }
            }
        };
        let mut faults = Vec::new();
        for (i, fi) in self.faults.iter().enumerate() {
            let f = format!("faults[{i}]");
            let kind = FaultKind::parse(&fi.kind, &format!("{f}.kind"))?;
            let at_ms = fi.at.ms(&format!("{f}.at"))?;
            let factor = factor_of(fi.factor, kind, &format!("{f}.factor"))?;
            let node = match (&fi.node, kind) {
                (Some(n), FaultKind::ProviderOutage) => {
                    return Err(bad(
                        format!("{f}.node"),
                        format!("provider_outage targets a provider, not node {n:?}"),
                    ));
                }
                (Some(n), _) => Some(node_idx(n, &format!("{f}.node"))?),
                (None, FaultKind::NodeCrash | FaultKind::Partition | FaultKind::SlowNode) => {
                    return Err(bad(
                        format!("{f}.node"),
                        format!("required by {}", kind.as_str()),
                    ));
                }
                (None, _) => None,
            };
            let provider = match (&fi.provider, kind) {
                (Some(p), FaultKind::ProviderOutage) => {
                    Some(prov_idx(p, &format!("{f}.provider"))?)
                }
                (None, FaultKind::ProviderOutage) => {
                    return Err(bad(format!("{f}.provider"), "required by provider_outage"));
                }
                (Some(_), _) => {
                    return Err(bad(
                        format!("{f}.provider"),
                        format!("not used by {}", kind.as_str()),
                    ));
                }
                (None, _) => None,
            };
            let duration_ms = if kind == FaultKind::NodeCrash {
                if fi.duration.is_some() {
                    return Err(bad(
                        format!("{f}.duration"),
                        "node_crash uses restart_after",
                    ));
                }
                match &fi.restart_after {
                    Some(d) => Some(d.ms(&format!("{f}.restart_after"))?),
                    None => None,
                }
            } else {
                if fi.restart_after.is_some() {
                    return Err(bad(
                        format!("{f}.restart_after"),
                        format!("not used by {}", kind.as_str()),
                    ));
                }
                let d = fi
                    .duration
                    .as_ref()
                    .ok_or_else(|| {
                        bad(
                            format!("{f}.duration"),
                            format!("required by {}", kind.as_str()),
                        )
                    })?
                    .ms(&format!("{f}.duration"))?;
                if d == 0 {
                    return Err(bad(format!("{f}.duration"), "must be > 0"));
                }
                Some(d)
            };
            faults.push(Fault {
                kind,
                at_ms,
                node,
                provider,
                duration_ms,
                factor,
                generated: false,
            });
        }
        let mut random_faults = Vec::new();
        for (i, r) in self.random_faults.iter().enumerate() {
            let f = format!("random_faults[{i}]");
            let kind = FaultKind::parse(&r.kind, &format!("{f}.kind"))?;
            if r.count > 100_000 {
                return Err(bad(format!("{f}.count"), format!("{} > 100000", r.count)));
            }
            let factor = factor_of(r.factor, kind, &format!("{f}.factor"))?;
            let nodes_of = match &r.nodes {
                Some(list) => {
                    if list.is_empty() {
                        return Err(bad(format!("{f}.nodes"), "must not be empty"));
                    }
                    list.iter()
                        .map(|n| node_idx(n, &format!("{f}.nodes")))
                        .collect::<Result<Vec<_>>>()?
                }
                None if kind == FaultKind::LatencySpike => Vec::new(),
                None => (0..nodes.len()).collect(),
            };
            let providers_of = if kind == FaultKind::ProviderOutage {
                let v = match &r.providers {
                    Some(list) => list
                        .iter()
                        .map(|p| prov_idx(p, &format!("{f}.providers")))
                        .collect::<Result<Vec<_>>>()?,
                    None => (0..providers.len()).collect(),
                };
                if v.is_empty() {
                    return Err(bad(
                        format!("{f}.providers"),
                        "provider_outage needs at least one provider",
                    ));
                }
                v
            } else {
                Vec::new()
            };
            let duration = match (&r.duration, kind) {
                (Some(_), FaultKind::NodeCrash) => {
                    return Err(bad(
                        format!("{f}.duration"),
                        "node_crash uses restart_after",
                    ));
                }
                (Some(d), _) => Some(d.validate(&format!("{f}.duration"))?),
                (None, FaultKind::NodeCrash) => None,
                (None, _) => {
                    return Err(bad(
                        format!("{f}.duration"),
                        format!("required by {}", kind.as_str()),
                    ));
                }
            };
            let restart_after = match (&r.restart_after, kind) {
                (Some(d), FaultKind::NodeCrash) => Some(d.validate(&format!("{f}.restart_after"))?),
                (Some(_), _) => {
                    return Err(bad(
                        format!("{f}.restart_after"),
                        format!("not used by {}", kind.as_str()),
                    ));
                }
                (None, _) => None,
            };
            let ws = opt(&r.window_start, &format!("{f}.window_start"), 0)?;
            let we = opt(&r.window_end, &format!("{f}.window_end"), duration_ms)?;
            if ws >= we {
                return Err(bad(
                    format!("{f}.window_end"),
                    format!("window [{ws}, {we}) ms is empty"),
                ));
            }
            random_faults.push(RandomFaults {
                kind,
                count: r.count,
                nodes: nodes_of,
                providers: providers_of,
                duration,
                restart_after,
                factor,
                window: (ws, we),
            });
        }
        Ok(ValidPlan {
            name: self.name.clone(),
            duration_ms,
            drain_ms,
            fencing: self.fencing.unwrap_or(true),
            job_deadline_ms,
            heartbeat_interval_ms,
            heartbeat_timeout_ms,
            check_interval_ms,
            lease_ms,
            slo_ms: [neural, quantum, hybrid],
            nodes,
            providers,
            detection_timeout_ms,
            backoff_ms,
            fallback,
            resources,
            workload,
            faults,
            random_faults,
        })
    }
}
