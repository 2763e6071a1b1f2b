//! DSSE envelopes (Dead Simple Signing Envelope, v1): the wrapper for signed model manifests and
//! signed job manifests. Signatures are computed over the pre-authentication encoding
//! `"DSSEv1" SP len(type) SP type SP len(body) SP body`.
//!
//! ```
//! use atom_policy::config::Mode;
//! use atom_policy::dsse::Envelope;
//! use atom_policy::keyring::KeyRing;
//! use atom_policy::keys::{Algorithm, KeySpec, SigningKey};
//!
//! let key = SigningKey::generate(KeySpec::Hybrid(Algorithm::MlDsa65));
//! let env = Envelope::sign("application/vnd.atom.job+json", br#"{"job":1}"#, &key, Mode::default()).unwrap();
//! let ring = KeyRing::trusting(key.verifying_key());
//! let (payload, verified) = env.verify(&ring, Mode::default(), 0, "application/vnd.atom.job+json").unwrap();
//! assert_eq!(payload, br#"{"job":1}"#);
//! assert_eq!(verified.key_ids.len(), 2);
//! ```

use crate::config::Mode;
use crate::error::{Error, Result};
use crate::keyring::KeyRing;
use crate::keys::SigningKey;
use crate::signature::{self, ComponentSignature, Verified, VerifyError};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

/// The in-toto JSON payload type used by model manifests.
pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

/// The payload type of atom-fabric job manifests.
pub const JOB_PAYLOAD_TYPE: &str = "application/vnd.atom-fabric.job+json";

/// One signature in an envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeSignature {
    /// Hex key id of the signing key component (may be empty in envelopes from other tools).
    #[serde(default)]
    pub keyid: String,
    /// Base64 signature.
    pub sig: String,
}

/// A DSSE envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Base64 payload.
    pub payload: String,
    /// The payload's media type.
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    /// Signatures, classical first in hybrid mode.
    pub signatures: Vec<EnvelopeSignature>,
}

/// The DSSE v1 pre-authentication encoding.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + payload_type.len() + 32);
    out.extend_from_slice(b"DSSEv1 ");
    out.extend_from_slice(payload_type.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload_type.as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload);
    out
}

impl Envelope {
    /// Signs `payload` with the components `mode` asks for.
    pub fn sign(payload_type: &str, payload: &[u8], key: &SigningKey, mode: Mode) -> Result<Self> {
        let sigs = signature::sign(key, mode, &pae(payload_type, payload))?;
        Ok(Self {
            payload: B64.encode(payload),
            payload_type: payload_type.to_owned(),
            signatures: sigs
                .into_iter()
                .map(|s| EnvelopeSignature {
                    keyid: s.key_id,
                    sig: B64.encode(s.bytes),
                })
                .collect(),
        })
    }

    /// The decoded payload (unverified).
    pub fn payload_bytes(&self) -> Result<Vec<u8>> {
        B64.decode(&self.payload)
            .map_err(|e| VerifyError::Malformed(format!("payload is not base64: {e}")).into())
    }

    /// Verifies the envelope: payload type, then every signature against `ring` at `now`, then the
    /// kinds `mode` requires. Returns the payload.
    pub fn verify(
        &self,
        ring: &KeyRing,
        mode: Mode,
        now: u64,
        expected_type: &str,
    ) -> Result<(Vec<u8>, Verified)> {
        if self.payload_type != expected_type {
            return Err(VerifyError::WrongPayloadType {
                expected: expected_type.to_owned(),
                found: self.payload_type.clone(),
            }
            .into());
        }
        let payload = self.payload_bytes()?;
        let mut sigs = Vec::with_capacity(self.signatures.len());
        for (i, s) in self.signatures.iter().enumerate() {
            let (_, component) =
                ring.find_component(&s.keyid)
                    .ok_or_else(|| VerifyError::UnknownKey {
                        key_id: if s.keyid.is_empty() {
                            format!("<empty keyid on signature {i}>")
                        } else {
                            s.keyid.clone()
                        },
                    })?;
            let bytes = B64
                .decode(&s.sig)
                .map_err(|e| VerifyError::Malformed(format!("signature {i} is not base64: {e}")))?;
            sigs.push(ComponentSignature {
                key_id: s.keyid.clone(),
                algorithm: component.algorithm(),
                bytes,
            });
        }
        let verified =
            signature::verify(ring, mode, now, &pae(&self.payload_type, &payload), &sigs)?;
        Ok((payload, verified))
    }

    /// The envelope as JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Parses an envelope.
    pub fn from_json(text: &str) -> Result<Self> {
        serde_json::from_str(text).map_err(|e| Error::json("DSSE envelope", e))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::PqcMode;
    use crate::keys::{Algorithm, KeySpec};

    #[test]
    fn pae_matches_the_dsse_spec_example() {
        // From the DSSE protocol spec: PAE("http://example.com/HelloWorld", "hello world").
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
        assert_eq!(pae("", b""), b"DSSEv1 0  0 ".to_vec());
    }

    #[test]
    fn tampering_is_named() {
        let key = SigningKey::generate(KeySpec::Hybrid(Algorithm::MlDsa44));
        let ring = KeyRing::trusting(key.verifying_key());
        let mode = Mode::new(PqcMode::Hybrid, false);
        let env = Envelope::sign(JOB_PAYLOAD_TYPE, b"{}", &key, mode).unwrap();
        let back = Envelope::from_json(&env.to_json()).unwrap();
        assert!(back.verify(&ring, mode, 0, JOB_PAYLOAD_TYPE).is_ok());

        let mut wrong_type = env.clone();
        wrong_type.payload_type = IN_TOTO_PAYLOAD_TYPE.into();
        assert!(matches!(
            wrong_type.verify(&ring, mode, 0, JOB_PAYLOAD_TYPE),
            Err(Error::Verify(VerifyError::WrongPayloadType { .. }))
        ));
        // Same payload type string check is not enough: changing type and expecting it still fails
        // the signature, because the type is inside the PAE.
        assert!(matches!(
            wrong_type.verify(&ring, mode, 0, IN_TOTO_PAYLOAD_TYPE),
            Err(Error::Verify(VerifyError::BadSignature { .. }))
        ));
        let mut body = env.clone();
        body.payload = B64.encode(b"{ }");
        assert!(matches!(
            body.verify(&ring, mode, 0, JOB_PAYLOAD_TYPE),
            Err(Error::Verify(VerifyError::BadSignature { .. }))
        ));
        let mut junk = env;
        junk.signatures[0].sig = "***".into();
        assert!(matches!(
            junk.verify(&ring, mode, 0, JOB_PAYLOAD_TYPE),
            Err(Error::Verify(VerifyError::Malformed(_)))
        ));
    }
}
