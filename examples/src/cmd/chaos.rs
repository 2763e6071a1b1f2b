//! `atom chaos`: run a resilience simulation (fault plan over virtual time) and print its report.

use atom_fabric::chaos::{Plan, RunOptions, run};

use super::CliError;

/// Run a chaos plan: a seeded workload and fault plan driving the scheduler over virtual time.
#[derive(Debug, clap::Args)]
pub struct ChaosArgs {
    /// The plan (YAML; see docs/chaos.md and examples/chaos/).
    #[arg(long)]
    pub plan: std::path::PathBuf,
    /// Seed of the workload, the generated faults and the service times.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Output format: `md` (Markdown summary) or `json`.
    #[arg(long, default_value = "md")]
    pub format: String,
    /// Write the report to this file instead of standard output.
    #[arg(long)]
    pub out: Option<std::path::PathBuf>,
    /// Check the scheduler's invariants after every event (slow).
    #[arg(long)]
    pub check_invariants: bool,
}

/// Runs the plan; exits non-zero on a bad plan, or when work was lost or executed twice.
pub fn run_cmd(args: ChaosArgs) -> Result<(), CliError> {
    if args.format != "json" && args.format != "md" {
        return Err(CliError::input(format!(
            "--format {:?}: expected md or json",
            args.format
        )));
    }
    let plan = Plan::from_file(&args.plan)
        .map_err(|e| CliError::input(format!("{}: {e}", args.plan.display())))?;
    let valid = plan
        .validate()
        .map_err(|e| CliError::input(format!("{}: {e}", args.plan.display())))?;
    let opts = RunOptions {
        check_invariants: args.check_invariants,
    };
    let report = run(&valid, args.seed, &opts)
        .map_err(|e| CliError::input(format!("{}: {e}", args.plan.display())))?;
    let text = if args.format == "json" {
        report.to_json() + "\n"
    } else {
        report.to_markdown()
    };
    match &args.out {
        Some(p) => std::fs::write(p, &text)
            .map_err(|e| CliError::failed(format!("cannot write {}: {e}", p.display())))?,
        None => print!("{text}"),
    }
    let mut broken = Vec::new();
    if report.lost_work > 0 {
        broken.push(format!("{} accepted jobs lost", report.lost_work));
    }
    if report.fencing && report.duplicate_executions > 0 {
        broken.push(format!(
            "{} duplicate executions with fencing on",
            report.duplicate_executions
        ));
    }
    if report.state_mismatches > 0 {
        broken.push(format!(
            "{} jobs where coordinator and scheduler disagree",
            report.state_mismatches
        ));
    }
    if let Some(v) = &report.scheduler.invariant_violation {
        broken.push(format!("scheduler invariant broken: {v}"));
    }
    if broken.is_empty() {
        Ok(())
    } else {
        Err(CliError::failed(format!(
            "resilience invariants violated: {}",
            broken.join("; ")
        )))
    }
}
