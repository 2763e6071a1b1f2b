//! The tamper-evident audit log behind `atom::AuditLog`, its checkpoint signers and the Merkle
//! proof checks.

use crate::error::{BridgeResult, Error, guard};
use crate::ffi;
use atom_policy::audit::{
    Actor, AuditEntry, AuditLog, Decision, KeyedId, LogConfig, OpenOptions, Outcome, Subject,
    payload_digest, verify_log,
};
use atom_policy::merkle;
use atom_policy::note::{Checkpoint, CheckpointMode, NoteSigner, NoteVerifier};
use atom_policy::policy::PolicyId;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A checkpoint signer (Ed25519 or ML-DSA-44) named for a log's origin.
///
/// ```
/// use atom_fabric_cxx::{note_signer_generate, note_signer_from_key};
/// let s = note_signer_generate("example.com/audit", "ed25519").unwrap();
/// assert!(s.vkey().starts_with("example.com/audit+"));
/// let again = note_signer_from_key(&s.signer_key()).unwrap();
/// assert_eq!(again.vkey(), s.vkey());
/// ```
#[derive(Debug)]
pub struct NoteSignerCore(Arc<NoteSigner>);

/// Generates a signer named `origin`: `ed25519` or `ml-dsa-44`.
pub fn note_signer_generate(origin: &str, algorithm: &str) -> BridgeResult<Box<NoteSignerCore>> {
    guard(|| {
        let s = match algorithm {
            "ed25519" => NoteSigner::generate_ed25519(origin)?,
            "ml-dsa-44" => NoteSigner::generate_mldsa44(origin)?,
            other => {
                return Err(Error::InvalidInput(format!(
                    "checkpoint signer algorithm must be ed25519 or ml-dsa-44, not {other:?}"
                )));
            }
        };
        Ok(Box::new(NoteSignerCore(Arc::new(s))))
    })
}

/// Parses a signer key string (`PRIVATE+KEY+...`).
pub fn note_signer_from_key(text: &str) -> BridgeResult<Box<NoteSignerCore>> {
    guard(|| {
        Ok(Box::new(NoteSignerCore(Arc::new(
            NoteSigner::from_signer_key(text.trim())?,
        ))))
    })
}

impl NoteSignerCore {
    /// The secret signer key string (keep private).
    pub fn signer_key(&self) -> String {
        self.0.to_signer_key().to_string()
    }

    /// The verifier key string (`name+keyid+base64`).
    pub fn vkey(&self) -> String {
        self.0.verifier().to_vkey()
    }

    /// The signer's name.
    pub fn name(&self) -> String {
        self.0.name().to_owned()
    }
}

/// The signers of one checkpoint (Ed25519, plus ML-DSA-44 in hybrid mode).
#[derive(Debug, Default)]
pub struct SignerSetCore(Vec<Arc<NoteSigner>>);

/// An empty signer set.
pub fn signer_set_new() -> Box<SignerSetCore> {
    Box::new(SignerSetCore::default())
}

impl SignerSetCore {
    /// Adds a signer.
    pub fn push(&mut self, signer: &NoteSignerCore) {
        self.0.push(Arc::clone(&signer.0));
    }
}

/// An append-only audit log in a directory; appends are durable when they return. Calls take
/// an internal mutex, so one instance may be shared by many C++ threads.
#[derive(Debug)]
pub struct AuditLogCore {
    inner: Mutex<Option<AuditLog>>,
    path: PathBuf,
}

/// Creates an empty log at `path` for `origin`, checkpoints verified by `vkeys` in `mode`
/// (`hybrid` or `classical`), and opens it.
pub fn audit_log_create(
    path: &str,
    origin: &str,
    vkeys: Vec<String>,
    mode: &str,
) -> BridgeResult<Box<AuditLogCore>> {
    guard(|| {
        let mode = CheckpointMode::parse(mode)?;
        let verifiers = vkeys
            .iter()
            .map(|v| NoteVerifier::from_vkey(v))
            .collect::<Result<Vec<_>, _>>()?;
        AuditLog::create(Path::new(path), &LogConfig::new(origin, mode, &verifiers))?;
        open(path)
    })
}

/// Opens a log (a torn tail is dropped; the tree is rebuilt and checked against the last
/// signed checkpoint).
pub fn audit_log_open(path: &str) -> BridgeResult<Box<AuditLogCore>> {
    guard(|| open(path))
}

fn open(path: &str) -> Result<Box<AuditLogCore>, Error> {
    let (log, _) = AuditLog::open(Path::new(path), OpenOptions::default())?;
    Ok(Box::new(AuditLogCore {
        inner: Mutex::new(Some(log)),
        path: PathBuf::from(path),
    }))
}

