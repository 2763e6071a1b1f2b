//! The trusted key ring: active and retired keys with validity windows, and key rotation (P3).
//!
//! Rotation makes a new key active only with an `approved_by` record (or in simulation); the old
//! key is retired but keeps verifying until its stated expiry. Every rotation returns a
//! [`RotationRecord`] for the audit log.
//!
//! ```
//! use atom_policy::config::{Mode, PqcMode};
//! use atom_policy::keyring::{KeyRing, Rotation};
//! use atom_policy::keys::{Algorithm, KeySpec, SigningKey};
//!
//! let old = SigningKey::generate(KeySpec::Single(Algorithm::Ed25519));
//! let new = SigningKey::generate(KeySpec::Single(Algorithm::Ed25519));
//! let mut ring = KeyRing::trusting(old.verifying_key());
//! let production = Mode::new(PqcMode::Classical, false);
//! let unapproved = Rotation { approved_by: None, now: 100, old_key_grace_secs: 3600 };
//! assert!(ring.rotate(new.verifying_key(), &unapproved, production).is_err());
//! let approved = Rotation { approved_by: Some("security-officer@example.com".into()), ..unapproved };
//! let record = ring.rotate(new.verifying_key(), &approved, production).unwrap();
//! assert_eq!(record.old_expires_at, Some(3700));
//! assert_eq!(ring.active().unwrap().key.key_id(), new.key_id());
//! ```

use crate::config::Mode;
use crate::error::{Error, Result};
use crate::keys::{PublicComponent, VerifyingKey};
use crate::policy::{Decision, PolicyId};
use crate::signature::VerifyError;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Whether a key signs new material or only verifies old material.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyStatus {
    /// The key that signs now.
    Active,
    /// A previous key: still verifies until `not_after`.
    Retired,
}

/// A key the ring trusts, with its validity window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedKey {
    /// The public key.
    pub key: VerifyingKey,
    /// Active or retired.
    pub status: KeyStatus,
    /// Valid from (unix seconds).
    pub not_before: u64,
    /// Valid until (unix seconds), if it expires.
    pub not_after: Option<u64>,
    /// Who approved its activation, if anyone.
    pub approved_by: Option<String>,
}

impl TrustedKey {
    /// Checks the validity window at `now`.
    pub fn check_valid_at(&self, key_id: &str, now: u64) -> Result<(), VerifyError> {
        if now < self.not_before {
            return Err(VerifyError::KeyNotYetValid {
                key_id: key_id.to_owned(),
                not_before: self.not_before,
                now,
            });
        }
        match self.not_after {
            Some(end) if now >= end => Err(VerifyError::ExpiredKey {
                key_id: key_id.to_owned(),
                expired_at: end,
                now,
            }),
            _ => Ok(()),
        }
    }
}

/// Parameters of one rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    /// Who approved it; required unless in simulation (P3).
    pub approved_by: Option<String>,
    /// The time of the rotation (unix seconds).
    pub now: u64,
    /// How long the old key keeps verifying after the rotation.
    pub old_key_grace_secs: u64,
}

/// What a rotation did, for the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotationRecord {
    /// Always `key_rotation`.
    pub action: String,
    /// The key that was active before, if any.
    pub old_key_id: Option<String>,
    /// The key that is active now.
    pub new_key_id: String,
    /// The approver (absent in simulation).
    pub approved_by: Option<String>,
    /// When (unix seconds).
    pub at: u64,
    /// When the old key stops verifying.
    pub old_expires_at: Option<u64>,
    /// The P3 decision.
    pub decision: Decision,
}

/// A set of trusted keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyRing {
    keys: Vec<TrustedKey>,
}

impl KeyRing {
    /// An empty ring.
    pub fn new() -> Self {
        Self::default()
    }

    /// A ring trusting one active key with no expiry.
    pub fn trusting(key: VerifyingKey) -> Self {
        let mut ring = Self::new();
        ring.add(TrustedKey {
            key,
            status: KeyStatus::Active,
            not_before: 0,
            not_after: None,
            approved_by: None,
        });
        ring
    }

    /// Adds a trusted key (an active one retires nothing: use [`KeyRing::rotate`] for that).
    pub fn add(&mut self, key: TrustedKey) {
        self.keys.retain(|k| k.key.key_id() != key.key.key_id());
        self.keys.push(key);
    }

    /// All keys.
    pub fn keys(&self) -> &[TrustedKey] {
        &self.keys
    }

    /// The active key (the most recently activated one).
    pub fn active(&self) -> Option<&TrustedKey> {
        self.keys
            .iter()
            .rev()
            .find(|k| k.status == KeyStatus::Active)
    }

    /// The trusted key and component whose component key id is `key_id`.
    pub fn find_component(&self, key_id: &str) -> Option<(&TrustedKey, &PublicComponent)> {
        self.keys
            .iter()
            .find_map(|t| t.key.component(key_id).map(|c| (t, c)))
    }

