//! Scheduler benchmarks: a synthetic fleet of 10,000 nodes and 1,000,000 scheduling requests.
//!
//! The one-shot run reports decisions per second, p50/p99 decision latency (each `Schedule`
//! command timed on its own), and peak RSS per node and per held request. The criterion group
//! measures one schedule+release pair on the loaded fleet.
//!
//! Run: `cargo bench -p atom-benches --bench scheduler` (`SCHED_BENCH_REQUESTS` overrides 1,000,000,
//! `SCHED_BENCH_NODES` overrides 10,000; the held window is 10 requests per node, at most 100,000).
#![allow(missing_docs, clippy::unwrap_used)]

use atom_fabric::quota::Quota;
use atom_fabric::{
    Command, NodeSpec, Outcome, RequestId, Resources, ScheduleRequest, Scheduler, SchedulerConfig,
};
use criterion::{Criterion, criterion_group};
use std::collections::VecDeque;
use std::hint::black_box;
use std::time::Instant;

const DEFAULT_NODES: usize = 10_000;
const TENANTS: usize = 100;
/// Requests held (placed) at any time at 10,000 nodes; older ones are released.
const MAX_WINDOW: usize = 100_000;
/// Feasible nodes scored per decision (kube-scheduler scores a sample of feasible nodes too).
const CANDIDATES: usize = 16;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// (nodes, held window): the window scales with the fleet so that every size runs near capacity.
fn sizes() -> (usize, usize) {
    let nodes = env_usize("SCHED_BENCH_NODES", DEFAULT_NODES).max(1);
    (nodes, (nodes * 10).min(MAX_WINDOW))
}

fn fleet() -> Scheduler {
    let (nodes, _) = sizes();
    let config = SchedulerConfig {
        max_candidates: Some(CANDIDATES),
        terminal_retention: 0,
        ..Default::default()
    };
    let mut s = Scheduler::new(config);
    for i in 0..nodes {
        let spec = NodeSpec::new(format!("node-{i:05}"), 96_000, 393_216)
            .with_gpus(if i % 4 == 0 { "H100" } else { "A100" }, 8, 81_920)
            .with_label("region", ["eu", "us", "ap"][i % 3])
            .with_label("zone", &format!("z{}", i % 12));
        s.apply(Command::RegisterNode { spec }, 0).unwrap();
    }
    for t in 0..TENANTS {
        s.apply(
            Command::SetQuota {
                tenant_id: format!("tenant-{t}"),
                quota: Quota::gpus(100_000),
            },
            0,
        )
        .unwrap();
    }
    s.take_events();
    s
}

/// The i-th request: 60% fractional shares, 30% one GPU, 10% CPU only (deterministic).
fn request(i: u64) -> ScheduleRequest {
    let k = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
    let resources = match k % 10 {
        0..=5 => Resources {
            gpu: 1,
            gpu_milli: [250, 500, 300, 700][(k / 10 % 4) as usize],
            cpu: 2000,
            mem: 8192,
            ..Default::default()
        },
        6..=8 => Resources {
            gpu: 1,
            cpu: 4000,
            mem: 16_384,
            ..Default::default()
        },
        _ => Resources {
            cpu: 1000,
            mem: 2048,
            ..Default::default()
        },
    };
    let tenant = format!("tenant-{}", i % TENANTS as u64);
    ScheduleRequest::new(&tenant, "model", "v1", resources)
}

struct Held {
    queue: VecDeque<(u32, RequestId)>,
}

fn step(s: &mut Scheduler, held: &mut Held, req: ScheduleRequest, i: u64, now: u64) -> bool {
    let tenant = (i % TENANTS as u64) as u32;
    let out = s.apply(Command::Schedule { request: req }, now).unwrap();
    let placed = matches!(out, Outcome::Placed { .. });
    match out {
        Outcome::Placed { request_id, .. } | Outcome::Queued { request_id, .. } => {
            held.queue.push_back((tenant, request_id))
        }
        _ => {}
    }
    placed
}

fn release_oldest(s: &mut Scheduler, held: &mut Held, now: u64) {
    if let Some((tenant, id)) = held.queue.pop_front() {
        let _ = s.apply(
            Command::Release {
                tenant_id: format!("tenant-{tenant}"),
                request: id,
            },
            now,
        );
    }
}

