//! `atom replay`: replay a GPU-sharing cluster trace (Alibaba `openb` CSV format) per scorer.

use atom_fabric::ScorerSet;
use atom_fabric::trace::{ReplayReport, parse_nodes, parse_pods, replay};

use super::CliError;

/// Replay a trace: pods in creation order, never released; a pod that fits nowhere fails.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// Node list CSV (`sn,cpu_milli,memory_mib,gpu,model`).
    #[arg(long)]
    pub nodes: std::path::PathBuf,
    /// Pod list CSV (`name,cpu_milli,memory_mib,num_gpu,gpu_milli[,gpu_spec][,creation_time]`).
    #[arg(long)]
    pub pods: std::path::PathBuf,
    /// Run only this scorer (default: all, the default scorer first).
    #[arg(long)]
    pub scorer: Option<String>,
    /// Output format: `table` or `json`.
    #[arg(long, default_value = "table")]
    pub format: String,
}

/// Runs the replay and prints one line (or JSON object) per scorer.
pub fn run(args: ReplayArgs) -> Result<(), CliError> {
    if args.format != "json" && args.format != "table" {
        return Err(CliError::input(format!(
            "--format {:?}: expected json or table",
            args.format
        )));
    }
    let names: Vec<&str> = match &args.scorer {
        Some(n) => {
            if ScorerSet::by_name(n).is_none() {
                return Err(CliError::input(format!(
                    "--scorer {n:?}: unknown; one of {}",
                    ScorerSet::NAMES.join(", ")
                )));
            }
            vec![n.as_str()]
        }
        None => ScorerSet::NAMES.to_vec(),
    };
    let read = |p: &std::path::Path| {
        std::fs::read_to_string(p)
            .map_err(|e| CliError::input(format!("cannot read {}: {e}", p.display())))
    };
    let nodes_text = read(&args.nodes)?;
    let pods_text = read(&args.pods)?;
    let nodes = parse_nodes(&nodes_text, &args.nodes.display().to_string())
        .map_err(|e| CliError::input(e.to_string()))?;
    let pods = parse_pods(&pods_text, &args.pods.display().to_string())
        .map_err(|e| CliError::input(e.to_string()))?;
    let mut reports: Vec<ReplayReport> = Vec::new();
    for name in names {
        let set = ScorerSet::by_name(name)
            .ok_or_else(|| CliError::input(format!("unknown scorer {name}")))?;
        reports.push(replay(&nodes, &pods, &set).map_err(|e| CliError::failed(e.to_string()))?);
    }
    if args.format == "json" {
        let text =
            serde_json::to_string_pretty(&reports).map_err(|e| CliError::failed(e.to_string()))?;
        println!("{text}");
    } else {
        println!(
            "{:<10} {:>22} {:>12} {:>12} {:>10} {:>14}",
            "scorer",
            "share_at_first_failure",
            "share_at_end",
            "pods_failed",
            "pods_total",
            "decisions_per_s"
        );
        for r in &reports {
            let first = r
                .share_at_first_failure
                .map_or("-".to_string(), |s| format!("{s:.4}"));
            println!(
                "{:<10} {:>22} {:>12.4} {:>12} {:>10} {:>14.0}",
                r.scorer, first, r.share_at_end, r.pods_failed, r.pods_total, r.decisions_per_s
            );
        }
    }
    Ok(())
}