fn outcome(s: &str) -> Result<Outcome, Error> {
    match s {
        "allow" => Ok(Outcome::Allow),
        "deny" => Ok(Outcome::Deny),
        "allow_in_simulation" => Ok(Outcome::AllowInSimulation),
        other => Err(Error::InvalidInput(format!(
            "outcome must be allow, deny or allow_in_simulation, not {other:?}"
        ))),
    }
}

fn policy(s: &str) -> Result<PolicyId, Error> {
    PolicyId::ALL
        .into_iter()
        .find(|p| format!("{p:?}") == s)
        .ok_or_else(|| Error::InvalidInput(format!("unknown policy id {s:?} (P1..P7)")))
}

/// Builds the audit entry of an event: identifiers become keyed hashes, the payload its digest,
/// policies sorted without duplicates.
pub fn entry_of(e: &ffi::AuditEvent) -> Result<AuditEntry, Error> {
    let mut policies = e
        .policies
        .iter()
        .map(|p| policy(p))
        .collect::<Result<Vec<_>, _>>()?;
    policies.sort();
    policies.dedup();
    if e.id_key.is_empty() {
        return Err(Error::InvalidInput(
            "id_key (the tenant's identifier key) is empty".into(),
        ));
    }
    let entry = AuditEntry {
        action: e.action.clone(),
        actor: Actor {
            principal: (!e.principal.is_empty()).then(|| KeyedId::derive(&e.id_key, &e.principal)),
            tenant: e.tenant.clone(),
        },
        decision: Decision {
            outcome: outcome(&e.outcome)?,
            policies,
            reason: (!e.reason.is_empty()).then(|| e.reason.clone()),
        },
        payload_sha256: e.has_payload.then(|| payload_digest(&e.payload)),
        subject: Subject {
            id: KeyedId::derive(&e.id_key, &e.subject_id),
            kind: e.subject_kind.clone(),
        },
        time: if e.time_ms == 0 { now_ms() } else { e.time_ms },
        v: atom_policy::audit::entry::ENTRY_VERSION,
    };
    entry.validate()?;
    Ok(entry)
}

fn flat(hashes: &[merkle::Hash]) -> Vec<u8> {
    hashes.iter().flat_map(|h| h.iter().copied()).collect()
}

impl AuditLogCore {
    fn with<T>(&self, f: impl FnOnce(&mut AuditLog) -> Result<T, Error>) -> Result<T, Error> {
        let mut guard = self
            .inner
            .lock()
            .map_err(|_| Error::Internal("audit log lock poisoned by an earlier panic".into()))?;
        let log = guard
            .as_mut()
            .ok_or_else(|| Error::InvalidInput("the audit log is closed".into()))?;
        f(log)
    }

    /// Appends an entry given as JSON in the audit entry format; returns its index.
    pub fn append_json(&self, entry_json: &str) -> BridgeResult<u64> {
        guard(|| {
            let entry = AuditEntry::from_json(entry_json)?;
            self.with(|log| Ok(log.append_entry(&entry, now_ms())?.index))
        })
    }

    /// Appends an event; returns its index.
    pub fn append_event(&self, event: &ffi::AuditEvent) -> BridgeResult<u64> {
        guard(|| {
            let entry = entry_of(event)?;
            self.with(|log| Ok(log.append_entry(&entry, now_ms())?.index))
        })
    }

    /// Number of records.
    pub fn size(&self) -> BridgeResult<u64> {
        guard(|| self.with(|log| Ok(log.size())))
    }

    /// The current root hash.
    pub fn root(&self) -> BridgeResult<Vec<u8>> {
        guard(|| self.with(|log| Ok(log.root().to_vec())))
    }

    /// Signs and stores a checkpoint with `signers`; returns the signed note text.
    pub fn checkpoint(&self, signers: &SignerSetCore) -> BridgeResult<String> {
        guard(|| {
            if signers.0.is_empty() {
                return Err(Error::InvalidInput("a checkpoint needs signers".into()));
            }
            let refs: Vec<&NoteSigner> = signers.0.iter().map(|s| s.as_ref()).collect();
            self.with(|log| Ok(log.checkpoint(&refs, now_ms() / 1000)?))
        })
    }

    /// The inclusion proof of record `index` in the tree of the first `size` records (0 = all).
    pub fn prove(&self, index: u64, size: u64) -> BridgeResult<ffi::InclusionProof> {
        guard(|| {
            self.with(|log| {
                let size = if size == 0 { log.size() } else { size };
                if index >= size {
                    return Err(Error::from(atom_policy::audit::AuditError::Proof(
                        merkle::ProofError::IndexOutOfRange { index, size },
                    )));
                }
                let path = log.inclusion_proof(index, size)?;
                Ok(ffi::InclusionProof {
                    index,
                    size,
                    leaf_hash: log.leaf_hash(index)?.to_vec(),
                    path: flat(&path),
                    root: log.root_at(size)?.to_vec(),
                })
            })
        })
    }

