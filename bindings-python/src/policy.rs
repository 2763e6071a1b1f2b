//! `atom_fabric.policy`: keys, signatures, DSSE envelopes, model manifests and the auditor's
//! Merkle functions.

use crate::errors::{BindError, BindResult};
use atom_policy::config::{Mode, PqcMode};
use atom_policy::dsse::Envelope;
use atom_policy::keyring::KeyRing;
use atom_policy::keys::{KeySpec, VerifyingKey as CoreVerifyingKey};
use atom_policy::manifest::{HashOptions, ModelManifest, SignedBundle};
use atom_policy::merkle;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use std::path::PathBuf;

pub(crate) fn mode(pqc_mode: &str, simulation: bool) -> BindResult<Mode> {
    let m = Mode::new(PqcMode::parse(pqc_mode)?, simulation);
    m.check()?;
    Ok(m)
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A signing key (secret material never appears in `repr`).
#[pyclass(module = "atom_fabric._native", frozen)]
pub struct SigningKey(pub(crate) atom_policy::keys::SigningKey);

#[pymethods]
impl SigningKey {
    /// Generates a key: `ml-dsa-44|65|87`, `ecdsa-p256`, `ed25519`, `hybrid` (ECDSA P-256 + ML-DSA-65).
    #[staticmethod]
    #[pyo3(signature = (algorithm = "hybrid"))]
    fn generate(algorithm: &str) -> Result<Self, BindError> {
        Ok(Self(atom_policy::keys::SigningKey::generate(
            KeySpec::parse(algorithm)?,
        )))
    }

    /// Reads a secret key file.
    #[staticmethod]
    fn read(path: PathBuf) -> Result<Self, BindError> {
        Ok(Self(atom_policy::keys::SigningKey::read(&path)?))
    }

    /// Writes the secret key to a new file (mode 0600; never overwrites).
    fn write(&self, path: PathBuf) -> Result<(), BindError> {
        Ok(self.0.write(&path)?)
    }

    /// Hex key id (SHA-256 of the public key).
    #[getter]
    fn key_id(&self) -> String {
        self.0.key_id()
    }

    /// `ml-dsa-65`, or `ecdsa-p256+ml-dsa-65` for a hybrid key.
    #[getter]
    fn algorithm(&self) -> String {
        self.0.algorithm_label()
    }

    /// The public key.
    fn verifying_key(&self) -> VerifyingKey {
        VerifyingKey(self.0.verifying_key())
    }

    /// A raw detached signature over `data` by the ML-DSA component (pure ML-DSA, empty context),
    /// or by the only component of a single-algorithm key.
    fn sign_raw<'py>(
        &self,
        py: Python<'py>,
        data: Vec<u8>,
    ) -> Result<Bound<'py, PyBytes>, BindError> {
        let key = self.0.clone();
        let sig = py.detach(move || {
            key.post_quantum()
                .or_else(|| key.components().first())
                .ok_or_else(|| BindError::Value("key has no components".into()))
                .and_then(|c| c.sign(&data).map_err(BindError::from))
        })?;
        Ok(PyBytes::new(py, &sig))
    }

    fn __repr__(&self) -> String {
        format!(
            "SigningKey(algorithm={:?}, key_id={:?}, secret=<REDACTED>)",
            self.0.algorithm_label(),
            self.0.key_id()
        )
    }
}

/// A public key.
#[pyclass(module = "atom_fabric._native", frozen)]
#[derive(Clone)]
pub struct VerifyingKey(pub(crate) CoreVerifyingKey);

#[pymethods]
impl VerifyingKey {
    /// Reads a public (or secret) key file.
    #[staticmethod]
    fn read(path: PathBuf) -> Result<Self, BindError> {
        Ok(Self(CoreVerifyingKey::read(&path)?))
    }

    /// Parses the key file text format.
    #[staticmethod]
    fn from_text(text: &str) -> Result<Self, BindError> {
        Ok(Self(CoreVerifyingKey::from_text(text)?))
    }

    /// The key file text.
    fn to_text(&self) -> String {
        self.0.to_text()
    }

    /// Hex key id.
    #[getter]
    fn key_id(&self) -> String {
        self.0.key_id()
    }

    /// Algorithm label.
    #[getter]
    fn algorithm(&self) -> String {
        self.0.algorithm_label()
    }

