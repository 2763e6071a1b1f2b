//! The router: which engine and node run each stage, checked against P6 up front.
//!
//! Neural stages go to a GPU or CPU engine of a healthy node (least loaded first, GPUs before
//! CPUs); quantum stages go to the local statevector simulator or a registered provider. Before
//! anything runs, P6 is checked: statevector memory `2^n × 16 B` against each target's memory and
//! the estimated time against the budget (1 s neural, 2 s quantum). A plan that does not fit is
//! degraded (single precision halves memory and time) or rejected, always with the reason. A target
//! that fails is marked down and skipped until its retry time, when it is probed again.

use crate::cluster::{Cluster, NodeHealth};
use atom_quantum::{Precision, QuantumBackend};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Budgets and behaviour of the router (P6).
#[derive(Debug, Clone, PartialEq)]
pub struct RouterConfig {
    /// Neural stage budget (ms), P6: 1 s.
    pub neural_budget_ms: f64,
    /// Quantum stage budget (ms), P6: 2 s.
    pub quantum_budget_ms: f64,
    /// Degrade (single precision) instead of rejecting when that fits the budget.
    pub degrade: bool,
    /// A failed target is skipped for this long, then probed again (ms).
    pub retry_after_ms: u64,
}

impl Default for RouterConfig {
    fn default() -> Self {
        Self {
            neural_budget_ms: 1000.0,
            quantum_budget_ms: 2000.0,
            degrade: true,
            retry_after_ms: 30_000,
        }
    }
}

/// Kind of neural engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EngineKind {
    /// A GPU of a node (on the CPU when `GPU_DRIVER_MOCK=true`).
    Gpu,
    /// A node's CPU.
    Cpu,
}

/// A place that runs neural stages.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NeuralTarget {
    /// `node/gpu` or `node/cpu`.
    pub id: String,
    /// The node.
    pub node: String,
    /// GPU or CPU.
    pub kind: EngineKind,
    /// Stages it runs at once.
    pub slots: u32,
    /// Stages running now.
    pub in_flight: u32,
    /// Down until this time (ms), with the reason.
    pub down_until: Option<(u64, String)>,
}

/// How a quantum target runs circuits.
#[derive(Clone)]
pub enum QuantumEngine {
    /// The built-in statevector simulator (exact probabilities and expectation values).
    Simulator,
    /// A registered provider (counts only).
    Provider(Arc<dyn QuantumBackend>),
}

impl std::fmt::Debug for QuantumEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QuantumEngine::Simulator => f.write_str("Simulator"),
            QuantumEngine::Provider(b) => write!(f, "Provider({})", b.name()),
        }
    }
}

/// A place that runs quantum stages.
#[derive(Debug, Clone)]
pub struct QuantumTarget {
    /// Registered name (`local`, or the provider's).
    pub name: String,
    /// How it runs.
    pub engine: QuantumEngine,
    /// Widest circuit it accepts.
    pub max_qubits: u32,
    /// Memory for the statevector (bytes).
    pub memory_bytes: u64,
    /// Throughput estimate: amplitude updates per second in double precision.
    pub amp_updates_per_s: f64,
    /// Stages it runs at once.
    pub slots: u32,
    /// Stages running now.
    pub in_flight: u32,
    /// Down until this time (ms), with the reason.
    pub down_until: Option<(u64, String)>,
}

impl NeuralTarget {
    /// The CPU of this process (`local/cpu`), for runs without a fleet.
    pub fn in_process(slots: u32) -> Self {
        Self {
            id: "local/cpu".into(),
            node: "local".into(),
            kind: EngineKind::Cpu,
            slots,
            in_flight: 0,
            down_until: None,
        }
    }
}

impl QuantumTarget {
    /// The local simulator with the given memory limit (bytes) and throughput estimate.
    pub fn local(memory_bytes: u64, amp_updates_per_s: f64) -> Self {
        Self {
            name: "local".into(),
            engine: QuantumEngine::Simulator,
            max_qubits: 34,
            memory_bytes,
            amp_updates_per_s,
            slots: 1,
            in_flight: 0,
            down_until: None,
        }
    }

    /// A provider target.
    pub fn provider(backend: Arc<dyn QuantumBackend>, max_qubits: u32) -> Self {
        Self {
            name: backend.name().to_owned(),
            engine: QuantumEngine::Provider(backend),
            max_qubits,
            memory_bytes: u64::MAX,
            amp_updates_per_s: 1e9,
            slots: 4,
            in_flight: 0,
            down_until: None,
        }
    }
}