    /// The stored record `index` (canonical JSON text).
    pub fn read(&self, index: u64) -> BridgeResult<String> {
        guard(|| {
            self.with(|log| {
                String::from_utf8(log.read_record(index)?)
                    .map_err(|_| Error::Internal(format!("record {index} is not UTF-8")))
            })
        })
    }

    /// Re-verifies the whole log from disk (framing, checksums, tree, signed checkpoint).
    pub fn verify(&self) -> BridgeResult<ffi::VerifyReport> {
        guard(|| {
            self.with(|log| Ok(log.sync_all()?))?;
            let r = verify_log(&self.path, None, None)?;
            Ok(ffi::VerifyReport {
                records: r.records,
                root: r.root.to_vec(),
                has_checkpoint: r.checkpoint.is_some(),
                checkpoint_size: r.checkpoint.map_or(0, |c| c.size),
            })
        })
    }

    /// Syncs and closes the log; later calls fail with `invalid_input`.
    pub fn close(&self) -> BridgeResult<()> {
        guard(|| {
            let mut g = self
                .inner
                .lock()
                .map_err(|_| Error::Internal("audit log lock poisoned".into()))?;
            if let Some(log) = g.take() {
                log.close()?;
            }
            Ok(())
        })
    }
}

/// `SHA-256(0x00 || data)`: the RFC 6962 leaf hash.
pub fn leaf_hash(data: &[u8]) -> Vec<u8> {
    merkle::leaf_hash(data).to_vec()
}

/// RFC 9162 inclusion verification of a proof given as concatenated 32-byte hashes; false for
/// anything that does not verify (including malformed input).
pub fn verify_inclusion(leaf_hash: &[u8], index: u64, size: u64, path: &[u8], root: &[u8]) -> bool {
    if !path.len().is_multiple_of(32) {
        return false;
    }
    let proof: Vec<&[u8]> = path.chunks_exact(32).collect();
    std::panic::catch_unwind(|| {
        merkle::verify_inclusion(leaf_hash, index, size, &proof, root).is_ok()
    })
    .unwrap_or(false)
}

/// Verifies a signed checkpoint with the verifier keys `vkeys` in `mode` (`hybrid` needs an
/// Ed25519 and an ML-DSA-44 key, both signatures valid).
pub fn verify_checkpoint(
    text: &str,
    vkeys: Vec<String>,
    mode: &str,
) -> BridgeResult<ffi::CheckpointInfo> {
    guard(|| {
        let mode = CheckpointMode::parse(mode)?;
        let verifiers = vkeys
            .iter()
            .map(|v| NoteVerifier::from_vkey(v))
            .collect::<Result<Vec<_>, _>>()?;
        let cp = Checkpoint::verify(text, &verifiers, mode)?;
        Ok(ffi::CheckpointInfo {
            origin: cp.origin,
            size: cp.size,
            root: cp.root.to_vec(),
        })
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn append_prove_verify() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log");
        let p = p.to_str().unwrap();
        let s = note_signer_generate("example.com/log", "ed25519").unwrap();
        let log = audit_log_create(p, "example.com/log", vec![s.vkey()], "classical").unwrap();
        let ev = ffi::AuditEvent {
            action: "inference.request".into(),
            tenant: "acme".into(),
            principal: "alice".into(),
            subject_kind: "model".into(),
            subject_id: "llama".into(),
            outcome: "allow".into(),
            policies: vec!["P5".into(), "P2".into()],
            reason: String::new(),
            payload: b"hello".to_vec(),
            has_payload: true,
            id_key: b"k".to_vec(),
            time_ms: 1,
        };
        for i in 0..5 {
            let ev = ffi::AuditEvent {
                time_ms: i + 1,
                ..ev.clone()
            };
            assert_eq!(log.append_event(&ev).unwrap(), i);
        }
        let mut set = signer_set_new();
        set.push(&s);
        let note = log.checkpoint(&set).unwrap();
        let cp = verify_checkpoint(&note, vec![s.vkey()], "classical").unwrap();
        assert_eq!(cp.size, 5);
        let pr = log.prove(3, 0).unwrap();
        assert_eq!(pr.root, cp.root);
        let rec = log.read(3).unwrap();
        assert_eq!(leaf_hash(rec.as_bytes()), pr.leaf_hash);
        assert!(verify_inclusion(&pr.leaf_hash, 3, 5, &pr.path, &pr.root));
        assert!(!verify_inclusion(&pr.leaf_hash, 2, 5, &pr.path, &pr.root));
        assert!(!verify_inclusion(
            &pr.leaf_hash,
            3,
            5,
            &pr.path[1..],
            &pr.root
        ));
        assert_eq!(log.verify().unwrap().records, 5);
        let e = log.prove(5, 0).unwrap_err();
        assert!(e.0.starts_with("not_found: "), "{e}");
    }
}
