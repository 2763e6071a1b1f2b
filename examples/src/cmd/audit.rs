//! `atom audit`: the tamper-evident audit log.
//!
//! Keys: `atom audit keygen --name ORIGIN --out DIR` writes `ed25519.key`, `mldsa44.key`
//! (signer keys, mode 0600) and `ed25519.vkey`, `mldsa44.vkey` (verifier keys). `init` stores
//! the origin, the mode and the vkeys in the log's `config.json`; `checkpoint` signs with
//! `--key` files; every command that checks signatures uses the config's vkeys unless `--vkey`
//! files are given (pin keys from outside the log directory when auditing someone else's log).

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use atom_policy::audit::{
    AuditEntry, AuditError, AuditLog, LogConfig, OpenOptions, SyncPolicy, verify_log,
};
use atom_policy::merkle;
use atom_policy::note::{CheckpointMode, NoteSigner, NoteVerifier};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;

use super::CliError;

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Human-readable text.
    Text,
    /// One JSON object.
    Json,
}

/// Checkpoint signing mode (`PQC_MODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    /// Ed25519 and ML-DSA-44, both required.
    Hybrid,
    /// Ed25519 only.
    Classical,
}

impl From<ModeArg> for CheckpointMode {
    fn from(m: ModeArg) -> Self {
        match m {
            ModeArg::Hybrid => CheckpointMode::Hybrid,
            ModeArg::Classical => CheckpointMode::Classical,
        }
    }
}

/// Trusted verifier keys and mode overriding the log's config.
#[derive(Debug, Args)]
pub struct TrustArgs {
    /// Verifier key file (vkey); repeat for hybrid. Default: the vkeys in the log's config.json.
    #[arg(long = "vkey")]
    pub vkeys: Vec<PathBuf>,
    /// Checkpoint mode to enforce. Default: the mode in the log's config.json.
    #[arg(long, value_enum)]
    pub mode: Option<ModeArg>,
}

