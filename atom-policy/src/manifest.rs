//! Signed model manifests in the OpenSSF Model Signing format (P2, P7).
//!
//! A manifest lists every file of a model directory with its SHA-256. It travels as an in-toto
//! Statement v1 (predicate type `https://model_signing/signature/v1.0`, serialization method
//! `files`) inside a DSSE envelope inside a Sigstore bundle v0.3. The `model_signing` tool verifies
//! our bundles with the ECDSA P-256 key; in hybrid mode the ML-DSA signature follows the ECDSA one
//! and our verifier requires both.
//!
//! ```
//! use atom_policy::config::Mode;
//! use atom_policy::keyring::KeyRing;
//! use atom_policy::keys::{Algorithm, KeySpec, SigningKey};
//! use atom_policy::manifest::{HashOptions, ModelManifest, SignedBundle};
//!
//! let dir = tempfile::tempdir().unwrap();
//! std::fs::write(dir.path().join("weights.bin"), b"\x00\x01\x02").unwrap();
//! let key = SigningKey::generate(KeySpec::Hybrid(Algorithm::MlDsa65));
//! let manifest = ModelManifest::hash_dir(dir.path(), &HashOptions::default()).unwrap();
//! let bundle = SignedBundle::sign(&manifest, &key, Mode::default()).unwrap();
//! let ring = KeyRing::trusting(key.verifying_key());
//! let verified = bundle.verify_dir(dir.path(), &ring, Mode::default(), 0, &HashOptions::default()).unwrap();
//! assert_eq!(verified.files.len(), 1);
//! std::fs::write(dir.path().join("weights.bin"), b"\x00\x01\x03").unwrap();
//! assert!(bundle.verify_dir(dir.path(), &ring, Mode::default(), 0, &HashOptions::default()).is_err());
//! ```

use crate::config::Mode;
use crate::dsse::{Envelope, IN_TOTO_PAYLOAD_TYPE};
use crate::error::{Error, Result};
use crate::keyring::KeyRing;
use crate::keys::{Algorithm, SigningKey, sha256_hex};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};

/// The in-toto predicate type of OpenSSF model signing v1.0.
pub const PREDICATE_TYPE: &str = "https://model_signing/signature/v1.0";
/// The in-toto Statement v1 type.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// The Sigstore bundle media type we write.
pub const BUNDLE_MEDIA_TYPE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
/// Paths ignored by default, as the reference tool does.
pub const DEFAULT_IGNORED: [&str; 4] = [".git", ".gitattributes", ".github", ".gitignore"];

/// Exactly which manifest check failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// A file's content differs from the manifest.
    #[error("digest mismatch for {file}: manifest has {expected}, file hashes to {actual}")]
    DigestMismatch {
        /// Relative POSIX path.
        file: String,
        /// Hex digest in the manifest.
        expected: String,
        /// Hex digest of the file on disk.
        actual: String,
    },
    /// A file in the manifest is absent.
    #[error("missing file {file} (listed in the manifest)")]
    MissingFile {
        /// Relative POSIX path.
        file: String,
    },
    /// A file on disk is not in the manifest.
    #[error("extra file {file} (not in the manifest)")]
    ExtraFile {
        /// Relative POSIX path.
        file: String,
    },
    /// The subject digest does not match the listed resources.
    #[error("subject digest {expected} does not match the resources, which hash to {actual}")]
    SubjectDigestMismatch {
        /// Hex digest in the subject.
        expected: String,
        /// Hex digest over the resources.
        actual: String,
    },
    /// The statement is of another kind.
    #[error("unsupported {what}: {found:?}")]
    Unsupported {
        /// Which field.
        what: &'static str,
        /// Its value.
        found: String,
    },
    /// The bundle's public key hint names another key.
    #[error("bundle public key hint {hint} does not match the ECDSA key ({expected})")]
    HintMismatch {
        /// The bundle's hint.
        hint: String,
        /// SHA-256 of our key's PEM.
        expected: String,
    },
    /// A symbolic link was found (not allowed).
    #[error("symbolic link {path} is not allowed in a model directory")]
    Symlink {
        /// Relative path.
        path: String,
    },
    /// A path is not valid UTF-8 or escapes the directory.
    #[error("unusable path {path}: {reason}")]
    BadPath {
        /// The path.
        path: String,
        /// Why.
        reason: String,
    },
    /// The bundle or statement is malformed.
    #[error("malformed {0}")]
    Malformed(String),
}

