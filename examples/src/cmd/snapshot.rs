//! `atom snapshot`: the documents' phase snapshot (`reports/PhaseH.3_Snapshot.json`) from live
//! state: commit, simulation mode and missing infrastructure (the precheck), the policy matrix,
//! and the audit log's latest signed checkpoint with the key that verifies it. No secrets: the
//! precheck redacts them and key material appears only as public verifier keys and key ids.

use super::CliError;
use atom_policy::config::Env;
use atom_policy::note::{Checkpoint, CheckpointMode, NoteVerifier};
use atom_policy::precheck::{self, PrecheckOptions};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::path::PathBuf;

/// Arguments of `atom snapshot`.
#[derive(Debug, clap::Args)]
pub struct SnapshotArgs {
    /// Output file.
    #[arg(long, default_value = "reports/PhaseH.3_Snapshot.json")]
    out: PathBuf,
    /// The host's data directory (audit log and its checkpoint).
    #[arg(long, default_value = "./data")]
    data_dir: PathBuf,
    /// A running scheduler host to ask for the policy matrix and a fresh checkpoint
    /// (e.g. `127.0.0.1:8600`).
    #[arg(long)]
    host: Option<String>,
    /// The defaults file.
    #[arg(long, default_value = ".env.default")]
    env_default: PathBuf,
}

fn get(host: &str, path: &str) -> Result<String, CliError> {
    let err = |e: std::io::Error| CliError::failed(format!("GET {host}{path}: {e}"));
    let mut s = std::net::TcpStream::connect(host).map_err(err)?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .map_err(err)?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(err)?;
    if !out.starts_with("HTTP/1.1 200") {
        return Err(CliError::failed(format!(
            "GET {host}{path}: {}",
            out.lines().next().unwrap_or("")
        )));
    }
    Ok(out.split("\r\n\r\n").nth(1).unwrap_or("").to_owned())
}

fn commit() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Runs `atom snapshot`.
pub fn run(args: SnapshotArgs) -> Result<(), CliError> {
    let (defaults, loaded) = super::precheck::load_defaults(&args.env_default)?;
    let report = precheck::run(
        &Env::from_process(),
        &defaults,
        &PrecheckOptions {
            env_default_path: loaded,
            now: super::trust::now(),
            ..PrecheckOptions::default()
        },
    );
    let missing: Vec<&String> = report
        .checks
        .iter()
        .filter(|(_, v)| {
            v.starts_with("missing") || v.contains("not set") || v.contains("unreachable")
        })
        .map(|(k, _)| k)
        .collect();
    let (matrix, checkpoint_text) = match &args.host {
        Some(h) => (
            serde_json::from_str::<Value>(&get(h, "/policy/matrix")?)
                .map_err(|e| CliError::failed(format!("policy matrix: {e}")))?,
            get(h, "/audit/checkpoint")?,
        ),
        None => {
            let p = args.data_dir.join("audit/checkpoint");
            let text = std::fs::read_to_string(&p).map_err(|e| {
                CliError::failed(format!(
                    "{}: {e} (start `atom serve` or pass --host to sign one)",
                    p.display()
                ))
            })?;
            (
                Value::String("not available offline: pass --host to read the live matrix".into()),
                text,
            )
        }
    };
    // The checkpoint must verify with the log's own verifier keys before it is reported.
    let config: Value = serde_json::from_str(
        &std::fs::read_to_string(args.data_dir.join("audit/config.json"))
            .map_err(|e| CliError::failed(format!("audit config: {e}")))?,
    )
    .map_err(|e| CliError::failed(format!("audit config: {e}")))?;
    let vkeys: Vec<String> = config["vkeys"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    let verifiers: Vec<NoteVerifier> = vkeys
        .iter()
        .map(|v| NoteVerifier::from_vkey(v))
        .collect::<Result<_, _>>()
        .map_err(|e| CliError::failed(e.to_string()))?;
    let mode = CheckpointMode::parse(config["mode"].as_str().unwrap_or("classical"))
        .map_err(|e| CliError::failed(e.to_string()))?;
    let cp = Checkpoint::verify(&checkpoint_text, &verifiers, mode)
        .map_err(|e| CliError::failed(format!("checkpoint does not verify: {e}")))?;
    use base64::Engine;
    let snapshot = json!({
        "phase": "H.3",
        "commit": commit().unwrap_or_else(|| "NO_GIT".into()),
        "generated_at": report.generated_at,
        "simulation_mode": report.simulation_mode,
        "precheck": {"decision": report.decision, "reasons": report.reasons, "missing_infrastructure": missing, "checks": report.checks, "env_sha256": report.env_sha256},
        "policy_matrix": matrix,
        "audit_checkpoint": {
            "origin": cp.origin,
            "size": cp.size,
            "root": base64::engine::general_purpose::STANDARD.encode(cp.root),
            "signed_note": checkpoint_text,
            "verifier_keys": vkeys,
            "key_ids": verifiers.iter().map(|v| format!("{:08x}", v.key_id())).collect::<Vec<_>>(),
            "mode": mode.as_str(),
        },
    });
    if let Some(p) = args.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(p)
            .map_err(|e| CliError::failed(format!("create {}: {e}", p.display())))?;
    }
    let text =
        serde_json::to_string_pretty(&snapshot).map_err(|e| CliError::failed(e.to_string()))?;
    std::fs::write(&args.out, text + "\n")
        .map_err(|e| CliError::failed(format!("write {}: {e}", args.out.display())))?;
    println!(
        "snapshot written to {} (audit size {}, commit {})",
        args.out.display(),
        cp.size,
        snapshot["commit"]
    );
    Ok(())
}
