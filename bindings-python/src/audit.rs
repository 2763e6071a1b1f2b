//! `atom_fabric.policy.AuditLog`: the tamper-evident audit log from Python.

use crate::errors::BindError;
use atom_policy::audit::{AuditEntry, AuditLog as CoreLog, LogConfig, OpenOptions, verify_log};
use atom_policy::note::{CheckpointMode, NoteSigner, NoteVerifier};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

fn audit(e: atom_policy::audit::AuditError) -> BindError {
    BindError::Policy(e.into())
}

fn note(e: atom_policy::note::NoteError) -> BindError {
    BindError::Policy(e.into())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A checkpoint signer (Ed25519 or ML-DSA-44) named for the log's origin.
#[pyclass(module = "atom_fabric._native", frozen)]
pub struct NoteSignerKey(Arc<NoteSigner>);

#[pymethods]
impl NoteSignerKey {
    /// Generates the signers a log needs: Ed25519, plus ML-DSA-44 for `mode="hybrid"`.
    #[staticmethod]
    #[pyo3(signature = (origin, mode = "hybrid"))]
    fn generate(origin: &str, mode: &str) -> Result<Vec<NoteSignerKey>, BindError> {
        let mode = CheckpointMode::parse(mode).map_err(note)?;
        let mut out = vec![NoteSignerKey(Arc::new(
            NoteSigner::generate_ed25519(origin).map_err(note)?,
        ))];
        if mode == CheckpointMode::Hybrid {
            out.push(NoteSignerKey(Arc::new(
                NoteSigner::generate_mldsa44(origin).map_err(note)?,
            )));
        }
        Ok(out)
    }

    /// Parses a signer key string (`PRIVATE+KEY+...`).
    #[staticmethod]
    fn from_signer_key(text: &str) -> Result<Self, BindError> {
        Ok(Self(Arc::new(
            NoteSigner::from_signer_key(text.trim()).map_err(note)?,
        )))
    }

    /// The secret signer key string (keep private).
    fn to_signer_key(&self) -> String {
        self.0.to_signer_key().to_string()
    }

    /// The verifier key (`name+keyid+base64`).
    #[getter]
    fn vkey(&self) -> String {
        self.0.verifier().to_vkey()
    }

    fn __repr__(&self) -> String {
        format!(
            "NoteSignerKey(vkey={:?}, secret=<REDACTED>)",
            self.0.verifier().to_vkey()
        )
    }
}

/// An append-only, tamper-evident audit log in a directory. Each append is durable when it returns.
#[pyclass(module = "atom_fabric._native", frozen)]
pub struct AuditLog {
    inner: Mutex<Option<CoreLog>>,
    path: PathBuf,
}

impl AuditLog {
    fn with<T>(
        &self,
        f: impl FnOnce(&mut CoreLog) -> Result<T, BindError>,
    ) -> Result<T, BindError> {
        let mut guard = self
            .inner
            .lock()
            .map_err(|_| BindError::Value("audit log lock poisoned".into()))?;
        let log = guard
            .as_mut()
            .ok_or_else(|| BindError::Value("the audit log is closed".into()))?;
        f(log)
    }
}

#[pymethods]
impl AuditLog {
    /// Creates an empty log with these checkpoint verifier keys.
    #[staticmethod]
    #[pyo3(signature = (path, origin, vkeys, mode = "hybrid"))]
    fn create(
        path: PathBuf,
        origin: &str,
        vkeys: Vec<String>,
        mode: &str,
    ) -> Result<Self, BindError> {
        let mode = CheckpointMode::parse(mode).map_err(note)?;
        let verifiers = vkeys
            .iter()
            .map(|v| NoteVerifier::from_vkey(v))
            .collect::<Result<Vec<_>, _>>()
            .map_err(note)?;
        CoreLog::create(&path, &LogConfig::new(origin, mode, &verifiers)).map_err(audit)?;
        Self::open(path)
    }

    /// Opens a log (recovering from a crash: a torn tail is dropped, the tree is rebuilt and
    /// checked against the last signed checkpoint).
    #[staticmethod]
    fn open(path: PathBuf) -> Result<Self, BindError> {
        let (log, _) = CoreLog::open(&path, OpenOptions::default()).map_err(audit)?;
        Ok(Self {
            inner: Mutex::new(Some(log)),
            path,
        })
    }

    /// Appends an entry (a JSON string or dict in the audit entry format); returns its index.
    fn append(&self, py: Python<'_>, entry: &Bound<'_, PyAny>) -> Result<u64, BindError> {
        let text: String = if let Ok(s) = entry.extract::<String>() {
            s
        } else {
            py.import("json")
                .and_then(|m| m.call_method1("dumps", (entry,)))
                .and_then(|s| s.extract::<String>())
                .map_err(|e| BindError::Value(format!("entry is not JSON-serialisable: {e}")))?
        };
        let entry = AuditEntry::from_json(&text).map_err(audit)?;
        py.detach(|| self.with(|log| Ok(log.append_entry(&entry, now_ms()).map_err(audit)?.index)))
    }

    /// Number of records.
    #[getter]
    fn size(&self) -> Result<u64, BindError> {
        self.with(|log| Ok(log.size()))
    }

    /// The current root hash.
    fn root<'py>(&self, py: Python<'py>) -> Result<Bound<'py, PyBytes>, BindError> {
        let r = self.with(|log| Ok(log.root()))?;
        Ok(PyBytes::new(py, &r))
    }

    /// Signs and stores a checkpoint with `signers`; returns the signed note text.
    fn checkpoint(
        &self,
        py: Python<'_>,
        signers: Vec<PyRef<'_, NoteSignerKey>>,
    ) -> Result<String, BindError> {
        let signers: Vec<Arc<NoteSigner>> = signers.iter().map(|s| s.0.clone()).collect();
        py.detach(|| {
            self.with(|log| {
                let refs: Vec<&NoteSigner> = signers.iter().map(|s| s.as_ref()).collect();
                log.checkpoint(&refs, now_ms() / 1000).map_err(audit)
            })
        })
    }

    /// The inclusion proof of record `index` in the tree of `size` records (default: all):
    /// `{"leaf_hash", "proof", "root", "size"}` with bytes values.
    #[pyo3(signature = (index, size = None))]
    fn prove<'py>(
        &self,
        py: Python<'py>,
        index: u64,
        size: Option<u64>,
    ) -> Result<Bound<'py, PyDict>, BindError> {
        let (leaf, proof, root, size) = self.with(|log| {
            let size = size.unwrap_or(log.size());
            let proof = log.inclusion_proof(index, size).map_err(audit)?;
            Ok((
                log.leaf_hash(index).map_err(audit)?,
                proof,
                log.root_at(size).map_err(audit)?,
                size,
            ))
        })?;
        let d = PyDict::new(py);
        let err = |e: PyErr| BindError::Value(e.to_string());
        d.set_item("leaf_hash", PyBytes::new(py, &leaf))
            .map_err(err)?;
        d.set_item(
            "proof",
            proof
                .iter()
                .map(|h| PyBytes::new(py, h))
                .collect::<Vec<_>>(),
        )
        .map_err(err)?;
        d.set_item("root", PyBytes::new(py, &root)).map_err(err)?;
        d.set_item("size", size).map_err(err)?;
        Ok(d)
    }

    /// The stored record `index` (canonical JSON text).
    fn read(&self, index: u64) -> Result<String, BindError> {
        self.with(|log| {
            let bytes = log.read_record(index).map_err(audit)?;
            String::from_utf8(bytes).map_err(|_| BindError::Value("record is not UTF-8".into()))
        })
    }

    /// Re-verifies the whole log from disk; raises AuditError naming the first bad record.
    /// Returns `{"records", "root", "checkpoint_size"}`.
    fn verify<'py>(&self, py: Python<'py>) -> Result<Bound<'py, PyDict>, BindError> {
        self.with(|log| log.sync_all().map_err(audit))?;
        let path = self.path.clone();
        let report = py
            .detach(move || verify_log(&path, None, None))
            .map_err(audit)?;
        let d = PyDict::new(py);
        let err = |e: PyErr| BindError::Value(e.to_string());
        d.set_item("records", report.records).map_err(err)?;
        d.set_item("root", PyBytes::new(py, &report.root))
            .map_err(err)?;
        d.set_item("checkpoint_size", report.checkpoint.map(|c| c.size))
            .map_err(err)?;
        Ok(d)
    }

    /// Syncs and closes the log.
    fn close(&self) -> Result<(), BindError> {
        let mut guard = self
            .inner
            .lock()
            .map_err(|_| BindError::Value("audit log lock poisoned".into()))?;
        if let Some(log) = guard.take() {
            log.close().map_err(audit)?;
        }
        Ok(())
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<NoteSignerKey>()?;
    m.add_class::<AuditLog>()?;
    Ok(())
}
