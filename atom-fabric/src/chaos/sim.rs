//! The discrete-event engine: node agents, quantum providers and a coordinator around the real
//! [`Scheduler`], over virtual time.
//!
//! Everything the scheduler learns comes through [`Command`]s stamped with virtual time, and
//! everything the coordinator learns from the scheduler comes from its events
//! ([`Scheduler::take_events`]). Events at the same instant run in a fixed order (fault ends,
//! heartbeats, fault starts, heartbeat checks, work completions, lease expiries, arrivals,
//! deadlines), then in insertion order, so a run is a pure function of plan and seed.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, VecDeque};

use super::plan::{Fault, FaultKind, JobKind, ValidPlan};
use super::report::{
    FailoverStats, FaultRow, KindStats, ProviderRow, Report, SchedulerStats, percentile,
};
use super::workload::{JobSpec, generate, sample};
use crate::error::Result;
use crate::event::{EventKind, EvictReason};
use crate::model::{Phase, RequestId, ScheduleRequest};
use crate::scheduler::{Command, Outcome, Scheduler, SchedulerConfig};

/// Options of a run that are not part of the plan.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Call [`Scheduler::check_invariants`] after every event (slow; for tests).
    pub check_invariants: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    FaultEnd(usize),
    Heartbeat(usize, u64),
    FaultStart(usize),
    Check,
    StageDone(u64, u64),
    ProviderDone(u64),
    ProviderFail(u64),
    LeaseExpiry(usize, u64),
    Arrival(usize),
    Deadline(usize),
}

impl Ev {
    fn order(&self) -> u8 {
        match self {
            Ev::FaultEnd(_) => 0,
            Ev::Heartbeat(..) => 1,
            Ev::FaultStart(_) => 2,
            Ev::Check => 3,
            Ev::StageDone(..) | Ev::ProviderDone(_) | Ev::ProviderFail(_) => 4,
            Ev::LeaseExpiry(..) => 5,
            Ev::Arrival(_) => 6,
            Ev::Deadline(_) => 7,
        }
    }
}

#[derive(Debug, Default)]
struct NodeSim {
    crashes: u32,
    partitions: u32,
    hb_gen: u64,
    ack_seq: u64,
    runs: BTreeSet<u64>,
    outbox: Vec<RunResult>,
    assigned: BTreeSet<usize>,
    loss_fault: Option<usize>,
    slow: Vec<(usize, f64)>,
}

impl NodeSim {
    fn alive(&self) -> bool {
        self.crashes == 0
    }
    fn reachable(&self) -> bool {
        self.crashes == 0 && self.partitions == 0
    }
}

#[derive(Debug, Clone, Copy)]
enum Stage {
    Node(u64),
    Quantum,
}

#[derive(Debug, Clone, Copy)]
enum Cur {
    Idle,
    Working {
        remaining: f64,
        since: u64,
        factor: f64,
    },
    Calling(u64),
}

#[derive(Debug)]
struct Run {
    job: usize,
    epoch: u64,
    node: usize,
    stages: VecDeque<Stage>,
    cur: Cur,
    generation: u64,
    started: u64,
}

#[derive(Debug, Clone, Copy)]
struct RunResult {
    job: usize,
    epoch: u64,
    node: usize,
    work_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum CallState {
    Waiting,
    Serving,
    Failing,
}

#[derive(Debug)]
struct Call {
    run: u64,
    provider: usize,
    submitted: u64,
    state: CallState,
}

#[derive(Debug, Default)]
struct ProvSim {
    outages: u32,
    outage_fault: Option<usize>,
    outage_start: u64,
    serving: BTreeSet<u64>,
    waiting: VecDeque<u64>,
    known_down_until: u64,
    stats: ProviderRow,
}

#[derive(Debug)]
struct JobSim {
    spec: JobSpec,
    req: Option<u64>,
    epoch: u64,
    assigned: Option<usize>,
    run: Option<u64>,
    runs: BTreeSet<u64>,
    accepted_results: u32,
    end: Option<(u64, std::result::Result<(), String>)>,
    affected: Option<(usize, u64)>,
}

#[derive(Debug, Default)]
struct FaultStats {
    affected: u64,
    samples: Vec<u64>,
    unrecovered: u64,
}

struct Sim<'p> {
    plan: &'p ValidPlan,
    opts: RunOptions,
    sched: Scheduler,
    now: u64,
    seq: u64,
    heap: BinaryHeap<Reverse<(u64, u8, u64, Ev)>>,
    nodes: Vec<NodeSim>,
    node_by_id: HashMap<String, usize>,
    global_slow: Vec<(usize, f64)>,
    jobs: Vec<JobSim>,
    req_to_job: HashMap<u64, usize>,
    runs: BTreeMap<u64, Run>,
    next_run: u64,
    calls: BTreeMap<u64, Call>,
    next_call: u64,
    providers: Vec<ProvSim>,
    faults: Vec<Fault>,
    fstats: Vec<FaultStats>,
    rng: ChaCha8Rng,
    pending: Vec<usize>,
    stats: SchedulerStats,
    rejected: BTreeMap<String, u64>,
    fenced_runs: u64,
    discarded: u64,
    killed: u64,
    wasted_ms: u64,
    fallbacks: u64,
    arrived: usize,
    violation: Option<String>,
}

