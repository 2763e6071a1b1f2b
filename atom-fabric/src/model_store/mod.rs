//! The model store connector (H.2.3, P2, P7): pull a signed model version from `MODEL_STORE_URL`
//! (`file://DIR` or `https://host/...`), verify it, cache it by content, and roll back.
//!
//! A pull verifies the signed manifest against the trusted key ring first (P2), then downloads
//! each file streaming while hashing it, resuming a partial download where it stopped; a file
//! whose SHA-256 differs from the manifest is an error naming the file. Verified files enter a
//! content-addressed cache (`sha256/<digest>`) with a size limit and LRU eviction, and the version
//! is materialised as a directory. The previous version stays pinned so that
//! [`ModelStore::rollback`] can return to it after re-verifying every file's SHA-256 (P7).
//!
//! ```
//! use atom_fabric::model_store::{ModelStore, ModelStoreConfig};
//! use atom_policy::config::Mode;
//! use atom_policy::keyring::KeyRing;
//! use atom_policy::keys::{Algorithm, KeySpec, SigningKey};
//! use atom_policy::manifest::{HashOptions, ModelManifest, SignedBundle};
//!
//! // A store with one signed model version.
//! let store = tempfile::tempdir().unwrap();
//! let version_dir = store.path().join("resnet/v1");
//! std::fs::create_dir_all(&version_dir).unwrap();
//! std::fs::write(version_dir.join("weights.bin"), [1u8; 1000]).unwrap();
//! let key = SigningKey::generate(KeySpec::Hybrid(Algorithm::MlDsa65));
//! let manifest = ModelManifest::hash_dir(&version_dir, &HashOptions::default()).unwrap();
//! let bundle = SignedBundle::sign(&manifest, &key, Mode::default()).unwrap();
//! std::fs::write(version_dir.join("model.sig"), bundle.to_json()).unwrap();
//!
//! let cache = tempfile::tempdir().unwrap();
//! let config = ModelStoreConfig::new(&format!("file://{}", store.path().display()), cache.path());
//! let mut connector = ModelStore::open(config, KeyRing::trusting(key.verifying_key())).unwrap();
//! let pulled = connector.pull("resnet", "v1", 0).unwrap();
//! assert_eq!(std::fs::read(pulled.dir.join("weights.bin")).unwrap(), [1u8; 1000]);
//! ```

mod cache;
mod source;

pub use cache::ContentCache;
pub(crate) use source::percent_encode;

use atom_policy::config::Mode;
use atom_policy::keyring::KeyRing;
use atom_policy::manifest::{FileDigest, ModelManifest, SignedBundle};
use cache::{hash_reader, write_atomic};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use source::{FileSource, HttpsSource, Source};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The manifest's file name beside the model files.
pub const MANIFEST_NAME: &str = "model.sig";
const MANIFEST_LIMIT: u64 = 64 << 20;

