//! Prometheus metrics (`prometheus-client`) and the per tenant/model SLO check.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

use crate::error::{FabricError, Result};
use crate::event::{Event, EventKind};
use crate::model::Phase;
use crate::scheduler::Scheduler;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseTenant {
    phase: String,
    tenant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantModel {
    tenant: String,
    model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantLabel {
    tenant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResourceLabel {
    resource: String,
}

/// SLO budgets of one tenant/model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SloBudget {
    /// p95 inference latency budget (ms); P6's neural default is 1 s.
    pub latency_p95_ms: f64,
    /// p95 placement wait budget (ms).
    pub placement_wait_p95_ms: f64,
    /// Minimum share of successful inferences.
    pub availability: f64,
}

impl Default for SloBudget {
    fn default() -> Self {
        Self {
            latency_p95_ms: 1000.0,
            placement_wait_p95_ms: 5000.0,
            availability: 0.99,
        }
    }
}

/// The SLO check of one tenant/model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SloReport {
    /// Tenant.
    pub tenant: String,
    /// Model.
    pub model: String,
    /// p95 of recent inference latencies (nearest rank), if any were recorded.
    pub latency_p95_ms: Option<f64>,
    /// p95 of recent placement waits.
    pub placement_wait_p95_ms: Option<f64>,
    /// Successful share of recent inferences.
    pub availability: Option<f64>,
    /// The budgets checked.
    pub budget: SloBudget,
    /// Every budget with data is met.
    pub met: bool,
    /// The budgets missed, in words.
    pub violations: Vec<String>,
}

#[derive(Debug, Default, Clone)]
struct SloWindow {
    latency: VecDeque<f64>,
    wait: VecDeque<f64>,
    outcomes: VecDeque<bool>,
}

/// Samples kept per tenant/model and series.
pub const SLO_WINDOW: usize = 1024;

fn push<T>(q: &mut VecDeque<T>, v: T) {
    if q.len() == SLO_WINDOW {
        q.pop_front();
    }
    q.push_back(v);
}

/// The nearest-rank percentile `p` (0..=100) of the samples.
pub fn percentile(samples: impl IntoIterator<Item = f64>, p: f64) -> Option<f64> {
    let mut v: Vec<f64> = samples.into_iter().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    Some(v[rank.min(v.len()) - 1])
}

/// The scheduler's metrics registry.
///
/// ```
/// use atom_fabric::metrics::Metrics;
/// let mut m = Metrics::new();
/// m.observe_decision(0.000_05);
/// let text = m.encode().unwrap();
/// assert!(text.contains("nf_sched_decision_latency_seconds_count 1"));
/// ```
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<PhaseTenant, Counter>,
    deploys: Family<TenantModel, Counter>,
    latency: Histogram,
    queue_depth: Family<TenantLabel, Gauge>,
    allocated: Family<ResourceLabel, Gauge>,
    allocatable: Family<ResourceLabel, Gauge>,
    slo: BTreeMap<(String, String), SloWindow>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every scheduler metric.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<PhaseTenant, Counter>::default();
        let deploys = Family::<TenantModel, Counter>::default();
        let latency = Histogram::new(exponential_buckets(1e-6, 2.0, 24));
        let queue_depth = Family::<TenantLabel, Gauge>::default();
        let allocated = Family::<ResourceLabel, Gauge>::default();
        let allocatable = Family::<ResourceLabel, Gauge>::default();
        registry.register(
            "nf_sched_requests",
            "Scheduler request transitions by phase and tenant",
            requests.clone(),
        );
        registry.register(
            "nf_model_deploys",
            "Model replicas placed, by tenant and model",
            deploys.clone(),
        );
        registry.register(
            "nf_sched_decision_latency_seconds",
            "Time to decide one scheduling command",
            latency.clone(),
        );
        registry.register(
            "nf_sched_queue_depth",
            "Requests waiting per tenant queue",
            queue_depth.clone(),
        );
        registry.register("nf_sched_allocated", "Allocated resources on healthy nodes (gpu in milli-GPUs, cpu in millicores, mem in MiB)", allocated.clone());
        registry.register(
            "nf_sched_allocatable",
            "Allocatable resources on healthy nodes (same units)",
            allocatable.clone(),
        );
        Self {
            registry,
            requests,
            deploys,
            latency,
            queue_depth,
            allocated,
            allocatable,
            slo: BTreeMap::new(),
        }
    }

    /// Counts the decisions in a batch of events and records placement waits.
    pub fn observe_events(&mut self, events: &[Event]) {
        for e in events {
            let tenant = e.tenant_id.clone().unwrap_or_default();
            let phase = match &e.kind {
                EventKind::Placed { wait_ms, .. } => {
                    if let Some(model) = &e.model_id {
                        self.deploys
                            .get_or_create(&TenantModel {
                                tenant: tenant.clone(),
                                model: model.clone(),
                            })
                            .inc();
                        push(
                            &mut self
                                .slo
                                .entry((tenant.clone(), model.clone()))
                                .or_default()
                                .wait,
                            *wait_ms as f64,
                        );
                    }
                    "placed"
                }
                EventKind::Queued { .. } => "queued",
                EventKind::Rejected { .. } => "rejected",
                EventKind::Evicted { .. } => "evicted",
                EventKind::Running => "running",
                EventKind::Finished {
                    phase: Phase::Failed,
                } => "failed",
                EventKind::Finished { .. } => "completed",
                _ => continue,
            };
            self.requests
                .get_or_create(&PhaseTenant {
                    phase: phase.to_string(),
                    tenant,
                })
                .inc();
        }
    }

    /// Records how long one decision took.
    pub fn observe_decision(&mut self, seconds: f64) {
        self.latency.observe(seconds);
    }

    /// Records one inference of a tenant/model: its latency and whether it succeeded.
    pub fn record_inference(&mut self, tenant: &str, model: &str, latency_ms: f64, ok: bool) {
        let w = self
            .slo
            .entry((tenant.to_string(), model.to_string()))
            .or_default();
        push(&mut w.latency, latency_ms);
        push(&mut w.outcomes, ok);
    }

    /// Updates the gauges from the scheduler's state.
    pub fn refresh(&mut self, s: &Scheduler) {
        for t in s.tenants() {
            let depth = s.queue_depth(&t) as i64;
            self.queue_depth
                .get_or_create(&TenantLabel { tenant: t })
                .set(depth);
        }
        let (used, cap) = s.allocation();
        for (i, name) in ["gpu", "cpu", "mem", "tpu"].iter().enumerate() {
            let label = ResourceLabel {
                resource: name.to_string(),
            };
            self.allocated
                .get_or_create(&label)
                .set(used.get(i).min(i64::MAX as u64) as i64);
            self.allocatable
                .get_or_create(&label)
                .set(cap.get(i).min(i64::MAX as u64) as i64);
        }
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> Result<String> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .map_err(|_| FabricError::Metrics)?;
        Ok(out)
    }

    /// The SLO check of one tenant/model against `budget`.
    pub fn slo(&self, tenant: &str, model: &str, budget: &SloBudget) -> SloReport {
        let w = self
            .slo
            .get(&(tenant.to_string(), model.to_string()))
            .cloned()
            .unwrap_or_default();
        let latency = percentile(w.latency.iter().copied(), 95.0);
        let wait = percentile(w.wait.iter().copied(), 95.0);
        let availability = (!w.outcomes.is_empty())
            .then(|| w.outcomes.iter().filter(|&&ok| ok).count() as f64 / w.outcomes.len() as f64);
        let mut violations = Vec::new();
        if let Some(l) = latency.filter(|&l| l > budget.latency_p95_ms) {
            violations.push(format!(
                "latency p95 {l} ms above budget {} ms",
                budget.latency_p95_ms
            ));
        }
        if let Some(l) = wait.filter(|&l| l > budget.placement_wait_p95_ms) {
            violations.push(format!(
                "placement wait p95 {l} ms above budget {} ms",
                budget.placement_wait_p95_ms
            ));
        }
        if let Some(a) = availability.filter(|&a| a < budget.availability) {
            violations.push(format!(
                "availability {a} below target {}",
                budget.availability
            ));
        }
        SloReport {
            tenant: tenant.to_string(),
            model: model.to_string(),
            latency_p95_ms: latency,
            placement_wait_p95_ms: wait,
            availability,
            budget: budget.clone(),
            met: violations.is_empty(),
            violations,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentile() {
        // Nearest rank of p95 over 1..=100 is the 95th value; over 1..=10 the 10th.
        assert_eq!(percentile((1..=100).map(f64::from), 95.0), Some(95.0));
        assert_eq!(percentile((1..=10).map(f64::from), 95.0), Some(10.0));
        assert_eq!(percentile((1..=20).rev().map(f64::from), 50.0), Some(10.0));
        assert_eq!(percentile(std::iter::empty(), 95.0), None);
    }

    #[test]
    fn slo_flags_each_missed_budget() {
        let mut m = Metrics::new();
        for i in 1..=100 {
            m.record_inference("t", "m", f64::from(i) * 20.0, i <= 97);
        }
        let r = m.slo("t", "m", &SloBudget::default());
        assert_eq!(r.latency_p95_ms, Some(1900.0));
        assert_eq!(r.availability, Some(0.97));
        assert!(!r.met);
        assert_eq!(r.violations.len(), 2, "{:?}", r.violations);
        let ok = m.slo(
            "t",
            "m",
            &SloBudget {
                latency_p95_ms: 2000.0,
                placement_wait_p95_ms: 1.0,
                availability: 0.95,
            },
        );
        assert!(ok.met, "{:?}", ok.violations);
    }
}
