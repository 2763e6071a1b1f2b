//! The autoscaler (H.2.6): replicas per (tenant, model) from concurrency, queue depth and latency.
//!
//! Each replica set keeps a window of observations (time, in-flight + queued requests, p95
//! latency). A decision takes the KPA-style recommendation over the *stable* window (default
//! 60 s) and over the *panic* window (default 6 s); panic mode starts when the panic
//! recommendation reaches twice the current replicas (200 %), and in panic the set never scales
//! down. Beyond KPA, a p95 latency above the budget makes the set follow the panic window at once
//! (queueing shows up in latency before the averaged concurrency catches up), and a
//! scale-down happens only after the recommendation has stayed below the current count for the
//! scale-down delay (default 600 s, as Ray Serve). Decisions are clamped to `[min, max]`, to the
//! tenant's quota and to the memory budget (P6), and are dry-run by default (P3): they carry the
//! planned action and every reason, and are applied by the caller through the scheduler.
//!
//! The clock is injected: every call takes `now` in seconds.
//!
//! ```
//! use atom_fabric::autoscale::{Autoscaler, AutoscalerConfig, Observation};
//! let mut a = Autoscaler::new(AutoscalerConfig { target_per_replica: 4.0, ..Default::default() });
//! for t in 0..60 {
//!     a.observe(Observation { t: t as f64, concurrency: 20.0, ..Default::default() });
//! }
//! let d = a.decide(60.0, 1, None);
//! assert_eq!(d.desired, 5); // 20 in flight / 4 per replica
//! assert!(d.dry_run);
//! ```

pub mod controller;
pub mod feed;
pub mod prometheus;
pub mod replay;

use atom_policy::policy::{Decision, PolicyId};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// Configuration of one replica set. Omitted fields take their defaults; unknown ones are an
/// error (a misspelt `dry_run` must not pass unnoticed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AutoscalerConfig {
    /// Lower bound of replicas.
    pub min_replicas: u32,
    /// Upper bound of replicas.
    pub max_replicas: u32,
    /// Target concurrency (in-flight + queued requests) per replica.
    pub target_per_replica: f64,
    /// p95 latency budget in milliseconds (P6); `None` disables the latency term.
    pub latency_budget_ms: Option<f64>,
    /// Stable window in seconds (KPA: 60).
    pub stable_window_s: f64,
    /// Panic window in seconds (KPA: 6).
    pub panic_window_s: f64,
    /// Panic when the panic-window recommendation is at least this multiple of current (KPA: 2.0).
    pub panic_threshold: f64,
    /// Scale down only after the recommendation stayed lower for this long (Ray Serve: 600 s).
    pub scale_down_delay_s: f64,
    /// Memory one replica needs, for the P6 budget check.
    pub replica_memory_bytes: u64,
    /// Memory budget of the whole set (P6); `None` = unlimited.
    pub memory_budget_bytes: Option<u64>,
    /// Plan only (P3 default): decisions are returned, never applied by the autoscaler.
    pub dry_run: bool,
}

impl Default for AutoscalerConfig {
    fn default() -> Self {
        Self {
            min_replicas: 1,
            max_replicas: 100,
            target_per_replica: 2.0,
            latency_budget_ms: None,
            stable_window_s: 60.0,
            panic_window_s: 6.0,
            panic_threshold: 2.0,
            scale_down_delay_s: 600.0,
            replica_memory_bytes: 0,
            memory_budget_bytes: None,
            dry_run: true,
        }
    }
}

/// One observation of a replica set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    /// Time in seconds (any origin, monotonic).
    pub t: f64,
    /// Requests in flight plus queued, summed over the set's replicas.
    pub concurrency: f64,
    /// p95 latency in milliseconds over the last interval, if measured.
    pub p95_latency_ms: Option<f64>,
    /// Offered load: arrival rate × mean service time (the busy slots the workload needs, by
    /// Little's law), if measured. A backlog inflates `concurrency` but drains by itself once
    /// capacity arrives, so concurrency counts for at most 1.5× the offered load.
    #[serde(default)]
    pub offered_load: Option<f64>,
}

impl Observation {
    fn effective_concurrency(&self) -> f64 {
        match self.offered_load {
            Some(load) if load.is_finite() => self.concurrency.min(1.5 * load),
            _ => self.concurrency,
        }
    }
}

/// What the autoscaler plans.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScaleDecision {
    /// Replicas now.
    pub current: u32,
    /// Replicas wanted.
    pub desired: u32,
    /// `scale_up`, `scale_down` or `hold`.
    pub action: String,
    /// True in panic mode.
    pub panic: bool,
    /// True when the decision is only a plan (P3).
    pub dry_run: bool,
    /// Every reason that shaped the number, in order.
    pub reasons: Vec<String>,
    /// P3 (dry-run) and P6 (quota and budget) decisions.
    pub policies: Vec<Decision>,
}