fn stream(seed: u64, n: u64) -> ChaCha8Rng {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    r.set_stream(n);
    r
}

/// Generates the plan's random faults from `seed` and merges them with the fixed ones, by time.
pub fn fault_schedule(plan: &ValidPlan, seed: u64) -> Vec<Fault> {
    let mut rng = stream(seed, 2);
    let mut out: Vec<Fault> = plan.faults.clone();
    for r in &plan.random_faults {
        for _ in 0..r.count {
            let at_ms = rng.gen_range(r.window.0..r.window.1);
            let node = if r.nodes.is_empty() {
                None
            } else {
                Some(r.nodes[rng.gen_range(0..r.nodes.len())])
            };
            let provider = if r.providers.is_empty() {
                None
            } else {
                Some(r.providers[rng.gen_range(0..r.providers.len())])
            };
            let duration_ms = match r.kind {
                FaultKind::NodeCrash => {
                    r.restart_after.as_ref().map(|d| sample(d, &mut rng).max(1))
                }
                _ => r.duration.as_ref().map(|d| sample(d, &mut rng).max(1)),
            };
            out.push(Fault {
                kind: r.kind,
                at_ms,
                node,
                provider,
                duration_ms,
                factor: r.factor,
                generated: true,
            });
        }
    }
    out.sort_by_key(|f| f.at_ms);
    out
}

/// Runs a validated plan with a seed and returns the report.
///
/// ```
/// use atom_fabric::chaos::{Plan, RunOptions, run};
/// let plan = Plan::from_yaml(
///     "name: t\nduration: 2m\nfleet: [{name: gpu, count: 2, gpus: 2}]\n\
///      workload: {source: seeded, rate_per_s: 1}\n\
///      faults: [{kind: node_crash, node: gpu-0, at: 30s, restart_after: 20s}]\n",
/// ).unwrap().validate().unwrap();
/// let report = run(&plan, 7, &RunOptions::default()).unwrap();
/// assert_eq!(report.lost_work, 0);
/// assert_eq!(report.duplicate_executions, 0);
/// ```
pub fn run(plan: &ValidPlan, seed: u64, opts: &RunOptions) -> Result<Report> {
    let wall = std::time::Instant::now();
    let specs = generate(&plan.workload, plan.duration_ms, &mut stream(seed, 1))?;
    let faults = fault_schedule(plan, seed);
    let total_gpus: u64 = plan.nodes.iter().map(|n| n.gpus.len() as u64).sum();
    let config = SchedulerConfig {
        max_tenant_gpus: total_gpus.max(1),
        heartbeat_timeout_ms: plan.heartbeat_timeout_ms,
        terminal_retention: specs.len().max(100_000) + 1,
        ..SchedulerConfig::default()
    };
    let mut sim = Sim {
        plan,
        opts: opts.clone(),
        sched: Scheduler::new(config),
        now: 0,
        seq: 0,
        heap: BinaryHeap::new(),
        nodes: (0..plan.nodes.len()).map(|_| NodeSim::default()).collect(),
        node_by_id: plan
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.id.clone(), i))
            .collect(),
        global_slow: Vec::new(),
        jobs: specs
            .into_iter()
            .map(|spec| JobSim {
                spec,
                req: None,
                epoch: 0,
                assigned: None,
                run: None,
                runs: BTreeSet::new(),
                accepted_results: 0,
                end: None,
                affected: None,
            })
            .collect(),
        req_to_job: HashMap::new(),
        runs: BTreeMap::new(),
        next_run: 1,
        calls: BTreeMap::new(),
        next_call: 1,
        providers: plan
            .providers
            .iter()
            .map(|p| ProvSim {
                stats: ProviderRow {
                    name: p.name.clone(),
                    ..Default::default()
                },
                ..Default::default()
            })
            .collect(),
        fstats: faults.iter().map(|_| FaultStats::default()).collect(),
        faults,
        rng: stream(seed, 3),
        pending: Vec::new(),
        stats: SchedulerStats::default(),
        rejected: BTreeMap::new(),
        fenced_runs: 0,
        discarded: 0,
        killed: 0,
        wasted_ms: 0,
        fallbacks: 0,
        arrived: 0,
        violation: None,
    };
    sim.start()?;
    sim.main_loop()?;
    Ok(sim.report(seed, wall.elapsed().as_secs_f64()))
}

