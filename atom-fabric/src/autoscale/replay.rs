//! Replaying request arrivals against a replica service-time model, to compare autoscaling
//! policies on the same workload: SLO attainment and replica-seconds.
//!
//! Model: a request needs `prefill = base + context_tokens / prefill_rate` and then
//! `decode = generated_tokens / decode_rate` seconds on one of a replica's `slots` (continuous
//! batching without interference). Requests queue FIFO at the router and start on any ready
//! replica with a free slot. A new replica serves after `cold_start_s`. A removed replica stops
//! taking work and leaves when its requests finish. A request meets the SLO when its time to first
//! token (queue wait + prefill) is within `ttft_budget_s`. Replica-seconds count from the scale-up
//! decision to the replica's departure. Everything runs in virtual time, deterministically.

use super::{Autoscaler, AutoscalerConfig, Observation};
use serde::Serialize;
use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};

/// One request of a trace.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Arrival {
    /// Seconds since the trace start.
    pub t: f64,
    /// Prompt tokens.
    pub context_tokens: u32,
    /// Generated tokens.
    pub generated_tokens: u32,
}

/// Parses the Azure LLM inference trace CSV (`TIMESTAMP,ContextTokens,GeneratedTokens`, timestamps
/// like `2023-11-16 18:17:03.9799600`), sorted by time, `t` relative to the first request.
pub fn parse_azure_csv(text: &str) -> Result<Vec<Arrival>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let cols: Vec<&str> = line.split(',').collect();
        let [ts, ctx, generated] = cols.as_slice() else {
            return Err(format!("line {}: expected 3 columns", n + 1));
        };
        let t =
            parse_timestamp(ts).ok_or_else(|| format!("line {}: bad timestamp {ts:?}", n + 1))?;
        let num = |s: &str| {
            s.trim()
                .parse::<u32>()
                .map_err(|_| format!("line {}: bad token count {s:?}", n + 1))
        };
        out.push(Arrival {
            t,
            context_tokens: num(ctx)?,
            generated_tokens: num(generated)?,
        });
    }
    out.sort_by(|a, b| a.t.total_cmp(&b.t));
    if let Some(first) = out.first().map(|a| a.t) {
        for a in &mut out {
            a.t -= first;
        }
    }
    Ok(out)
}

/// Seconds since 1970 of `YYYY-MM-DD HH:MM:SS[.frac]` (UTC, proleptic Gregorian).
fn parse_timestamp(s: &str) -> Option<f64> {
    let (date, time) = s.trim().split_once(' ')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut tp = time.split(':');
    let (hh, mm) = (
        tp.next()?.parse::<i64>().ok()?,
        tp.next()?.parse::<i64>().ok()?,
    );
    let ss: f64 = tp.next()?.parse().ok()?;
    // Days from civil (H. Hinnant's algorithm).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + hh * 3_600 + mm * 60) as f64 + ss)
}

/// The replica service-time model and SLO.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ServiceModel {
    /// Fixed cost per request, seconds.
    pub base_s: f64,
    /// Prompt tokens per second of one slot.
    pub prefill_tokens_per_s: f64,
    /// Generated tokens per second of one slot.
    pub decode_tokens_per_s: f64,
    /// Concurrent requests per replica.
    pub slots: u32,
    /// Seconds from scale-up to serving.
    pub cold_start_s: f64,
    /// Time-to-first-token budget, seconds.
    pub ttft_budget_s: f64,
}

impl Default for ServiceModel {
    fn default() -> Self {
        Self {
            base_s: 0.05,
            prefill_tokens_per_s: 8_000.0,
            decode_tokens_per_s: 40.0,
            slots: 8,
            cold_start_s: 10.0,
            ttft_budget_s: 2.0,
        }
    }
}

