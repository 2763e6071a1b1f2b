//! `atom keys`, `atom sign`, `atom verify`, `atom manifest`: keys, signatures and model manifests.

use super::CliError;
use atom_policy::config::{Env, Mode, PqcMode};
use atom_policy::dsse::Envelope;
use atom_policy::keyring::KeyRing;
use atom_policy::keys::{KeySpec, SigningKey, VerifyingKey};
use atom_policy::manifest::{HashOptions, ModelManifest, SignedBundle};
use clap::{Args, Subcommand};
use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};

/// Unix seconds now.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl From<atom_policy::Error> for CliError {
    fn from(e: atom_policy::Error) -> Self {
        CliError::failed(e.to_string())
    }
}

/// The signing mode: `--mode` if given, else `PQC_MODE` and `SIMULATION_MODE` from the environment.
pub fn mode(flag: Option<&str>) -> Result<Mode, CliError> {
    let mut env = Env::from_process();
    if let Some(m) = flag {
        env.set("PQC_MODE", m);
    }
    Mode::from_env(&env).map_err(|e| CliError::input(e.to_string()))
}

fn write_out(out: Option<&Path>, bytes: &[u8]) -> Result<(), CliError> {
    match out {
        Some(p) => std::fs::write(p, bytes)
            .map_err(|e| CliError::failed(format!("write {}: {e}", p.display()))),
        None => std::io::stdout()
            .write_all(bytes)
            .map_err(|e| CliError::failed(format!("write stdout: {e}"))),
    }
}

fn read(path: &Path) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(|e| CliError::input(format!("read {}: {e}", path.display())))
}

/// `atom keys ...`
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Generate a key pair: DIR/signing.key (0600) and DIR/signing.pub
    /// (and DIR/signing.classical.pub.pem for keys with an ECDSA component).
    Generate {
        /// ml-dsa-65 | ml-dsa-44 | ml-dsa-87 | ecdsa-p256 | ed25519 | hybrid (ECDSA P-256 + ML-DSA-65)
        /// | hybrid-ml-dsa-44 | hybrid-ml-dsa-87
        #[arg(long, default_value = "hybrid")]
        alg: String,
        /// Output directory (created if missing).
        #[arg(long)]
        out: PathBuf,
    },
    /// Show a key file's algorithm and key ids (never the secret).
    Show {
        /// A public or secret key file.
        file: PathBuf,
        /// Print only the raw public key bytes in hex (the ML-DSA component of a hybrid key,
        /// unless --component classical).
        #[arg(long)]
        raw_hex: bool,
        /// Which component of a hybrid key: pq (default) or classical.
        #[arg(long, default_value = "pq")]
        component: String,
    },
    /// Start a key ring (JSON) trusting a public key as the active key.
    Trust {
        /// The key ring file to create.
        #[arg(long)]
        ring: PathBuf,
        /// The public key to trust.
        #[arg(long = "pub")]
        public: PathBuf,
    },
    /// Rotate the ring's active key to a new one (P3: needs --approved-by unless SIMULATION_MODE=true).
    /// Prints the rotation record for the audit log.
    Rotate {
        /// The key ring file (updated in place).
        #[arg(long)]
        ring: PathBuf,
        /// The new public key.
        #[arg(long = "new")]
        new_key: PathBuf,
        /// Who approved the rotation.
        #[arg(long)]
        approved_by: Option<String>,
        /// How long the retired key keeps verifying, in days.
        #[arg(long, default_value_t = 30)]
        grace_days: u64,
    },
}