/// One file of a model and its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDigest {
    /// Relative POSIX path inside the model directory.
    pub name: String,
    /// Hex SHA-256 of the file's bytes.
    pub digest: String,
    /// Size in bytes (not part of the signed format; 0 when read from a statement).
    #[serde(skip)]
    pub size: u64,
}

/// Options for hashing a model directory.
#[derive(Default)]
pub struct HashOptions {
    /// Relative paths (files or directories) to ignore besides [`DEFAULT_IGNORED`].
    pub ignore_paths: Vec<String>,
    /// Called with the number of bytes hashed, as hashing proceeds (from several threads).
    pub progress: Option<Box<dyn Fn(u64) + Sync + Send>>,
}

impl std::fmt::Debug for HashOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HashOptions")
            .field("ignore_paths", &self.ignore_paths)
            .finish_non_exhaustive()
    }
}

/// A model manifest: the model's name and every file's digest, sorted by path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelManifest {
    /// The model's name (the directory's last component).
    pub model_name: String,
    /// Files sorted by path component by component (as the reference tool sorts them).
    pub files: Vec<FileDigest>,
    /// Ignored paths recorded in the manifest.
    pub ignore_paths: Vec<String>,
}

fn posix_key(name: &str) -> Vec<&str> {
    name.split('/').collect()
}

/// Lists regular files under `dir` (relative POSIX paths), honouring ignores and refusing symlinks.
pub fn list_files(dir: &Path, ignore: &[String]) -> Result<Vec<(String, u64)>> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let abs = dir.join(&rel);
        let entries = std::fs::read_dir(&abs).map_err(|e| Error::io("read directory", &abs, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("read directory", &abs, e))?;
            let rel_child = rel.join(entry.file_name());
            let name = rel_child
                .to_str()
                .ok_or_else(|| ManifestError::BadPath {
                    path: rel_child.display().to_string(),
                    reason: "not valid UTF-8".into(),
                })?
                .replace(std::path::MAIN_SEPARATOR, "/");
            if ignore
                .iter()
                .any(|i| name == *i || name.starts_with(&format!("{i}/")))
            {
                continue;
            }
            let ft = entry
                .file_type()
                .map_err(|e| Error::io("stat", entry.path(), e))?;
            if ft.is_symlink() {
                return Err(ManifestError::Symlink { path: name }.into());
            } else if ft.is_dir() {
                stack.push(rel_child);
            } else if ft.is_file() {
                let len = entry
                    .metadata()
                    .map_err(|e| Error::io("stat", entry.path(), e))?
                    .len();
                out.push((name, len));
            }
        }
    }
    out.sort_by(|a, b| posix_key(&a.0).cmp(&posix_key(&b.0)));
    Ok(out)
}

/// Streams a file through SHA-256 in 1 MiB reads, reporting progress.
pub fn hash_file(path: &Path, progress: Option<&(dyn Fn(u64) + Sync + Send)>) -> Result<[u8; 32]> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io("open", path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io("read", path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        if let Some(p) = progress {
            p(n as u64);
        }
    }
    Ok(hasher.finalize().into())
}

