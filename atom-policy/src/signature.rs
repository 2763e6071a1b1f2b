//! Signing and verifying messages under a [`Mode`]: hybrid needs a classical and an ML-DSA
//! signature that both verify, classical needs the classical one, off needs none (simulation only).
//!
//! ```
//! use atom_policy::config::{Mode, PqcMode};
//! use atom_policy::keyring::KeyRing;
//! use atom_policy::keys::{Algorithm, KeySpec, SigningKey};
//! use atom_policy::signature::{sign, verify};
//!
//! let key = SigningKey::generate(KeySpec::Hybrid(Algorithm::MlDsa65));
//! let ring = KeyRing::trusting(key.verifying_key());
//! let mode = Mode::new(PqcMode::Hybrid, false);
//! let sigs = sign(&key, mode, b"deploy m1 v2").unwrap();
//! assert_eq!(sigs.len(), 2);
//! let ok = verify(&ring, mode, 0, b"deploy m1 v2", &sigs).unwrap();
//! assert!(ok.classical && ok.post_quantum);
//! assert!(verify(&ring, mode, 0, b"deploy m1 v3", &sigs).is_err());
//! ```

use crate::config::{Mode, PqcMode};
use crate::error::{Error, Result};
use crate::keyring::KeyRing;
use crate::keys::{Algorithm, SigningKey};

/// One signature made by one key component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentSignature {
    /// Hex key id of the component that signed.
    pub key_id: String,
    /// Its algorithm.
    pub algorithm: Algorithm,
    /// The signature bytes (DER for ECDSA).
    pub bytes: Vec<u8>,
}

/// Exactly which verification check failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// There is no signature at all.
    #[error("no signatures")]
    NoSignatures,
    /// A signature names a key the key ring does not hold.
    #[error("unknown key {key_id}")]
    UnknownKey {
        /// The key id the signature names.
        key_id: String,
    },
    /// The key's validity window has ended.
    #[error("key {key_id} expired at {expired_at} (now {now})")]
    ExpiredKey {
        /// The key.
        key_id: String,
        /// End of its validity (unix seconds).
        expired_at: u64,
        /// The time of the check.
        now: u64,
    },
    /// The key's validity window has not started.
    #[error("key {key_id} is not valid before {not_before} (now {now})")]
    KeyNotYetValid {
        /// The key.
        key_id: String,
        /// Start of its validity (unix seconds).
        not_before: u64,
        /// The time of the check.
        now: u64,
    },
    /// The signature does not verify under the key it names.
    #[error("bad {algorithm} signature by key {key_id}")]
    BadSignature {
        /// The key.
        key_id: String,
        /// Its algorithm.
        algorithm: Algorithm,
    },
    /// The mode requires a kind of signature that is absent.
    #[error("PQC_MODE={mode} requires a valid {kind} signature; none present")]
    MissingSignature {
        /// `classical` or `ML-DSA`.
        kind: &'static str,
        /// The mode in force.
        mode: PqcMode,
    },
    /// A DSSE envelope carries an unexpected payload type.
    #[error("wrong payload type: expected {expected:?}, found {found:?}")]
    WrongPayloadType {
        /// What the verifier expects.
        expected: String,
        /// What the envelope says.
        found: String,
    },
    /// The envelope or signature is not well formed.
    #[error("malformed: {0}")]
    Malformed(String),
}

/// What a successful verification established.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verified {
    /// Key ids of the components whose signatures verified, in order.
    pub key_ids: Vec<String>,
    /// A classical signature verified.
    pub classical: bool,
    /// An ML-DSA signature verified.
    pub post_quantum: bool,
}

/// Signs `message` with the components `mode` asks for: classical then ML-DSA under hybrid,
/// the classical one under classical, nothing under off (which needs simulation).
pub fn sign(key: &SigningKey, mode: Mode, message: &[u8]) -> Result<Vec<ComponentSignature>> {
    mode.check()?;
    let unsuitable = |reason: &str| Error::KeyUnsuitable {
        key_id: key.key_id(),
        reason: format!("{reason} (key is {})", key.algorithm_label()),
    };
    let components = match mode.pqc {
        PqcMode::Off => return Ok(Vec::new()),
        PqcMode::Classical => {
            vec![
                key.classical()
                    .ok_or_else(|| unsuitable("PQC_MODE=classical needs a classical component"))?,
            ]
        }
        PqcMode::Hybrid => {
            let c = key.classical();
            let p = key.post_quantum();
            match (c, p) {
                (Some(c), Some(p)) => vec![c, p],
                _ => {
                    return Err(unsuitable(
                        "PQC_MODE=hybrid needs a hybrid key (classical + ML-DSA)",
                    ));
                }
            }
        }
    };
    components
        .into_iter()
        .map(|c| {
            Ok(ComponentSignature {
                key_id: c.public().key_id(),
                algorithm: c.public().algorithm(),
                bytes: c.sign(message)?,
            })
        })
        .collect()
}