impl Sim<'_> {
    fn push(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.heap.push(Reverse((at, ev.order(), self.seq, ev)));
    }

    fn start(&mut self) -> Result<()> {
        for i in 0..self.plan.nodes.len() {
            let spec = self.plan.nodes[i].clone();
            self.apply(Command::RegisterNode { spec })?;
            self.push(0, Ev::Heartbeat(i, 0));
        }
        self.settle()?;
        self.push(self.plan.check_interval_ms, Ev::Check);
        for j in 0..self.jobs.len() {
            self.push(self.jobs[j].spec.at_ms, Ev::Arrival(j));
        }
        for f in 0..self.faults.len() {
            self.push(self.faults[f].at_ms, Ev::FaultStart(f));
        }
        Ok(())
    }

    fn all_done(&self) -> bool {
        self.arrived == self.jobs.len()
            && self.jobs.iter().all(|j| j.req.is_none() || j.end.is_some())
    }

    fn main_loop(&mut self) -> Result<()> {
        let end = self.plan.duration_ms + self.plan.drain_ms;
        while let Some(Reverse((t, _, _, ev))) = self.heap.pop() {
            if t > end {
                self.now = end;
                break;
            }
            self.now = t;
            self.handle(ev)?;
            self.settle()?;
            if self.opts.check_invariants {
                match self.sched.check_invariants() {
                    Ok(()) => self.stats.invariant_checks += 1,
                    Err(e) => {
                        if self.violation.is_none() {
                            self.violation = Some(format!("at {} ms: {e}", self.now));
                        }
                    }
                }
            }
            if self.now >= self.plan.duration_ms && self.all_done() {
                break;
            }
        }
        Ok(())
    }

    /// Applies a command; the caller then calls [`Self::settle`] to act on the events.
    fn apply(&mut self, cmd: Command) -> Result<Outcome> {
        self.stats.commands += 1;
        self.sched.apply(cmd, self.now)
    }

    /// Handles the scheduler's events and the dispatches they cause, until quiet.
    fn settle(&mut self) -> Result<()> {
        loop {
            let events = self.sched.take_events();
            if events.is_empty() && self.pending.is_empty() {
                return Ok(());
            }
            for e in events {
                let job = e
                    .request_id
                    .and_then(|r| self.req_to_job.get(&r.0).copied());
                match e.kind {
                    EventKind::Placed { placement, .. } => {
                        let Some(j) = job else { continue };
                        let Some(n) = placement
                            .replicas
                            .first()
                            .and_then(|r| self.node_by_id.get(&r.node).copied())
                        else {
                            continue;
                        };
                        self.stats.placements += 1;
                        let job = &mut self.jobs[j];
                        job.epoch += 1;
                        job.assigned = Some(n);
                        job.run = None;
                        self.nodes[n].assigned.insert(j);
                        if self.nodes[n].reachable() {
                            self.pending.push(j);
                        }
                    }
                    EventKind::Evicted { reason, .. } => {
                        let Some(j) = job else { continue };
                        let Some(n) = self.jobs[j].assigned.take() else {
                            continue;
                        };
                        self.nodes[n].assigned.remove(&j);
                        if reason == EvictReason::NodeLost {
                            self.stats.node_lost_evictions += 1;
                            if let Some(f) = self.nodes[n].loss_fault {
                                let at = self.faults[f].at_ms;
                                self.mark_affected(j, f, at);
                            }
                        }
                        if self.nodes[n].reachable() {
                            // The agent hears of the eviction and stops the work.
                            let stale: Vec<u64> = self.jobs[j]
                                .runs
                                .iter()
                                .copied()
                                .filter(|r| self.runs.get(r).is_some_and(|r| r.node == n))
                                .collect();
                            for r in stale {
                                self.fenced_runs += 1;
                                self.stop_run(r);
                            }
                        }
                    }
                    EventKind::NodeUnhealthy { .. } => self.stats.nodes_marked_unhealthy += 1,
                    EventKind::NodeRecovered { .. } => self.stats.nodes_recovered += 1,
                    _ => {}
                }
            }
            for j in std::mem::take(&mut self.pending) {
                self.dispatch(j)?;
            }
        }
    }

    fn factor(&self, n: usize) -> f64 {
        self.nodes[n]
            .slow
            .iter()
            .chain(self.global_slow.iter())
            .map(|&(_, f)| f)
            .product()
    }

    fn mark_affected(&mut self, j: usize, fault: usize, at: u64) {
        let job = &mut self.jobs[j];
        if job.end.is_none() && job.affected.is_none() {
            job.affected = Some((fault, at));
            self.fstats[fault].affected += 1;
        }
    }

    fn recovered(&mut self, j: usize) {
        if let Some((f, at)) = self.jobs[j].affected.take() {
            self.fstats[f].samples.push(self.now.saturating_sub(at));
        }
    }

    /// The agent on the job's node starts the job's current placement (if not already running).
    fn dispatch(&mut self, j: usize) -> Result<()> {
        let job = &self.jobs[j];
        let Some(n) = job.assigned else { return Ok(()) };
        if job.end.is_some() || !self.nodes[n].reachable() {
            return Ok(());
        }
        if job.run.is_some_and(|r| {
            self.runs
                .get(&r)
                .is_some_and(|r| r.node == n && r.epoch == job.epoch)
        }) {
            return Ok(());
        }
        let mut stages = VecDeque::new();
        match job.spec.kind {
            JobKind::Neural => stages.push_back(Stage::Node(job.spec.node_ms)),
            JobKind::Quantum => stages.push_back(Stage::Quantum),
            JobKind::Hybrid => {
                stages.push_back(Stage::Node(job.spec.node_ms));
                stages.push_back(Stage::Quantum);
            }
        }
        let id = self.next_run;
        self.next_run += 1;
        let epoch = job.epoch;
        let (tenant, req) = (job.spec.tenant.clone(), job.req);
        self.runs.insert(
            id,
            Run {
                job: j,
                epoch,
                node: n,
                stages,
                cur: Cur::Idle,
                generation: 0,
                started: self.now,
            },
        );
        self.nodes[n].runs.insert(id);
        self.jobs[j].run = Some(id);
        self.jobs[j].runs.insert(id);
        if let Some(r) = req {
            self.apply(Command::MarkRunning {
                tenant_id: tenant,
                request: RequestId(r),
            })?;
        }
        self.recovered(j);
        self.next_stage(id)
    }

    fn schedule_work(&mut self, id: u64) {
        let Some(run) = self.runs.get(&id) else {
            return;
        };
        if let Cur::Working {
            remaining, factor, ..
        } = run.cur
        {
            let at = self.now + (remaining * factor).ceil().max(0.0) as u64;
            let generation = run.generation;
            self.push(at, Ev::StageDone(id, generation));
        }
    }

    fn next_stage(&mut self, id: u64) -> Result<()> {
        let Some(run) = self.runs.get_mut(&id) else {
            return Ok(());
        };
        match run.stages.pop_front() {
            Some(Stage::Node(ms)) => {
                let node = run.node;
                let f = self.factor(node);
                let run = self.runs.get_mut(&id).expect("run exists");
                run.generation += 1;
                run.cur = Cur::Working {
                    remaining: ms as f64,
                    since: self.now,
                    factor: f,
                };
                self.schedule_work(id);
                Ok(())
            }
            Some(Stage::Quantum) => self.submit_call(id),
            None => self.finish_run(id),
        }
    }

    /// Re-times the node work of the runs on `n` after its speed factor changed.
    fn retime(&mut self, n: usize) {
        let f = self.factor(n);
        let ids: Vec<u64> = self.nodes[n].runs.iter().copied().collect();
        for id in ids {
            let now = self.now;
            let Some(run) = self.runs.get_mut(&id) else {
                continue;
            };
            if let Cur::Working {
                remaining,
                since,
                factor,
            } = run.cur
            {
                let done = (now - since) as f64 / factor;
                run.cur = Cur::Working {
                    remaining: (remaining - done).max(0.0),
                    since: now,
                    factor: f,
                };
                run.generation += 1;
                self.schedule_work(id);
            }
        }
    }

    fn select_provider(&self) -> Option<usize> {
        (0..self.providers.len()).find(|&p| self.providers[p].known_down_until <= self.now)
    }

    fn submit_call(&mut self, id: u64) -> Result<()> {
        let Some(run) = self.runs.get(&id) else {
            return Ok(());
        };
        let j = run.job;
        let Some(p) = self.select_provider() else {
            if let Some(fb) = self.plan.fallback.clone() {
                self.fallbacks += 1;
                let ms = sample(&fb, &mut self.rng);
                if let Some(run) = self.runs.get_mut(&id) {
                    run.stages.push_front(Stage::Node(ms));
                }
                self.recovered(j);
                return self.next_stage(id);
            }
            let names: Vec<&str> = self
                .plan
                .providers
                .iter()
                .map(|p| p.name.as_str())
                .collect();
            let reason = if names.is_empty() {
                "no quantum provider configured".to_string()
            } else {
                "quantum providers unavailable, no classical fallback".to_string()
            };
            return self.fail_job(j, reason);
        };
        let c = self.next_call;
        self.next_call += 1;
        let prov = &mut self.providers[p];
        prov.stats.calls += 1;
        let state = if prov.outages > 0 {
            CallState::Failing
        } else {
            CallState::Waiting
        };
        self.calls.insert(
            c,
            Call {
                run: id,
                provider: p,
                submitted: self.now,
                state,
            },
        );
        if let Some(run) = self.runs.get_mut(&id) {
            run.cur = Cur::Calling(c);
        }
        if state == CallState::Failing {
            self.push(
                self.now + self.plan.detection_timeout_ms,
                Ev::ProviderFail(c),
            );
        } else {
            self.providers[p].waiting.push_back(c);
            self.pump(p);
        }
        Ok(())
    }

    /// Starts waiting calls on provider `p` while it has free slots.
    fn pump(&mut self, p: usize) {
        while self.providers[p].outages == 0
            && (self.providers[p].serving.len() as u32) < self.plan.providers[p].concurrency
        {
            let Some(c) = self.providers[p].waiting.pop_front() else {
                break;
            };
            let Some(call) = self.calls.get_mut(&c) else {
                continue;
            };
            call.state = CallState::Serving;
            let run = call.run;
            self.providers[p].serving.insert(c);
            let ms = sample(&self.plan.providers[p].service, &mut self.rng);
            self.push(self.now + ms, Ev::ProviderDone(c));
            if let Some(j) = self.runs.get(&run).map(|r| r.job) {
                self.recovered(j);
            }
        }
    }

    fn cancel_call(&mut self, c: u64) {
        let Some(call) = self.calls.remove(&c) else {
            return;
        };
        let p = call.provider;
        self.providers[p].stats.cancelled += 1;
        match call.state {
            CallState::Serving => {
                self.providers[p].serving.remove(&c);
                self.pump(p);
            }
            CallState::Waiting => self.providers[p].waiting.retain(|&x| x != c),
            CallState::Failing => {}
        }
    }

    /// Removes a run (its node work and provider call stop); adds its time to the wasted work.
    fn stop_run(&mut self, id: u64) {
        let Some(run) = self.runs.remove(&id) else {
            return;
        };
        self.wasted_ms += self.now.saturating_sub(run.started);
        self.nodes[run.node].runs.remove(&id);
        let job = &mut self.jobs[run.job];
        job.runs.remove(&id);
        if job.run == Some(id) {
            job.run = None;
        }
        if let Cur::Calling(c) = run.cur {
            self.cancel_call(c);
        }
    }

    fn finish_run(&mut self, id: u64) -> Result<()> {
        let Some(run) = self.runs.remove(&id) else {
            return Ok(());
        };
        self.nodes[run.node].runs.remove(&id);
        let job = &mut self.jobs[run.job];
        job.runs.remove(&id);
        if job.run == Some(id) {
            job.run = None;
        }
        let res = RunResult {
            job: run.job,
            epoch: run.epoch,
            node: run.node,
            work_ms: self.now - run.started,
        };
        if self.nodes[run.node].reachable() {
            self.deliver(res)
        } else {
            self.nodes[run.node].outbox.push(res);
            Ok(())
        }
    }

    /// The coordinator receives a result from an agent.
    fn deliver(&mut self, r: RunResult) -> Result<()> {
        let j = r.job;
        let job = &self.jobs[j];
        let Some(req) = job.req else { return Ok(()) };
        let tenant = job.spec.tenant.clone();
        if self.plan.fencing {
            if job.end.is_some() || r.epoch != job.epoch || job.assigned != Some(r.node) {
                self.discarded += 1;
                self.wasted_ms += r.work_ms;
                return Ok(());
            }
            self.jobs[j].accepted_results += 1;
            self.apply(Command::Complete {
                tenant_id: tenant,
                request: RequestId(req),
            })?;
            self.finish_job(j, Ok(()));
            return Ok(());
        }
        // Without fencing every result is taken (at-least-once delivery).
        self.jobs[j].accepted_results += 1;
        if self.jobs[j].end.is_none() {
            let phase = self.sched.status(&tenant, RequestId(req))?.phase;
            let cmd = if phase == Phase::Queued {
                Command::Release {
                    tenant_id: tenant,
                    request: RequestId(req),
                }
            } else {
                Command::Complete {
                    tenant_id: tenant,
                    request: RequestId(req),
                }
            };
            self.apply(cmd)?;
            self.finish_job(j, Ok(()));
        }
        Ok(())
    }

    fn finish_job(&mut self, j: usize, outcome: std::result::Result<(), String>) {
        let job = &mut self.jobs[j];
        job.end = Some((self.now, outcome));
        if let Some(n) = job.assigned.take() {
            self.nodes[n].assigned.remove(&j);
        }
        if let Some((f, _)) = job.affected.take() {
            self.fstats[f].unrecovered += 1;
        }
    }

    /// The coordinator gives up on a job, with a reason.
    fn fail_job(&mut self, j: usize, reason: String) -> Result<()> {
        let job = &self.jobs[j];
        let Some(req) = job.req else { return Ok(()) };
        if job.end.is_some() {
            return Ok(());
        }
        let tenant = job.spec.tenant.clone();
        let phase = self.sched.status(&tenant, RequestId(req))?.phase;
        let cmd = if phase.holds_capacity() {
            Command::Fail {
                tenant_id: tenant,
                request: RequestId(req),
                reason: reason.clone(),
            }
        } else {
            Command::Evict {
                request: RequestId(req),
                reason: reason.clone(),
            }
        };
        self.apply(cmd)?;
        let runs: Vec<u64> = self.jobs[j].runs.iter().copied().collect();
        for r in runs {
            self.stop_run(r);
        }
        self.finish_job(j, Err(reason));
        Ok(())
    }

    fn handle(&mut self, ev: Ev) -> Result<()> {
        match ev {
            Ev::Arrival(j) => self.arrival(j),
            Ev::Heartbeat(n, generation) => self.heartbeat(n, generation),
            Ev::Check => {
                self.apply(Command::CheckHeartbeats)?;
                self.push(self.now + self.plan.check_interval_ms, Ev::Check);
                Ok(())
            }
            Ev::LeaseExpiry(n, seq) => {
                let node = &self.nodes[n];
                if !self.plan.fencing || !node.alive() || node.ack_seq != seq {
                    return Ok(());
                }
                let runs: Vec<u64> = node.runs.iter().copied().collect();
                for r in runs {
                    let j = self.runs[&r].job;
                    let current = self.jobs[j].run == Some(r);
                    if current && let Some(f) = self.nodes[n].loss_fault {
                        let at = self.faults[f].at_ms;
                        self.mark_affected(j, f, at);
                    }
                    self.fenced_runs += 1;
                    self.stop_run(r);
                }
                Ok(())
            }
            Ev::StageDone(id, generation) => {
                let Some(run) = self.runs.get_mut(&id) else {
                    return Ok(());
                };
                if run.generation != generation || !matches!(run.cur, Cur::Working { .. }) {
                    return Ok(());
                }
                run.cur = Cur::Idle;
                self.next_stage(id)
            }
            Ev::ProviderDone(c) => {
                let Some(call) = self.calls.remove(&c) else {
                    return Ok(());
                };
                let p = call.provider;
                self.providers[p].serving.remove(&c);
                self.providers[p].stats.completed += 1;
                self.pump(p);
                if let Some(run) = self.runs.get_mut(&call.run) {
                    run.cur = Cur::Idle;
                }
                self.next_stage(call.run)
            }
            Ev::ProviderFail(c) => {
                let Some(call) = self.calls.remove(&c) else {
                    return Ok(());
                };
                let p = call.provider;
                self.providers[p].stats.failed += 1;
                self.providers[p].known_down_until = self.now + self.plan.backoff_ms;
                let Some(j) = self.runs.get(&call.run).map(|r| r.job) else {
                    return Ok(());
                };
                if let Some(f) = self.providers[p].outage_fault {
                    let at = call.submitted.max(self.providers[p].outage_start);
                    self.mark_affected(j, f, at);
                }
                self.submit_call(call.run)
            }
            Ev::FaultStart(f) => self.fault_start(f),
            Ev::FaultEnd(f) => self.fault_end(f),
            Ev::Deadline(j) => {
                if self.jobs[j].req.is_some() && self.jobs[j].end.is_none() {
                    self.fail_job(j, "deadline exceeded".into())?;
                }
                Ok(())
            }
        }
    }

    fn arrival(&mut self, j: usize) -> Result<()> {
        self.arrived += 1;
        let spec = &self.jobs[j].spec;
        let kind = spec.kind;
        let req = ScheduleRequest::new(
            &spec.tenant,
            &format!("chaos-{}", kind.as_str()),
            "v1",
            self.plan.resources[kind as usize],
        );
        match self.apply(Command::Schedule { request: req }) {
            Ok(Outcome::Placed { request_id, .. })
            | Ok(Outcome::Queued { request_id, .. })
            | Ok(Outcome::Existing { request_id, .. }) => {
                self.jobs[j].req = Some(request_id.0);
                self.req_to_job.insert(request_id.0, j);
                if let Some(d) = self.plan.job_deadline_ms {
                    self.push(self.now + d, Ev::Deadline(j));
                }
            }
            Ok(other) => {
                *self
                    .rejected
                    .entry(format!("unexpected outcome {other:?}"))
                    .or_default() += 1;
            }
            Err(e) => {
                *self.rejected.entry(e.to_string()).or_default() += 1;
            }
        }
        Ok(())
    }

    fn heartbeat(&mut self, n: usize, generation: u64) -> Result<()> {
        if generation != self.nodes[n].hb_gen || !self.nodes[n].alive() {
            return Ok(());
        }
        self.push(
            self.now + self.plan.heartbeat_interval_ms,
            Ev::Heartbeat(n, generation),
        );
        if self.nodes[n].partitions > 0 {
            return Ok(());
        }
        self.apply(Command::Heartbeat {
            node: self.plan.nodes[n].id.clone(),
            cached_models: None,
        })?;
        self.settle()?;
        let node = &mut self.nodes[n];
        node.ack_seq += 1;
        let seq = node.ack_seq;
        self.push(self.now + self.plan.lease_ms, Ev::LeaseExpiry(n, seq));
        // Results held while the scheduler could not be reached.
        for r in std::mem::take(&mut self.nodes[n].outbox) {
            self.deliver(r)?;
            self.settle()?;
        }
        // Reconcile: stop what is no longer assigned here (fencing), start what is.
        if self.plan.fencing {
            let runs: Vec<u64> = self.nodes[n].runs.iter().copied().collect();
            for r in runs {
                let run = &self.runs[&r];
                let job = &self.jobs[run.job];
                if job.end.is_some() || job.assigned != Some(n) || job.epoch != run.epoch {
                    self.fenced_runs += 1;
                    self.stop_run(r);
                }
            }
        }
        let assigned: Vec<usize> = self.nodes[n].assigned.iter().copied().collect();
        for j in assigned {
            self.dispatch(j)?;
        }
        Ok(())
    }

    fn fault_start(&mut self, f: usize) -> Result<()> {
        let fault = self.faults[f].clone();
        if let Some(d) = fault.duration_ms {
            self.push(self.now + d, Ev::FaultEnd(f));
        }
        match fault.kind {
            FaultKind::NodeCrash => {
                let Some(n) = fault.node else { return Ok(()) };
                self.nodes[n].crashes += 1;
                if self.nodes[n].crashes > 1 {
                    return Ok(());
                }
                self.nodes[n].hb_gen += 1;
                self.nodes[n].loss_fault = Some(f);
                let assigned: Vec<usize> = self.nodes[n].assigned.iter().copied().collect();
                for j in assigned {
                    self.mark_affected(j, f, self.now);
                }
                let runs: Vec<u64> = self.nodes[n].runs.iter().copied().collect();
                for r in runs {
                    self.killed += 1;
                    self.stop_run(r);
                }
                let lost = std::mem::take(&mut self.nodes[n].outbox);
                self.wasted_ms += lost.iter().map(|r| r.work_ms).sum::<u64>();
            }
            FaultKind::Partition => {
                let Some(n) = fault.node else { return Ok(()) };
                self.nodes[n].partitions += 1;
                self.nodes[n].loss_fault = Some(f);
            }
            FaultKind::ProviderOutage => {
                let Some(p) = fault.provider else {
                    return Ok(());
                };
                let prov = &mut self.providers[p];
                prov.outages += 1;
                prov.outage_fault = Some(f);
                prov.outage_start = self.now;
                let mut hit: Vec<u64> = prov.serving.iter().copied().collect();
                hit.extend(prov.waiting.iter().copied());
                prov.serving.clear();
                prov.waiting.clear();
                for c in hit {
                    let Some(call) = self.calls.get_mut(&c) else {
                        continue;
                    };
                    call.state = CallState::Failing;
                    let run = call.run;
                    self.push(
                        self.now + self.plan.detection_timeout_ms,
                        Ev::ProviderFail(c),
                    );
                    if let Some(j) = self.runs.get(&run).map(|r| r.job) {
                        self.mark_affected(j, f, self.now);
                    }
                }
            }
            FaultKind::LatencySpike | FaultKind::SlowNode => {
                let targets: Vec<usize> = match fault.node {
                    Some(n) => {
                        self.nodes[n].slow.push((f, fault.factor));
                        vec![n]
                    }
                    None => {
                        self.global_slow.push((f, fault.factor));
                        (0..self.nodes.len()).collect()
                    }
                };
                for n in targets {
                    self.fstats[f].affected += self.nodes[n].runs.len() as u64;
                    self.retime(n);
                }
            }
        }
        Ok(())
    }

    fn fault_end(&mut self, f: usize) -> Result<()> {
        let fault = self.faults[f].clone();
        match fault.kind {
            FaultKind::NodeCrash => {
                let Some(n) = fault.node else { return Ok(()) };
                self.nodes[n].crashes = self.nodes[n].crashes.saturating_sub(1);
                if self.nodes[n].crashes == 0 {
                    // The agent restarts empty, registers again and heartbeats at once.
                    self.nodes[n].hb_gen += 1;
                    let spec = self.plan.nodes[n].clone();
                    self.apply(Command::RegisterNode { spec })?;
                    let generation = self.nodes[n].hb_gen;
                    self.push(self.now, Ev::Heartbeat(n, generation));
                }
            }
            FaultKind::Partition => {
                let Some(n) = fault.node else { return Ok(()) };
                self.nodes[n].partitions = self.nodes[n].partitions.saturating_sub(1);
            }
            FaultKind::ProviderOutage => {
                let Some(p) = fault.provider else {
                    return Ok(());
                };
                self.providers[p].outages = self.providers[p].outages.saturating_sub(1);
                if self.providers[p].outages == 0 {
                    self.providers[p].outage_fault = None;
                    self.pump(p);
                }
            }
            FaultKind::LatencySpike | FaultKind::SlowNode => {
                let targets: Vec<usize> = match fault.node {
                    Some(n) => {
                        self.nodes[n].slow.retain(|&(id, _)| id != f);
                        vec![n]
                    }
                    None => {
                        self.global_slow.retain(|&(id, _)| id != f);
                        (0..self.nodes.len()).collect()
                    }
                };
                for n in targets {
                    self.retime(n);
                }
            }
        }
        Ok(())
    }

    fn failover_stats(
        faults: u64,
        affected: u64,
        unrecovered: u64,
        samples: &mut [u64],
    ) -> FailoverStats {
        samples.sort_unstable();
        FailoverStats {
            faults,
            affected_jobs: affected,
            recovered: samples.len() as u64,
            unrecovered,
            failover_ms_p50: percentile(samples, 50.0),
            failover_ms_p99: percentile(samples, 99.0),
            failover_ms_max: samples.last().copied(),
        }
    }

    fn report(mut self, seed: u64, wall_seconds: f64) -> Report {
        // Interrupted jobs still waiting to run again at the end.
        for j in 0..self.jobs.len() {
            if let Some((f, _)) = self.jobs[j].affected.take() {
                self.fstats[f].unrecovered += 1;
            }
        }
        let plan = self.plan;
        let mut by_kind: BTreeMap<String, KindStats> = BTreeMap::new();
        let mut failed_reasons: BTreeMap<String, u64> = BTreeMap::new();
        let mut latencies = Vec::new();
        let (mut accepted, mut completed, mut failed, mut lost, mut met) =
            (0u64, 0u64, 0u64, 0u64, 0u64);
        let (mut dups, mut dup_jobs, mut mismatches) = (0u64, 0u64, 0u64);
        for job in &self.jobs {
            let Some(req) = job.req else { continue };
            accepted += 1;
            let kind = job.spec.kind;
            let budget = plan.slo_ms[kind as usize];
            let ks = by_kind.entry(kind.as_str().to_string()).or_default();
            ks.accepted += 1;
            ks.slo_budget_ms = budget;
            if job.accepted_results > 1 {
                dups += u64::from(job.accepted_results - 1);
                dup_jobs += 1;
            }
            let phase = self
                .sched
                .status(&job.spec.tenant, RequestId(req))
                .map(|s| s.phase)
                .ok();
            match &job.end {
                Some((t, Ok(()))) => {
                    completed += 1;
                    ks.completed += 1;
                    let lat = t - job.spec.at_ms;
                    latencies.push(lat);
                    if lat <= budget {
                        met += 1;
                        ks.slo_met += 1;
                    }
                    if phase != Some(Phase::Completed) {
                        mismatches += 1;
                    }
                }
                Some((_, Err(reason))) => {
                    failed += 1;
                    ks.failed += 1;
                    *failed_reasons.entry(reason.clone()).or_default() += 1;
                    if !matches!(phase, Some(Phase::Failed | Phase::Evicted)) {
                        mismatches += 1;
                    }
                }
                None => lost += 1,
            }
        }
        for ks in by_kind.values_mut() {
            ks.slo_attainment = if ks.accepted == 0 {
                1.0
            } else {
                ks.slo_met as f64 / ks.accepted as f64
            };
        }
        latencies.sort_unstable();
        let mut rows = Vec::new();
        let mut kinds: BTreeMap<String, (u64, u64, u64, Vec<u64>)> = BTreeMap::new();
        let mut all = Vec::new();
        let (mut all_aff, mut all_unrec) = (0, 0);
        for (i, f) in self.faults.iter().enumerate() {
            let st = &mut self.fstats[i];
            let target = match (f.node, f.provider) {
                (Some(n), _) => plan.nodes[n].id.clone(),
                (None, Some(p)) => plan.providers[p].name.clone(),
                _ => "all".to_string(),
            };
            let slowdown = matches!(f.kind, FaultKind::LatencySpike | FaultKind::SlowNode);
            let k = kinds.entry(f.kind.as_str().to_string()).or_default();
            k.0 += 1;
            if !slowdown {
                k.1 += st.affected;
                k.2 += st.unrecovered;
                k.3.extend_from_slice(&st.samples);
                all.extend_from_slice(&st.samples);
                all_aff += st.affected;
                all_unrec += st.unrecovered;
            }
            rows.push(FaultRow {
                id: i,
                kind: f.kind.as_str().to_string(),
                target,
                at_ms: f.at_ms,
                duration_ms: f.duration_ms,
                factor: f.factor,
                generated: f.generated,
                affected: st.affected,
                failover: Self::failover_stats(
                    1,
                    if slowdown { 0 } else { st.affected },
                    st.unrecovered,
                    &mut st.samples,
                ),
            });
        }
        let by_fault_kind = kinds
            .into_iter()
            .map(|(k, (n, a, u, mut s))| (k, Self::failover_stats(n, a, u, &mut s)))
            .collect();
        let failover = Self::failover_stats(self.faults.len() as u64, all_aff, all_unrec, &mut all);
        let mut stats = self.stats.clone();
        stats.invariant_violation = self.violation.clone();
        Report {
            plan: plan.name.clone(),
            seed,
            fencing: plan.fencing,
            simulated_seconds: self.now as f64 / 1000.0,
            jobs_submitted: self.arrived as u64,
            jobs_accepted: accepted,
            jobs_rejected: self.rejected.values().sum(),
            jobs_completed: completed,
            jobs_failed: failed,
            failed_reasons,
            rejected_reasons: self.rejected,
            lost_work: lost,
            duplicate_executions: dups,
            jobs_with_duplicates: dup_jobs,
            state_mismatches: mismatches,
            fenced_runs: self.fenced_runs,
            discarded_results: self.discarded,
            killed_runs: self.killed,
            wasted_work_ms: self.wasted_ms,
            slo_attainment: if accepted == 0 {
                1.0
            } else {
                met as f64 / accepted as f64
            },
            by_kind,
            latency_ms_p50: percentile(&latencies, 50.0),
            latency_ms_p99: percentile(&latencies, 99.0),
            failover_ms_p50: failover.failover_ms_p50,
            failover_ms_p99: failover.failover_ms_p99,
            failover,
            by_fault_kind,
            faults: rows,
            providers: self.providers.iter().map(|p| p.stats.clone()).collect(),
            quantum_fallbacks: self.fallbacks,
            scheduler: stats,
            wall_seconds,
        }
    }
}

/// Validates and runs; a convenience for callers holding a parsed plan.
pub fn run_plan(plan: &super::plan::Plan, seed: u64, opts: &RunOptions) -> Result<Report> {
    let valid = plan.validate()?;
    run(&valid, seed, opts)
}