/// Exactly what went wrong in the model store connector.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelStoreError {
    /// A model id, version or URL is not acceptable.
    #[error("invalid {what} {value:?}: {reason}")]
    InvalidName {
        /// Which input.
        what: &'static str,
        /// Its value.
        value: String,
        /// Why.
        reason: &'static str,
    },
    /// The store has no such object.
    #[error("not found: {location}")]
    NotFound {
        /// The URL or path.
        location: String,
    },
    /// The server answered with an error status.
    #[error("HTTP {status} from {url}")]
    Http {
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
    },
    /// Connecting, TLS or reading failed.
    #[error("transport error for {url}: {reason}")]
    Transport {
        /// The URL.
        url: String,
        /// What failed.
        reason: String,
    },
    /// The signed manifest did not verify (P2).
    #[error("manifest of {model}/{version} refused: {source}")]
    Manifest {
        /// Model id.
        model: String,
        /// Version.
        version: String,
        /// The verification failure.
        #[source]
        source: Box<atom_policy::Error>,
    },
    /// A file's content differs from the manifest.
    #[error("digest mismatch for {file}: manifest has {expected}, received {actual}")]
    DigestMismatch {
        /// The file.
        file: String,
        /// Digest in the manifest.
        expected: String,
        /// Digest of what was received.
        actual: String,
    },
    /// A download ended early; the part is kept and the next pull resumes it.
    #[error("truncated download of {file}: received {received} of {expected} bytes")]
    Truncated {
        /// The file.
        file: String,
        /// Bytes received so far (including earlier attempts).
        received: u64,
        /// Bytes announced.
        expected: u64,
    },
    /// The cache cannot hold the file without evicting pinned versions.
    #[error("cache full: {needed} bytes needed, {pinned} bytes pinned, limit {limit} bytes")]
    CacheFull {
        /// Bytes of the incoming file.
        needed: u64,
        /// Bytes of pinned blobs.
        pinned: u64,
        /// The cache limit.
        limit: u64,
    },
    /// A file expected in the cache is absent.
    #[error("{file} (sha256 {digest}) is not in the cache")]
    NotCached {
        /// The file.
        file: String,
        /// Its digest.
        digest: String,
    },
    /// Rollback without a previous version.
    #[error("model {model} has no previous version to roll back to")]
    NoPreviousVersion {
        /// The model.
        model: String,
    },
    /// A filesystem operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// The operation.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// Configuration of a connector.
#[derive(Debug, Clone)]
pub struct ModelStoreConfig {
    /// `file://DIR` or `https://host/prefix` (`MODEL_STORE_URL`).
    pub url: String,
    /// The cache directory.
    pub cache_dir: PathBuf,
    /// Cache size limit in bytes (default 10 GiB).
    pub cache_limit_bytes: u64,
    /// Signing mode: verification and, for HTTPS, the TLS groups (hybrid = X25519MLKEM768 only).
    pub mode: Mode,
    /// PEM certificates to trust for HTTPS instead of the Web PKI roots.
    pub ca_pem: Option<Vec<u8>>,
    /// Timeout of one HTTP request.
    pub timeout: Duration,
}

impl ModelStoreConfig {
    /// Defaults for `url` and `cache_dir`.
    pub fn new(url: &str, cache_dir: &Path) -> Self {
        Self {
            url: url.to_owned(),
            cache_dir: cache_dir.to_path_buf(),
            cache_limit_bytes: 10 << 30,
            mode: Mode::default(),
            ca_pem: None,
            timeout: Duration::from_secs(300),
        }
    }
}

/// A pulled, verified, materialised model version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PulledModel {
    /// Model id.
    pub model_id: String,
    /// Version.
    pub version: String,
    /// Directory holding the files (and `model.sig`).
    pub dir: PathBuf,
    /// The verified files.
    pub files: Vec<FileDigest>,
    /// Key ids whose signatures verified.
    pub key_ids: Vec<String>,
    /// Bytes downloaded by this call.
    pub bytes_downloaded: u64,
    /// Files served from the cache.
    pub cache_hits: usize,
    /// The TLS group, for HTTPS stores under hybrid mode.
    pub transport: Option<&'static str>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    models: BTreeMap<String, ModelState>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct ModelState {
    current: Option<String>,
    previous: Option<String>,
}

/// The connector.
pub struct ModelStore {
    source: Box<dyn Source>,
    cache: ContentCache,
    ring: KeyRing,
    mode: Mode,
}

impl std::fmt::Debug for ModelStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelStore")
            .field("source", &self.source.describe())
            .field("cache", &self.cache)
            .field("mode", &self.mode)
            .finish()
    }
}