    /// Rotates to `new`: refused without `approved_by` outside simulation (P3). The previous active
    /// key is retired and verifies for `old_key_grace_secs` more (or until its own earlier expiry).
    pub fn rotate(
        &mut self,
        new: VerifyingKey,
        rotation: &Rotation,
        mode: Mode,
    ) -> Result<RotationRecord> {
        let approved = rotation
            .approved_by
            .as_deref()
            .is_some_and(|a| !a.trim().is_empty());
        let decision = if approved {
            Decision::Allow {
                policy: PolicyId::P3,
            }
        } else if mode.simulation {
            Decision::AllowInSimulation {
                policy: PolicyId::P3,
                reason: "key rotation without approved_by".into(),
            }
        } else {
            return Err(Error::Rotation(
                "P3: activating a new signing key needs approved_by outside SIMULATION_MODE".into(),
            ));
        };
        let new_id = new.key_id();
        if self.keys.iter().any(|k| k.key.key_id() == new_id) {
            return Err(Error::Rotation(format!(
                "key {new_id} is already in the ring"
            )));
        }
        let grace_end = rotation.now.saturating_add(rotation.old_key_grace_secs);
        let mut old_key_id = None;
        let mut old_expires_at = None;
        for k in self
            .keys
            .iter_mut()
            .filter(|k| k.status == KeyStatus::Active)
        {
            k.status = KeyStatus::Retired;
            let end = k.not_after.map_or(grace_end, |e| e.min(grace_end));
            k.not_after = Some(end);
            old_key_id = Some(k.key.key_id());
            old_expires_at = Some(end);
        }
        self.keys.push(TrustedKey {
            key: new,
            status: KeyStatus::Active,
            not_before: rotation.now,
            not_after: None,
            approved_by: rotation.approved_by.clone(),
        });
        Ok(RotationRecord {
            action: "key_rotation".into(),
            old_key_id,
            new_key_id: new_id,
            approved_by: rotation.approved_by.clone(),
            at: rotation.now,
            old_expires_at,
            decision,
        })
    }

    /// The ring as JSON (public keys in their text format).
    pub fn to_json(&self) -> String {
        let stored: Vec<StoredKey> = self
            .keys
            .iter()
            .map(|k| StoredKey {
                key: k.key.to_text(),
                status: k.status,
                not_before: k.not_before,
                not_after: k.not_after,
                approved_by: k.approved_by.clone(),
            })
            .collect();
        serde_json::to_string_pretty(&StoredRing { keys: stored }).unwrap_or_default()
    }

    /// Parses [`KeyRing::to_json`] output.
    pub fn from_json(text: &str) -> Result<Self> {
        let stored: StoredRing =
            serde_json::from_str(text).map_err(|e| Error::json("key ring", e))?;
        let keys = stored
            .keys
            .into_iter()
            .map(|s| {
                Ok(TrustedKey {
                    key: VerifyingKey::from_text(&s.key)?,
                    status: s.status,
                    not_before: s.not_before,
                    not_after: s.not_after,
                    approved_by: s.approved_by,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { keys })
    }

    /// Loads a ring from a JSON file, or a single public key file (trusted with no expiry).
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io("read", path, e))?;
        if text.trim_start().starts_with('{') {
            Self::from_json(&text)
        } else {
            Ok(Self::trusting(VerifyingKey::from_text(&text)?))
        }
    }
}

#[derive(Serialize, Deserialize)]
struct StoredRing {
    keys: Vec<StoredKey>,
}

#[derive(Serialize, Deserialize)]
struct StoredKey {
    key: String,
    status: KeyStatus,
    not_before: u64,
    not_after: Option<u64>,
    approved_by: Option<String>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::PqcMode;
    use crate::keys::{Algorithm, KeySpec, SigningKey};
    use crate::signature::{sign, verify};

    #[test]
    fn retired_key_verifies_until_expiry_then_not() {
        let old = SigningKey::generate(KeySpec::Single(Algorithm::Ed25519));
        let new = SigningKey::generate(KeySpec::Single(Algorithm::Ed25519));
        let mode = Mode::new(PqcMode::Classical, false);
        let mut ring = KeyRing::trusting(old.verifying_key());
        let sigs = sign(&old, mode, b"artifact").unwrap();
        let rot = Rotation {
            approved_by: Some("alice".into()),
            now: 1_000,
            old_key_grace_secs: 500,
        };
        let rec = ring.rotate(new.verifying_key(), &rot, mode).unwrap();
        assert_eq!(rec.old_key_id.as_deref(), Some(old.key_id().as_str()));
        assert_eq!(
            rec.decision,
            Decision::Allow {
                policy: PolicyId::P3
            }
        );
        assert!(verify(&ring, mode, 1_499, b"artifact", &sigs).is_ok());
        match verify(&ring, mode, 1_500, b"artifact", &sigs) {
            Err(Error::Verify(VerifyError::ExpiredKey { expired_at, .. })) => {
                assert_eq!(expired_at, 1_500)
            }
            other => panic!("{other:?}"),
        }
        // The new key is not valid before its activation.
        let new_sigs = sign(&new, mode, b"x").unwrap();
        assert!(matches!(
            verify(&ring, mode, 999, b"x", &new_sigs),
            Err(Error::Verify(VerifyError::KeyNotYetValid { .. }))
        ));
        let back = KeyRing::from_json(&ring.to_json()).unwrap();
        assert_eq!(back, ring);
    }

    #[test]
    fn simulation_allows_unapproved_rotation_and_says_so() {
        let mut ring = KeyRing::trusting(
            SigningKey::generate(KeySpec::Single(Algorithm::Ed25519)).verifying_key(),
        );
        let rot = Rotation {
            approved_by: Some("  ".into()),
            now: 5,
            old_key_grace_secs: 10,
        };
        let new = SigningKey::generate(KeySpec::Single(Algorithm::Ed25519)).verifying_key();
        assert!(
            ring.rotate(new.clone(), &rot, Mode::new(PqcMode::Hybrid, false))
                .is_err()
        );
        let rec = ring
            .rotate(new.clone(), &rot, Mode::new(PqcMode::Hybrid, true))
            .unwrap();
        assert!(matches!(rec.decision, Decision::AllowInSimulation { .. }));
        assert!(
            ring.rotate(new, &rot, Mode::new(PqcMode::Hybrid, true))
                .is_err()
        );
    }
}