impl ModelManifest {
    /// Hashes every file under `dir` (files in parallel, each streamed).
    pub fn hash_dir(dir: &Path, options: &HashOptions) -> Result<Self> {
        let model_name = dir
            .canonicalize()
            .map_err(|e| Error::io("open", dir, e))?
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("model")
            .to_owned();
        let mut ignore: Vec<String> = DEFAULT_IGNORED.iter().map(|s| s.to_string()).collect();
        ignore.extend(
            options
                .ignore_paths
                .iter()
                .map(|p| p.trim_end_matches('/').to_owned()),
        );
        let listed = list_files(dir, &ignore)?;
        let progress = options.progress.as_deref();
        let files = listed
            .par_iter()
            .map(|(name, size)| {
                let digest = hash_file(&dir.join(name), progress)?;
                Ok(FileDigest {
                    name: name.clone(),
                    digest: hex::encode(digest),
                    size: *size,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            model_name,
            files,
            ignore_paths: ignore,
        })
    }

    /// SHA-256 over the concatenated raw file digests in listed order (the subject digest).
    pub fn subject_digest(&self) -> Result<String> {
        let mut h = Sha256::new();
        for f in &self.files {
            let raw = hex::decode(&f.digest).map_err(|_| {
                ManifestError::Malformed(format!("digest of {} is not hex", f.name))
            })?;
            h.update(raw);
        }
        Ok(hex::encode(h.finalize()))
    }

    /// The in-toto Statement v1 for this manifest.
    pub fn statement(&self) -> Result<serde_json::Value> {
        let resources: Vec<_> = self
            .files
            .iter()
            .map(|f| json!({"name": f.name, "algorithm": "sha256", "digest": f.digest}))
            .collect();
        Ok(json!({
            "_type": STATEMENT_TYPE,
            "subject": [{"name": self.model_name, "digest": {"sha256": self.subject_digest()?}}],
            "predicateType": PREDICATE_TYPE,
            "predicate": {
                "serialization": {
                    "method": "files",
                    "hash_type": "sha256",
                    "allow_symlinks": false,
                    "ignore_paths": self.ignore_paths,
                },
                "resources": resources,
            }
        }))
    }

    /// Parses a statement, checking its type, predicate, serialization and subject digest.
    pub fn from_statement(payload: &[u8]) -> Result<Self> {
        let malformed = |what: &str| ManifestError::Malformed(format!("statement: {what}"));
        let st: Statement = serde_json::from_slice(payload)
            .map_err(|e| ManifestError::Malformed(format!("statement JSON: {e}")))?;
        if st.type_ != STATEMENT_TYPE {
            return Err(ManifestError::Unsupported {
                what: "statement type",
                found: st.type_,
            }
            .into());
        }
        if st.predicate_type != PREDICATE_TYPE {
            return Err(ManifestError::Unsupported {
                what: "predicate type",
                found: st.predicate_type,
            }
            .into());
        }
        let ser = &st.predicate.serialization;
        if ser.method != "files" {
            return Err(ManifestError::Unsupported {
                what: "serialization method",
                found: ser.method.clone(),
            }
            .into());
        }
        if ser.hash_type != "sha256" {
            return Err(ManifestError::Unsupported {
                what: "hash type",
                found: ser.hash_type.clone(),
            }
            .into());
        }
        let [subject] = st.subject.as_slice() else {
            return Err(malformed("expected exactly one subject").into());
        };
        let expected = subject
            .digest
            .get("sha256")
            .ok_or_else(|| malformed("subject has no sha256 digest"))?
            .clone();
        let mut files = Vec::with_capacity(st.predicate.resources.len());
        for r in st.predicate.resources {
            if r.algorithm != "sha256" {
                return Err(ManifestError::Unsupported {
                    what: "resource digest algorithm",
                    found: r.algorithm,
                }
                .into());
            }
            if r.digest.len() != 64 || hex::decode(&r.digest).is_err() {
                return Err(
                    malformed(&format!("digest of {} is not 64 hex digits", r.name)).into(),
                );
            }
            if r.name.starts_with('/') || r.name.split('/').any(|c| c == ".." || c.is_empty()) {
                return Err(ManifestError::BadPath {
                    path: r.name,
                    reason: "must be a relative path inside the model directory".into(),
                }
                .into());
            }
            files.push(FileDigest {
                name: r.name,
                digest: r.digest,
                size: 0,
            });
        }
        let manifest = Self {
            model_name: subject.name.clone(),
            files,
            ignore_paths: ser.ignore_paths.clone(),
        };
        let actual = manifest.subject_digest()?;
        if actual != expected {
            return Err(ManifestError::SubjectDigestMismatch { expected, actual }.into());
        }
        Ok(manifest)
    }

    /// Compares this (expected) manifest with one hashed from disk: the first difference is an error.
    pub fn check_against(&self, actual: &ModelManifest) -> Result<(), ManifestError> {
        let want: BTreeMap<&str, &str> = self
            .files
            .iter()
            .map(|f| (f.name.as_str(), f.digest.as_str()))
            .collect();
        let have: BTreeMap<&str, &str> = actual
            .files
            .iter()
            .map(|f| (f.name.as_str(), f.digest.as_str()))
            .collect();
        for (name, digest) in &want {
            match have.get(name) {
                None => {
                    return Err(ManifestError::MissingFile {
                        file: (*name).to_owned(),
                    });
                }
                Some(d) if d != digest => {
                    return Err(ManifestError::DigestMismatch {
                        file: (*name).to_owned(),
                        expected: (*digest).to_owned(),
                        actual: (*d).to_owned(),
                    });
                }
                Some(_) => {}
            }
        }
        if let Some(extra) = have.keys().find(|n| !want.contains_key(*n)) {
            return Err(ManifestError::ExtraFile {
                file: (*extra).to_owned(),
            });
        }
        Ok(())
    }
}

#[derive(Deserialize)]
struct Statement {
    #[serde(rename = "_type")]
    type_: String,
    subject: Vec<Subject>,
    #[serde(rename = "predicateType")]
    predicate_type: String,
    predicate: Predicate,
}

#[derive(Deserialize)]
struct Subject {
    name: String,
    digest: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct Predicate {
    serialization: Serialization,
    resources: Vec<Resource>,
}

#[derive(Deserialize)]
struct Serialization {
    method: String,
    hash_type: String,
    #[serde(default)]
    ignore_paths: Vec<String>,
}

#[derive(Deserialize)]
struct Resource {
    name: String,
    algorithm: String,
    digest: String,
}

/// A Sigstore bundle v0.3 holding the DSSE-signed statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedBundle {
    /// The bundle media type.
    #[serde(rename = "mediaType")]
    pub media_type: String,
    /// Key hint and (empty) transparency log entries.
    #[serde(rename = "verificationMaterial")]
    pub verification_material: VerificationMaterial,
    /// The signed statement.
    #[serde(rename = "dsseEnvelope")]
    pub dsse_envelope: Envelope,
}

/// The bundle's verification material.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerificationMaterial {
    /// Public key identifier.
    #[serde(rename = "publicKey")]
    pub public_key: PublicKeyHint,
    /// Transparency log entries (we write none).
    #[serde(rename = "tlogEntries", default)]
    pub tlog_entries: Vec<serde_json::Value>,
}

/// The public key hint: hex SHA-256 of the classical key's PEM, as the reference tool writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKeyHint {
    /// The hint.
    #[serde(default)]
    pub hint: Option<String>,
}