/// Runs `atom keys`.
pub fn keys(cmd: KeysCommand) -> Result<(), CliError> {
    match cmd {
        KeysCommand::Generate { alg, out } => {
            let spec = KeySpec::parse(&alg).map_err(|e| CliError::input(e.to_string()))?;
            std::fs::create_dir_all(&out)
                .map_err(|e| CliError::failed(format!("create {}: {e}", out.display())))?;
            let key = SigningKey::generate(spec);
            key.write(&out.join("signing.key"))?;
            let public = key.verifying_key();
            public.write(&out.join("signing.pub"))?;
            if let Some(c) = public.classical().filter(|c| c.to_pem().is_ok()) {
                let pem_path = out.join("signing.classical.pub.pem");
                std::fs::write(&pem_path, c.to_pem()?)
                    .map_err(|e| CliError::failed(format!("write {}: {e}", pem_path.display())))?;
            }
            println!("algorithm: {}", key.algorithm_label());
            println!("key-id: {}", key.key_id());
            println!("wrote {}/signing.key (0600) and signing.pub", out.display());
            Ok(())
        }
        KeysCommand::Show {
            file,
            raw_hex,
            component,
        } => {
            let key = VerifyingKey::read(&file)?;
            if raw_hex {
                let c = match component.as_str() {
                    "classical" => key.classical(),
                    "pq" => key.post_quantum().or_else(|| key.classical()),
                    other => {
                        return Err(CliError::input(format!(
                            "--component must be pq or classical, not {other}"
                        )));
                    }
                }
                .ok_or_else(|| CliError::input("the key has no such component"))?;
                println!("{}", hex::encode(c.raw()));
                return Ok(());
            }
            println!("algorithm: {}", key.algorithm_label());
            println!("key-id: {}", key.key_id());
            for c in key.components() {
                println!(
                    "component: {} key-id {} ({} bytes)",
                    c.algorithm(),
                    c.key_id(),
                    c.raw().len()
                );
            }
            Ok(())
        }
        KeysCommand::Trust { ring, public } => {
            if ring.exists() {
                return Err(CliError::input(format!(
                    "{} exists already",
                    ring.display()
                )));
            }
            let key = VerifyingKey::read(&public)?;
            let text = KeyRing::trusting(key.clone()).to_json();
            std::fs::write(&ring, text + "\n")
                .map_err(|e| CliError::failed(format!("write {}: {e}", ring.display())))?;
            println!(
                "key ring {} trusts {} as active",
                ring.display(),
                key.key_id()
            );
            Ok(())
        }
        KeysCommand::Rotate {
            ring,
            new_key,
            approved_by,
            grace_days,
        } => {
            let mut keyring = KeyRing::load(&ring)?;
            let new = VerifyingKey::read(&new_key)?;
            let rotation = atom_policy::keyring::Rotation {
                approved_by,
                now: now(),
                old_key_grace_secs: grace_days.saturating_mul(86_400),
            };
            let record = keyring.rotate(new, &rotation, mode(None)?)?;
            // Write the new ring atomically: a crash leaves the old or the new ring, never half.
            let tmp = ring.with_extension("json.tmp");
            std::fs::write(&tmp, keyring.to_json() + "\n")
                .and_then(|()| std::fs::rename(&tmp, &ring))
                .map_err(|e| CliError::failed(format!("write {}: {e}", ring.display())))?;
            let json = serde_json::to_string_pretty(&record)
                .map_err(|e| CliError::failed(e.to_string()))?;
            println!("{json}");
            Ok(())
        }
    }
}

/// `atom sign`
#[derive(Debug, Args)]
pub struct SignArgs {
    /// The secret key file.
    #[arg(long)]
    key: PathBuf,
    /// The file to sign.
    file: PathBuf,
    /// Write the raw detached signature over the file's bytes (pure ML-DSA with an empty context
    /// for ML-DSA keys; the ML-DSA component of a hybrid key) instead of a DSSE envelope.
    #[arg(long)]
    raw: bool,
    /// Output file (default stdout).
    #[arg(long)]
    out: Option<PathBuf>,
    /// DSSE payload type.
    #[arg(long, default_value = "application/octet-stream")]
    payload_type: String,
    /// hybrid | classical | off (default: PQC_MODE, else hybrid).
    #[arg(long)]
    mode: Option<String>,
}

/// Runs `atom sign`.
pub fn sign(args: SignArgs) -> Result<(), CliError> {
    let key = SigningKey::read(&args.key)?;
    let data = read(&args.file)?;
    if args.raw {
        let c = key
            .post_quantum()
            .or_else(|| key.components().first())
            .ok_or_else(|| CliError::input("the key has no components"))?;
        return write_out(args.out.as_deref(), &c.sign(&data)?);
    }
    let mode = mode(args.mode.as_deref())?;
    let env = Envelope::sign(&args.payload_type, &data, &key, mode).map_err(|e| {
        CliError::failed(format!(
            "{e}; use --raw for a single-algorithm signature, or a hybrid key"
        ))
    })?;
    write_out(
        args.out.as_deref(),
        format!("{}\n", env.to_json()).as_bytes(),
    )
}

/// `atom verify`
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The public key file, or a key ring JSON file.
    #[arg(long = "pub")]
    public: PathBuf,
    /// The signature: a raw signature file with --raw, else a DSSE envelope.
    #[arg(long)]
    sig: PathBuf,
    /// The signed file (required with --raw; with an envelope, it must equal the payload).
    file: Option<PathBuf>,
    /// Verify a raw detached signature.
    #[arg(long)]
    raw: bool,
    /// Expected DSSE payload type.
    #[arg(long, default_value = "application/octet-stream")]
    payload_type: String,
    /// hybrid | classical | off (default: PQC_MODE, else hybrid).
    #[arg(long)]
    mode: Option<String>,
}

/// Runs `atom verify`.
pub fn verify(args: VerifyArgs) -> Result<(), CliError> {
    let sig = read(&args.sig)?;
    if args.raw {
        let key = VerifyingKey::read(&args.public)?;
        let file = args
            .file
            .as_deref()
            .ok_or_else(|| CliError::input("--raw needs the signed FILE"))?;
        let data = read(file)?;
        let c = key
            .post_quantum()
            .or_else(|| key.components().first())
            .ok_or_else(|| CliError::input("the key has no components"))?;
        if !c.verify(&data, &sig) {
            return Err(CliError::failed(format!(
                "bad {} signature by key {}",
                c.algorithm(),
                c.key_id()
            )));
        }
        println!("OK: {} signature by key {}", c.algorithm(), c.key_id());
        return Ok(());
    }
    let ring = KeyRing::load(&args.public)?;
    let mode = mode(args.mode.as_deref())?;
    let text = String::from_utf8(sig).map_err(|_| CliError::input("envelope is not UTF-8"))?;
    let env = Envelope::from_json(&text)?;
    let (payload, verified) = env.verify(&ring, mode, now(), &args.payload_type)?;
    if let Some(file) = &args.file
        && read(file)? != payload
    {
        return Err(CliError::failed(format!(
            "the envelope is valid but its payload is not the content of {}",
            file.display()
        )));
    }
    println!(
        "OK: {} signature(s) verified under PQC_MODE={} by {}",
        verified.key_ids.len(),
        if mode.pqc == PqcMode::Off {
            "off"
        } else {
            mode.pqc.as_str()
        },
        verified.key_ids.join(", ")
    );
    Ok(())
}

