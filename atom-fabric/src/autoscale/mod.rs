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
//! **Work mode.** With `capacity_per_replica` set (a replica's slots) and observations that carry
//! the offered load (arrival rate × mean service time, in busy slots), the set is sized on work
//! instead of request counts: the stable-window mean of the offered load; ahead of a rising load
//! (fast average above `trend_ratio` × the slow one), its extrapolation over the cold start; while
//! requests wait for a slot, `queue_panic_factor` × the concurrency (queue-aware panic); a burst
//! floor of `burst_fraction` of the largest offered load of the last `burst_window_s`, so bursts
//! that recur within the window find replicas ready despite the cold start; and the peak of the
//! recommendations of the last `scale_down_delay_s` (scale down as soon as that window allows).
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
    /// Requests one replica serves at once (its slots). When set, and the observations carry the
    /// offered load, the set is sized on work instead of the concurrency target: see
    /// [`Autoscaler::decide`]. `None` keeps the concurrency-target (KPA-style) rules.
    pub capacity_per_replica: Option<f64>,
    /// Seconds from scale-up to a serving replica: how far ahead a rising load is extrapolated.
    pub cold_start_s: f64,
    /// A rising load is extrapolated when its fast average (5 s) exceeds the slow one (30 s) by
    /// this ratio.
    pub trend_ratio: f64,
    /// While requests wait for a slot (concurrency above the replicas' slots), provision for this
    /// multiple of the concurrency (queue-aware panic).
    pub queue_panic_factor: f64,
    /// Window (s) of the burst floor: the set keeps `burst_fraction` of the largest offered load
    /// seen in it, so recurring bursts shorter than a cold start find replicas ready. 0 disables.
    pub burst_window_s: f64,
    /// Fraction of the window's peak offered load the burst floor provisions for.
    pub burst_fraction: f64,
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
            capacity_per_replica: None,
            cold_start_s: 10.0,
            trend_ratio: 1.4,
            queue_panic_factor: 1.3,
            burst_window_s: 900.0,
            burst_fraction: 0.8,
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
    /// Work mode: offered load over the burst window (time, busy slots).
    peaks: VecDeque<(f64, f64)>,
    /// Work mode: fast and slow moving averages of the offered load, and their time.
    trend: Option<(f64, f64, f64)>,
    /// Work mode: recent recommendations (time, replicas), held for the scale-down delay.
    held: VecDeque<(f64, u32)>,
}