/// What the router knows of a circuit before running it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CircuitProfile {
    /// Qubits.
    pub width: u32,
    /// Gate and measurement operations.
    pub ops: u64,
    /// Circuit depth.
    pub depth: u64,
    /// Shots.
    pub shots: u64,
    /// Needs the statevector (expectation values of non-diagonal observables).
    pub needs_statevector: bool,
}

/// A refusal by the router, with the policy and the reason.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rejection {
    /// `P6` for budget refusals, `P7` when nothing is available.
    pub policy: atom_policy::policy::PolicyId,
    /// Machine reason code.
    pub code: String,
    /// What exactly does not fit.
    pub reason: String,
}

/// One candidate for a quantum stage.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QuantumPlan {
    /// Target name.
    pub target: String,
    /// Amplitude precision.
    #[serde(serialize_with = "precision_name")]
    pub precision: Precision,
    /// Statevector bytes.
    pub memory_bytes: u64,
    /// Estimated time (ms).
    pub estimate_ms: f64,
    /// Why the plan is degraded, if it is.
    pub degraded: Option<String>,
}

fn precision_name<S: serde::Serializer>(p: &Precision, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(match p {
        Precision::Single => "single",
        Precision::Double => "double",
    })
}

/// One candidate for a neural stage.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NeuralPlan {
    /// Engine id.
    pub target: String,
    /// Its node.
    pub node: String,
    /// GPU or CPU.
    pub kind: EngineKind,
}

/// The router.
///
/// ```
/// use atom_fabric::hybrid::{CircuitProfile, QuantumTarget, Router, RouterConfig};
/// let mut r = Router::new(RouterConfig::default());
/// r.add_quantum(QuantumTarget::local(1 << 30, 1e9));
/// let small = CircuitProfile { width: 10, ops: 40, depth: 12, shots: 100, needs_statevector: false };
/// assert_eq!(r.plan_quantum(&small, None, 0).unwrap()[0].target, "local");
/// // 2^28 amplitudes × 16 B = 4 GiB does not fit 1 GiB; single precision (2 GiB) does not either.
/// let big = CircuitProfile { width: 28, ..small };
/// let rej = r.plan_quantum(&big, None, 0).unwrap_err();
/// assert_eq!(rej.code, "p6.memory");
/// ```
#[derive(Debug, Clone)]
pub struct Router {
    config: RouterConfig,
    neural: BTreeMap<String, NeuralTarget>,
    quantum: BTreeMap<String, QuantumTarget>,
    model_ms: BTreeMap<String, f64>,
}