fn check_name(what: &'static str, value: &str) -> Result<(), ModelStoreError> {
    let bad = |reason| {
        Err(ModelStoreError::InvalidName {
            what,
            value: value.to_owned(),
            reason,
        })
    };
    if value.is_empty() || value.len() > 255 {
        return bad("must be 1 to 255 characters");
    }
    if value == "." || value == ".." {
        return bad("must not be . or ..");
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.+".contains(&b))
    {
        return bad("only letters, digits and - _ . + are allowed");
    }
    Ok(())
}

impl ModelStore {
    /// Opens a connector; `ring` holds the keys manifests must be signed with.
    pub fn open(config: ModelStoreConfig, ring: KeyRing) -> Result<Self, ModelStoreError> {
        let source: Box<dyn Source> = if let Some(dir) = config.url.strip_prefix("file://") {
            Box::new(FileSource::new(PathBuf::from(dir)))
        } else if config.url.starts_with("https://") {
            Box::new(HttpsSource::new(
                &config.url,
                config.mode,
                config.ca_pem.as_deref(),
                config.timeout,
            )?)
        } else {
            return Err(ModelStoreError::InvalidName {
                what: "MODEL_STORE_URL",
                value: config.url.clone(),
                reason: "expected file://DIR or https://host/...",
            });
        };
        Ok(Self {
            source,
            cache: ContentCache::open(&config.cache_dir, config.cache_limit_bytes)?,
            ring,
            mode: config.mode,
        })
    }

    /// The content cache.
    pub fn cache(&self) -> &ContentCache {
        &self.cache
    }

    fn state_path(&self) -> PathBuf {
        self.cache.root().join("state.json")
    }

    fn load_state(&self) -> Result<State, ModelStoreError> {
        let p = self.state_path();
        match fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| ModelStoreError::Io {
                op: "parse",
                path: p,
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(ModelStoreError::Io {
                op: "read",
                path: p,
                source: e,
            }),
        }
    }

    fn save_state(&self, state: &State) -> Result<(), ModelStoreError> {
        let bytes = serde_json::to_vec_pretty(state).unwrap_or_default();
        write_atomic(&self.state_path(), &bytes)
    }

    fn version_dir(&self, model: &str, version: &str) -> PathBuf {
        self.cache.root().join("models").join(model).join(version)
    }

    /// The manifest materialised for a version (already verified when it was pulled).
    fn local_manifest(&self, model: &str, version: &str) -> Option<ModelManifest> {
        let text = fs::read_to_string(self.version_dir(model, version).join(MANIFEST_NAME)).ok()?;
        let bundle = SignedBundle::from_json(&text).ok()?;
        ModelManifest::from_statement(&bundle.dsse_envelope.payload_bytes().ok()?).ok()
    }

    /// Digests of the current and previous version of every model: never evicted.
    fn pinned(&self, state: &State) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for (model, s) in &state.models {
            for v in [&s.current, &s.previous].into_iter().flatten() {
                if let Some(m) = self.local_manifest(model, v) {
                    out.extend(m.files.into_iter().map(|f| f.digest));
                }
            }
        }
        out
    }

    fn fetch_manifest(&self, model: &str, version: &str) -> Result<Vec<u8>, ModelStoreError> {
        let rel = format!("{model}/{version}/{MANIFEST_NAME}");
        let opened = self.source.open(&rel, 0)?;
        let mut buf = Vec::new();
        opened
            .reader
            .take(MANIFEST_LIMIT + 1)
            .read_to_end(&mut buf)
            .map_err(|e| ModelStoreError::Transport {
                url: format!("{}/{rel}", self.source.describe()),
                reason: e.to_string(),
            })?;
        if buf.len() as u64 > MANIFEST_LIMIT {
            return Err(ModelStoreError::Transport {
                url: format!("{}/{rel}", self.source.describe()),
                reason: format!("manifest larger than {MANIFEST_LIMIT} bytes"),
            });
        }
        Ok(buf)
    }

    /// Pulls `model`/`version`: verify the manifest (P2), fetch and verify every file, cache,
    /// materialise, and make it the current version (the old current becomes the pinned previous).
    pub fn pull(
        &mut self,
        model: &str,
        version: &str,
        now: u64,
    ) -> Result<PulledModel, ModelStoreError> {
        check_name("model id", model)?;
        check_name("version", version)?;
        let manifest_bytes = self.fetch_manifest(model, version)?;
        let refused = |source| ModelStoreError::Manifest {
            model: model.to_owned(),
            version: version.to_owned(),
            source: Box::new(source),
        };
        let text = std::str::from_utf8(&manifest_bytes).map_err(|_| {
            refused(atom_policy::Error::KeyFormat(
                "manifest is not UTF-8".into(),
            ))
        })?;
        let bundle = SignedBundle::from_json(text).map_err(refused)?;
        let (manifest, key_ids) = bundle
            .verify_signature(&self.ring, self.mode, now)
            .map_err(refused)?;

        let mut state = self.load_state()?;
        let mut pinned = self.pinned(&state);
        pinned.extend(manifest.files.iter().map(|f| f.digest.clone()));
        let mut downloaded = 0;
        let mut hits = 0;
        for f in &manifest.files {
            if self.cache.touch(&f.digest) {
                hits += 1;
                continue;
            }
            downloaded += self.download(model, version, f, &pinned)?;
        }

        // Materialise: hard links to the verified blobs (copies where links are impossible).
        let dir = self.version_dir(model, version);
        let staging = dir.with_extension("staging");
        let _ = fs::remove_dir_all(&staging);
        for f in &manifest.files {
            let dest = staging.join(&f.name);
            if let Some(parent) = dest.parent() {
                fs::create_dir_all(parent).map_err(|e| ModelStoreError::Io {
                    op: "create",
                    path: parent.to_path_buf(),
                    source: e,
                })?;
            }
            let blob = self.cache.blob_path(&f.digest);
            if fs::hard_link(&blob, &dest).is_err() {
                fs::copy(&blob, &dest).map_err(|e| ModelStoreError::Io {
                    op: "copy",
                    path: blob.clone(),
                    source: e,
                })?;
            }
        }
        write_atomic(&staging.join(MANIFEST_NAME), &manifest_bytes)?;
        let _ = fs::remove_dir_all(&dir);
        fs::rename(&staging, &dir).map_err(|e| ModelStoreError::Io {
            op: "rename",
            path: staging.clone(),
            source: e,
        })?;

        let entry = state.models.entry(model.to_owned()).or_default();
        if entry.current.as_deref() != Some(version) {
            entry.previous = entry.current.take();
            entry.current = Some(version.to_owned());
        }
        let keep: Vec<String> = [entry.current.clone(), entry.previous.clone()]
            .into_iter()
            .flatten()
            .collect();
        self.save_state(&state)?;
        self.prune(model, &keep);

        Ok(PulledModel {
            model_id: model.to_owned(),
            version: version.to_owned(),
            dir,
            files: manifest.files,
            key_ids,
            bytes_downloaded: downloaded,
            cache_hits: hits,
            transport: self.source.transport(),
        })
    }

    /// Removes materialised versions of `model` other than `keep` (their blobs become evictable).
    fn prune(&self, model: &str, keep: &[String]) {
        let root = self.cache.root().join("models").join(model);
        if let Ok(entries) = fs::read_dir(&root) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if !keep.contains(&name) {
                    let _ = fs::remove_dir_all(e.path());
                }
            }
        }
    }

    fn download(
        &self,
        model: &str,
        version: &str,
        file: &FileDigest,
        pinned: &BTreeSet<String>,
    ) -> Result<u64, ModelStoreError> {
        let part = self.cache.part_path(&file.digest);
        let io = |op, e| ModelStoreError::Io {
            op,
            path: part.clone(),
            source: e,
        };
        let mut have = fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
        let rel = format!("{model}/{version}/{}", file.name);
        let mut opened = self.source.open(&rel, have)?;
        if opened.restarted {
            have = 0;
        }
        let expected_total = opened.remaining_len.map(|r| have + r);
        self.cache
            .reserve(expected_total.unwrap_or(0).saturating_sub(have), pinned)?;

        // Hash what an earlier attempt already stored, then continue after it.
        let mut hasher = Sha256::new();
        let mut out = File::options()
            .create(true)
            .read(true)
            .append(true)
            .open(&part)
            .map_err(|e| io("open", e))?;
        if have == 0 {
            out.set_len(0).map_err(|e| io("truncate", e))?;
        } else {
            let mut prefix = File::open(&part).map_err(|e| io("open", e))?.take(have);
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = prefix.read(&mut buf).map_err(|e| io("read", e))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
            }
        }
        let mut received = have;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = match opened.reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(_) => {
                    let _ = out.sync_all();
                    return Err(ModelStoreError::Truncated {
                        file: file.name.clone(),
                        received,
                        expected: expected_total.unwrap_or(received),
                    });
                }
            };
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n]).map_err(|e| io("write", e))?;
            received += n as u64;
        }
        if let Some(total) = expected_total
            && received != total
        {
            let _ = out.sync_all();
            return Err(ModelStoreError::Truncated {
                file: file.name.clone(),
                received,
                expected: total,
            });
        }
        drop(out);
        let actual = hex::encode(hasher.finalize());
        if actual != file.digest {
            let _ = fs::remove_file(&part);
            return Err(ModelStoreError::DigestMismatch {
                file: file.name.clone(),
                expected: file.digest.clone(),
                actual,
            });
        }
        self.cache.commit(&file.digest)?;
        Ok(received - have)
    }

    /// The current version of `model`, if any.
    pub fn current(&self, model: &str) -> Result<Option<String>, ModelStoreError> {
        Ok(self
            .load_state()?
            .models
            .get(model)
            .and_then(|s| s.current.clone()))
    }

    /// Rolls `model` back to its pinned previous version after re-verifying its signature and
    /// every file's SHA-256 (P7); the versions swap, so a second rollback returns.
    pub fn rollback(&mut self, model: &str, now: u64) -> Result<PulledModel, ModelStoreError> {
        check_name("model id", model)?;
        let mut state = self.load_state()?;
        let entry = state.models.get(model).cloned().unwrap_or_default();
        let (Some(prev), Some(cur)) = (entry.previous.clone(), entry.current.clone()) else {
            return Err(ModelStoreError::NoPreviousVersion {
                model: model.to_owned(),
            });
        };
        let dir = self.version_dir(model, &prev);
        let manifest_path = dir.join(MANIFEST_NAME);
        let text = fs::read_to_string(&manifest_path).map_err(|e| ModelStoreError::Io {
            op: "read",
            path: manifest_path.clone(),
            source: e,
        })?;
        let refused = |source| ModelStoreError::Manifest {
            model: model.to_owned(),
            version: prev.clone(),
            source: Box::new(source),
        };
        let bundle = SignedBundle::from_json(&text).map_err(refused)?;
        let (manifest, key_ids) = bundle
            .verify_signature(&self.ring, self.mode, now)
            .map_err(refused)?;
        for f in &manifest.files {
            self.cache.verify_blob(&f.digest, &f.name)?;
            let mut local =
                File::open(dir.join(&f.name)).map_err(|_| ModelStoreError::NotCached {
                    file: f.name.clone(),
                    digest: f.digest.clone(),
                })?;
            let actual = hash_reader(&mut local).map_err(|e| ModelStoreError::Io {
                op: "read",
                path: dir.join(&f.name),
                source: e,
            })?;
            if actual != f.digest {
                return Err(ModelStoreError::DigestMismatch {
                    file: f.name.clone(),
                    expected: f.digest.clone(),
                    actual,
                });
            }
        }
        let e = state.models.entry(model.to_owned()).or_default();
        e.current = Some(prev.clone());
        e.previous = Some(cur);
        self.save_state(&state)?;
        Ok(PulledModel {
            model_id: model.to_owned(),
            version: prev,
            dir,
            files: manifest.files,
            key_ids,
            bytes_downloaded: 0,
            cache_hits: 0,
            transport: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::check_name;

    #[test]
    fn names_cannot_escape_the_store() {
        for bad in ["", "..", ".", "a/b", "a\\b", "x y", "é"] {
            assert!(check_name("model id", bad).is_err(), "{bad:?}");
        }
        for good in ["resnet50", "v1.2.3", "llama-3_8b+q4"] {
            assert!(check_name("version", good).is_ok(), "{good:?}");
        }
    }
}