/// Time constants (s) of the fast and slow averages of the offered load (work mode).
const TREND_FAST_S: f64 = 5.0;
const TREND_SLOW_S: f64 = 30.0;

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
            peaks: VecDeque::new(),
            trend: None,
            held: VecDeque::new(),
        }
    }

    /// Work mode is on: a capacity per replica is configured and the latest observation carries
    /// the offered load.
    fn work_capacity(&self) -> Option<f64> {
        let cap = self
            .config
            .capacity_per_replica
            .filter(|c| c.is_finite() && *c > 0.0)?;
        self.window
            .back()
            .and_then(|o| o.offered_load)
            .filter(|l| l.is_finite())
            .map(|_| cap)
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
        if let Some(load) = o.offered_load.filter(|l| l.is_finite() && *l >= 0.0) {
            self.peaks.push_back((o.t, load));
            while self
                .peaks
                .front()
                .is_some_and(|f| f.0 <= o.t - self.config.burst_window_s)
            {
                self.peaks.pop_front();
            }
            self.trend = Some(match self.trend {
                None => (load, load, o.t),
                Some((fast, slow, at)) => {
                    let dt = (o.t - at).max(0.0);
                    let f = 1.0 - (-dt / TREND_FAST_S).exp();
                    let s = 1.0 - (-dt / TREND_SLOW_S).exp();
                    (fast + f * (load - fast), slow + s * (load - slow), o.t)
                }
            });
        }
    }

    /// Work mode: replicas for the offered load (busy slots), recommended at `now`.
    ///
    /// The need in slots is the largest of: the mean offered load over the stable window; when
    /// the load is rising (fast average above `trend_ratio` × the slow one), the fast average
    /// extrapolated on its trend over the cold start, plus half its square root (Poisson
    /// headroom); while requests wait for a slot (concurrency above the current replicas' slots),
    /// `queue_panic_factor` × the concurrency, or the panic-window load if larger. Replicas =
    /// ceil(need / capacity), held for the scale-down delay (the peak of the recent
    /// recommendations), and never below the burst floor: `burst_fraction` of the largest offered
    /// load of the burst window.
    fn decide_work(
        &mut self,
        now: f64,
        current: u32,
        cap: f64,
        reasons: &mut Vec<String>,
    ) -> (u32, bool) {
        let c = &self.config;
        let load_mean = |from: f64| {
            let v: Vec<f64> = self
                .window
                .iter()
                .filter(|o| o.t > from)
                .filter_map(|o| o.offered_load)
                .collect();
            (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
        };
        let stable = load_mean(now - c.stable_window_s).unwrap_or(0.0);
        let mut need = stable;
        reasons.push(format!(
            "stable window {:.0} s: mean offered load {stable:.2} busy slots",
            c.stable_window_s
        ));
        if let Some((fast, slow, _)) = self.trend
            && fast > c.trend_ratio * slow
        {
            let slope = ((fast - slow) / (TREND_SLOW_S - TREND_FAST_S)).max(0.0);
            let ahead = fast + slope * c.cold_start_s;
            let want = ahead + 0.5 * ahead.sqrt();
            if want > need {
                reasons.push(format!(
                    "load rising ({fast:.2} over {slow:.2}): {ahead:.2} busy slots in {:.0} s -> {want:.2} slots",
                    c.cold_start_s
                ));
                need = want;
            }
        }
        let concurrency = self.window.back().map_or(0.0, |o| o.concurrency);
        let queueing = concurrency > f64::from(current) * cap;
        if queueing {
            let panic_load = load_mean(now - c.panic_window_s).unwrap_or(0.0);
            let want = panic_load.max(c.queue_panic_factor * concurrency);
            if want > need {
                reasons.push(format!(
                    "requests waiting ({concurrency:.0} over {:.0} slots): panic -> {want:.2} slots",
                    f64::from(current) * cap
                ));
                need = want;
            }
        }
        let raw = (need / cap).ceil().clamp(0.0, f64::from(u32::MAX)) as u32;
        self.held.push_back((now, raw));
        while self
            .held
            .front()
            .is_some_and(|f| f.0 < now - c.scale_down_delay_s)
        {
            self.held.pop_front();
        }
        let mut desired = self.held.iter().map(|h| h.1).max().unwrap_or(raw);
        if desired > raw {
            reasons.push(format!(
                "holding the peak of the last {:.0} s: {desired} replicas",
                c.scale_down_delay_s
            ));
        }
        if c.burst_window_s > 0.0 {
            let peak = self.peaks.iter().map(|p| p.1).fold(0.0, f64::max);
            let floor = (c.burst_fraction * peak / cap)
                .ceil()
                .clamp(0.0, f64::from(u32::MAX)) as u32;
            if floor > desired {
                reasons.push(format!(
                    "burst floor: {:.0} % of the {peak:.2} busy-slot peak of the last {:.0} s -> {floor} replicas",
                    c.burst_fraction * 100.0,
                    c.burst_window_s
                ));
                desired = floor;
            }
        }
        (desired, queueing)
    }

    /// Concurrency mode (KPA's rules, with the latency term and Ray Serve's scale-down delay).
    fn decide_concurrency(
        &mut self,
        now: f64,
        current: u32,
        reasons: &mut Vec<String>,
    ) -> (u32, bool) {
        let c = &self.config;
        let target = c.target_per_replica.max(1e-9);
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
        (desired, panic)
    }

    /// Decides the replica count at `now` given `current` replicas and the tenant's remaining
    /// quota in replicas (`None` = no quota limit beyond `max_replicas`).
    pub fn decide(&mut self, now: f64, current: u32, quota_replicas: Option<u32>) -> ScaleDecision {
        let mut reasons = Vec::new();
        let (mut desired, panic) = match self.work_capacity() {
            Some(cap) => self.decide_work(now, current, cap, &mut reasons),
            None => self.decide_concurrency(now, current, &mut reasons),
        };
        let c = &self.config;
        let mut policies = Vec::new();
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

    fn work(a: &mut Autoscaler, from: u32, to: u32, conc: f64, load: f64) {
        for t in from..to {
            a.observe(Observation {
                t: f64::from(t),
                concurrency: conc,
                offered_load: Some(load),
                ..Default::default()
            });
        }
    }

    fn work_config() -> AutoscalerConfig {
        AutoscalerConfig {
            capacity_per_replica: Some(8.0),
            scale_down_delay_s: 10.0,
            ..Default::default()
        }
    }

    #[test]
    fn work_mode_sizes_on_offered_load_and_keeps_a_burst_floor_through_gaps() {
        let mut a = Autoscaler::new(work_config());
        work(&mut a, 0, 60, 20.0, 20.0);
        let d = a.decide(60.0, 3, None);
        assert_eq!(d.desired, 3, "ceil(20 / 8): {:?}", d.reasons);
        // Idle for two minutes: the stable mean is 0, but 80 % of the 20-slot peak stays ready.
        work(&mut a, 60, 180, 0.0, 0.0);
        let d = a.decide(180.0, 3, None);
        assert_eq!(d.desired, 2, "{:?}", d.reasons);
        assert!(d.reasons.iter().any(|r| r.contains("burst floor")));
        // Once the peak leaves the 900 s burst window, down to min_replicas.
        work(&mut a, 180, 1_000, 0.0, 0.0);
        assert_eq!(a.decide(1_000.0, 2, None).desired, 1);
        // Without the offered load the concurrency rules apply (target 2 per replica).
        let mut b = Autoscaler::new(work_config());
        feed(&mut b, 0, 60, 20.0);
        assert_eq!(b.decide(60.0, 3, None).desired, 10);
    }

    #[test]
    fn work_mode_panics_on_a_queue_and_scales_ahead_of_a_rising_load() {
        let mut a = Autoscaler::new(work_config());
        work(&mut a, 0, 60, 10.0, 10.0);
        // 30 requests on 2 replicas (16 slots): 1.3 x 30 = 39 slots -> 5 replicas at once.
        a.observe(Observation {
            t: 60.0,
            concurrency: 30.0,
            offered_load: Some(12.0),
            ..Default::default()
        });
        let d = a.decide(60.0, 2, None);
        assert!(d.panic, "{:?}", d.reasons);
        assert_eq!(d.desired, 5, "{:?}", d.reasons);
        // The peak is held for the 10 s delay, then the set follows the load again.
        work(&mut a, 61, 65, 10.0, 10.0);
        assert_eq!(a.decide(65.0, 5, None).desired, 5);
        work(&mut a, 65, 80, 10.0, 10.0);
        assert_eq!(a.decide(80.0, 5, None).desired, 2);

        // A load rising 1 slot/s: provisioned for where it will be after the cold start.
        let mut r = Autoscaler::new(work_config());
        work(&mut r, 0, 60, 4.0, 4.0);
        for t in 60..80 {
            let load = 4.0 + f64::from(t - 60);
            r.observe(Observation {
                t: f64::from(t),
                concurrency: load,
                offered_load: Some(load),
                ..Default::default()
            });
        }
        let d = r.decide(80.0, 4, None);
        let stable_only = ((4.0 * 40.0 + (4..24).sum::<i32>() as f64) / 60.0 / 8.0).ceil() as u32;
        assert!(
            d.desired > stable_only,
            "{} vs {stable_only}: {:?}",
            d.desired,
            d.reasons
        );
        assert!(
            d.reasons.iter().any(|r| r.contains("load rising")),
            "{:?}",
            d.reasons
        );
    }
}
