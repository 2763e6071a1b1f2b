//! The resilience simulator: invariants under many seeds, determinism, fencing, failover bounds,
//! SLO arithmetic against hand-computed cases, plan validation.
#![allow(clippy::unwrap_used)]

use atom_fabric::chaos::{Plan, Report, RunOptions, ValidPlan, run};

fn plan(yaml: &str) -> ValidPlan {
    Plan::from_yaml(yaml)
        .unwrap_or_else(|e| panic!("parse: {e}"))
        .validate()
        .unwrap_or_else(|e| panic!("validate: {e}"))
}

fn checked(p: &ValidPlan, seed: u64) -> Report {
    run(
        p,
        seed,
        &RunOptions {
            check_invariants: true,
        },
    )
    .unwrap_or_else(|e| panic!("seed {seed}: {e}"))
}

const SMALL: &str = r#"
name: small
duration: 6m
drain: 5m
timing: {heartbeat_interval: 2s, heartbeat_timeout: 10s, check_interval: 1s, lease: 6s}
fleet:
  - {name: gpu, count: 4, gpus: 2}
  - {name: cpu, count: 1, cpu_milli: 16000, memory_mib: 65536}
providers:
  - {name: qa, concurrency: 2, service: {dist: uniform, min: 300ms, max: 700ms}}
  - {name: qb, concurrency: 1, service: 800ms}
quantum: {detection_timeout: 500ms, backoff: 20s, fallback: 1s}
workload:
  source: seeded
  rate_per_s: 1
  mix: {neural: 0.6, quantum: 0.25, hybrid: 0.15}
  tenants: [a, b]
  neural: {dist: lognormal, median: 2s, sigma: 0.7}
random_faults:
  - {kind: node_crash, count: 2, restart_after: {dist: uniform, min: 5s, max: 90s}}
  - {kind: node_crash, count: 1}
  - {kind: partition, count: 3, duration: {dist: uniform, min: 3s, max: 60s}}
  - {kind: provider_outage, count: 2, duration: {dist: uniform, min: 10s, max: 2m}}
  - {kind: latency_spike, count: 1, duration: 30s, factor: 3}
  - {kind: slow_node, count: 1, duration: 1m, factor: 2}
"#;

#[test]
fn invariants_hold_under_many_seeds() {
    let p = plan(SMALL);
    let (mut recovered, mut fenced, mut affected, mut accepted) = (0, 0, 0, 0);
    for seed in 0..50 {
        let r = checked(&p, seed);
        assert_eq!(
            r.lost_work,
            0,
            "seed {seed}: lost work\n{}",
            r.to_markdown()
        );
        assert_eq!(r.duplicate_executions, 0, "seed {seed}: duplicates");
        assert_eq!(
            r.state_mismatches, 0,
            "seed {seed}: coordinator/scheduler disagree"
        );
        assert_eq!(r.scheduler.invariant_violation, None, "seed {seed}");
        assert!(
            r.scheduler.invariant_checks > 500,
            "seed {seed}: invariants not checked"
        );
        assert!(
            r.jobs_accepted > 250,
            "seed {seed}: {} accepted",
            r.jobs_accepted
        );
        assert_eq!(
            r.jobs_completed + r.jobs_failed,
            r.jobs_accepted,
            "seed {seed}: every accepted job terminal"
        );
        for reason in r.failed_reasons.keys() {
            assert!(
                reason.contains("quantum providers unavailable") || reason == "deadline exceeded",
                "seed {seed}: unexpected failure reason {reason:?}"
            );
        }
        assert_eq!(r.jobs_rejected, 0, "seed {seed}: {:?}", r.rejected_reasons);
        assert!(r.slo_attainment > 0.0 && r.slo_attainment <= 1.0);
        recovered += r.failover.recovered;
        fenced += r.fenced_runs + r.killed_runs;
        affected += r.failover.affected_jobs;
        accepted += r.jobs_accepted;
    }
    // The faults did interrupt work (the invariants are not vacuous).
    assert!(
        affected > 50,
        "only {affected} interrupted jobs over 50 seeds"
    );
    assert!(recovered > 50, "only {recovered} failovers over 50 seeds");
    assert!(fenced > 20, "only {fenced} fenced or killed runs");
    assert!(accepted > 15_000);
}