/// What a verified bundle established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedManifest {
    /// The model's name from the subject.
    pub model_name: String,
    /// Every verified file.
    pub files: Vec<FileDigest>,
    /// Key ids whose signatures verified.
    pub key_ids: Vec<String>,
}

fn pem_hint(key: &crate::keys::PublicComponent) -> Option<String> {
    (key.algorithm() == Algorithm::EcdsaP256)
        .then(|| key.to_pem().ok())
        .flatten()
        .map(|pem| sha256_hex(pem.as_bytes()))
}

impl SignedBundle {
    /// Signs a manifest. In hybrid mode the key must be ECDSA P-256 + ML-DSA so that the reference
    /// verifier (which checks only the first, ECDSA, signature) accepts the bundle.
    pub fn sign(manifest: &ModelManifest, key: &SigningKey, mode: Mode) -> Result<Self> {
        let payload =
            serde_json::to_vec(&manifest.statement()?).map_err(|e| Error::json("statement", e))?;
        let envelope = Envelope::sign(IN_TOTO_PAYLOAD_TYPE, &payload, key, mode)?;
        let hint = key.classical().and_then(|c| pem_hint(c.public()));
        Ok(Self {
            media_type: BUNDLE_MEDIA_TYPE.into(),
            verification_material: VerificationMaterial {
                public_key: PublicKeyHint { hint },
                tlog_entries: Vec::new(),
            },
            dsse_envelope: envelope,
        })
    }

