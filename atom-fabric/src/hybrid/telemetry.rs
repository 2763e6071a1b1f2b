//! Quantum telemetry (H.3.4): latency, queue wait, shots, width, depth, fused gates and
//! accuracy as Prometheus metrics. Labels carry tenants, stage kinds, targets and reason codes;
//! never inputs, circuits or results (P1: those appear only as SHA-256 digests, in logs and the
//! audit log).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets, linear_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    tenant: String,
    mode: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabels {
    kind: String,
    target: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantLabel {
    tenant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetLabel {
    target: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    kind: String,
    code: String,
}

type HistFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_hist() -> Histogram {
    Histogram::new(exponential_buckets(1e-5, 2.0, 22))
}

/// The hybrid agent's metrics.
///
/// ```
/// use atom_fabric::hybrid::QuantumTelemetry;
/// let t = QuantumTelemetry::new();
/// let mut reg = prometheus_client::registry::Registry::default();
/// t.register(&mut reg);
/// t.observe_circuit("local", 5, 12, 7, 100);
/// let mut text = String::new();
/// prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
/// assert!(text.contains("nf_quantum_shots_total{target=\"local\"} 100"));
/// ```
#[derive(Clone, Debug)]
pub struct QuantumTelemetry {
    jobs: Family<JobLabels, Counter>,
    stage_latency: HistFamily<StageLabels>,
    queue_wait: HistFamily<TenantLabel>,
    shots: Family<TargetLabel, Counter>,
    width: Histogram,
    depth: Histogram,
    fused: Histogram,
    tvd: Histogram,
    failovers: Family<ReasonLabels, Counter>,
    rejections: Family<ReasonLabels, Counter>,
}

impl Default for QuantumTelemetry {
    fn default() -> Self {
        Self::new()
    }
}

impl QuantumTelemetry {
    /// Fresh metrics.
    pub fn new() -> Self {
        Self {
            jobs: Family::default(),
            stage_latency: Family::new_with_constructor(latency_hist),
            queue_wait: Family::new_with_constructor(latency_hist),
            shots: Family::default(),
            width: Histogram::new(linear_buckets(2.0, 2.0, 17)),
            depth: Histogram::new(exponential_buckets(1.0, 2.0, 16)),
            fused: Histogram::new(exponential_buckets(1.0, 2.0, 16)),
            tvd: Histogram::new(exponential_buckets(1e-4, 2.0, 14)),
            failovers: Family::default(),
            rejections: Family::default(),
        }
    }

    /// Registers every metric in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "nf_hybrid_jobs",
            "Hybrid jobs finished, by tenant, mode and status",
            self.jobs.clone(),
        );
        registry.register(
            "nf_hybrid_stage_latency_seconds",
            "Stage execution time by kind and target",
            self.stage_latency.clone(),
        );
        registry.register(
            "nf_hybrid_queue_wait_seconds",
            "Time jobs waited in their tenant's queue",
            self.queue_wait.clone(),
        );
        registry.register(
            "nf_quantum_shots",
            "Shots taken, by target",
            self.shots.clone(),
        );
        registry.register(
            "nf_quantum_circuit_width",
            "Qubits of executed circuits",
            self.width.clone(),
        );
        registry.register(
            "nf_quantum_circuit_depth",
            "Depth of executed circuits",
            self.depth.clone(),
        );
        registry.register(
            "nf_quantum_fused_gates",
            "Fused operations the simulator applied per circuit",
            self.fused.clone(),
        );
        registry.register(
            "nf_quantum_tvd",
            "Total variation distance between sampled counts and exact probabilities",
            self.tvd.clone(),
        );
        registry.register(
            "nf_hybrid_failovers",
            "Failovers by stage kind and reason code",
            self.failovers.clone(),
        );
        registry.register(
            "nf_hybrid_rejections",
            "Stages refused by the router (P6 budgets, no target), by kind and code",
            self.rejections.clone(),
        );
    }

    /// A job reached a terminal state.
    pub fn job_finished(&self, tenant: &str, mode: &str, status: &str) {
        self.jobs
            .get_or_create(&JobLabels {
                tenant: tenant.into(),
                mode: mode.into(),
                status: status.into(),
            })
            .inc();
    }

    /// A job left its queue after `seconds`.
    pub fn queue_wait(&self, tenant: &str, seconds: f64) {
        self.queue_wait
            .get_or_create(&TenantLabel {
                tenant: tenant.into(),
            })
            .observe(seconds);
    }

    /// A stage ran on `target` for `seconds`.
    pub fn stage(&self, kind: &str, target: &str, seconds: f64) {
        self.stage_latency
            .get_or_create(&StageLabels {
                kind: kind.into(),
                target: target.into(),
            })
            .observe(seconds);
    }

    /// A circuit ran: its width, depth, fused operations and shots.
    pub fn observe_circuit(&self, target: &str, width: u32, depth: u64, fused: u64, shots: u64) {
        self.width.observe(f64::from(width));
        self.depth.observe(depth as f64);
        self.fused.observe(fused as f64);
        self.shots
            .get_or_create(&TargetLabel {
                target: target.into(),
            })
            .inc_by(shots);
    }

    /// The accuracy of a sampled run against the exact distribution.
    pub fn observe_tvd(&self, tvd: f64) {
        self.tvd.observe(tvd);
    }

    /// A stage failed over.
    pub fn failover(&self, kind: &str, code: &str) {
        self.failovers
            .get_or_create(&ReasonLabels {
                kind: kind.into(),
                code: code.into(),
            })
            .inc();
    }

    /// The router refused a stage.
    pub fn rejected(&self, kind: &str, code: &str) {
        self.rejections
            .get_or_create(&ReasonLabels {
                kind: kind.into(),
                code: code.into(),
            })
            .inc();
    }
}