#[test]
fn same_seed_same_report_different_seed_different_report() {
    let p = plan(SMALL);
    let opts = RunOptions::default();
    let a = run(&p, 42, &opts).unwrap();
    let b = run(&p, 42, &opts).unwrap();
    assert_eq!(a.deterministic_json(), b.deterministic_json());
    assert!(!a.deterministic_json().contains("wall_seconds"));
    assert!(a.to_json().contains("wall_seconds"));
    let c = run(&p, 43, &opts).unwrap();
    assert_ne!(a.deterministic_json(), c.deterministic_json());
    // The required fields are in the JSON.
    let v: serde_json::Value = serde_json::from_str(&a.to_json()).unwrap();
    for k in [
        "lost_work",
        "duplicate_executions",
        "slo_attainment",
        "failover_ms_p50",
        "failover_ms_p99",
        "jobs_accepted",
        "jobs_completed",
        "jobs_failed",
        "failed_reasons",
        "faults",
        "fenced_runs",
        "simulated_seconds",
        "wall_seconds",
    ] {
        assert!(v.get(k).is_some(), "missing {k}");
    }
}

const PARTITIONS: &str = r#"
name: partitions
duration: 20m
drain: 5m
fencing: FENCING
timing: {heartbeat_interval: 2s, heartbeat_timeout: 10s, check_interval: 1s, lease: 6s}
fleet: [{name: gpu, count: 4, gpus: 2}]
slo: {neural: 2m}
workload:
  source: seeded
  rate_per_s: 0.1
  neural: {dist: uniform, min: 20s, max: 60s}
faults:
  - {kind: partition, node: gpu-0, at: 3m, duration: 90s}
  - {kind: partition, node: gpu-1, at: 8m, duration: 2m}
  - {kind: partition, node: gpu-2, at: 14m, duration: 45s}
"#;

#[test]
fn without_fencing_partitions_show_duplicates() {
    let mut dups = 0;
    for seed in 0..5 {
        let off = checked(&plan(&PARTITIONS.replace("FENCING", "false")), seed);
        assert!(!off.fencing);
        assert_eq!(off.lost_work, 0);
        dups += off.duplicate_executions;
        assert_eq!(off.duplicate_executions > 0, off.jobs_with_duplicates > 0);
        assert_eq!(off.fenced_runs, 0, "no lease fencing when it is off");

        let on = checked(&plan(&PARTITIONS.replace("FENCING", "true")), seed);
        assert_eq!(on.duplicate_executions, 0, "seed {seed}");
        assert_eq!(on.lost_work, 0);
        assert!(on.fenced_runs > 0, "seed {seed}: leases fenced nothing");
        // The partitions outlast the heartbeat timeout: work was re-placed elsewhere.
        assert!(on.scheduler.node_lost_evictions > 0);
        let part = &on.by_fault_kind["partition"];
        assert!(part.recovered > 0);
        assert!(
            part.failover_ms_p50.unwrap() >= 6_000,
            "a partition's work restarts after the lease at the earliest"
        );
    }
    assert!(dups > 0, "fencing off never produced a duplicate execution");
}

#[test]
fn node_crash_failover_is_at_least_the_heartbeat_timeout() {
    // Two nodes of one GPU, one long job: crash whichever node holds it.
    let base = r#"
name: crash
duration: 2m
drain: 5m
timing: {heartbeat_interval: 2s, heartbeat_timeout: 10s, check_interval: 1s, lease: 6s}
fleet: [{name: gpu, count: 2, gpus: 1}]
workload:
  source: jobs
  jobs: [{at: 0, kind: neural, service: 60s}]
faults: [{kind: node_crash, node: NODE, at: 20s}]
"#;
    let mut hits = 0;
    for node in ["gpu-0", "gpu-1"] {
        let r = checked(&plan(&base.replace("NODE", node)), 1);
        assert_eq!(r.lost_work, 0);
        assert_eq!(r.jobs_completed, 1);
        if r.failover.affected_jobs == 0 {
            assert_eq!(r.failover_ms_p50, None);
            // Untouched job: 60 s of work.
            assert_eq!(r.latency_ms_p50, Some(60_000));
            continue;
        }
        hits += 1;
        let f = r.failover_ms_p50.unwrap();
        // The crash is at a heartbeat instant (20 s), so the scheduler hears nothing after 20 s
        // and marks the node lost at the first check more than 10 s later: 31 s. The job is
        // placed on the other node and starts at once.
        assert!(f >= 10_000, "failover {f} ms below the heartbeat timeout");
        assert_eq!(f, 11_000);
        assert_eq!(r.faults[0].failover.failover_ms_max, Some(11_000));
        assert_eq!(r.killed_runs, 1);
        // 31 s + 60 s of fresh work.
        assert_eq!(r.latency_ms_p50, Some(91_000));
        assert_eq!(r.wasted_work_ms, 20_000);
    }
    assert_eq!(hits, 1, "exactly one of the two crashes hits the job");
}