/// `atom audit` subcommands.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Generate Ed25519 and ML-DSA-44 signer keys (0600) and verifier keys for ORIGIN.
    Keygen {
        /// Key name: the log origin, e.g. `audit.example.com/log1`.
        #[arg(long)]
        name: String,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
    },
    /// Create an empty log.
    Init {
        /// Log directory.
        log: PathBuf,
        /// Checkpoint origin.
        #[arg(long)]
        origin: String,
        /// Verifier key files of the log's signers.
        #[arg(long = "vkey", required = true)]
        vkeys: Vec<PathBuf>,
        /// Checkpoint mode.
        #[arg(long, value_enum, env = "PQC_MODE", default_value = "hybrid")]
        mode: ModeArg,
    },
    /// Append one entry (JSON; validated and stored canonically); durable when this returns.
    Append {
        /// Log directory.
        log: PathBuf,
        /// The entry as JSON.
        #[arg(long)]
        entry: String,
        #[command(flatten)]
        trust: TrustArgs,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Sign and store a checkpoint of the current tree; prints the signed note.
    Checkpoint {
        /// Log directory.
        log: PathBuf,
        /// Signer key files (Ed25519; and ML-DSA-44 in hybrid mode).
        #[arg(long = "key", required = true)]
        keys: Vec<PathBuf>,
        /// POSIX time for the ML-DSA-44 cosignature timestamp (default: now).
        #[arg(long)]
        time: Option<u64>,
        #[command(flatten)]
        trust: TrustArgs,
    },
    /// Inclusion proof of record INDEX in the tree of SIZE records.
    Prove {
        /// Log directory.
        log: PathBuf,
        /// Record index.
        #[arg(long)]
        index: u64,
        /// Tree size (default: the last checkpoint's size if it covers INDEX, else all).
        #[arg(long)]
        size: Option<u64>,
        #[command(flatten)]
        trust: TrustArgs,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Consistency proof from tree size OLD to NEW.
    Consistency {
        /// Log directory.
        log: PathBuf,
        /// Old tree size.
        #[arg(long)]
        old: u64,
        /// New tree size (default: all records).
        #[arg(long)]
        new: Option<u64>,
        #[command(flatten)]
        trust: TrustArgs,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Re-verify everything; exits 1 naming the first bad record on damage.
    Verify {
        /// Log directory.
        log: PathBuf,
        #[command(flatten)]
        trust: TrustArgs,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
}

fn failed(e: AuditError) -> CliError {
    match e {
        AuditError::EntryJson(_)
        | AuditError::InvalidEntry { .. }
        | AuditError::EntrySize { .. }
        | AuditError::Config(_)
        | AuditError::Proof(_) => CliError::input(e.to_string()),
        _ => CliError::failed(e.to_string()),
    }
}

fn read_key_file(p: &Path) -> Result<String, CliError> {
    fs::read_to_string(p)
        .map(|s| s.trim().to_string())
        .map_err(|e| CliError::input(format!("cannot read key file {}: {e}", p.display())))
}

fn verifiers(paths: &[PathBuf]) -> Result<Option<Vec<NoteVerifier>>, CliError> {
    if paths.is_empty() {
        return Ok(None);
    }
    paths
        .iter()
        .map(|p| {
            NoteVerifier::from_vkey(&read_key_file(p)?)
                .map_err(|e| CliError::input(format!("{}: {e}", p.display())))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

fn open(log: &Path, trust: &TrustArgs) -> Result<AuditLog, CliError> {
    let opts = OpenOptions {
        sync: SyncPolicy::EveryAppend,
        verifiers: verifiers(&trust.vkeys)?,
        mode: trust.mode.map(Into::into),
        ..OpenOptions::default()
    };
    let (log, recovery) = AuditLog::open(log, opts).map_err(failed)?;
    if recovery.dropped_tail_bytes > 0 {
        eprintln!(
            "recovered: dropped a torn final record ({} bytes, never acknowledged)",
            recovery.dropped_tail_bytes
        );
    }
    Ok(log)
}

fn write_private(path: &Path, text: &str) -> Result<(), CliError> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| CliError::failed(format!("create {}: {e}", path.display())))?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| CliError::failed(format!("write {}: {e}", path.display())))
}

fn write_public(path: &Path, text: &str) -> Result<(), CliError> {
    fs::write(path, text).map_err(|e| CliError::failed(format!("write {}: {e}", path.display())))
}

fn hexes(hs: &[merkle::Hash]) -> Vec<String> {
    hs.iter().map(hex::encode).collect()
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Run an `atom audit` subcommand.
pub fn run(cmd: AuditCommand) -> Result<(), CliError> {
    match cmd {
        AuditCommand::Keygen { name, out } => {
            fs::create_dir_all(&out)
                .map_err(|e| CliError::failed(format!("create {}: {e}", out.display())))?;
            let ed =
                NoteSigner::generate_ed25519(&name).map_err(|e| CliError::input(e.to_string()))?;
            let ml =
                NoteSigner::generate_mldsa44(&name).map_err(|e| CliError::input(e.to_string()))?;
            for (stem, s) in [("ed25519", &ed), ("mldsa44", &ml)] {
                write_private(
                    &out.join(format!("{stem}.key")),
                    &format!("{}\n", *s.to_signer_key()),
                )?;
                write_public(
                    &out.join(format!("{stem}.vkey")),
                    &format!("{}\n", s.verifier().to_vkey()),
                )?;
                println!(
                    "{stem}: key id {:08x}: {}/{stem}.key (secret, 0600), {}/{stem}.vkey",
                    s.key_id(),
                    out.display(),
                    out.display()
                );
            }
            Ok(())
        }
        AuditCommand::Init {
            log,
            origin,
            vkeys,
            mode,
        } => {
            let vs = verifiers(&vkeys)?.unwrap_or_default();
            if let Some(v) = vs.iter().find(|v| v.name() != origin) {
                return Err(CliError::input(format!(
                    "verifier key name {:?} is not the origin {origin:?}",
                    v.name()
                )));
            }
            AuditLog::create(&log, &LogConfig::new(&origin, mode.into(), &vs)).map_err(failed)?;
            println!(
                "created {} ({origin}, {})",
                log.display(),
                CheckpointMode::from(mode).as_str()
            );
            Ok(())
        }
        AuditCommand::Append {
            log,
            entry,
            trust,
            format,
        } => {
            let e = AuditEntry::from_json(&entry).map_err(failed)?;
            let canonical = e.to_canonical_json().map_err(failed)?;
            let mut l = open(&log, &trust)?;
            let a = l.append(canonical.as_bytes(), 0).map_err(failed)?;
            let leaf = hex::encode(merkle::leaf_hash(canonical.as_bytes()));
            l.close().map_err(failed)?;
            match format {
                Format::Json => println!(
                    "{}",
                    json!({"index": a.index, "size": a.index + 1, "durable": a.durable_size > a.index, "leaf_hash": leaf})
                ),
                Format::Text => println!("appended record {} (leaf {leaf})", a.index),
            }
            Ok(())
        }
        AuditCommand::Checkpoint {
            log,
            keys,
            time,
            trust,
        } => {
            let signers = keys
                .iter()
                .map(|p| {
                    NoteSigner::from_signer_key(&read_key_file(p)?)
                        .map_err(|e| CliError::input(format!("{}: {e}", p.display())))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let refs: Vec<&NoteSigner> = signers.iter().collect();
            let mut l = open(&log, &trust)?;
            let text = l
                .checkpoint(&refs, time.unwrap_or_else(now_secs))
                .map_err(failed)?;
            print!("{text}");
            Ok(())
        }
        AuditCommand::Prove {
            log,
            index,
            size,
            trust,
            format,
        } => {
            let l = open(&log, &trust)?;
            let size = size.unwrap_or_else(|| match l.last_checkpoint() {
                Some(cp) if index < cp.size => cp.size,
                _ => l.size(),
            });
            let proof = l.inclusion_proof(index, size).map_err(failed)?;
            let leaf = l.leaf_hash(index).map_err(failed)?;
            let root = l.root_at(size).map_err(failed)?;
            merkle::verify_inclusion(&leaf, index, size, &proof, &root)
                .map_err(|e| CliError::failed(format!("self-check of the proof failed: {e}")))?;
            let signed = l.last_checkpoint().is_some_and(|cp| cp.size == size);
            match format {
                Format::Json => println!(
                    "{}",
                    json!({"index": index, "size": size, "leaf_hash": hex::encode(leaf),
                           "root": hex::encode(root), "proof": hexes(&proof),
                           "signed_checkpoint": signed})
                ),
                Format::Text => {
                    println!("record {index} in tree of size {size}");
                    println!("leaf {}", hex::encode(leaf));
                    println!(
                        "root {}{}",
                        hex::encode(root),
                        if signed { " (signed checkpoint)" } else { "" }
                    );
                    for h in hexes(&proof) {
                        println!("  {h}");
                    }
                }
            }
            Ok(())
        }
        AuditCommand::Consistency {
            log,
            old,
            new,
            trust,
            format,
        } => {
            let l = open(&log, &trust)?;
            let new = new.unwrap_or_else(|| l.size());
            let proof = l.consistency_proof(old, new).map_err(failed)?;
            let r_old = l.root_at(old).map_err(failed)?;
            let r_new = l.root_at(new).map_err(failed)?;
            merkle::verify_consistency(old, new, &r_old, &r_new, &proof)
                .map_err(|e| CliError::failed(format!("self-check of the proof failed: {e}")))?;
            match format {
                Format::Json => println!(
                    "{}",
                    json!({"old_size": old, "new_size": new, "old_root": hex::encode(r_old),
                           "new_root": hex::encode(r_new), "proof": hexes(&proof)})
                ),
                Format::Text => {
                    println!("consistency {old} -> {new}");
                    println!("old root {}", hex::encode(r_old));
                    println!("new root {}", hex::encode(r_new));
                    for h in hexes(&proof) {
                        println!("  {h}");
                    }
                }
            }
            Ok(())
        }
        AuditCommand::Verify { log, trust, format } => {
            let vs = verifiers(&trust.vkeys)?;
            let res = verify_log(&log, vs.as_deref(), trust.mode.map(Into::into));
            match res {
                Ok(rep) => {
                    match format {
                        Format::Json => println!(
                            "{}",
                            json!({"ok": true, "records": rep.records, "root": hex::encode(rep.root),
                                   "checkpoint_size": rep.checkpoint.as_ref().map(|c| c.size),
                                   "torn_tail_offset": rep.torn_tail_offset})
                        ),
                        Format::Text => {
                            println!(
                                "ok: {} records, root {}",
                                rep.records,
                                hex::encode(rep.root)
                            );
                            if let Some(cp) = &rep.checkpoint {
                                println!("signed checkpoint at size {} verified", cp.size);
                            }
                            if let Some(off) = rep.torn_tail_offset {
                                println!(
                                    "note: torn final record at offset {off} (unacknowledged; dropped on next open)"
                                );
                            }
                        }
                    }
                    Ok(())
                }
                Err(e) => {
                    let first_bad = first_bad_record(&e);
                    if format == Format::Json {
                        println!(
                            "{}",
                            json!({"ok": false, "error": e.to_string(), "first_bad_record": first_bad})
                        );
                    }
                    Err(match first_bad {
                        Some(i) => CliError::failed(format!("first bad record {i}: {e}")),
                        None => failed(e),
                    })
                }
            }
        }
    }
}

/// The record index an error locates, if any.
fn first_bad_record(e: &AuditError) -> Option<u64> {
    match e {
        AuditError::CorruptRecord { index, .. }
        | AuditError::LeafMismatch { index }
        | AuditError::OffsetMismatch { index, .. }
        | AuditError::Truncated { index, .. } => Some(*index),
        AuditError::NodeMismatch { first, .. } => Some(*first),
        AuditError::CheckpointAhead { log_size, .. } => Some(*log_size),
        _ => None,
    }
}