    /// Verifies the signatures and parses the manifest, without looking at any files.
    pub fn verify_signature(
        &self,
        ring: &KeyRing,
        mode: Mode,
        now: u64,
    ) -> Result<(ModelManifest, Vec<String>)> {
        if !self
            .media_type
            .starts_with("application/vnd.dev.sigstore.bundle")
        {
            return Err(ManifestError::Unsupported {
                what: "bundle media type",
                found: self.media_type.clone(),
            }
            .into());
        }
        let (payload, verified) =
            self.dsse_envelope
                .verify(ring, mode, now, IN_TOTO_PAYLOAD_TYPE)?;
        if let Some(hint) = &self.verification_material.public_key.hint {
            let ecdsa_hints: Vec<String> = verified
                .key_ids
                .iter()
                .filter_map(|id| ring.find_component(id).and_then(|(_, c)| pem_hint(c)))
                .collect();
            if let Some(expected) = ecdsa_hints.first()
                && !ecdsa_hints.contains(hint)
            {
                return Err(ManifestError::HintMismatch {
                    hint: hint.clone(),
                    expected: expected.clone(),
                }
                .into());
            }
        }
        Ok((ModelManifest::from_statement(&payload)?, verified.key_ids))
    }

    /// Verifies signatures, then hashes `dir` and checks every file (missing, extra, changed).
    pub fn verify_dir(
        &self,
        dir: &Path,
        ring: &KeyRing,
        mode: Mode,
        now: u64,
        options: &HashOptions,
    ) -> Result<VerifiedManifest> {
        let (expected, key_ids) = self.verify_signature(ring, mode, now)?;
        let opts = HashOptions {
            ignore_paths: expected
                .ignore_paths
                .iter()
                .chain(options.ignore_paths.iter())
                .cloned()
                .collect(),
            progress: None,
        };
        let mut actual = ModelManifest::hash_dir(dir, &opts)?;
        if let Some(p) = &options.progress {
            p(actual.files.iter().map(|f| f.size).sum());
        }
        expected.check_against(&actual)?;
        actual
            .files
            .retain(|f| expected.files.iter().any(|e| e.name == f.name));
        Ok(VerifiedManifest {
            model_name: expected.model_name,
            files: actual.files,
            key_ids,
        })
    }

    /// The bundle as JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Parses a bundle.
    pub fn from_json(text: &str) -> Result<Self> {
        serde_json::from_str(text).map_err(|e| Error::json("Sigstore bundle", e))
    }

    /// Reads a bundle file.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io("read", path, e))?;
        Self::from_json(&text)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::PqcMode;
    use crate::keys::KeySpec;
    use crate::signature::VerifyError;

