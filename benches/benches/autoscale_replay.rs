//! Side by side: atom's autoscaler, a Ray Serve-style policy and a Knative KPA-style policy
//! replaying the Azure LLM inference traces (`../shared/traces/azure-llm-2023/`, or the directory
//! in `ATOM_AZURE_TRACES`) against the same replica service-time model. Prints SLO attainment and
//! replica-seconds per policy and trace.
//!
//! With `--variants` (or `ATOM_REPLAY_VARIANTS=1`) it also replays held-out variants of each
//! trace — its halves and thirds, rotations in time, every other request, and the arrival times
//! compressed or stretched (rate ×2, ×1.5, ×0.75, ×0.5) — and marks the rows where atom has a
//! higher SLO attainment than both peers at no more replica-seconds than either.

use atom_fabric::autoscale::replay::{
    Arrival, ServiceModel, parse_azure_csv, replay, standard_policies,
};
use std::path::PathBuf;

/// Held-out variants of `a` (named `{name}/{variant}`), times relative to their first request.
fn variants(name: &str, a: &[Arrival]) -> Vec<(String, Vec<Arrival>)> {
    let end = a.last().map_or(0.0, |x| x.t);
    let rebase = |mut v: Vec<Arrival>| {
        v.sort_by(|p, q| p.t.total_cmp(&q.t));
        let t0 = v.first().map_or(0.0, |x| x.t);
        for x in &mut v {
            x.t -= t0;
        }
        v
    };
    let window = |lo: f64, hi: f64| {
        rebase(
            a.iter()
                .copied()
                .filter(|x| x.t >= lo && x.t < hi)
                .collect(),
        )
    };
    let scaled = |k: f64| {
        a.iter()
            .map(|x| Arrival { t: x.t / k, ..*x })
            .collect::<Vec<_>>()
    };
    let rotated = |f: f64| {
        rebase(
            a.iter()
                .map(|x| Arrival {
                    t: (x.t + end * f) % end.max(f64::MIN_POSITIVE),
                    ..*x
                })
                .collect(),
        )
    };
    let mut out = vec![
        ("h1".to_string(), window(0.0, end / 2.0)),
        ("h2".into(), window(end / 2.0, f64::INFINITY)),
        ("t1".into(), window(0.0, end / 3.0)),
        ("t2".into(), window(end / 3.0, 2.0 * end / 3.0)),
        ("t3".into(), window(2.0 * end / 3.0, f64::INFINITY)),
        (
            "odd".into(),
            rebase(a.iter().copied().skip(1).step_by(2).collect()),
        ),
        (
            "even".into(),
            rebase(a.iter().copied().step_by(2).collect()),
        ),
    ];
    for f in [0.13, 0.37, 0.61, 0.83] {
        out.push((format!("rot{f}"), rotated(f)));
    }
    for k in [2.0, 1.5, 0.75, 0.5] {
        out.push((format!("x{k}"), scaled(k)));
    }
    out.into_iter()
        .map(|(v, arr)| (format!("{name}/{v}"), arr))
        .collect()
}

/// Replays `arrivals` under the three policies and prints their rows; returns whether atom has
/// a higher SLO attainment than both peers at no more replica-seconds.
fn rows(name: &str, arrivals: &[Arrival], model: &ServiceModel, mark: bool) -> bool {
    let reports: Vec<_> = standard_policies(model, 200)
        .iter_mut()
        .map(|p| replay(arrivals, model, p.as_mut(), 1))
        .collect();
    let atom = &reports[0];
    let ahead = reports[1..].iter().all(|p| {
        atom.slo_attainment > p.slo_attainment && atom.replica_seconds <= p.replica_seconds
    });
    for r in &reports {
        let note = if mark && r.policy == "atom" {
            if ahead { " ahead |" } else { " not ahead |" }
        } else if mark {
            " |"
        } else {
            ""
        };
        println!(
            "| {name} | {} | {} | {:.4} | {:.0} | {} | {:.2} |{note}",
            r.policy,
            r.requests,
            r.slo_attainment,
            r.replica_seconds,
            r.peak_replicas,
            r.ttft_p99_s
        );
    }
    ahead
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        println!("autoscale_replay: bench");
        return;
    }
    let with_variants = args.iter().any(|a| a == "--variants")
        || std::env::var_os("ATOM_REPLAY_VARIANTS").is_some_and(|v| v != "0");
    let dir = std::env::var_os("ATOM_AZURE_TRACES").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/traces/azure-llm-2023"),
        PathBuf::from,
    );
    let model = ServiceModel::default();
    println!("service model: {model:?}");
    println!(
        "| trace | policy | requests | SLO attainment | replica-seconds | peak replicas | TTFT p99 (s) |"
    );
    println!("|---|---|---|---|---|---|---|");
    let mut traces = Vec::new();
    for name in ["conv", "code"] {
        let path = dir.join(format!("AzureLLMInferenceTrace_{name}.csv"));
        let Ok(text) = std::fs::read_to_string(&path) else {
            println!(
                "| {name} | trace not found at {} | | | | | |",
                path.display()
            );
            continue;
        };
        match parse_azure_csv(&text) {
            Ok(a) => {
                rows(name, &a, &model, false);
                traces.push((name, a));
            }
            Err(e) => println!("| {name} | {e} | | | | | |"),
        }
    }
    if with_variants {
        println!();
        println!("held-out variants:");
        println!(
            "| variant | policy | requests | SLO attainment | replica-seconds | peak replicas | TTFT p99 (s) | atom vs both |"
        );
        println!("|---|---|---|---|---|---|---|---|");
        let (mut ahead, mut total) = (0, 0);
        for (name, a) in &traces {
            for (v, arr) in variants(name, a) {
                total += 1;
                ahead += usize::from(rows(&v, &arr, &model, true));
            }
        }
        println!();
        println!("atom ahead of both peers on {ahead} of {total} variants");
    }
}