fn one_shot() {
    let total = env_usize("SCHED_BENCH_REQUESTS", 1_000_000) as u64;
    let (nodes, window) = sizes();
    let rss0 = rss_kib();
    let t0 = Instant::now();
    let mut s = fleet();
    let setup = t0.elapsed();
    // The harness's own buffers are touched before measuring, so the RSS deltas are the scheduler's.
    let mut held = Held {
        queue: VecDeque::with_capacity(window + 1),
    };
    held.queue
        .extend((0..=window as u64).map(|i| (0, RequestId(i))));
    held.queue.clear();
    let mut lat: Vec<u32> = vec![0; total as usize];
    lat.clear();
    let rss_nodes = rss_kib();
    let mut placed = 0u64;
    let start = Instant::now();
    let mut rss_window = 0;
    for i in 0..total {
        let now = i / 100;
        if held.queue.len() >= window {
            release_oldest(&mut s, &mut held, now);
        }
        // The request is built (as a client would) before the clock starts: the latency is the
        // scheduler's decision only.
        let req = request(i);
        let t = Instant::now();
        placed += u64::from(step(&mut s, &mut held, req, i, now));
        lat.push(t.elapsed().as_nanos().min(u128::from(u32::MAX)) as u32);
        if i.is_multiple_of(4096) {
            s.take_events();
        }
        if i + 1 == window as u64 {
            rss_window = rss_kib();
        }
    }
    let wall = start.elapsed().as_secs_f64();
    let held_now = s.request_count();
    let invariants = s.check_invariants();
    lat.sort_unstable();
    let pct = |p: f64| lat[((p * lat.len() as f64) as usize).min(lat.len() - 1)] as f64 / 1000.0;
    let decide: f64 = lat.iter().map(|&n| f64::from(n)).sum::<f64>() / 1e9;
    println!(
        "scheduler one-shot: {nodes} nodes (8 GPUs each), {total} schedule requests, {TENANTS} tenants, window {window} held, {CANDIDATES} candidates scored"
    );
    println!("  fleet setup: {:.2} s", setup.as_secs_f64());
    println!(
        "  placed: {placed} of {total}; requests held at end: {held_now}; invariants: {invariants:?}"
    );
    println!(
        "  schedule decisions/s (schedule time only): {:.0}",
        total as f64 / decide
    );
    println!(
        "  commands/s incl. releases (wall): {:.0}",
        (total as f64 + (total as f64 - window as f64).max(0.0)) / wall
    );
    println!(
        "  decision latency: p50 {:.1} us, p99 {:.1} us, p99.9 {:.1} us, max {:.1} us",
        pct(0.50),
        pct(0.99),
        pct(0.999),
        pct(1.0)
    );
    println!(
        "  memory: RSS {} MiB base, +{} KiB for nodes ({:.0} B/node), +{} KiB for {window} held requests ({:.0} B/request); peak RSS {} MiB",
        rss0 / 1024,
        rss_nodes.saturating_sub(rss0),
        rss_nodes.saturating_sub(rss0) as f64 * 1024.0 / nodes as f64,
        rss_window.saturating_sub(rss_nodes),
        rss_window.saturating_sub(rss_nodes) as f64 * 1024.0 / window as f64,
        peak_rss_kib() / 1024
    );
}

fn bench(c: &mut Criterion) {
    let mut s = fleet();
    let mut held = Held {
        queue: VecDeque::new(),
    };
    let (_, window) = sizes();
    for i in 0..window as u64 {
        step(&mut s, &mut held, request(i), i, 0);
    }
    s.take_events();
    let mut i = window as u64;
    let mut g = c.benchmark_group("scheduler_10k_nodes");
    g.sample_size(20)
        .measurement_time(std::time::Duration::from_secs(3));
    g.bench_function("schedule_then_release_oldest", |b| {
        b.iter(|| {
            release_oldest(&mut s, &mut held, 1);
            black_box(step(&mut s, &mut held, request(i), i, 1));
            i += 1;
            if i.is_multiple_of(4096) {
                s.take_events();
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);

fn main() {
    one_shot();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
