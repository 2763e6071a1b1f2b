//! Keys, key rings and signed model manifests behind `atom::SigningKey`, `atom::VerifyingKey`,
//! `atom::KeyRing`, `atom::sign_model` and `atom::verify_model`.

use crate::error::{BridgeResult, Error, guard};
use crate::ffi;
use atom_policy::config::{Mode, PqcMode};
use atom_policy::keyring::{KeyRing, KeyStatus, TrustedKey};
use atom_policy::keys::{KeySpec, SigningKey, VerifyingKey};
use atom_policy::manifest::{HashOptions, ModelManifest, SignedBundle};
use std::path::Path;

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn mode(options: &ffi::ManifestOptions) -> Result<Mode, Error> {
    let pqc = if options.pqc_mode.is_empty() {
        PqcMode::Hybrid
    } else {
        PqcMode::parse(&options.pqc_mode)?
    };
    let m = Mode::new(pqc, options.simulation);
    m.check()?;
    Ok(m)
}

fn hash_options(options: &ffi::ManifestOptions) -> HashOptions {
    HashOptions {
        ignore_paths: options.ignore_paths.clone(),
        progress: None,
    }
}

/// A signing key (secret material stays in Rust; it is never returned except by `write`).
///
/// ```
/// use atom_fabric_cxx::signing_key_generate;
/// let k = signing_key_generate("ed25519").unwrap();
/// assert_eq!(k.key_id(), k.verifying_key().key_id());
/// assert!(signing_key_generate("rsa").is_err());
/// ```
#[derive(Debug)]
pub struct SigningKeyCore(SigningKey);

/// Generates a key: `hybrid` (ECDSA P-256 + ML-DSA-65), `ml-dsa-44|65|87`, `ecdsa-p256`,
/// `ed25519`.
pub fn signing_key_generate(algorithm: &str) -> BridgeResult<Box<SigningKeyCore>> {
    guard(|| {
        Ok(Box::new(SigningKeyCore(SigningKey::generate(
            KeySpec::parse(algorithm)?,
        ))))
    })
}

/// Reads a secret key file.
pub fn signing_key_read(path: &str) -> BridgeResult<Box<SigningKeyCore>> {
    guard(|| Ok(Box::new(SigningKeyCore(SigningKey::read(Path::new(path))?))))
}

/// Parses secret key text (the key file format).
pub fn signing_key_from_text(text: &str) -> BridgeResult<Box<SigningKeyCore>> {
    guard(|| Ok(Box::new(SigningKeyCore(SigningKey::from_text(text)?))))
}

impl SigningKeyCore {
    /// Writes the secret key to a new file (mode 0600; never overwrites).
    pub fn write(&self, path: &str) -> BridgeResult<()> {
        guard(|| Ok(self.0.write(Path::new(path))?))
    }

    /// Hex key id (SHA-256 of the public key).
    pub fn key_id(&self) -> String {
        self.0.key_id()
    }

    /// Algorithm label (`ecdsa-p256+ml-dsa-65` for a hybrid key).
    pub fn algorithm(&self) -> String {
        self.0.algorithm_label()
    }

    /// The public key.
    pub fn verifying_key(&self) -> Box<VerifyingKeyCore> {
        Box::new(VerifyingKeyCore(self.0.verifying_key()))
    }
}

/// A public key.
#[derive(Debug)]
pub struct VerifyingKeyCore(VerifyingKey);

/// Parses public key text.
pub fn verifying_key_from_text(text: &str) -> BridgeResult<Box<VerifyingKeyCore>> {
    guard(|| Ok(Box::new(VerifyingKeyCore(VerifyingKey::from_text(text)?))))
}

/// Reads a public (or secret) key file.
pub fn verifying_key_read(path: &str) -> BridgeResult<Box<VerifyingKeyCore>> {
    guard(|| {
        Ok(Box::new(VerifyingKeyCore(VerifyingKey::read(Path::new(
            path,
        ))?)))
    })
}

impl VerifyingKeyCore {
    /// The key file text.
    pub fn to_text(&self) -> String {
        self.0.to_text()
    }

    /// Hex key id.
    pub fn key_id(&self) -> String {
        self.0.key_id()
    }

    /// Algorithm label.
    pub fn algorithm(&self) -> String {
        self.0.algorithm_label()
    }

    /// A copy.
    pub fn duplicate(&self) -> Box<VerifyingKeyCore> {
        Box::new(VerifyingKeyCore(self.0.clone()))
    }
}

/// Trusted keys with validity windows.
#[derive(Debug)]
pub struct KeyRingCore(KeyRing);