impl ServiceModel {
    fn prefill(&self, a: &Arrival) -> f64 {
        self.base_s + f64::from(a.context_tokens) / self.prefill_tokens_per_s
    }
    fn service(&self, a: &Arrival) -> f64 {
        self.prefill(a) + f64::from(a.generated_tokens) / self.decode_tokens_per_s
    }
}

/// A replica-count policy driven once per tick.
pub trait Policy {
    /// Name for reports.
    fn name(&self) -> String;
    /// Tick period in seconds.
    fn tick_s(&self) -> f64;
    /// Desired replicas at `now`, given the `current` replicas (serving and starting) of which
    /// `ready` serve.
    fn decide(&mut self, now: f64, obs: Observation, current: u32, ready: u32) -> u32;
}

/// atom-fabric's autoscaler.
#[derive(Debug)]
pub struct AtomPolicy(pub Autoscaler);

impl Policy for AtomPolicy {
    fn name(&self) -> String {
        "atom".into()
    }
    fn tick_s(&self) -> f64 {
        1.0
    }
    fn decide(&mut self, now: f64, obs: Observation, current: u32, _ready: u32) -> u32 {
        self.0.observe(obs);
        self.0.decide(now, current, None).desired
    }
}

/// Ray Serve's default policy (`replica_queue_length_autoscaling_policy`): the handles record
/// the ongoing requests (queued + running) every 0.5 s and push their mean over the look-back
/// period (30 s) every 10 s; desired = ceil(that mean / target), acted on only after consecutive
/// same-direction decisions of the 0.1 s control loop for `upscale_delay_s` /
/// `downscale_delay_s`.
#[derive(Debug, Clone)]
pub struct RayServePolicy {
    /// Target ongoing requests per replica.
    pub target_ongoing: f64,
    /// Upscale delay (30 s).
    pub upscale_delay_s: f64,
    /// Downscale delay (600 s).
    pub downscale_delay_s: f64,
    /// Window the pushed metric averages over (`look_back_period_s`, 30 s).
    pub look_back_s: f64,
    /// How often the handles record ongoing requests (0.5 s).
    pub record_interval_s: f64,
    /// How often the handles push the averaged metric to the controller (10 s).
    pub push_interval_s: f64,
    /// Bounds.
    pub min: u32,
    /// Bounds.
    pub max: u32,
    /// Control-loop period (0.1 s).
    pub tick: f64,
    samples: VecDeque<(f64, f64)>,
    last_record: Option<f64>,
    last_push: Option<f64>,
    pushed: f64,
    up_since: Option<f64>,
    down_since: Option<f64>,
}

impl RayServePolicy {
    /// Ray Serve's defaults with the given target.
    pub fn new(target_ongoing: f64, min: u32, max: u32) -> Self {
        Self {
            target_ongoing,
            upscale_delay_s: 30.0,
            downscale_delay_s: 600.0,
            look_back_s: 30.0,
            record_interval_s: 0.5,
            push_interval_s: 10.0,
            min,
            max,
            tick: 0.1,
            samples: VecDeque::new(),
            last_record: None,
            last_push: None,
            pushed: 0.0,
            up_since: None,
            down_since: None,
        }
    }

    /// The metric the controller sees at `now`.
    fn metric(&mut self, now: f64, ongoing: f64) -> f64 {
        if self.look_back_s <= 0.0 {
            return ongoing;
        }
        if self
            .last_record
            .is_none_or(|r| now - r >= self.record_interval_s - 1e-9)
        {
            self.samples.push_back((now, ongoing));
            self.last_record = Some(now);
        }
        while self
            .samples
            .front()
            .is_some_and(|f| f.0 < now - self.look_back_s)
        {
            self.samples.pop_front();
        }
        if self
            .last_push
            .is_none_or(|p| now - p >= self.push_interval_s - 1e-9)
        {
            let n = self.samples.len().max(1) as f64;
            self.pushed = self.samples.iter().map(|s| s.1).sum::<f64>() / n;
            self.last_push = Some(now);
        }
        self.pushed
    }
}

