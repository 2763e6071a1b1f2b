//! The replica-set controller: one [`Autoscaler`] per (tenant, model), fed by the fabric's own
//! replica reports (or any [`Observation`] source, e.g. Prometheus), planning scheduler
//! [`Command`]s to reach the desired replica count.
//!
//! A set's replicas are the live (queued, placed, running) scheduler requests of its tenant,
//! model and version, counted by their replica numbers: replicas scheduled by hand count too, so
//! the controller never fights an operator. Scaling up schedules one-replica requests with
//! idempotency keys (a retried apply does not double them); scaling down releases queued
//! requests first, then the newest placed ones, never more replicas than the excess. The
//! tenant's quota (with borrowing and the cohort) caps the plan (P6). Plans are dry-run unless
//! the set's configuration says otherwise (P3); [`Controller::apply`] runs only non-dry-run
//! actions, through [`Fabric::execute_batch`] so they are journaled and their events reach the
//! outbox ([`Fabric::take_events`]) like any other command's.
//!
//! ```
//! use atom_fabric::autoscale::controller::{Controller, ReplicaSetSpec};
//! use atom_fabric::autoscale::{AutoscalerConfig, Observation};
//! use atom_fabric::{Command, NodeSpec, Resources, Scheduler, SchedulerConfig};
//!
//! let mut s = Scheduler::new(SchedulerConfig::default());
//! s.apply(Command::RegisterNode { spec: NodeSpec::new("n1", 64_000, 262_144) }, 0).unwrap();
//! let mut c = Controller::new(30_000);
//! c.add_set(ReplicaSetSpec {
//!     tenant_id: "t1".into(), model_id: "bert".into(), model_version: "v1".into(),
//!     resources: Resources { cpu: 1_000, mem: 1_024, ..Default::default() },
//!     config: AutoscalerConfig { target_per_replica: 4.0, ..Default::default() },
//! }).unwrap();
//! for t in 0..60 {
//!     c.observe("t1", "bert", Observation { t: f64::from(t), concurrency: 10.0, ..Default::default() });
//! }
//! let plan = c.plan(&s, 60_000);
//! assert_eq!((plan[0].decision.current, plan[0].decision.desired), (0, 3)); // ceil(10 / 4)
//! assert_eq!(plan[0].commands.len(), 3);
//! assert!(plan[0].decision.dry_run); // P3: planned, not applied
//! ```

use super::feed::{ReplicaFeed, ReplicaReport};
use super::prometheus::{PromClient, PromError};
use super::{Autoscaler, AutoscalerConfig, Observation, ScaleDecision};
use crate::error::{FabricError, Result};
use crate::model::{Phase, RequestStatus, Resources, ScheduleRequest};
use crate::scheduler::{Command, Outcome, Scheduler};
use crate::store::{Fabric, Store};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A replica set to autoscale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicaSetSpec {
    /// Owner tenant.
    pub tenant_id: String,
    /// Model id.
    pub model_id: String,
    /// Model version the new replicas serve.
    pub model_version: String,
    /// Resources of one replica.
    pub resources: Resources,
    /// Bounds, targets, windows, budgets and dry-run.
    #[serde(default)]
    pub config: AutoscalerConfig,
}

/// One set's plan: the decision with its reasons and the commands that carry it out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedAction {
    /// Owner tenant.
    pub tenant_id: String,
    /// Model id.
    pub model_id: String,
    /// The autoscaler's decision (current, desired, reasons, P3/P6 decisions).
    pub decision: ScaleDecision,
    /// Scheduler commands that reach `desired` (run by [`Controller::apply`] unless dry-run).
    pub commands: Vec<Command>,
}

/// What [`Controller::apply`] did for one action.
#[derive(Debug)]
pub struct Applied {
    /// Owner tenant.
    pub tenant_id: String,
    /// Model id.
    pub model_id: String,
    /// The commands' outcomes, in order.
    pub outcomes: Vec<Result<Outcome>>,
}

#[derive(Debug, Clone)]
struct SetState {
    spec: ReplicaSetSpec,
    scaler: Autoscaler,
}

/// Autoscales replica sets through the scheduler.
#[derive(Debug, Clone)]
pub struct Controller {
    sets: BTreeMap<(String, String), SetState>,
    feed: ReplicaFeed,
}

/// Most replicas one set may ask for at once (bounds the quota search and the command list).
const MAX_STEP: u32 = 1_000;

impl Controller {
    /// A controller whose replica feed ignores reports older than `stale_after_ms`.
    pub fn new(stale_after_ms: u64) -> Self {
        Self {
            sets: BTreeMap::new(),
            feed: ReplicaFeed::new(stale_after_ms),
        }
    }