    /// Raw public key bytes of the `pq` (default) or `classical` component.
    #[pyo3(signature = (component = "pq"))]
    fn raw<'py>(&self, py: Python<'py>, component: &str) -> Result<Bound<'py, PyBytes>, BindError> {
        let c = match component {
            "pq" => self.0.post_quantum().or_else(|| self.0.classical()),
            "classical" => self.0.classical(),
            other => {
                return Err(BindError::Value(format!(
                    "component must be 'pq' or 'classical', not {other:?}"
                )));
            }
        }
        .ok_or_else(|| BindError::Value(format!("the key has no {component} component")))?;
        Ok(PyBytes::new(py, c.raw()))
    }

    /// Checks a raw signature made by [`SigningKey.sign_raw`]; False when it does not verify.
    fn verify_raw(&self, py: Python<'_>, data: Vec<u8>, signature: Vec<u8>) -> bool {
        let key = self.0.clone();
        py.detach(move || {
            key.post_quantum()
                .or_else(|| key.components().first())
                .is_some_and(|c| c.verify(&data, &signature))
        })
    }

    fn __repr__(&self) -> String {
        format!(
            "VerifyingKey(algorithm={:?}, key_id={:?})",
            self.0.algorithm_label(),
            self.0.key_id()
        )
    }
}

fn ring(keys: &[PyRef<'_, VerifyingKey>]) -> KeyRing {
    let mut ring = KeyRing::new();
    for k in keys {
        ring.add(atom_policy::keyring::TrustedKey {
            key: k.0.clone(),
            status: atom_policy::keyring::KeyStatus::Active,
            not_before: 0,
            not_after: None,
            approved_by: None,
        });
    }
    ring
}

/// Signs `payload` into a DSSE envelope (JSON text).
#[pyfunction]
#[pyo3(signature = (payload, key, payload_type = "application/octet-stream", pqc_mode = "hybrid", simulation = false))]
fn sign_envelope(
    py: Python<'_>,
    payload: Vec<u8>,
    key: &SigningKey,
    payload_type: &str,
    pqc_mode: &str,
    simulation: bool,
) -> Result<String, BindError> {
    let m = mode(pqc_mode, simulation)?;
    let key = key.0.clone();
    let ty = payload_type.to_owned();
    py.detach(move || Ok(Envelope::sign(&ty, &payload, &key, m)?.to_json()))
}

/// Verifies a DSSE envelope against trusted keys; returns the payload.
#[pyfunction]
#[pyo3(signature = (envelope, keys, payload_type = "application/octet-stream", pqc_mode = "hybrid", simulation = false))]
fn verify_envelope<'py>(
    py: Python<'py>,
    envelope: &str,
    keys: Vec<PyRef<'_, VerifyingKey>>,
    payload_type: &str,
    pqc_mode: &str,
    simulation: bool,
) -> Result<Bound<'py, PyBytes>, BindError> {
    let m = mode(pqc_mode, simulation)?;
    let env = Envelope::from_json(envelope)?;
    let ring = ring(&keys);
    let ty = payload_type.to_owned();
    let payload = py.detach(move || env.verify(&ring, m, now(), &ty).map(|(p, _)| p))?;
    Ok(PyBytes::new(py, &payload))
}

/// Hashes a model directory and signs it as an OpenSSF model-signing bundle (JSON text).
#[pyfunction]
#[pyo3(signature = (model_dir, key, pqc_mode = "hybrid", simulation = false, ignore_paths = Vec::new()))]
fn sign_model(
    py: Python<'_>,
    model_dir: PathBuf,
    key: &SigningKey,
    pqc_mode: &str,
    simulation: bool,
    ignore_paths: Vec<String>,
) -> Result<String, BindError> {
    let m = mode(pqc_mode, simulation)?;
    let key = key.0.clone();
    py.detach(move || {
        let manifest = ModelManifest::hash_dir(
            &model_dir,
            &HashOptions {
                ignore_paths,
                progress: None,
            },
        )?;
        Ok(SignedBundle::sign(&manifest, &key, m)?.to_json())
    })
}

/// Verifies a bundle's signatures and every file of `model_dir`; returns
/// `{"model_name", "files": {path: sha256}, "key_ids"}`.
#[pyfunction]
#[pyo3(signature = (model_dir, bundle, keys, pqc_mode = "hybrid", simulation = false, ignore_paths = Vec::new()))]
fn verify_model<'py>(
    py: Python<'py>,
    model_dir: PathBuf,
    bundle: &str,
    keys: Vec<PyRef<'_, VerifyingKey>>,
    pqc_mode: &str,
    simulation: bool,
    ignore_paths: Vec<String>,
) -> Result<Bound<'py, PyDict>, BindError> {
    let m = mode(pqc_mode, simulation)?;
    let bundle = SignedBundle::from_json(bundle)?;
    let ring = ring(&keys);
    let v = py.detach(move || {
        bundle.verify_dir(
            &model_dir,
            &ring,
            m,
            now(),
            &HashOptions {
                ignore_paths,
                progress: None,
            },
        )
    })?;
    let out = PyDict::new(py);
    let files = PyDict::new(py);
    for f in &v.files {
        files
            .set_item(&f.name, &f.digest)
            .map_err(|e| BindError::Value(e.to_string()))?;
    }
    let set = |k: &str, v: Bound<'py, PyAny>| {
        out.set_item(k, v)
            .map_err(|e| BindError::Value(e.to_string()))
    };
    set(
        "model_name",
        v.model_name
            .into_pyobject(py)
            .map_err(|e| BindError::Value(e.to_string()))?
            .into_any(),
    )?;
    set("files", files.into_any())?;
    set(
        "key_ids",
        v.key_ids
            .into_pyobject(py)
            .map_err(|e| BindError::Value(e.to_string()))?
            .into_any(),
    )?;
    Ok(out)
}

