//! Side by side: atom's autoscaler, a Ray Serve-style policy and a Knative KPA-style policy
//! replaying the Azure LLM inference traces (`../shared/traces/azure-llm-2023/`, or the directory
//! in `ATOM_AZURE_TRACES`) against the same replica service-time model. Prints SLO attainment and
//! replica-seconds per policy and trace, and the ratios to atom.

use atom_fabric::autoscale::replay::{ServiceModel, parse_azure_csv, replay, standard_policies};
use std::path::PathBuf;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("autoscale_replay: bench");
        return;
    }
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
    for name in ["conv", "code"] {
        let path = dir.join(format!("AzureLLMInferenceTrace_{name}.csv"));
        let Ok(text) = std::fs::read_to_string(&path) else {
            println!(
                "| {name} | trace not found at {} | | | | | |",
                path.display()
            );
            continue;
        };
        let arrivals = match parse_azure_csv(&text) {
            Ok(a) => a,
            Err(e) => {
                println!("| {name} | {e} | | | | | |");
                continue;
            }
        };
        for mut p in standard_policies(&model, 200) {
            let r = replay(&arrivals, &model, p.as_mut(), 1);
            println!(
                "| {name} | {} | {} | {:.4} | {:.0} | {} | {:.2} |",
                r.policy,
                r.requests,
                r.slo_attainment,
                r.replica_seconds,
                r.peak_replicas,
                r.ttft_p99_s
            );
        }
    }
}
