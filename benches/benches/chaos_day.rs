//! A simulated day of faults (`examples/chaos/day.yaml`): how long the resilience simulator takes.
//!
//! Plain harness: runs the plan a few times with one seed and prints the wall time per run, the
//! virtual time simulated, jobs and faults, and the speed-up over real time.

use atom_fabric::chaos::{Plan, RunOptions, run};

fn main() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/chaos/day.yaml");
    let plan = match Plan::from_file(&path).and_then(|p| p.validate()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("chaos_day: {}: {e}", path.display());
            std::process::exit(1);
        }
    };
    let runs: usize = std::env::var("CHAOS_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let mut walls = Vec::new();
    let mut last = None;
    for _ in 0..runs.max(1) {
        let t = std::time::Instant::now();
        let r = match run(&plan, 1, &RunOptions::default()) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("chaos_day: {e}");
                std::process::exit(1);
            }
        };
        walls.push(t.elapsed().as_secs_f64());
        last = Some(r);
    }
    walls.sort_by(f64::total_cmp);
    let Some(r) = last else { return };
    let median = walls[walls.len() / 2];
    println!(
        "chaos_day: {:.0} simulated s, {} jobs, {} faults, {} scheduler commands: wall min {:.3} s, median {:.3} s ({:.0}x real time); lost_work {}, duplicate_executions {}, slo_attainment {:.4}, failover p50 {:?} ms, p99 {:?} ms",
        r.simulated_seconds,
        r.jobs_accepted,
        r.faults.len(),
        r.scheduler.commands,
        walls[0],
        median,
        r.simulated_seconds / median,
        r.lost_work,
        r.duplicate_executions,
        r.slo_attainment,
        r.failover_ms_p50,
        r.failover_ms_p99,
    );
}