#[test]
fn crash_and_quick_restart_resumes_on_the_same_node() {
    // One node: a restart before the heartbeat timeout; the restarted agent runs its assignment again.
    let p = plan(
        r#"
name: restart
duration: 1m
timing: {heartbeat_interval: 2s, heartbeat_timeout: 10s, check_interval: 1s, lease: 6s}
fleet: [{name: gpu, count: 1, gpus: 1}]
workload: {source: jobs, jobs: [{at: 0, kind: neural, service: 30s}]}
faults: [{kind: node_crash, node: gpu-0, at: 10s, restart_after: 4s}]
"#,
    );
    let r = checked(&p, 0);
    assert_eq!(r.lost_work, 0);
    assert_eq!(r.failover_ms_p50, Some(4_000));
    assert_eq!(r.latency_ms_p50, Some(44_000));
    assert_eq!(r.scheduler.node_lost_evictions, 0);
}

#[test]
fn no_faults_slo_attainment_matches_hand_computation() {
    // One GPU: neural jobs of 600 ms at 0, 100, 200 ms end at 600, 1200, 1800 ms (latency 600,
    // 1100, 1600: one within 1 s). Two quantum jobs at 0 on a provider of concurrency 1 and
    // 500 ms: done at 500 and 1000 ms (both within 2 s). So 3 of 5 meet their SLO.
    let p = plan(
        r#"
name: slo
duration: 10s
fleet: [{name: gpu, count: 1, gpus: 1}]
providers: [{name: q, concurrency: 1, service: 500ms}]
workload:
  source: jobs
  jobs:
    - {at: 0, kind: neural, service: 600ms}
    - {at: 100ms, kind: neural, service: 600ms}
    - {at: 200ms, kind: neural, service: 600ms}
    - {at: 0, kind: quantum}
    - {at: 0, kind: quantum}
"#,
    );
    let r = checked(&p, 0);
    assert_eq!(r.jobs_accepted, 5);
    assert_eq!(r.jobs_completed, 5);
    assert!(
        (r.slo_attainment - 0.6).abs() < 1e-12,
        "{}",
        r.slo_attainment
    );
    assert_eq!(r.by_kind["neural"].slo_met, 1);
    assert_eq!(r.by_kind["quantum"].slo_met, 2);
    assert_eq!(r.latency_ms_p50, Some(1000)); // sorted 500, 600, 1000, 1100, 1600
    assert_eq!(r.latency_ms_p99, Some(1600));
    assert_eq!(r.failover.affected_jobs, 0);
    assert_eq!(r.failover_ms_p50, None);
    assert_eq!(r.failover_ms_p99, None);
    assert_eq!(
        (r.fenced_runs, r.killed_runs, r.discarded_results),
        (0, 0, 0)
    );
    // A budget of 1.1 s for neural jobs admits the second one too.
    let p2 = plan(
        r#"
name: slo
duration: 10s
slo: {neural: 1100ms}
fleet: [{name: gpu, count: 1, gpus: 1}]
workload:
  source: jobs
  jobs:
    - {at: 0, kind: neural, service: 600ms}
    - {at: 100ms, kind: neural, service: 600ms}
    - {at: 200ms, kind: neural, service: 600ms}
"#,
    );
    let r2 = checked(&p2, 0);
    assert!((r2.slo_attainment - 2.0 / 3.0).abs() < 1e-12);
}