/// The autoscaler of one replica set.
#[derive(Debug, Clone)]
pub struct Autoscaler {
    config: AutoscalerConfig,
    window: VecDeque<Observation>,
    panic_until: Option<f64>,
    below_since: Option<f64>,
}

fn mean_concurrency(obs: &VecDeque<Observation>, from: f64) -> Option<f64> {
    let mut n = 0usize;
    let mut sum = 0.0;
    for o in obs.iter().rev().take_while(|o| o.t >= from) {
        n += 1;
        sum += o.effective_concurrency();
    }
    (n > 0).then(|| sum / n as f64)
}

impl Autoscaler {
    /// A new autoscaler.
    pub fn new(config: AutoscalerConfig) -> Self {
        Self {
            config,
            window: VecDeque::new(),
            panic_until: None,
            below_since: None,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &AutoscalerConfig {
        &self.config
    }

    /// Records an observation (observations must come in time order; older ones are ignored).
    pub fn observe(&mut self, o: Observation) {
        if self.window.back().is_some_and(|b| o.t < b.t) || !o.concurrency.is_finite() {
            return;
        }
        self.window.push_back(o);
        let keep_from = o.t - self.config.stable_window_s.max(self.config.panic_window_s);
        while self.window.front().is_some_and(|f| f.t < keep_from) {
            self.window.pop_front();
        }
    }

    /// Decides the replica count at `now` given `current` replicas and the tenant's remaining
    /// quota in replicas (`None` = no quota limit beyond `max_replicas`).
    pub fn decide(&mut self, now: f64, current: u32, quota_replicas: Option<u32>) -> ScaleDecision {
        let c = &self.config;
        let target = c.target_per_replica.max(1e-9);
        let mut reasons = Vec::new();
        let mut policies = Vec::new();
        let stable = mean_concurrency(&self.window, now - c.stable_window_s).unwrap_or(0.0);
        let panic_avg = mean_concurrency(&self.window, now - c.panic_window_s).unwrap_or(0.0);
        let stable_want = (stable / target).ceil();
        let panic_want = (panic_avg / target).ceil();
        reasons.push(format!(
            "stable window {:.0} s: mean concurrency {stable:.2} -> {stable_want} replicas",
            c.stable_window_s
        ));
        // Panic: a burst the stable average has not caught up with yet.
        if current > 0 && panic_want >= c.panic_threshold * f64::from(current) {
            self.panic_until = Some(now + c.stable_window_s);
        }
        let panic = self.panic_until.is_some_and(|u| now < u);
        let mut want = if panic {
            reasons.push(format!(
                "panic window {:.0} s: mean concurrency {panic_avg:.2} -> {panic_want} replicas (panic mode)",
                c.panic_window_s
            ));
            stable_want.max(panic_want)
        } else {
            stable_want
        };
        // Latency above budget: queueing shows in latency before the stable average catches up,
        // so follow the panic window at once, without waiting for a 200 % burst. (Scaling on the
        // latency itself would compound while new replicas are still starting.)
        if let (Some(budget), Some(p95)) = (
            c.latency_budget_ms,
            self.window.back().and_then(|o| o.p95_latency_ms),
        ) && p95 > budget
            && panic_want > want
        {
            reasons.push(format!(
                "p95 latency {p95:.0} ms over the {budget:.0} ms budget: panic window -> {panic_want} replicas"
            ));
            want = panic_want;
        }
        let mut desired = (want.max(0.0).min(f64::from(u32::MAX))) as u32;
        // Scale down only after the recommendation stayed lower for the delay, never in panic.
        if desired < current {
            if panic {
                reasons.push("panic mode: no scale-down".into());
                desired = current;
            } else {
                let since = *self.below_since.get_or_insert(now);
                if now - since < c.scale_down_delay_s {
                    reasons.push(format!(
                        "below current for {:.0} s of the {:.0} s scale-down delay: hold",
                        now - since,
                        c.scale_down_delay_s
                    ));
                    desired = current;
                }
            }
        } else {
            self.below_since = None;
        }
        if desired < c.min_replicas {
            reasons.push(format!("clamped up to min_replicas {}", c.min_replicas));
            desired = c.min_replicas;
        }
        if desired > c.max_replicas {
            reasons.push(format!("clamped down to max_replicas {}", c.max_replicas));
            desired = c.max_replicas;
        }
        if let Some(q) = quota_replicas
            && desired > q
        {
            let reason = format!("tenant quota allows {q} replicas, {desired} wanted");
            reasons.push(reason.clone());
            policies.push(Decision::Deny {
                policy: PolicyId::P6,
                reason,
            });
            desired = q;
        }
        if let Some(budget) = c.memory_budget_bytes {
            let per = c.replica_memory_bytes.max(1);
            let fit = u32::try_from(budget / per).unwrap_or(u32::MAX);
            if desired > fit {
                let reason = format!(
                    "memory budget {budget} bytes fits {fit} replicas of {per} bytes, {desired} wanted"
                );
                reasons.push(reason.clone());
                policies.push(Decision::Deny {
                    policy: PolicyId::P6,
                    reason,
                });
                desired = fit;
            }
        }
        if policies.is_empty() {
            policies.push(Decision::Allow {
                policy: PolicyId::P6,
            });
        }
        policies.push(if c.dry_run {
            Decision::Allow {
                policy: PolicyId::P3,
            }
        } else {
            Decision::AllowInSimulation {
                policy: PolicyId::P3,
                reason: "autoscaling applied without dry-run".into(),
            }
        });
        if desired < current {
            // A scale-down restarts the delay for the next one.
            self.below_since = None;
        }
        let action = match desired.cmp(&current) {
            std::cmp::Ordering::Greater => "scale_up",
            std::cmp::Ordering::Less => "scale_down",
            std::cmp::Ordering::Equal => "hold",
        };
        ScaleDecision {
            current,
            desired,
            action: action.into(),
            panic,
            dry_run: c.dry_run,
            reasons,
            policies,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(a: &mut Autoscaler, from: u32, to: u32, conc: f64) {
        for t in from..to {
            a.observe(Observation {
                t: f64::from(t),
                concurrency: conc,
                ..Default::default()
            });
        }
    }

    #[test]
    fn stable_recommendation_is_ceil_of_concurrency_over_target() {
        let mut a = Autoscaler::new(AutoscalerConfig::default());
        feed(&mut a, 0, 60, 7.0);
        let d = a.decide(60.0, 4, None);
        assert_eq!((d.desired, d.action.as_str()), (4, "hold"));
        let mut a = Autoscaler::new(AutoscalerConfig::default());
        feed(&mut a, 0, 60, 9.0);
        assert_eq!(a.decide(60.0, 4, None).desired, 5);
    }

    #[test]
    fn burst_triggers_panic_and_blocks_scale_down() {
        let mut a = Autoscaler::new(AutoscalerConfig::default());
        feed(&mut a, 0, 54, 2.0);
        feed(&mut a, 54, 60, 40.0); // a 6 s burst: stable mean 5.8, panic mean 40
        let d = a.decide(60.0, 2, None);
        assert!(d.panic);
        assert_eq!(d.desired, 20);
        // Right after, load vanishes: still no scale-down while in panic.
        feed(&mut a, 60, 70, 0.0);
        let d = a.decide(70.0, 20, None);
        assert_eq!(d.desired, 20);
        assert!(d.reasons.iter().any(|r| r.contains("no scale-down")));
    }

    #[test]
    fn scale_down_waits_for_the_delay() {
        let cfg = AutoscalerConfig {
            scale_down_delay_s: 100.0,
            ..Default::default()
        };
        let mut a = Autoscaler::new(cfg);
        feed(&mut a, 0, 200, 2.0);
        assert_eq!(a.decide(200.0, 5, None).desired, 5);
        feed(&mut a, 200, 299, 2.0);
        assert_eq!(a.decide(299.0, 5, None).desired, 5);
        feed(&mut a, 299, 301, 2.0);
        let d = a.decide(301.0, 5, None);
        assert_eq!((d.desired, d.action.as_str()), (1, "scale_down"));
    }

    #[test]
    fn latency_over_budget_scales_up_and_quota_and_budget_clamp() {
        let cfg = AutoscalerConfig {
            latency_budget_ms: Some(500.0),
            replica_memory_bytes: 4 << 30,
            memory_budget_bytes: Some(24 << 30),
            ..Default::default()
        };
        let mut a = Autoscaler::new(cfg);
        // A rise to 10 in flight over the last 5 s: the stable mean (3.3) says 2 replicas and the
        // panic mean (8.7 -> 5 replicas) is below 200 % of 3, but p95 is over budget.
        feed(&mut a, 0, 55, 2.0);
        feed(&mut a, 55, 59, 10.0);
        a.observe(Observation {
            t: 59.0,
            concurrency: 10.0,
            p95_latency_ms: Some(1_500.0),
            ..Default::default()
        });
        let d = a.decide(60.0, 3, None);
        assert!(!d.panic);
        assert_eq!(d.desired, 5, "{:?}", d.reasons);
        let d = a.decide(60.0, 3, Some(4));
        assert_eq!(d.desired, 4);
        assert!(d.policies.iter().any(|p| !p.is_allowed()));
        feed(&mut a, 60, 66, 30.0);
        a.observe(Observation {
            t: 66.0,
            concurrency: 30.0,
            p95_latency_ms: Some(5_000.0),
            ..Default::default()
        });
        let d = a.decide(66.0, 3, None);
        assert_eq!(d.desired, 6, "24 GiB / 4 GiB: {:?}", d.reasons);
    }
}