    fn model() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("sub/deeper")).unwrap();
        std::fs::create_dir_all(dir.path().join(".git")).unwrap();
        std::fs::write(dir.path().join("a-b"), b"1").unwrap();
        std::fs::write(dir.path().join("sub/deeper/x.bin"), vec![7u8; 3 << 20]).unwrap();
        std::fs::write(dir.path().join("sub/y"), b"").unwrap();
        std::fs::write(dir.path().join(".git/HEAD"), b"ref").unwrap();
        dir
    }

    #[test]
    fn files_sorted_component_wise_and_digests_are_sha256() {
        let dir = model();
        let m = ModelManifest::hash_dir(dir.path(), &HashOptions::default()).unwrap();
        let names: Vec<_> = m.files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["a-b", "sub/deeper/x.bin", "sub/y"]);
        // Known SHA-256 values (FIPS 180-2 / coreutils sha256sum).
        assert_eq!(
            m.files[0].digest,
            "6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b"
        );
        assert_eq!(
            m.files[2].digest,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn every_failure_is_named() {
        let dir = model();
        let key = SigningKey::generate(KeySpec::Hybrid(Algorithm::MlDsa44));
        let mode = Mode::new(PqcMode::Hybrid, false);
        let ring = KeyRing::trusting(key.verifying_key());
        let m = ModelManifest::hash_dir(dir.path(), &HashOptions::default()).unwrap();
        let b = SignedBundle::sign(&m, &key, mode).unwrap();
        let b = SignedBundle::from_json(&b.to_json()).unwrap();
        let opts = HashOptions::default();
        assert!(b.verify_dir(dir.path(), &ring, mode, 0, &opts).is_ok());

        std::fs::write(dir.path().join("sub/y"), b"!").unwrap();
        match b.verify_dir(dir.path(), &ring, mode, 0, &opts) {
            Err(Error::Manifest(ManifestError::DigestMismatch { file, .. })) => {
                assert_eq!(file, "sub/y")
            }
            other => panic!("{other:?}"),
        }
        std::fs::remove_file(dir.path().join("sub/y")).unwrap();
        match b.verify_dir(dir.path(), &ring, mode, 0, &opts) {
            Err(Error::Manifest(ManifestError::MissingFile { file })) => assert_eq!(file, "sub/y"),
            other => panic!("{other:?}"),
        }
        std::fs::write(dir.path().join("sub/y"), b"").unwrap();
        std::fs::write(dir.path().join("new"), b"").unwrap();
        match b.verify_dir(dir.path(), &ring, mode, 0, &opts) {
            Err(Error::Manifest(ManifestError::ExtraFile { file })) => assert_eq!(file, "new"),
            other => panic!("{other:?}"),
        }
        std::fs::remove_file(dir.path().join("new")).unwrap();
        std::fs::rename(dir.path().join("a-b"), dir.path().join("a_b")).unwrap();
        assert!(matches!(
            b.verify_dir(dir.path(), &ring, mode, 0, &opts),
            Err(Error::Manifest(ManifestError::MissingFile { .. }))
        ));
        std::fs::rename(dir.path().join("a_b"), dir.path().join("a-b")).unwrap();

        // Wrong key.
        let other = KeyRing::trusting(
            SigningKey::generate(KeySpec::Hybrid(Algorithm::MlDsa44)).verifying_key(),
        );
        assert!(matches!(
            b.verify_dir(dir.path(), &other, mode, 0, &opts),
            Err(Error::Verify(VerifyError::UnknownKey { .. }))
        ));
        // A manifest edited after signing fails the signature.
        let mut edited = b.clone();
        let mut st = m.statement().unwrap();
        st["predicate"]["resources"][0]["digest"] = json!("00".repeat(32));
        edited.dsse_envelope.payload = {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(&st).unwrap())
        };
        assert!(matches!(
            edited.verify_dir(dir.path(), &ring, mode, 0, &opts),
            Err(Error::Verify(VerifyError::BadSignature { .. }))
        ));
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_refused() {
        let dir = model();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("link")).unwrap();
        assert!(matches!(
            ModelManifest::hash_dir(dir.path(), &HashOptions::default()),
            Err(Error::Manifest(ManifestError::Symlink { .. }))
        ));
    }

    #[test]
    fn statement_paths_cannot_escape() {
        let m = ModelManifest {
            model_name: "m".into(),
            files: vec![FileDigest {
                name: "../etc/passwd".into(),
                digest: "00".repeat(32),
                size: 0,
            }],
            ignore_paths: vec![],
        };
        let payload = serde_json::to_vec(&m.statement().unwrap()).unwrap();
        assert!(matches!(
            ModelManifest::from_statement(&payload),
            Err(Error::Manifest(ManifestError::BadPath { .. }))
        ));
    }
}
