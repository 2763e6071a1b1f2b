//! Decisions per second with 1, 2 and 3 scheduler replicas sharing one PostgreSQL, beside the
//! embedded store (`Fabric<MemoryStore>` and `Fabric<DirStore>`) on the same workload.
//!
//! Run with `make bench-postgres` (it starts a throwaway cluster and exports `POSTGRES_DSN`).
//! Without `POSTGRES_DSN` only the embedded figures are printed.
//!
//! A decision is one schedule call answered (placed or queued). Each replica keeps the fleet
//! busy but not full: it releases its oldest placed request once it holds `HOLD` of them, so
//! most decisions are real placements that claim capacity in the database.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::VecDeque;
use std::process::Command as Proc;
use std::time::Instant;

use atom_fabric::pg::{PgConfig, PgReplica};
use atom_fabric::store::{DirStore, Fabric, ManualClock, MemoryStore, Store};
use atom_fabric::{
    Command, NodeSpec, Outcome, Quota, RequestId, Resources, ScheduleRequest, SchedulerConfig,
};

const NODES: usize = 16;
const TENANTS: [&str; 4] = ["a", "b", "c", "d"];
const HOLD: usize = 20;

fn calls() -> usize {
    std::env::var("ATOM_PG_BENCH_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000)
}

fn fleet() -> Vec<NodeSpec> {
    (0..NODES)
        .map(|i| NodeSpec::new(format!("n{i:02}"), 64_000, 512 * 1024).with_gpus("A100", 8, 81_920))
        .collect()
}

fn request(i: usize, tenant: &str) -> ScheduleRequest {
    let r = if i % 4 == 3 {
        Resources {
            gpu: 1,
            gpu_milli: 500,
            cpu: 2000,
            mem: 8192,
            ..Default::default()
        }
    } else {
        Resources {
            gpu: 1,
            cpu: 4000,
            mem: 16_384,
            ..Default::default()
        }
    };
    ScheduleRequest::new(tenant, &format!("m{}", i % 7), "v1", r)
}

fn embedded<S: Store>(store: S, n: usize) -> f64 {
    let mut f = Fabric::open(
        SchedulerConfig::default(),
        store,
        Box::new(ManualClock::new(0)),
    )
    .unwrap();
    for spec in fleet() {
        f.execute(Command::RegisterNode { spec }).unwrap();
    }
    for t in TENANTS {
        f.execute(Command::SetQuota {
            tenant_id: t.into(),
            quota: Quota::gpus(64),
        })
        .unwrap();
    }
    let mut held: VecDeque<(String, RequestId)> = VecDeque::new();
    let start = Instant::now();
    for i in 0..n {
        let t = TENANTS[i % TENANTS.len()];
        if let Outcome::Placed { request_id, .. } = f
            .execute(Command::Schedule {
                request: request(i, t),
            })
            .unwrap()
        {
            held.push_back((t.to_string(), request_id));
        }
        if held.len() > HOLD
            && let Some((t, id)) = held.pop_front()
        {
            f.execute(Command::Release {
                tenant_id: t,
                request: id,
            })
            .unwrap();
        }
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn psql(dsn: &str, sql: &str) {
    let ok = Proc::new("psql")
        .args([dsn, "-q", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "psql failed: {sql}");
}

fn replicas(base: &str, k: usize, n: usize) -> (f64, usize) {
    let db = format!("atom_bench_{k}");
    psql(base, &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"));
    psql(base, &format!("CREATE DATABASE {db}"));
    let dsn = format!("{base} dbname={db}");
    {
        let mut setup = PgReplica::start(PgConfig::new(&dsn, "setup")).unwrap();
        for spec in fleet() {
            setup.register_node(&spec).unwrap();
        }
        for t in TENANTS {
            setup.set_quota(t, &Quota::gpus(64)).unwrap();
        }
        setup.shutdown().unwrap();
    }
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(k + 1));
    let handles: Vec<_> = (0..k)
        .map(|r| {
            let dsn = dsn.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let mut rep = PgReplica::start(PgConfig::new(&dsn, &format!("bench-{r}"))).unwrap();
                let mut held: VecDeque<(String, RequestId)> = VecDeque::new();
                let mut placed = 0;
                barrier.wait();
                for i in 0..n {
                    let t = TENANTS[(i + r) % TENANTS.len()];
                    if let Outcome::Placed { request_id, .. } = rep.schedule(request(i, t)).unwrap()
                    {
                        placed += 1;
                        held.push_back((t.to_string(), request_id));
                    }
                    if held.len() > HOLD
                        && let Some((t, id)) = held.pop_front()
                    {
                        rep.release(&t, id).unwrap();
                    }
                }
                rep.shutdown().unwrap();
                placed
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    let placed: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    let secs = start.elapsed().as_secs_f64();
    ((k * n) as f64 / secs, placed)
}

fn main() {
    // `cargo bench` passes `--bench`; a filter that excludes us means "skip".
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if !args.is_empty()
        && !args
            .iter()
            .any(|a| "postgres_replicas".contains(a.as_str()))
    {
        return;
    }
    let n = calls();
    println!(
        "decisions/s (one decision = one schedule call; releases keep {HOLD} held per replica)"
    );
    println!("{:<36} {:>12} {:>14}", "store", "decisions/s", "placed");
    let mem = embedded(MemoryStore::default(), n * 3);
    println!(
        "{:<36} {:>12.0} {:>14}",
        "embedded Fabric<MemoryStore>", mem, "-"
    );
    let dir = tempfile::tempdir().unwrap();
    let d = embedded(DirStore::open(dir.path()).unwrap(), n);
    println!(
        "{:<36} {:>12.0} {:>14}",
        "embedded Fabric<DirStore> (fsync)", d, "-"
    );
    let Ok(base) = std::env::var("POSTGRES_DSN") else {
        println!("postgres: skipped (POSTGRES_DSN not set; run `make bench-postgres`)");
        return;
    };
    for k in 1..=3 {
        let (rate, placed) = replicas(&base, k, n);
        println!(
            "{:<36} {:>12.0} {:>14}",
            format!("postgres, {k} replica(s) x {n} calls"),
            rate,
            placed
        );
    }
}