/// Verifies `signatures` over `message` at time `now` (unix seconds): every signature present must
/// name a trusted key that is valid now and must verify, and `mode` decides which kinds must be
/// present.
pub fn verify(
    ring: &KeyRing,
    mode: Mode,
    now: u64,
    message: &[u8],
    signatures: &[ComponentSignature],
) -> Result<Verified, Error> {
    mode.check()?;
    if signatures.is_empty() {
        if mode.pqc == PqcMode::Off {
            return Ok(Verified::default());
        }
        return Err(VerifyError::NoSignatures.into());
    }
    let mut verified = Verified::default();
    for sig in signatures {
        let (trusted, component) =
            ring.find_component(&sig.key_id)
                .ok_or_else(|| VerifyError::UnknownKey {
                    key_id: sig.key_id.clone(),
                })?;
        trusted.check_valid_at(&sig.key_id, now)?;
        if !component.verify(message, &sig.bytes) {
            return Err(VerifyError::BadSignature {
                key_id: sig.key_id.clone(),
                algorithm: component.algorithm(),
            }
            .into());
        }
        if component.algorithm().is_post_quantum() {
            verified.post_quantum = true;
        } else {
            verified.classical = true;
        }
        verified.key_ids.push(sig.key_id.clone());
    }
    let need_classical = matches!(mode.pqc, PqcMode::Hybrid | PqcMode::Classical);
    if need_classical && !verified.classical {
        return Err(VerifyError::MissingSignature {
            kind: "classical",
            mode: mode.pqc,
        }
        .into());
    }
    if mode.pqc == PqcMode::Hybrid && !verified.post_quantum {
        return Err(VerifyError::MissingSignature {
            kind: "ML-DSA",
            mode: mode.pqc,
        }
        .into());
    }
    Ok(verified)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::keys::KeySpec;

    fn hybrid() -> SigningKey {
        SigningKey::generate(KeySpec::Hybrid(Algorithm::MlDsa44))
    }

    #[test]
    fn hybrid_needs_both() {
        let key = hybrid();
        let ring = KeyRing::trusting(key.verifying_key());
        let mode = Mode::new(PqcMode::Hybrid, false);
        let sigs = sign(&key, mode, b"m").unwrap();
        assert!(verify(&ring, mode, 0, b"m", &sigs).is_ok());
        // Drop either one: the precise missing kind is named.
        let only_pq = &sigs[1..];
        match verify(&ring, mode, 0, b"m", only_pq) {
            Err(Error::Verify(VerifyError::MissingSignature { kind, .. })) => {
                assert_eq!(kind, "classical")
            }
            other => panic!("{other:?}"),
        }
        match verify(&ring, mode, 0, b"m", &sigs[..1]) {
            Err(Error::Verify(VerifyError::MissingSignature { kind, .. })) => {
                assert_eq!(kind, "ML-DSA")
            }
            other => panic!("{other:?}"),
        }
        // A corrupted ML-DSA signature fails even though the classical one is fine.
        let mut bad = sigs.clone();
        bad[1].bytes[100] ^= 0x40;
        match verify(&ring, mode, 0, b"m", &bad) {
            Err(Error::Verify(VerifyError::BadSignature { algorithm, .. })) => {
                assert_eq!(algorithm, Algorithm::MlDsa44)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn classical_mode_and_unknown_key() {
        let key = hybrid();
        let ring = KeyRing::trusting(key.verifying_key());
        let mode = Mode::new(PqcMode::Classical, false);
        let sigs = sign(&key, mode, b"m").unwrap();
        assert_eq!(sigs.len(), 1);
        assert_eq!(sigs[0].algorithm, Algorithm::EcdsaP256);
        assert!(verify(&ring, mode, 0, b"m", &sigs).is_ok());
        let stranger = KeyRing::trusting(hybrid().verifying_key());
        assert!(matches!(
            verify(&stranger, mode, 0, b"m", &sigs),
            Err(Error::Verify(VerifyError::UnknownKey { .. }))
        ));
    }

    #[test]
    fn off_only_in_simulation() {
        let key = hybrid();
        let ring = KeyRing::trusting(key.verifying_key());
        assert!(matches!(
            sign(&key, Mode::new(PqcMode::Off, false), b"m"),
            Err(Error::UnsignedOutsideSimulation)
        ));
        let sim = Mode::new(PqcMode::Off, true);
        assert!(sign(&key, sim, b"m").unwrap().is_empty());
        assert!(verify(&ring, sim, 0, b"m", &[]).is_ok());
        assert!(matches!(
            verify(&ring, Mode::new(PqcMode::Hybrid, true), 0, b"m", &[]),
            Err(Error::Verify(VerifyError::NoSignatures))
        ));
    }

    #[test]
    fn single_pq_key_refused_for_hybrid_signing() {
        let key = SigningKey::generate(KeySpec::Single(Algorithm::MlDsa65));
        let err = sign(&key, Mode::default(), b"m").unwrap_err();
        assert!(matches!(err, Error::KeyUnsuitable { .. }), "{err}");
    }
}