    /// Adds (or replaces) the set of `spec.tenant_id` / `spec.model_id`.
    pub fn add_set(&mut self, spec: ReplicaSetSpec) -> Result<()> {
        let c = &spec.config;
        let bad = |why: String| Err(FabricError::InvalidInput(format!("replica set: {why}")));
        if spec.tenant_id.is_empty() || spec.model_id.is_empty() || spec.model_version.is_empty() {
            return bad("tenant_id, model_id and model_version must not be empty".into());
        }
        if c.min_replicas > c.max_replicas {
            return bad(format!(
                "min_replicas {} exceeds max_replicas {}",
                c.min_replicas, c.max_replicas
            ));
        }
        if !(c.target_per_replica.is_finite() && c.target_per_replica > 0.0) {
            return bad("target_per_replica must be a positive number".into());
        }
        for (name, v) in [
            ("stable_window_s", c.stable_window_s),
            ("panic_window_s", c.panic_window_s),
            ("panic_threshold", c.panic_threshold),
            ("scale_down_delay_s", c.scale_down_delay_s),
            ("cold_start_s", c.cold_start_s),
            ("trend_ratio", c.trend_ratio),
            ("queue_panic_factor", c.queue_panic_factor),
            ("burst_window_s", c.burst_window_s),
            ("burst_fraction", c.burst_fraction),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return bad(format!("{name} must be a finite, non-negative number"));
            }
        }
        if let Some(cap) = c.capacity_per_replica
            && !(cap.is_finite() && cap > 0.0)
        {
            return bad("capacity_per_replica must be a positive number".into());
        }
        spec.resources.validate()?;
        let key = (spec.tenant_id.clone(), spec.model_id.clone());
        let scaler = Autoscaler::new(spec.config.clone());
        self.sets.insert(key, SetState { spec, scaler });
        Ok(())
    }

    /// Removes a set (its replicas stay; they are ordinary requests).
    pub fn remove_set(&mut self, tenant_id: &str, model_id: &str) -> bool {
        self.sets
            .remove(&(tenant_id.to_owned(), model_id.to_owned()))
            .is_some()
    }

    /// The sets, in (tenant, model) order.
    pub fn sets(&self) -> impl Iterator<Item = &ReplicaSetSpec> {
        self.sets.values().map(|s| &s.spec)
    }

    /// Records a node agent's report (the fabric's own metrics path).
    pub fn ingest(&mut self, report: ReplicaReport) -> Result<()> {
        self.feed.ingest(report)
    }

    /// Records an observation from another source (e.g. a Prometheus query).
    pub fn observe(&mut self, tenant_id: &str, model_id: &str, o: Observation) {
        if let Some(s) = self
            .sets
            .get_mut(&(tenant_id.to_owned(), model_id.to_owned()))
        {
            s.scaler.observe(o);
        }
    }

    /// Reads every set's inputs from Prometheus (`PROM_URL`) with [`prometheus_queries`]; the
    /// sets whose queries failed are returned with the error (their autoscalers get nothing).
    pub fn observe_prometheus(
        &mut self,
        client: &PromClient,
        now_ms: u64,
    ) -> Vec<(String, String, PromError)> {
        let mut failed = Vec::new();
        for ((tenant, model), set) in &mut self.sets {
            let (conc, p95) = prometheus_queries(tenant, model);
            match client.observe(now_ms as f64 / 1e3, &conc, Some(&p95)) {
                Ok(o) => set.scaler.observe(o),
                Err(e) => failed.push((tenant.clone(), model.clone(), e)),
            }
        }
        failed
    }

    /// Plans every set at `now_ms`: folds in the replica feed's observation, decides, and lists
    /// the commands. Pure with respect to the scheduler (it only reads it).
    pub fn plan(&mut self, scheduler: &Scheduler, now_ms: u64) -> Vec<PlannedAction> {
        let mut out = Vec::with_capacity(self.sets.len());
        for ((tenant, model), set) in &mut self.sets {
            if let Some(o) = self.feed.observation(tenant, model, now_ms) {
                set.scaler.observe(o);
            }
            let live: Vec<RequestStatus> = scheduler
                .requests_of(tenant)
                .into_iter()
                .filter(|r| {
                    r.model_id == *model
                        && r.model_version == set.spec.model_version
                        && matches!(r.phase, Phase::Queued | Phase::Placed | Phase::Running)
                })
                .collect();
            let current: u32 = live.iter().map(|r| r.replicas).sum();
            let placed: u32 = live
                .iter()
                .filter(|r| r.phase != Phase::Queued)
                .map(|r| r.replicas)
                .sum();
            let headroom = scheduler.quota_headroom(tenant, &set.spec.resources, MAX_STEP);
            let quota_replicas = placed.saturating_add(headroom);
            let decision = set
                .scaler
                .decide(now_ms as f64 / 1e3, current, Some(quota_replicas));
            let commands = commands_for(&set.spec, &live, &decision, now_ms);
            out.push(PlannedAction {
                tenant_id: tenant.clone(),
                model_id: model.clone(),
                decision,
                commands,
            });
        }
        out
    }

    /// Runs the non-dry-run actions through `fabric` (journaled; the placements and releases are
    /// scheduler events in its outbox). Dry-run actions are skipped.
    pub fn apply<S: Store>(
        fabric: &mut Fabric<S>,
        actions: &[PlannedAction],
    ) -> Result<Vec<Applied>> {
        let mut done = Vec::new();
        for a in actions {
            if a.decision.dry_run || a.commands.is_empty() {
                continue;
            }
            let outcomes = fabric.execute_batch(a.commands.clone())?;
            done.push(Applied {
                tenant_id: a.tenant_id.clone(),
                model_id: a.model_id.clone(),
                outcomes,
            });
        }
        Ok(done)
    }
}

