//! The autoscaler replay on the Azure LLM inference traces (issue #6): on each trace atom's
//! autoscaler meets more requests' TTFT budget than both the Ray Serve-style and the Knative
//! KPA-style policies, with no more replica-seconds than either. The traces are not shipped:
//! they are read from `../shared/traces/azure-llm-2023/` beside the workspace, or from the
//! directory in `ATOM_AZURE_TRACES`; the test says so and passes when they are absent.
#![allow(clippy::unwrap_used)]

use atom_fabric::autoscale::replay::{ServiceModel, parse_azure_csv, replay, standard_policies};
use std::path::PathBuf;

fn trace_dir() -> PathBuf {
    std::env::var_os("ATOM_AZURE_TRACES").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/traces/azure-llm-2023"),
        PathBuf::from,
    )
}

#[test]
fn atom_beats_ray_serve_and_kpa_on_slo_at_no_more_replica_seconds() {
    let model = ServiceModel::default();
    for name in ["conv", "code"] {
        let path = trace_dir().join(format!("AzureLLMInferenceTrace_{name}.csv"));
        let Ok(text) = std::fs::read_to_string(&path) else {
            eprintln!("skipping {name}: no trace at {}", path.display());
            continue;
        };
        let arrivals = parse_azure_csv(&text).unwrap();
        let r: Vec<_> = standard_policies(&model, 200)
            .iter_mut()
            .map(|p| replay(&arrivals, &model, p.as_mut(), 1))
            .collect();
        let (atom, peers) = (&r[0], &r[1..]);
        assert_eq!(atom.policy, "atom");
        for peer in peers {
            assert!(
                atom.slo_attainment > peer.slo_attainment,
                "{name}: SLO {atom:?} vs {peer:?}"
            );
            assert!(
                atom.replica_seconds <= peer.replica_seconds,
                "{name}: replica-seconds {atom:?} vs {peer:?}"
            );
        }
    }
}