impl Policy for RayServePolicy {
    fn name(&self) -> String {
        "ray-serve".into()
    }
    fn tick_s(&self) -> f64 {
        self.tick
    }
    fn decide(&mut self, now: f64, obs: Observation, current: u32, _ready: u32) -> u32 {
        let ongoing = self.metric(now, obs.concurrency);
        let want = ((ongoing / self.target_ongoing).ceil() as u32).clamp(self.min, self.max);
        match want.cmp(&current) {
            Ordering::Greater => {
                self.down_since = None;
                let s = *self.up_since.get_or_insert(now);
                if now - s >= self.upscale_delay_s {
                    self.up_since = None;
                    return want;
                }
            }
            Ordering::Less => {
                self.up_since = None;
                let s = *self.down_since.get_or_insert(now);
                if now - s >= self.downscale_delay_s {
                    self.down_since = None;
                    return want;
                }
            }
            Ordering::Equal => {
                self.up_since = None;
                self.down_since = None;
            }
        }
        current
    }
}

/// Knative's KPA (`pkg/autoscaler/scaling/autoscaler.go`): concurrency (in the pods and queued
/// at the activator) scraped every second, averaged over the stable (60 s) and panic (6 s)
/// windows, a decision every 2 s tick. Panic starts when the panic-window recommendation reaches
/// 200 % of the *ready* pods and lasts until a stable window passes below the threshold; in
/// panic the count never decreases (`maxPanicPods`). Scale-up rate 1000× and scale-down rate 2×
/// of the ready pods per decision.
#[derive(Debug, Clone)]
pub struct KpaPolicy {
    /// Target concurrency per pod × target utilisation.
    pub target: f64,
    /// Bounds.
    pub min: u32,
    /// Bounds.
    pub max: u32,
    window: VecDeque<(f64, f64)>,
    panic_until: Option<f64>,
    max_panic: u32,
    last_decision: Option<(f64, u32)>,
}

impl KpaPolicy {
    /// KPA with the given effective target per pod.
    pub fn new(target: f64, min: u32, max: u32) -> Self {
        Self {
            target,
            min,
            max,
            window: VecDeque::new(),
            panic_until: None,
            max_panic: 0,
            last_decision: None,
        }
    }
}

/// KPA's scrape interval (s).
const KPA_SCRAPE_S: f64 = 1.0;
/// KPA's decision tick (s).
const KPA_TICK_S: f64 = 2.0;

impl Policy for KpaPolicy {
    fn name(&self) -> String {
        "knative-kpa".into()
    }
    fn tick_s(&self) -> f64 {
        KPA_SCRAPE_S
    }
    fn decide(&mut self, now: f64, obs: Observation, _current: u32, ready: u32) -> u32 {
        self.window.push_back((now, obs.concurrency));
        while self.window.front().is_some_and(|f| f.0 <= now - 60.0) {
            self.window.pop_front();
        }
        if let Some((at, desired)) = self.last_decision
            && now - at < KPA_TICK_S - 1e-9
        {
            return desired;
        }
        let avg = |from: f64| {
            let v: Vec<f64> = self
                .window
                .iter()
                .filter(|w| w.0 > from)
                .map(|w| w.1)
                .collect();
            if v.is_empty() {
                0.0
            } else {
                v.iter().sum::<f64>() / v.len() as f64
            }
        };
        let pods = f64::from(ready.max(1));
        let max_up = (1000.0 * pods).ceil();
        let max_down = (pods / 2.0).floor();
        let dspc = (avg(now - 60.0) / self.target).ceil();
        let dppc = (avg(now - 6.0) / self.target).ceil();
        let stable = dspc.max(max_down).min(max_up) as u32;
        let panic = dppc.max(max_down).min(max_up) as u32;
        if dppc / pods >= 2.0 {
            self.panic_until = Some(now + 60.0);
        } else if self.panic_until.is_some_and(|u| now >= u) {
            self.panic_until = None;
            self.max_panic = 0;
        }
        let mut want = stable;
        if self.panic_until.is_some() {
            want = want.max(panic);
            self.max_panic = self.max_panic.max(want);
            want = self.max_panic;
        }
        let want = want.clamp(self.min, self.max);
        self.last_decision = Some((now, want));
        want
    }
}