fn leaf_hashes(leaves: &[Vec<u8>]) -> Vec<merkle::Hash> {
    leaves.iter().map(|l| merkle::leaf_hash(l)).collect()
}

fn list<'py>(py: Python<'py>, hashes: &[merkle::Hash]) -> Vec<Bound<'py, PyBytes>> {
    hashes.iter().map(|h| PyBytes::new(py, h)).collect()
}

/// `SHA-256(0x00 || data)`: the RFC 6962 leaf hash.
#[pyfunction]
fn leaf_hash<'py>(py: Python<'py>, data: Vec<u8>) -> Bound<'py, PyBytes> {
    PyBytes::new(py, &merkle::leaf_hash(&data))
}

/// The RFC 6962 Merkle tree hash of the leaves (raw leaf data, hashed as leaves).
#[pyfunction]
fn root<'py>(py: Python<'py>, leaves: Vec<Vec<u8>>) -> Bound<'py, PyBytes> {
    let r = py.detach(move || merkle::root(&leaf_hashes(&leaves)));
    PyBytes::new(py, &r)
}

/// The inclusion proof of leaf `index` in the tree of all `leaves` (raw leaf data).
#[pyfunction]
fn inclusion_proof<'py>(
    py: Python<'py>,
    leaves: Vec<Vec<u8>>,
    index: u64,
) -> Result<Vec<Bound<'py, PyBytes>>, BindError> {
    let p = py
        .detach(move || merkle::inclusion_proof(&leaf_hashes(&leaves), index))
        .map_err(atom_policy::Error::from)?;
    Ok(list(py, &p))
}

/// The consistency proof from the first `old_size` leaves to all `leaves` (raw leaf data).
#[pyfunction]
fn consistency_proof<'py>(
    py: Python<'py>,
    leaves: Vec<Vec<u8>>,
    old_size: u64,
) -> Result<Vec<Bound<'py, PyBytes>>, BindError> {
    let p = py
        .detach(move || merkle::consistency_proof(&leaf_hashes(&leaves), old_size))
        .map_err(atom_policy::Error::from)?;
    Ok(list(py, &p))
}

/// RFC 9162 inclusion verification; False (never an exception) for any proof that does not verify.
#[pyfunction]
fn verify_inclusion(
    leaf_hash: Vec<u8>,
    index: u64,
    size: u64,
    proof: Vec<Vec<u8>>,
    root: Vec<u8>,
) -> bool {
    merkle::verify_inclusion(&leaf_hash, index, size, &proof, &root).is_ok()
}

/// RFC 9162 consistency verification; False (never an exception) for any proof that does not verify.
#[pyfunction]
fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: Vec<u8>,
    new_root: Vec<u8>,
    proof: Vec<Vec<u8>>,
) -> bool {
    merkle::verify_consistency(old_size, new_size, &old_root, &new_root, &proof).is_ok()
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<SigningKey>()?;
    m.add_class::<VerifyingKey>()?;
    m.add_function(wrap_pyfunction!(sign_envelope, m)?)?;
    m.add_function(wrap_pyfunction!(verify_envelope, m)?)?;
    m.add_function(wrap_pyfunction!(sign_model, m)?)?;
    m.add_function(wrap_pyfunction!(verify_model, m)?)?;
    m.add_function(wrap_pyfunction!(leaf_hash, m)?)?;
    m.add_function(wrap_pyfunction!(root, m)?)?;
    m.add_function(wrap_pyfunction!(inclusion_proof, m)?)?;
    m.add_function(wrap_pyfunction!(consistency_proof, m)?)?;
    m.add_function(wrap_pyfunction!(verify_inclusion, m)?)?;
    m.add_function(wrap_pyfunction!(verify_consistency, m)?)?;
    Ok(())
}
