//! `atom model pull|rollback`: the model store connector on the command line.

use super::CliError;
use atom_fabric::model_store::{ModelStore, ModelStoreConfig};
use atom_policy::keyring::KeyRing;
use clap::Subcommand;
use std::path::PathBuf;

/// `atom model ...`
#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Pull a signed model version: verify the manifest, fetch and verify every file, cache it.
    Pull {
        /// `file://DIR` or `https://host/prefix` (default: MODEL_STORE_URL).
        #[arg(long, env = "MODEL_STORE_URL")]
        store: String,
        /// Model id.
        #[arg(long)]
        model: String,
        /// Version.
        #[arg(long)]
        version: String,
        /// Cache directory.
        #[arg(long, default_value = "data/models")]
        cache: PathBuf,
        /// Trusted public key file or key ring JSON.
        #[arg(long = "pub")]
        public: PathBuf,
        /// Cache size limit in MiB.
        #[arg(long, default_value_t = 10_240)]
        cache_limit_mib: u64,
        /// PEM file of CA certificates to trust for HTTPS (default: the Web PKI roots).
        #[arg(long)]
        ca: Option<PathBuf>,
        /// hybrid | classical | off (default: PQC_MODE, else hybrid).
        #[arg(long)]
        mode: Option<String>,
    },
    /// Roll a model back to its previous version after re-verifying every file (P7).
    Rollback {
        /// Model id.
        #[arg(long)]
        model: String,
        /// Cache directory.
        #[arg(long, default_value = "data/models")]
        cache: PathBuf,
        /// Trusted public key file or key ring JSON.
        #[arg(long = "pub")]
        public: PathBuf,
        /// hybrid | classical | off (default: PQC_MODE, else hybrid).
        #[arg(long)]
        mode: Option<String>,
    },
}

/// Runs `atom model`.
pub fn run(cmd: ModelCommand) -> Result<(), CliError> {
    let fail = |e: atom_fabric::model_store::ModelStoreError| CliError::failed(e.to_string());
    match cmd {
        ModelCommand::Pull {
            store,
            model,
            version,
            cache,
            public,
            cache_limit_mib,
            ca,
            mode,
        } => {
            let mut cfg = ModelStoreConfig::new(&store, &cache);
            cfg.mode = super::trust::mode(mode.as_deref())?;
            cfg.cache_limit_bytes = cache_limit_mib.saturating_mul(1 << 20);
            if let Some(ca) = ca {
                cfg.ca_pem = Some(
                    std::fs::read(&ca)
                        .map_err(|e| CliError::input(format!("read {}: {e}", ca.display())))?,
                );
            }
            let mut s = ModelStore::open(cfg, KeyRing::load(&public)?).map_err(fail)?;
            let p = s
                .pull(&model, &version, super::trust::now())
                .map_err(fail)?;
            println!(
                "OK: {model}/{version}: {} files verified ({} bytes downloaded, {} from cache){} -> {}",
                p.files.len(),
                p.bytes_downloaded,
                p.cache_hits,
                p.transport
                    .map(|t| format!(", TLS group {t}"))
                    .unwrap_or_default(),
                p.dir.display()
            );
            Ok(())
        }
        ModelCommand::Rollback {
            model,
            cache,
            public,
            mode,
        } => {
            // Rollback reads only the cache; the store URL is not contacted.
            let mut cfg = ModelStoreConfig::new("file:///nonexistent", &cache);
            cfg.mode = super::trust::mode(mode.as_deref())?;
            let mut s = ModelStore::open(cfg, KeyRing::load(&public)?).map_err(fail)?;
            let p = s.rollback(&model, super::trust::now()).map_err(fail)?;
            println!(
                "OK: {model} rolled back to {} ({} files re-verified) -> {}",
                p.version,
                p.files.len(),
                p.dir.display()
            );
            Ok(())
        }
    }
}
