//! `atom precheck`: decide PROCEED / PROCEED_SIMULATION / BLOCK and write the JSON report.

use super::CliError;
use atom_policy::config::Env;
use atom_policy::precheck::{self, Outcome, PrecheckOptions};
use clap::Args;
use std::path::{Path, PathBuf};

/// `atom precheck`
#[derive(Debug, Args)]
pub struct PrecheckArgs {
    /// Where to write the JSON report.
    #[arg(long, default_value = "reports/H.2_precheck.json")]
    out: PathBuf,
    /// The defaults file.
    #[arg(long, default_value = ".env.default")]
    env_default: PathBuf,
    /// Exit non-zero when the decision is BLOCK.
    #[arg(long)]
    strict: bool,
}

/// Loads `.env.default` (if present) and returns it with the path it came from.
pub fn load_defaults(path: &Path) -> Result<(Env, Option<String>), CliError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok((
            Env::parse_dotenv(&text)
                .map_err(|e| CliError::input(format!("{}: {e}", path.display())))?,
            Some(path.display().to_string()),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((Env::new(), None)),
        Err(e) => Err(CliError::failed(format!("read {}: {e}", path.display()))),
    }
}

/// Runs `atom precheck`.
pub fn run(args: PrecheckArgs) -> Result<(), CliError> {
    let (defaults, loaded) = load_defaults(&args.env_default)?;
    let options = PrecheckOptions {
        env_default_path: loaded,
        now: super::trust::now(),
        ..PrecheckOptions::default()
    };
    let report = precheck::run(&Env::from_process(), &defaults, &options);
    // The effective environment's hash is logged before anything executes.
    eprintln!("effective environment sha256: {}", report.env_sha256);
    if let Some(parent) = args.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| CliError::failed(format!("create {}: {e}", parent.display())))?;
    }
    let json = serde_json::to_string_pretty(&report)
        .map_err(|e| CliError::failed(format!("encode report: {e}")))?;
    std::fs::write(&args.out, json + "\n")
        .map_err(|e| CliError::failed(format!("write {}: {e}", args.out.display())))?;
    let decision = serde_json::to_value(report.decision)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    println!("decision: {decision}");
    for (k, v) in &report.checks {
        println!("  {k:16} {v}");
    }
    for r in &report.reasons {
        println!("  - {r}");
    }
    println!("report: {}", args.out.display());
    if args.strict && report.decision == Outcome::Block {
        return Err(CliError::failed("precheck decided BLOCK"));
    }
    Ok(())
}
