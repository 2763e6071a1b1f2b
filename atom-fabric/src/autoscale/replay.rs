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
    /// Desired replicas at `now`.
    fn decide(&mut self, now: f64, obs: Observation, current: u32) -> u32;
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
    fn decide(&mut self, now: f64, obs: Observation, current: u32) -> u32 {
        self.0.observe(obs);
        self.0.decide(now, current, None).desired
    }
}

/// Ray Serve's default policy: desired = ongoing / target, acted on only after consecutive
/// same-direction decisions for `upscale_delay_s` / `downscale_delay_s`.
#[derive(Debug, Clone)]
pub struct RayServePolicy {
    /// Target ongoing requests per replica.
    pub target_ongoing: f64,
    /// Upscale delay (30 s).
    pub upscale_delay_s: f64,
    /// Downscale delay (600 s).
    pub downscale_delay_s: f64,
    /// Bounds.
    pub min: u32,
    /// Bounds.
    pub max: u32,
    /// Control-loop period (0.1 s).
    pub tick: f64,
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
            min,
            max,
            tick: 0.1,
            up_since: None,
            down_since: None,
        }
    }
}

impl Policy for RayServePolicy {
    fn name(&self) -> String {
        "ray-serve".into()
    }
    fn tick_s(&self) -> f64 {
        self.tick
    }
    fn decide(&mut self, now: f64, obs: Observation, current: u32) -> u32 {
        let want =
            ((obs.concurrency / self.target_ongoing).ceil() as u32).clamp(self.min, self.max);
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

/// Knative's KPA: stable (60 s) and panic (6 s) windows, panic at 200 %, tick 2 s, scale-up rate
/// 1000×, scale-down rate 2× per tick, no scale-down in panic.
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
        }
    }
}

impl Policy for KpaPolicy {
    fn name(&self) -> String {
        "knative-kpa".into()
    }
    fn tick_s(&self) -> f64 {
        2.0
    }
    fn decide(&mut self, now: f64, obs: Observation, current: u32) -> u32 {
        self.window.push_back((now, obs.concurrency));
        while self.window.front().is_some_and(|f| f.0 < now - 60.0) {
            self.window.pop_front();
        }
        let avg = |from: f64| {
            let v: Vec<f64> = self
                .window
                .iter()
                .filter(|w| w.0 >= from)
                .map(|w| w.1)
                .collect();
            if v.is_empty() {
                0.0
            } else {
                v.iter().sum::<f64>() / v.len() as f64
            }
        };
        let stable = (avg(now - 60.0) / self.target).ceil() as u32;
        let panic = (avg(now - 6.0) / self.target).ceil() as u32;
        let cur = current.max(1);
        if f64::from(panic) >= 2.0 * f64::from(cur) {
            self.panic_until = Some(now + 60.0);
        }
        let in_panic = self.panic_until.is_some_and(|u| now < u);
        let mut want = if in_panic {
            self.max_panic = self.max_panic.max(panic).max(current);
            self.max_panic
        } else {
            self.max_panic = 0;
            stable
        };
        // Rate limits.
        want = want.min(cur.saturating_mul(1000));
        want = want.max(current / 2);
        want.clamp(self.min, self.max)
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
                // Offered load over the last 10 s: arrival rate × mean service time = work / 10 s.
                let offered = Some(arrived_work.max(0.0) / 10.0);
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
                let want = policy.decide(now, obs, current).max(1);
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
/// atom with the same 70 % target plus its latency term (budget = the TTFT budget).
pub fn standard_policies(model: &ServiceModel, max: u32) -> Vec<Box<dyn Policy>> {
    let slots = f64::from(model.slots);
    let atom = AutoscalerConfig {
        min_replicas: 1,
        max_replicas: max,
        target_per_replica: 0.7 * slots,
        latency_budget_ms: Some(model.ttft_budget_s * 1e3),
        ..AutoscalerConfig::default()
    };
    vec![
        Box::new(AtomPolicy(Autoscaler::new(atom))),
        Box::new(RayServePolicy::new(0.4 * slots, 1, max)),
        Box::new(KpaPolicy::new(0.7 * slots, 1, max)),
    ]
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