/// What one policy achieved on a replay.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplayReport {
    /// The policy.
    pub policy: String,
    /// Requests replayed.
    pub requests: usize,
    /// Fraction meeting the TTFT budget.
    pub slo_attainment: f64,
    /// Replica-seconds used.
    pub replica_seconds: f64,
    /// Peak replicas.
    pub peak_replicas: u32,
    /// p99 time to first token, seconds.
    pub ttft_p99_s: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Ev {
    Arrive(usize),
    Finish(usize),
    Ready(usize),
    Tick,
}

#[derive(Debug)]
struct Event {
    t: f64,
    seq: u64,
    ev: Ev,
}
impl PartialEq for Event {
    fn eq(&self, o: &Self) -> bool {
        self.t == o.t && self.seq == o.seq
    }
}
impl Eq for Event {}
impl PartialOrd for Event {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Event {
    fn cmp(&self, o: &Self) -> Ordering {
        // Min-heap on (t, seq).
        o.t.total_cmp(&self.t).then(o.seq.cmp(&self.seq))
    }
}

#[derive(Debug)]
struct Replica {
    created: f64,
    ready: bool,
    busy: u32,
    removing: bool,
    gone: Option<f64>,
}

/// Replays `arrivals` under `policy`, starting with `initial` replicas (ready at time 0).
pub fn replay(
    arrivals: &[Arrival],
    model: &ServiceModel,
    policy: &mut dyn Policy,
    initial: u32,
) -> ReplayReport {
    let mut heap = BinaryHeap::new();
    let mut seq = 0u64;
    let mut push = |heap: &mut BinaryHeap<Event>, t: f64, ev: Ev| {
        seq += 1;
        heap.push(Event { t, seq, ev });
    };
    for (i, a) in arrivals.iter().enumerate() {
        push(&mut heap, a.t, Ev::Arrive(i));
    }
    let end = arrivals.last().map_or(0.0, |a| a.t);
    push(&mut heap, 0.0, Ev::Tick);
    let mut replicas: Vec<Replica> = (0..initial.max(1))
        .map(|_| Replica {
            created: 0.0,
            ready: true,
            busy: 0,
            removing: false,
            gone: None,
        })
        .collect();
    let mut queue: VecDeque<usize> = VecDeque::new();
    let mut ttft = vec![f64::NAN; arrivals.len()];
    let mut recent: VecDeque<(f64, f64)> = VecDeque::new();
    // (arrival time, service time) of the last 10 s, and the sum of those service times.
    let mut arrived: VecDeque<(f64, f64)> = VecDeque::new();
    let mut arrived_work = 0.0;
    let mut running_on = vec![usize::MAX; arrivals.len()];
    let mut in_flight = 0u32;
    let mut peak = replicas.len() as u32;
    let mut done = 0usize;

    while let Some(Event { t: now, ev, .. }) = heap.pop() {
        match ev {
            Ev::Arrive(i) => {
                queue.push_back(i);
                let work = model.service(&arrivals[i]);
                arrived.push_back((arrivals[i].t, work));
                arrived_work += work;
            }
            Ev::Finish(i) => {
                let r = running_on[i];
                replicas[r].busy -= 1;
                in_flight -= 1;
                done += 1;
                if replicas[r].removing && replicas[r].busy == 0 && replicas[r].gone.is_none() {
                    replicas[r].gone = Some(now);
                }
            }
            Ev::Ready(r) => {
                if replicas[r].removing {
                    replicas[r].gone.get_or_insert(now);
                } else {
                    replicas[r].ready = true;
                }
            }
            Ev::Tick => {
                while recent.front().is_some_and(|f| f.0 < now - 10.0) {
                    recent.pop_front();
                }
                let p95 = if recent.is_empty() {
                    None
                } else {
                    let mut v: Vec<f64> = recent.iter().map(|r| r.1).collect();
                    v.sort_by(f64::total_cmp);
                    Some(v[((v.len() as f64 * 0.95).ceil() as usize).saturating_sub(1)] * 1e3)
                };
                while let Some(&(t, work)) = arrived.front() {
                    if t >= now - 10.0 {
                        break;
                    }
                    arrived.pop_front();
                    arrived_work -= work;
                }
                // Offered load over the last 10 s (or since the start): arrival rate × mean
                // service time = work / window.
                let offered = Some(arrived_work.max(0.0) / now.clamp(1.0, 10.0));
                let obs = Observation {
                    t: now,
                    concurrency: f64::from(in_flight) + queue.len() as f64,
                    p95_latency_ms: p95,
                    offered_load: offered,
                };
                let live: Vec<usize> = (0..replicas.len())
                    .filter(|&r| !replicas[r].removing)
                    .collect();
                let current = live.len() as u32;
                let ready = live.iter().filter(|&&r| replicas[r].ready).count() as u32;
                let want = policy.decide(now, obs, current, ready).max(1);
                if want > current {
                    for _ in current..want {
                        replicas.push(Replica {
                            created: now,
                            ready: false,
                            busy: 0,
                            removing: false,
                            gone: None,
                        });
                        push(
                            &mut heap,
                            now + model.cold_start_s,
                            Ev::Ready(replicas.len() - 1),
                        );
                    }
                } else if want < current {
                    // Remove cold-starting replicas first, then the least busy.
                    let mut order = live.clone();
                    order.sort_by_key(|&r| {
                        (replicas[r].ready, replicas[r].busy, std::cmp::Reverse(r))
                    });
                    for &r in order.iter().take((current - want) as usize) {
                        replicas[r].removing = true;
                        if replicas[r].busy == 0 && replicas[r].ready {
                            replicas[r].gone = Some(now);
                        }
                    }
                }
                peak = peak.max(replicas.iter().filter(|r| !r.removing).count() as u32);
                if done < arrivals.len() || now <= end {
                    push(&mut heap, now + policy.tick_s(), Ev::Tick);
                }
            }
        }
        // Dispatch queued requests to free slots, least-busy replica first.
        while let Some(&i) = queue.front() {
            let slot = replicas
                .iter()
                .enumerate()
                .filter(|(_, r)| r.ready && !r.removing && r.busy < model.slots)
                .min_by_key(|(idx, r)| (r.busy, *idx))
                .map(|(idx, _)| idx);
            let Some(r) = slot else { break };
            queue.pop_front();
            let a = &arrivals[i];
            replicas[r].busy += 1;
            in_flight += 1;
            running_on[i] = r;
            let first_token = now - a.t + model.prefill(a);
            ttft[i] = first_token;
            recent.push_back((now, first_token));
            push(&mut heap, now + model.service(a), Ev::Finish(i));
        }
        if done == arrivals.len() && now > end {
            break;
        }
    }
    let stop = heap.peek().map_or(end, |e| e.t.max(end));
    let replica_seconds: f64 = replicas
        .iter()
        .map(|r| r.gone.unwrap_or(stop) - r.created)
        .sum();
    let met = ttft.iter().filter(|&&t| t <= model.ttft_budget_s).count();
    let mut sorted: Vec<f64> = ttft.iter().copied().filter(|t| t.is_finite()).collect();
    sorted.sort_by(f64::total_cmp);
    let p99 = sorted
        .get(((sorted.len() as f64 * 0.99).ceil() as usize).saturating_sub(1))
        .copied()
        .unwrap_or(0.0);
    ReplayReport {
        policy: policy.name(),
        requests: arrivals.len(),
        slo_attainment: if arrivals.is_empty() {
            1.0
        } else {
            met as f64 / arrivals.len() as f64
        },
        replica_seconds,
        peak_replicas: peak,
        ttft_p99_s: p99,
    }
}

/// The three policies with comparable targets for `model`: Ray Serve's default ratio of target to
/// maximum ongoing requests (2 of 5) times the slots, KPA's 70 % utilisation times the slots, and
/// atom in work mode (capacity = the slots, the model's cold start, a 10 s hold).
pub fn standard_policies(model: &ServiceModel, max: u32) -> Vec<Box<dyn Policy>> {
    let slots = f64::from(model.slots);
    vec![
        Box::new(AtomPolicy(Autoscaler::new(atom_config(model, max)))),
        Box::new(RayServePolicy::new(0.4 * slots, 1, max)),
        Box::new(KpaPolicy::new(0.7 * slots, 1, max)),
    ]
}

/// atom's configuration for `model` in the replay: work mode with the replica's slots as its
/// capacity and the model's cold start as the forecast horizon; peaks held 10 s.
pub fn atom_config(model: &ServiceModel, max: u32) -> AutoscalerConfig {
    AutoscalerConfig {
        min_replicas: 1,
        max_replicas: max,
        target_per_replica: 0.7 * f64::from(model.slots),
        latency_budget_ms: Some(model.ttft_budget_s * 1e3),
        capacity_per_replica: Some(f64::from(model.slots)),
        cold_start_s: model.cold_start_s,
        scale_down_delay_s: 10.0,
        ..AutoscalerConfig::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_parse_to_unix_seconds() {
        // 2023-11-16 18:17:03.5 UTC = 1700158623.5 (date -u -d '2023-11-16 18:17:03.5' +%s.%N).
        let t = parse_timestamp("2023-11-16 18:17:03.5").unwrap_or(0.0);
        assert!((t - 1_700_158_623.5).abs() < 1e-6, "{t}");
        assert_eq!(parse_timestamp("1970-01-01 00:00:00"), Some(0.0));
        assert!(parse_timestamp("garbage").is_none());
    }

    #[test]
    fn constant_load_with_enough_replicas_meets_the_slo() {
        // 1 request/s of 1 s service on a fixed pool of 2 replicas: never a wait.
        let arrivals: Vec<Arrival> = (0..300)
            .map(|i| Arrival {
                t: f64::from(i),
                context_tokens: 0,
                generated_tokens: 38,
            })
            .collect();
        let model = ServiceModel {
            slots: 1,
            ..ServiceModel::default()
        };
        let mut fixed = RayServePolicy::new(1.0, 2, 2);
        let r = replay(&arrivals, &model, &mut fixed, 2);
        assert_eq!(r.slo_attainment, 1.0);
        assert!(
            (r.replica_seconds - 2.0 * 299.0).abs() < 5.0,
            "{}",
            r.replica_seconds
        );
    }

    #[test]
    fn a_single_slot_overloaded_queue_misses_the_slo() {
        // 10 requests at once, 1 s each, one slot, no scaling: waits of 0..9 s.
        let arrivals: Vec<Arrival> = (0..10)
            .map(|_| Arrival {
                t: 0.0,
                context_tokens: 0,
                generated_tokens: 38,
            })
            .collect();
        let model = ServiceModel {
            slots: 1,
            ttft_budget_s: 2.5,
            ..ServiceModel::default()
        };
        let mut fixed = RayServePolicy::new(1e9, 1, 1);
        let r = replay(&arrivals, &model, &mut fixed, 1);
        // TTFT = wait + 0.05: waits 0, 1.0, 2.0 pass; 3.0.. fail.
        assert_eq!(r.slo_attainment, 0.3);
    }
}