/// An empty key ring.
pub fn key_ring_new() -> Box<KeyRingCore> {
    Box::new(KeyRingCore(KeyRing::new()))
}

/// Loads a ring from its JSON file, or a single public key file (trusted with no expiry).
pub fn key_ring_load(path: &str) -> BridgeResult<Box<KeyRingCore>> {
    guard(|| Ok(Box::new(KeyRingCore(KeyRing::load(Path::new(path))?))))
}

/// Parses ring JSON ([`KeyRingCore::to_json`]).
pub fn key_ring_from_json(text: &str) -> BridgeResult<Box<KeyRingCore>> {
    guard(|| Ok(Box::new(KeyRingCore(KeyRing::from_json(text)?))))
}

impl KeyRingCore {
    /// Trusts `key` (active) from `not_before` until `not_after` (0 = no expiry), unix seconds.
    pub fn add(&mut self, key: &VerifyingKeyCore, not_before: u64, not_after: u64) {
        self.0.add(TrustedKey {
            key: key.0.clone(),
            status: KeyStatus::Active,
            not_before,
            not_after: (not_after > 0).then_some(not_after),
            approved_by: None,
        });
    }

    /// Number of trusted keys.
    pub fn key_count(&self) -> usize {
        self.0.keys().len()
    }

    /// Hex ids of the trusted keys.
    pub fn key_ids(&self) -> Vec<String> {
        self.0.keys().iter().map(|k| k.key.key_id()).collect()
    }

    /// The ring as JSON.
    pub fn to_json(&self) -> String {
        self.0.to_json()
    }

    /// A copy.
    pub fn duplicate(&self) -> Box<KeyRingCore> {
        Box::new(KeyRingCore(self.0.clone()))
    }
}

/// Hashes `model_dir` and signs the manifest as an OpenSSF model-signing (Sigstore v0.3) bundle;
/// returns the bundle JSON. Hybrid mode needs a hybrid key.
pub fn sign_model(
    model_dir: &str,
    key: &SigningKeyCore,
    options: &ffi::ManifestOptions,
) -> BridgeResult<String> {
    guard(|| {
        let m = mode(options)?;
        let manifest = ModelManifest::hash_dir(Path::new(model_dir), &hash_options(options))?;
        Ok(SignedBundle::sign(&manifest, &key.0, m)?.to_json())
    })
}

/// Verifies a bundle's signatures against `ring` (in the mode of `options`, at `options.now`),
/// then hashes `model_dir` and checks every file: a changed, missing or extra file fails with a
/// `manifest` error, a bad or untrusted signature with a `verify` error.
pub fn verify_model(
    model_dir: &str,
    bundle_json: &str,
    ring: &KeyRingCore,
    options: &ffi::ManifestOptions,
) -> BridgeResult<ffi::VerifiedModel> {
    guard(|| {
        let m = mode(options)?;
        let bundle = SignedBundle::from_json(bundle_json)?;
        let now = if options.now == 0 {
            now_secs()
        } else {
            options.now
        };
        let v = bundle.verify_dir(
            Path::new(model_dir),
            &ring.0,
            m,
            now,
            &hash_options(options),
        )?;
        Ok(ffi::VerifiedModel {
            model_name: v.model_name,
            files: v
                .files
                .into_iter()
                .map(|f| ffi::FileDigest {
                    path: f.name,
                    sha256: f.digest,
                })
                .collect(),
            key_ids: v.key_ids,
        })
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn opts() -> ffi::ManifestOptions {
        ffi::ManifestOptions {
            pqc_mode: "classical".into(),
            simulation: false,
            ignore_paths: vec![],
            now: 0,
        }
    }

    #[test]
    fn sign_verify_and_tamper() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("w.bin"), b"abc").unwrap();
        let d = dir.path().to_str().unwrap();
        let key = signing_key_generate("ecdsa-p256").unwrap();
        let bundle = sign_model(d, &key, &opts()).unwrap();
        let mut ring = key_ring_new();
        ring.add(&key.verifying_key(), 0, 0);
        let v = verify_model(d, &bundle, &ring, &opts()).unwrap();
        assert_eq!(v.files.len(), 1);
        std::fs::write(dir.path().join("w.bin"), b"abd").unwrap();
        let e = verify_model(d, &bundle, &ring, &opts()).unwrap_err();
        assert!(e.0.starts_with("manifest: "), "{e}");
        let other = key_ring_new();
        let e = verify_model(d, &bundle, &other, &opts()).unwrap_err();
        assert!(e.0.starts_with("verify: "), "{e}");
    }
}