/// `atom manifest ...`
#[derive(Debug, Subcommand)]
pub enum ManifestCommand {
    /// Hash every file of a model directory and write a signed OpenSSF model-signing bundle.
    Sign {
        /// The model directory.
        dir: PathBuf,
        /// The secret key file (hybrid ECDSA P-256 + ML-DSA for model_signing interop).
        #[arg(long)]
        key: PathBuf,
        /// The bundle to write.
        #[arg(long, default_value = "model.sig")]
        out: PathBuf,
        /// Paths (relative to DIR) to leave out.
        #[arg(long = "ignore-paths", num_args = 1..)]
        ignore_paths: Vec<String>,
        /// hybrid | classical | off (default: PQC_MODE, else hybrid).
        #[arg(long)]
        mode: Option<String>,
    },
    /// Verify a bundle's signatures and every file of the model directory.
    Verify {
        /// The model directory.
        dir: PathBuf,
        /// The bundle.
        #[arg(long, default_value = "model.sig")]
        sig: PathBuf,
        /// The public key file, or a key ring JSON file.
        #[arg(long = "pub")]
        public: PathBuf,
        /// hybrid | classical | off (default: PQC_MODE, else hybrid).
        #[arg(long)]
        mode: Option<String>,
    },
}

fn progress_bar(total: u64) -> Option<indicatif::ProgressBar> {
    // Draw only for a person at a terminal; CI logs get the final line only.
    if !std::io::stderr().is_terminal() || std::env::var_os("CI").is_some() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(total);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{spinner} hashing [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    Some(bar)
}

fn ignore_relative_to(dir: &Path, out: &Path) -> Option<String> {
    let dir = dir.canonicalize().ok()?;
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let out = parent.canonicalize().ok()?.join(out.file_name()?);
    out.strip_prefix(&dir)
        .ok()
        .map(|p| p.to_string_lossy().replace('\\', "/"))
}

/// Runs `atom manifest`.
pub fn manifest(cmd: ManifestCommand) -> Result<(), CliError> {
    match cmd {
        ManifestCommand::Sign {
            dir,
            key,
            out,
            mut ignore_paths,
            mode: m,
        } => {
            let mode = mode(m.as_deref())?;
            let key = SigningKey::read(&key)?;
            // A bundle written inside the model directory must not hash itself.
            if let Some(rel) = ignore_relative_to(&dir, &out) {
                ignore_paths.push(rel);
            }
            let total: u64 = atom_policy::manifest::list_files(&dir, &ignore_paths)
                .map(|fs| fs.iter().map(|f| f.1).sum())
                .unwrap_or(0);
            let bar = progress_bar(total);
            let started = std::time::Instant::now();
            let opts = HashOptions {
                ignore_paths,
                progress: bar
                    .clone()
                    .map(|b| Box::new(move |n| b.inc(n)) as Box<dyn Fn(u64) + Sync + Send>),
            };
            let manifest = ModelManifest::hash_dir(&dir, &opts)?;
            if let Some(b) = bar {
                b.finish_and_clear();
            }
            let secs = started.elapsed().as_secs_f64();
            let bundle = SignedBundle::sign(&manifest, &key, mode)?;
            std::fs::write(&out, bundle.to_json() + "\n")
                .map_err(|e| CliError::failed(format!("write {}: {e}", out.display())))?;
            eprintln!(
                "signed {} files ({} bytes, hashed in {:.2} s) of model {:?} under PQC_MODE={} -> {}",
                manifest.files.len(),
                total,
                secs,
                manifest.model_name,
                mode.pqc,
                out.display()
            );
            Ok(())
        }
        ManifestCommand::Verify {
            dir,
            sig,
            public,
            mode: m,
        } => {
            let mode = mode(m.as_deref())?;
            let ring = KeyRing::load(&public)?;
            let bundle = SignedBundle::read(&sig)?;
            let mut opts = HashOptions::default();
            if let Some(rel) = ignore_relative_to(&dir, &sig) {
                opts.ignore_paths.push(rel);
            }
            let v = bundle.verify_dir(&dir, &ring, mode, now(), &opts)?;
            println!(
                "OK: model {:?}, {} files verified, signatures by {}",
                v.model_name,
                v.files.len(),
                v.key_ids.join(", ")
            );
            Ok(())
        }
    }
}
