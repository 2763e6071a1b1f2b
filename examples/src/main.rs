//! `atom`: the command-line tool of atom-fabric.
//!
//! Each command group lives in its own module under `cmd/`; this file only wires them.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod cmd;
mod serve;

/// atom-fabric: place and run neural and quantum inference work, signed and audited.
#[derive(Debug, Parser)]
#[command(name = "atom", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    // Command groups are added here, one variant per module in `cmd/`.
    /// Parse, export and simulate OpenQASM 2.0 circuits.
    #[command(subcommand)]
    Qasm(cmd::qasm::QasmCommand),
    /// Generate and inspect signing keys.
    #[command(subcommand)]
    Keys(cmd::trust::KeysCommand),
    /// Sign a file: a DSSE envelope, or a raw detached signature with --raw.
    Sign(cmd::trust::SignArgs),
    /// Verify a DSSE envelope or a raw detached signature.
    Verify(cmd::trust::VerifyArgs),
    /// Sign and verify model manifests (OpenSSF model signing bundles).
    #[command(subcommand)]
    Manifest(cmd::trust::ManifestCommand),
    /// Check the environment and decide PROCEED / PROCEED_SIMULATION / BLOCK.
    Precheck(cmd::precheck::PrecheckArgs),
    /// Tamper-evident audit log: append, checkpoint, prove, verify.
    #[command(subcommand)]
    Audit(cmd::audit::AuditCommand),
    /// Pull signed model versions from the model store, and roll back.
    #[command(subcommand)]
    Model(cmd::model::ModelCommand),
    /// Detect frameworks and run models through the runtime hooks.
    #[command(subcommand)]
    Runtime(cmd::runtime::RuntimeCommand),
    /// Run the demo: the hosts on loopback, two tenants, a signed hybrid job, an audit proof.
    Demo {
        /// Run the in-process trust-layer walk-through instead (keys, manifests, policies).
        #[arg(long)]
        trust_layer: bool,
    },
    /// The worked hybrid example: train a variational quantum classifier and run it as jobs.
    Vqc(cmd::vqc::VqcArgs),
    /// Write the phase snapshot (commit, precheck, policy matrix, signed audit checkpoint).
    Snapshot(cmd::snapshot::SnapshotArgs),
    /// Start the scheduler host (8600), the hybrid agent host (8700) and the node agent.
    Serve(serve::ServeArgs),
    /// Replay a GPU-sharing cluster trace and compare placement scorers.
    Replay(cmd::replay::ReplayArgs),
    /// Run a resilience simulation: a fault plan over virtual time, with a chaos report.
    Chaos(cmd::chaos::ChaosArgs),
    /// Apply the PostgreSQL schema migrations of the shared state store.
    Migrate(cmd::migrate::MigrateArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result: Result<(), cmd::CliError> = match cli.command {
        Command::Qasm(c) => cmd::qasm::run(c),
        Command::Keys(c) => cmd::trust::keys(c),
        Command::Sign(a) => cmd::trust::sign(a),
        Command::Verify(a) => cmd::trust::verify(a),
        Command::Manifest(c) => cmd::trust::manifest(c),
        Command::Precheck(a) => cmd::precheck::run(a),
        Command::Audit(c) => cmd::audit::run(c),
        Command::Demo { trust_layer: false } => cmd::demo_hosts::run(),
        Command::Demo { trust_layer: true } => cmd::demo::run(),
        Command::Serve(a) => serve::run(a),
        Command::Snapshot(a) => cmd::snapshot::run(a),
        Command::Vqc(a) => cmd::vqc::run(a),
        Command::Model(c) => cmd::model::run(c),
        Command::Runtime(c) => cmd::runtime::run(c),
        Command::Replay(a) => cmd::replay::run(a),
        Command::Chaos(a) => cmd::chaos::run_cmd(a),
        Command::Migrate(a) => cmd::migrate::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