#[test]
fn latency_spike_stretches_remaining_work() {
    // 1000 ms of work; from 500 ms everything runs at half speed: 500 + 2 × 500 = 1500 ms.
    let p = plan(
        r#"
name: spike
duration: 10s
fleet: [{name: gpu, count: 1, gpus: 1}]
workload: {source: jobs, jobs: [{at: 0, kind: neural, service: 1s}]}
faults: [{kind: latency_spike, at: 500ms, duration: 10s, factor: 2}]
"#,
    );
    let r = checked(&p, 0);
    assert_eq!(r.latency_ms_p50, Some(1500));
    assert_eq!(r.faults[0].affected, 1);
    // A slow node for 200 ms only: 500 ms at 1×, 200 ms at 1/3 speed (≈67 ms of work), rest at 1×.
    let p = plan(
        r#"
name: slow
duration: 10s
fleet: [{name: gpu, count: 1, gpus: 1}]
workload: {source: jobs, jobs: [{at: 0, kind: neural, service: 1s}]}
faults: [{kind: slow_node, node: gpu-0, at: 500ms, duration: 200ms, factor: 3}]
"#,
    );
    let r = checked(&p, 0);
    // 500 + 200 + (1000 - 500 - 200/3) = 1133.3 -> 1134 (rounded up to whole ms).
    assert_eq!(r.latency_ms_p50, Some(1134));
}

#[test]
fn provider_outage_fails_over_then_falls_back_or_fails_with_reason() {
    let yaml = r#"
name: outage
duration: 3m
drain: 2m
fleet: [{name: cpu, count: 2, cpu_milli: 64000, memory_mib: 131072}]
providers:
  - {name: qa, concurrency: 8, service: 400ms}
  - {name: qb, concurrency: 8, service: 600ms}
quantum: {detection_timeout: 500ms, backoff: 10s FALLBACK}
workload: {source: seeded, rate_per_s: 2, mix: {quantum: 1}}
faults:
  - {kind: provider_outage, provider: qa, at: 30s, duration: 40s}
  - {kind: provider_outage, provider: qb, at: 50s, duration: 10s}
"#;
    let with = checked(&plan(&yaml.replace("FALLBACK", ", fallback: 1s")), 3);
    assert_eq!(with.lost_work, 0);
    assert_eq!(with.jobs_failed, 0);
    assert!(
        with.quantum_fallbacks > 0,
        "both providers down: fallback used"
    );
    let po = &with.by_fault_kind["provider_outage"];
    assert!(po.recovered > 0);
    // A failed call is detected after the detection timeout, not before.
    assert!(po.failover_ms_p50.unwrap() >= 500);
    assert!(with.providers[0].failed > 0 && with.providers[1].completed > 0);

    let without = checked(&plan(&yaml.replace("FALLBACK", "")), 3);
    assert_eq!(without.lost_work, 0);
    assert!(without.jobs_failed > 0);
    assert_eq!(
        without
            .failed_reasons
            .get("quantum providers unavailable, no classical fallback"),
        Some(&without.jobs_failed)
    );
    assert_eq!(
        without.jobs_completed + without.jobs_failed,
        without.jobs_accepted
    );
}

#[test]
fn deadline_fails_stuck_jobs_with_a_reason() {
    // The only node crashes for good: its job can never finish and fails at its deadline.
    let p = plan(
        r#"
name: deadline
duration: 1m
job_deadline: 2m
fleet: [{name: gpu, count: 1, gpus: 1}]
workload: {source: jobs, jobs: [{at: 0, kind: neural, service: 30s}, {at: 1s, kind: neural, service: 1s}]}
faults: [{kind: node_crash, node: gpu-0, at: 10s}]
"#,
    );
    let r = checked(&p, 0);
    assert_eq!(r.lost_work, 0);
    assert_eq!(r.jobs_failed, 2);
    assert_eq!(r.failed_reasons.get("deadline exceeded"), Some(&2));
    assert_eq!(r.failover.unrecovered, 1);
    // Without a deadline the same plan loses the work, and the report says so.
    let p = plan(
        r#"
name: lost
duration: 1m
drain: 2m
fleet: [{name: gpu, count: 1, gpus: 1}]
workload: {source: jobs, jobs: [{at: 0, kind: neural, service: 30s}]}
faults: [{kind: node_crash, node: gpu-0, at: 10s}]
"#,
    );
    let r = checked(&p, 0);
    assert_eq!(r.lost_work, 1);
}