/// The PromQL for a set's inputs over the node agents' metrics: concurrency (requests in flight on
/// the set's replicas) and p95 latency in seconds over the last minute.
pub fn prometheus_queries(tenant_id: &str, model_id: &str) -> (String, String) {
    // Label values are PromQL strings: escape backslashes and quotes.
    let esc = |v: &str| v.replace('\\', "\\\\").replace('"', "\\\"");
    let sel = format!("tenant=\"{}\",model=\"{}\"", esc(tenant_id), esc(model_id));
    (
        format!("sum(nf_replica_queue_depth{{{sel}}})"),
        format!(
            "histogram_quantile(0.95, sum by (le) (rate(nf_replica_latency_seconds_bucket{{{sel}}}[1m])))"
        ),
    )
}

fn commands_for(
    spec: &ReplicaSetSpec,
    live: &[RequestStatus],
    d: &ScaleDecision,
    now_ms: u64,
) -> Vec<Command> {
    if d.desired > d.current {
        let add = (d.desired - d.current).min(MAX_STEP);
        (0..add)
            .map(|i| {
                let mut req = ScheduleRequest::new(
                    &spec.tenant_id,
                    &spec.model_id,
                    &spec.model_version,
                    spec.resources,
                );
                req.idempotency_key = Some(format!(
                    "autoscale/{}/{}/{now_ms}/{i}",
                    spec.model_id, spec.model_version
                ));
                Command::Schedule { request: req }
            })
            .collect()
    } else if d.desired < d.current {
        // Queued first (they free nothing running), then the newest placed.
        let mut order: Vec<&RequestStatus> = live.iter().collect();
        order.sort_by_key(|r| (r.phase != Phase::Queued, std::cmp::Reverse(r.id.0)));
        let mut excess = d.current - d.desired;
        let mut cmds = Vec::new();
        for r in order {
            if excess == 0 {
                break;
            }
            if r.replicas <= excess {
                excess -= r.replicas;
                cmds.push(Command::Release {
                    tenant_id: spec.tenant_id.clone(),
                    request: r.id,
                });
            }
        }
        cmds
    } else {
        Vec::new()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::model::NodeSpec;
    use crate::quota::Quota;
    use crate::scheduler::SchedulerConfig;
    use crate::store::{ManualClock, MemoryStore};
    use proptest::prelude::*;

    fn spec(dry_run: bool) -> ReplicaSetSpec {
        ReplicaSetSpec {
            tenant_id: "t1".into(),
            model_id: "bert".into(),
            model_version: "v1".into(),
            resources: Resources {
                gpu: 1,
                cpu: 1_000,
                mem: 1_024,
                ..Default::default()
            },
            config: AutoscalerConfig {
                target_per_replica: 2.0,
                scale_down_delay_s: 30.0,
                dry_run,
                ..Default::default()
            },
        }
    }

    fn fabric(gpus_per_node: usize, nodes: u32) -> Fabric<MemoryStore> {
        let mut f = Fabric::open(
            SchedulerConfig {
                max_tenant_gpus: 100,
                ..Default::default()
            },
            MemoryStore::default(),
            Box::new(ManualClock::new(0)),
        )
        .unwrap();
        for n in 0..nodes {
            f.execute(Command::RegisterNode {
                spec: NodeSpec::new(format!("n{n}"), 64_000, 262_144).with_gpus(
                    "T4",
                    gpus_per_node,
                    16_384,
                ),
            })
            .unwrap();
        }
        f
    }

    fn feed(c: &mut Controller, from: u32, to: u32, conc: f64) {
        for t in from..to {
            c.observe(
                "t1",
                "bert",
                Observation {
                    t: f64::from(t),
                    concurrency: conc,
                    ..Default::default()
                },
            );
        }
    }

    fn live_replicas(f: &Fabric<MemoryStore>) -> u32 {
        f.scheduler()
            .requests_of("t1")
            .iter()
            .filter(|r| matches!(r.phase, Phase::Placed | Phase::Running | Phase::Queued))
            .map(|r| r.replicas)
            .sum()
    }

    #[test]
    fn scales_up_and_down_through_the_scheduler_and_counts_hand_placed_replicas() {
        let mut f = fabric(4, 2);
        // An operator placed 2 replicas by hand: they count.
        f.execute(Command::Schedule {
            request: ScheduleRequest::new("t1", "bert", "v1", spec(false).resources)
                .with_replicas(2),
        })
        .unwrap();
        let mut c = Controller::new(30_000);
        c.add_set(spec(false)).unwrap();
        feed(&mut c, 0, 60, 9.0); // ceil(9 / 2) = 5
        let plan = c.plan(f.scheduler(), 60_000);
        assert_eq!((plan[0].decision.current, plan[0].decision.desired), (2, 5));
        let applied = Controller::apply(&mut f, &plan).unwrap();
        assert_eq!(applied[0].outcomes.len(), 3);
        assert!(
            applied[0]
                .outcomes
                .iter()
                .all(|o| matches!(o, Ok(Outcome::Placed { .. })))
        );
        assert_eq!(live_replicas(&f), 5);
        // Applying the same plan again (a retry) places nothing new: idempotency keys.
        Controller::apply(&mut f, &plan).unwrap();
        assert_eq!(live_replicas(&f), 5);
        // Load falls to 2: after the 30 s delay, down to 1 replica; the hand-placed pair (one
        // request of 2) goes only if the excess covers it.
        feed(&mut c, 60, 200, 2.0);
        assert_eq!(c.plan(f.scheduler(), 120_000)[0].decision.desired, 5); // delay starts
        let plan = c.plan(f.scheduler(), 200_000);
        assert_eq!(plan[0].decision.desired, 1);
        Controller::apply(&mut f, &plan).unwrap();
        // Excess 4: the three autoscaled singles go (newest first), the pair cannot split.
        assert_eq!(live_replicas(&f), 2);
        f.scheduler().check_invariants().unwrap();
    }

    #[test]
    fn dry_run_plans_without_touching_the_scheduler() {
        let mut f = fabric(4, 1);
        let mut c = Controller::new(30_000);
        c.add_set(spec(true)).unwrap();
        feed(&mut c, 0, 60, 6.0);
        let before = f.scheduler().state_digest().unwrap();
        let plan = c.plan(f.scheduler(), 60_000);
        assert_eq!(plan[0].commands.len(), 3);
        assert!(Controller::apply(&mut f, &plan).unwrap().is_empty());
        assert_eq!(f.scheduler().state_digest().unwrap(), before);
    }

    #[test]
    fn quota_caps_the_plan_with_a_p6_reason() {
        let mut f = fabric(8, 1);
        f.execute(Command::SetQuota {
            tenant_id: "t1".into(),
            quota: Quota::gpus(3),
        })
        .unwrap();
        let mut c = Controller::new(30_000);
        c.add_set(spec(false)).unwrap();
        feed(&mut c, 0, 60, 20.0); // wants 10
        let plan = c.plan(f.scheduler(), 60_000);
        assert_eq!(
            plan[0].decision.desired, 3,
            "{:?}",
            plan[0].decision.reasons
        );
        assert!(plan[0].decision.policies.iter().any(|p| !p.is_allowed()));
        Controller::apply(&mut f, &plan).unwrap();
        assert_eq!(live_replicas(&f), 3);
    }

    #[test]
    fn replica_reports_drive_the_plan() {
        let f = fabric(8, 1);
        let mut c = Controller::new(30_000);
        c.add_set(spec(true)).unwrap();
        let mut agent_report = |at_ms: u64, total: u64, in_flight: u64| ReplicaReport {
            node: "n0".into(),
            replica_id: "1-0".into(),
            request_id: crate::model::RequestId(1),
            tenant_id: "t1".into(),
            model_id: "bert".into(),
            model_version: "v1".into(),
            at_ms,
            requests_total: total,
            latency_sum_ms: total as f64 * 50.0,
            latency_buckets: super::super::feed::LATENCY_BOUNDS_MS
                .iter()
                .map(|&b| if b >= 50.0 { total } else { 0 })
                .chain([total])
                .collect(),
            in_flight,
        };
        for s in 0..60u64 {
            c.ingest(agent_report(s * 1_000, s * 100, 8)).unwrap();
            c.plan(f.scheduler(), s * 1_000);
        }
        // 100/s of 50 ms = 5 busy slots; 8 in flight counts for at most 1.5 x 5 = 7.5 -> 4.
        let plan = c.plan(f.scheduler(), 60_000);
        assert_eq!(
            plan[0].decision.desired, 4,
            "{:?}",
            plan[0].decision.reasons
        );
        let _ = &mut agent_report;
    }

    #[test]
    fn work_mode_sizes_the_set_on_offered_load_through_the_controller() {
        let mut f = fabric(8, 1);
        // Three replicas placed by hand: their 12 slots hold the 10 in flight (no queue).
        f.execute(Command::Schedule {
            request: ScheduleRequest::new("t1", "bert", "v1", spec(false).resources)
                .with_replicas(3),
        })
        .unwrap();
        let mut c = Controller::new(30_000);
        let mut s = spec(true);
        s.config.capacity_per_replica = Some(4.0);
        s.config.scale_down_delay_s = 10.0;
        c.add_set(s).unwrap();
        // 10 busy slots offered, 10 in flight: ceil(10 / 4) = 3 replicas, whatever the
        // concurrency target (2 per replica would say 5).
        for t in 0..60 {
            c.observe(
                "t1",
                "bert",
                Observation {
                    t: f64::from(t),
                    concurrency: 10.0,
                    offered_load: Some(10.0),
                    ..Default::default()
                },
            );
        }
        let plan = c.plan(f.scheduler(), 60_000);
        let d = &plan[0].decision;
        assert_eq!((d.current, d.desired), (3, 3), "{:?}", d.reasons);
        assert!(plan[0].commands.is_empty());
    }

    #[test]
    fn bad_sets_are_refused() {
        let mut c = Controller::new(1);
        let mut s = spec(true);
        s.config.min_replicas = 5;
        s.config.max_replicas = 2;
        assert!(matches!(c.add_set(s), Err(FabricError::InvalidInput(_))));
        let mut s = spec(true);
        s.config.target_per_replica = 0.0;
        assert!(c.add_set(s).is_err());
        let mut s = spec(true);
        s.resources.gpu_milli = 5_000;
        assert!(c.add_set(s).is_err());
        let mut s = spec(true);
        s.config.capacity_per_replica = Some(0.0);
        assert!(c.add_set(s).is_err());
        let mut s = spec(true);
        s.config.burst_fraction = f64::NAN;
        assert!(c.add_set(s).is_err());
        assert_eq!(c.sets().count(), 0);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// Whatever the load, applied plans stay within [min, max] or the quota, never
        /// over-commit a node, and only ever touch the set's own tenant.
        #[test]
        fn applied_plans_respect_bounds_quota_and_tenants(
            loads in proptest::collection::vec(0.0f64..40.0, 1..12),
            quota in 1u64..12,
            max in 1u32..15,
        ) {
            let mut f = fabric(4, 2);
            f.execute(Command::SetQuota { tenant_id: "t1".into(), quota: Quota::gpus(quota) }).unwrap();
            f.execute(Command::Schedule {
                request: ScheduleRequest::new("t2", "bert", "v1", spec(false).resources),
            }).unwrap();
            let mut c = Controller::new(30_000);
            let mut s = spec(false);
            s.config.max_replicas = max;
            s.config.scale_down_delay_s = 0.0;
            c.add_set(s).unwrap();
            let mut t = 0u32;
            for load in loads {
                feed(&mut c, t, t + 30, load);
                t += 30;
                let plan = c.plan(f.scheduler(), u64::from(t) * 1_000);
                Controller::apply(&mut f, &plan).unwrap();
                let placed: u32 = f.scheduler().requests_of("t1").iter()
                    .filter(|r| matches!(r.phase, Phase::Placed | Phase::Running))
                    .map(|r| r.replicas).sum();
                prop_assert!(placed <= max.max(1));
                prop_assert!(u64::from(placed) <= quota);
                prop_assert!(f.scheduler().check_invariants().is_ok());
                prop_assert_eq!(f.scheduler().requests_of("t2").len(), 1);
            }
        }
    }
}