impl Router {
    /// A router with no targets.
    pub fn new(config: RouterConfig) -> Self {
        Self {
            config,
            neural: BTreeMap::new(),
            quantum: BTreeMap::new(),
            model_ms: BTreeMap::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &RouterConfig {
        &self.config
    }

    /// Adds or replaces a neural target.
    pub fn add_neural(&mut self, t: NeuralTarget) {
        self.neural.insert(t.id.clone(), t);
    }

    /// Adds or replaces a quantum target.
    pub fn add_quantum(&mut self, t: QuantumTarget) {
        self.quantum.insert(t.name.clone(), t);
    }

    /// Neural targets.
    pub fn neural_targets(&self) -> impl Iterator<Item = &NeuralTarget> {
        self.neural.values()
    }

    /// Quantum targets.
    pub fn quantum_targets(&self) -> impl Iterator<Item = &QuantumTarget> {
        self.quantum.values()
    }

    /// A quantum target by name.
    pub fn quantum_target(&self, name: &str) -> Option<&QuantumTarget> {
        self.quantum.get(name)
    }

    /// Mirrors the fleet: a GPU engine for each healthy node with GPUs and a CPU engine for
    /// each healthy node; engines of nodes that are gone or unhealthy are removed. In-flight
    /// counts and down marks of surviving engines are kept.
    pub fn sync_cluster(&mut self, cluster: &Cluster) {
        let mut next = BTreeMap::new();
        for node in cluster.nodes() {
            if node.health() != NodeHealth::Healthy {
                continue;
            }
            let spec = node.spec();
            let mut add = |kind: EngineKind, slots: u32| {
                let id = format!(
                    "{}/{}",
                    spec.id,
                    if kind == EngineKind::Gpu {
                        "gpu"
                    } else {
                        "cpu"
                    }
                );
                let mut t = NeuralTarget {
                    id: id.clone(),
                    node: spec.id.clone(),
                    kind,
                    slots,
                    in_flight: 0,
                    down_until: None,
                };
                if let Some(old) = self.neural.get(&id) {
                    t.in_flight = old.in_flight;
                    t.down_until = old.down_until.clone();
                }
                next.insert(id, t);
            };
            if !spec.gpus.is_empty() {
                add(
                    EngineKind::Gpu,
                    u32::try_from(spec.gpus.len()).unwrap_or(u32::MAX),
                );
            }
            add(
                EngineKind::Cpu,
                u32::try_from((spec.cpu_milli / 1000).max(1)).unwrap_or(u32::MAX),
            );
        }
        // Engines added by hand (not from the fleet, e.g. the in-process CPU) stay.
        for (id, t) in &self.neural {
            if cluster.node(&t.node).is_none() {
                next.entry(id.clone()).or_insert_with(|| t.clone());
            }
        }
        self.neural = next;
    }

    fn available(down: &Option<(u64, String)>, now_ms: u64) -> bool {
        down.as_ref().is_none_or(|(until, _)| now_ms >= *until)
    }

    /// Records an observed neural latency for a model (exponentially weighted).
    pub fn observe_model(&mut self, model: &str, ms: f64) {
        let e = self.model_ms.entry(model.to_owned()).or_insert(ms);
        *e = 0.7 * *e + 0.3 * ms;
    }

    /// The latency estimate of a model, once observed.
    pub fn model_estimate(&self, model: &str) -> Option<f64> {
        self.model_ms.get(model).copied()
    }

    /// Candidates for a neural stage, best first: available engines, GPUs before CPUs, least
    /// loaded first, ties by id. Rejects (P6) a model whose observed latency exceeds the budget.
    pub fn plan_neural(&self, model: &str, now_ms: u64) -> Result<Vec<NeuralPlan>, Rejection> {
        if let Some(ms) = self.model_estimate(model)
            && ms > self.config.neural_budget_ms
        {
            return Err(Rejection {
                policy: atom_policy::policy::PolicyId::P6,
                code: "p6.neural_budget".into(),
                reason: format!(
                    "model {model:?} takes {ms:.0} ms on average, over the {:.0} ms neural budget",
                    self.config.neural_budget_ms
                ),
            });
        }
        let mut c: Vec<&NeuralTarget> = self
            .neural
            .values()
            .filter(|t| Self::available(&t.down_until, now_ms))
            .collect();
        c.sort_by(|a, b| {
            let la = f64::from(a.in_flight) / f64::from(a.slots.max(1));
            let lb = f64::from(b.in_flight) / f64::from(b.slots.max(1));
            a.kind
                .cmp(&b.kind)
                .then(la.total_cmp(&lb))
                .then(a.id.cmp(&b.id))
        });
        if c.is_empty() {
            return Err(Rejection {
                policy: atom_policy::policy::PolicyId::P7,
                code: "no_neural_engine".into(),
                reason: "no healthy node can run a neural stage".into(),
            });
        }
        Ok(c.into_iter()
            .map(|t| NeuralPlan {
                target: t.id.clone(),
                node: t.node.clone(),
                kind: t.kind,
            })
            .collect())
    }

    /// Candidates for a quantum stage, best first (the preferred provider, then the least
    /// loaded and fastest). Each candidate passed P6 for its target (memory, time), possibly
    /// degraded to single precision. When no target fits, the rejection of the best target says
    /// why.
    pub fn plan_quantum(
        &self,
        profile: &CircuitProfile,
        preferred: Option<&str>,
        now_ms: u64,
    ) -> Result<Vec<QuantumPlan>, Rejection> {
        if let Some(p) = preferred
            && !self.quantum.contains_key(p)
        {
            return Err(Rejection {
                policy: atom_policy::policy::PolicyId::P7,
                code: "unknown_provider".into(),
                reason: format!(
                    "no quantum provider {p:?} (registered: {})",
                    self.quantum.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            });
        }
        let mut plans = Vec::new();
        let mut first_rejection: Option<Rejection> = None;
        let mut order: Vec<&QuantumTarget> = self.quantum.values().collect();
        order.sort_by(|a, b| {
            let pa = Some(a.name.as_str()) != preferred;
            let pb = Some(b.name.as_str()) != preferred;
            let la = f64::from(a.in_flight) / f64::from(a.slots.max(1));
            let lb = f64::from(b.in_flight) / f64::from(b.slots.max(1));
            pa.cmp(&pb)
                .then(la.total_cmp(&lb))
                .then(b.amp_updates_per_s.total_cmp(&a.amp_updates_per_s))
                .then(a.name.cmp(&b.name))
        });
        for t in order {
            if !Self::available(&t.down_until, now_ms) {
                continue;
            }
            match self.fit(t, profile) {
                Ok(plan) => plans.push(plan),
                Err(r) => {
                    first_rejection.get_or_insert(r);
                }
            }
        }
        if plans.is_empty() {
            return Err(first_rejection.unwrap_or(Rejection {
                policy: atom_policy::policy::PolicyId::P7,
                code: "no_quantum_target".into(),
                reason: "every quantum target is down".into(),
            }));
        }
        Ok(plans)
    }

    fn fit(&self, t: &QuantumTarget, p: &CircuitProfile) -> Result<QuantumPlan, Rejection> {
        let p6 = |code: &str, reason: String| Rejection {
            policy: atom_policy::policy::PolicyId::P6,
            code: code.into(),
            reason,
        };
        if p.width > t.max_qubits {
            return Err(p6(
                "p6.width",
                format!(
                    "{} qubits exceed {}'s {} qubits",
                    p.width, t.name, t.max_qubits
                ),
            ));
        }
        if p.needs_statevector && !matches!(t.engine, QuantumEngine::Simulator) {
            return Err(p6(
                "needs_statevector",
                format!(
                    "{} returns counts only; the observables need the statevector",
                    t.name
                ),
            ));
        }
        let amps = 2f64.powi(i32::try_from(p.width).unwrap_or(i32::MAX));
        let estimate = |bytes_per_amp: f64| {
            // Each op touches every amplitude once (fusion only lowers this); sampling is linear
            // in shots.
            let work = amps * (p.ops.max(1) as f64);
            let speed = t.amp_updates_per_s * (16.0 / bytes_per_amp);
            1e3 * (work / speed) + 1e-4 * p.shots as f64
        };
        let simulator = matches!(t.engine, QuantumEngine::Simulator);
        let double_bytes = if simulator {
            1u64.checked_shl(p.width).map(|n| n.saturating_mul(16))
        } else {
            Some(0)
        };
        let single_bytes = double_bytes.map(|b| b / 2);
        let (d_ms, s_ms) = if simulator {
            (estimate(16.0), estimate(8.0))
        } else {
            (estimate(16.0), estimate(16.0))
        };
        let double_fits = double_bytes.is_some_and(|b| b <= t.memory_bytes);
        if double_fits && d_ms <= self.config.quantum_budget_ms {
            return Ok(QuantumPlan {
                target: t.name.clone(),
                precision: Precision::Double,
                memory_bytes: double_bytes.unwrap_or(0),
                estimate_ms: d_ms,
                degraded: None,
            });
        }
        let single_fits = single_bytes.is_some_and(|b| b <= t.memory_bytes);
        if simulator && self.config.degrade && single_fits && s_ms <= self.config.quantum_budget_ms
        {
            let why = if double_fits {
                format!(
                    "estimated {d_ms:.0} ms in double precision exceeds the {:.0} ms budget",
                    self.config.quantum_budget_ms
                )
            } else {
                format!(
                    "2^{} × 16 B = {} B exceeds {} B",
                    p.width,
                    double_bytes.map_or("overflow".into(), |b| b.to_string()),
                    t.memory_bytes
                )
            };
            return Ok(QuantumPlan {
                target: t.name.clone(),
                precision: Precision::Single,
                memory_bytes: single_bytes.unwrap_or(0),
                estimate_ms: s_ms,
                degraded: Some(format!("single precision: {why}")),
            });
        }
        if !double_fits && !single_fits {
            return Err(p6(
                "p6.memory",
                format!(
                    "statevector of {} qubits needs 2^{} × 16 B = {} B; {} has {} B",
                    p.width,
                    p.width,
                    double_bytes.map_or("overflow".into(), |b| b.to_string()),
                    t.name,
                    t.memory_bytes
                ),
            ));
        }
        Err(p6(
            "p6.quantum_budget",
            format!(
                "estimated {:.0} ms on {} exceeds the {:.0} ms quantum budget",
                if self.config.degrade && simulator {
                    s_ms
                } else {
                    d_ms
                },
                t.name,
                self.config.quantum_budget_ms
            ),
        ))
    }

    /// Marks a target (neural or quantum) down until `now_ms + retry_after_ms`.
    pub fn mark_down(&mut self, target: &str, reason: &str, now_ms: u64) {
        let until = Some((now_ms + self.config.retry_after_ms, reason.to_owned()));
        if let Some(t) = self.quantum.get_mut(target) {
            t.down_until = until;
        } else if let Some(t) = self.neural.get_mut(target) {
            t.down_until = until;
        }
    }

    /// Marks a target up (it answered).
    pub fn mark_up(&mut self, target: &str) {
        if let Some(t) = self.quantum.get_mut(target) {
            t.down_until = None;
        } else if let Some(t) = self.neural.get_mut(target) {
            t.down_until = None;
        }
    }

    /// Adjusts a target's in-flight count.
    pub fn track(&mut self, target: &str, started: bool) {
        let bump = |n: &mut u32| {
            *n = if started {
                n.saturating_add(1)
            } else {
                n.saturating_sub(1)
            }
        };
        if let Some(t) = self.quantum.get_mut(target) {
            bump(&mut t.in_flight);
        } else if let Some(t) = self.neural.get_mut(target) {
            bump(&mut t.in_flight);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn profile(width: u32, ops: u64) -> CircuitProfile {
        CircuitProfile {
            width,
            ops,
            depth: ops,
            shots: 0,
            needs_statevector: false,
        }
    }

    #[test]
    fn memory_check_is_two_to_the_n_times_sixteen() {
        let mut r = Router::new(RouterConfig::default());
        // Exactly 2^20 × 16 B fits; one byte less does not (and single precision does).
        r.add_quantum(QuantumTarget::local(16 << 20, 1e12));
        let p = r.plan_quantum(&profile(20, 1), None, 0).unwrap();
        assert_eq!(p[0].precision, Precision::Double);
        assert_eq!(p[0].memory_bytes, 16 << 20);
        r.add_quantum(QuantumTarget::local((16 << 20) - 1, 1e12));
        let p = r.plan_quantum(&profile(20, 1), None, 0).unwrap();
        assert_eq!(p[0].precision, Precision::Single);
        assert!(p[0].degraded.as_deref().unwrap().contains("2^20 × 16 B"));
        let mut strict = Router::new(RouterConfig {
            degrade: false,
            ..RouterConfig::default()
        });
        strict.add_quantum(QuantumTarget::local((16 << 20) - 1, 1e12));
        assert_eq!(
            strict
                .plan_quantum(&profile(20, 1), None, 0)
                .unwrap_err()
                .code,
            "p6.quantum_budget"
        );
    }

    #[test]
    fn time_budget_degrades_then_rejects() {
        let mut r = Router::new(RouterConfig::default());
        // 2^20 amplitudes × 2000 ops / 1e9 per s = 2.1 s in double: over 2 s, single is 1.05 s.
        r.add_quantum(QuantumTarget::local(u64::MAX, 1e9));
        let p = r.plan_quantum(&profile(20, 2000), None, 0).unwrap();
        assert_eq!(p[0].precision, Precision::Single);
        assert!((p[0].estimate_ms - 1048.576).abs() < 1e-6);
        let rej = r.plan_quantum(&profile(20, 5000), None, 0).unwrap_err();
        assert_eq!(rej.code, "p6.quantum_budget");
        assert_eq!(rej.policy, atom_policy::policy::PolicyId::P6);
    }

    #[test]
    fn down_targets_are_skipped_until_retry() {
        let mut r = Router::new(RouterConfig::default());
        r.add_quantum(QuantumTarget::local(u64::MAX, 1e9));
        let mut slow = QuantumTarget::local(u64::MAX, 1e8);
        slow.name = "backup".into();
        r.add_quantum(slow);
        let names = |r: &Router, now| -> Vec<String> {
            r.plan_quantum(&profile(4, 4), None, now)
                .unwrap()
                .into_iter()
                .map(|p| p.target)
                .collect()
        };
        assert_eq!(names(&r, 0), ["local", "backup"]);
        assert_eq!(
            r.plan_quantum(&profile(4, 4), Some("backup"), 0).unwrap()[0].target,
            "backup"
        );
        r.mark_down("local", "timeout", 100);
        assert_eq!(names(&r, 200), ["backup"]);
        assert_eq!(names(&r, 100 + 30_000), ["local", "backup"]);
        r.mark_down("backup", "x", 0);
        r.mark_down("local", "x", 0);
        assert_eq!(
            r.plan_quantum(&profile(4, 4), None, 1).unwrap_err().code,
            "no_quantum_target"
        );
    }
}