fn plan_err(yaml: &str) -> String {
    match Plan::from_yaml(yaml).and_then(|p| p.validate()) {
        Ok(_) => panic!("accepted a bad plan:\n{yaml}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_plans_are_refused_with_the_field_named() {
    let base = "name: x\nduration: 1m\nfleet: [{name: gpu, count: 2, gpus: 1}]\nworkload: {source: seeded, rate_per_s: 1}\n";
    let cases = [
        ("faults: [{kind: meteor, at: 1s}]", "faults[0].kind"),
        (
            "faults: [{kind: node_crash, node: gpu-9, at: 1s}]",
            "faults[0].node",
        ),
        (
            "faults: [{kind: partition, node: gpu-0, at: 1s, duration: -5s}]",
            "faults[0].duration",
        ),
        (
            "faults: [{kind: partition, node: gpu-0, at: -1, duration: 5s}]",
            "faults[0].at",
        ),
        (
            "faults: [{kind: partition, node: gpu-0, at: 1s}]",
            "faults[0].duration",
        ),
        (
            "faults: [{kind: slow_node, node: gpu-0, at: 1s, duration: 1s}]",
            "faults[0].factor",
        ),
        (
            "faults: [{kind: provider_outage, provider: nope, at: 1s, duration: 1s}]",
            "faults[0].provider",
        ),
        ("timing: {lease: 20s}", "timing.lease"),
        (
            "random_faults: [{kind: partition, count: 2, nodes: [gpu-7], duration: 1s}]",
            "random_faults[0].nodes",
        ),
        (
            "random_faults: [{kind: partition, count: 2, duration: {dist: weibull}}]",
            "random_faults[0].duration.dist",
        ),
        ("slo: {neural: 3 parsecs}", "slo.neural"),
    ];
    for (extra, field) in cases {
        let e = plan_err(&format!("{base}{extra}\n"));
        assert!(
            e.contains(field),
            "{extra}: error {e:?} does not name {field}"
        );
        assert!(e.starts_with("chaos plan: "), "{e}");
    }
    // Unknown fields and missing sections fail in the YAML reader, with a location.
    let e = plan_err(&format!("{base}fencin: true\n"));
    assert!(e.contains("fencin"), "{e}");
    let e = plan_err("name: x\nduration: 1m\nworkload: {source: seeded, rate_per_s: 1}\n");
    assert!(e.contains("fleet"), "{e}");
    let e = plan_err(
        "name: x\nduration: 1m\nfleet: [{name: g}]\nworkload: {source: seeded, rate_per_s: 1, mix: {quantum: 1}}\n",
    );
    assert!(e.contains("providers"), "{e}");
}

#[test]
fn azure_trace_rows_become_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace.csv");
    std::fs::write(
        &trace,
        "TIMESTAMP,ContextTokens,GeneratedTokens\n\
         2023-11-16 18:15:46.6805900,1000,10\n\
         2023-11-16 18:15:46.9805900,2000,20\n\
         2023-11-16 18:15:47.0805900,500,50\n",
    )
    .unwrap();
    let yaml = format!(
        "name: az\nduration: 1m\nfleet: [{{name: gpu, count: 2, gpus: 1}}]\n\
         workload: {{source: azure, path: {}, prefill_ms_per_token: 0.1, decode_ms_per_token: 10}}\n",
        trace.display()
    );
    let r = checked(&plan(&yaml), 0);
    assert_eq!(r.jobs_accepted, 3);
    assert_eq!(r.jobs_completed, 3);
    // Service: 100+100=200 ms, 200+200=400 ms, 50+500=550 ms; arrivals 0, 300, 400 ms;
    // two GPUs so nobody waits: latencies 200, 400, 550.
    assert_eq!(r.latency_ms_p50, Some(400));
    assert_eq!(r.latency_ms_p99, Some(550));
    // A missing trace is an error naming the file.
    let bad = yaml.replace("trace.csv", "missing.csv");
    let e = run(&plan(&bad), 0, &RunOptions::default()).unwrap_err();
    assert!(e.to_string().contains("missing.csv"), "{e}");
}

#[test]
fn example_plans_validate_and_short_runs_keep_the_invariants() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/chaos");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        n += 1;
        let mut p = Plan::from_file(&path)
            .and_then(|p| p.validate())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if matches!(p.workload, atom_fabric::chaos::plan::Workload::Azure { .. }) {
            continue; // needs the shared trace beside the clone; see docs/chaos.md
        }
        // The first 15 minutes, with the faults that fall in them.
        p.duration_ms = p.duration_ms.min(15 * 60_000);
        let r = run(&p, 1, &RunOptions::default()).unwrap();
        assert_eq!(r.lost_work, 0, "{}", path.display());
        assert_eq!(r.duplicate_executions, 0, "{}", path.display());
        assert_eq!(r.state_mismatches, 0, "{}", path.display());
    }
    assert_eq!(n, 4, "day, partition, provider-outage, azure");
}
