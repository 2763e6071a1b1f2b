//! C2SP signed notes and tlog checkpoints.
//!
//! * [signed-note](https://c2sp.org/signed-note): a text ending in a newline, a blank line,
//!   then signature lines `— <key name> base64(key id[4] || signature)`; key id =
//!   `SHA-256(name || 0x0A || type || public key)[:4]`; verifier keys (`vkey`)
//!   `name+hex(key id)+base64(type || public key)`; signer keys in the format of Go's
//!   `golang.org/x/mod/sumdb/note`: `PRIVATE+KEY+name+hex(key id)+base64(type || secret)`.
//! * Signature types implemented: `0x01` Ed25519 over the note text (what Go's note
//!   verifiers and witnesses read), and `0x06` timestamped ML-DSA-44 cosignatures as
//!   c2sp.org/tlog-cosignature defines them: the signature is `u64 timestamp (big endian) ||
//!   ML-DSA-44 signature[2420]` over the `cosigned_message` struct
//!   (`"subtree/v1\n\0"`, cosigner name `<1..255>`, timestamp, log origin `<1..255>`,
//!   start = 0, end = tree size, root hash), so 0x06 signs checkpoints only and does not
//!   cover extension lines.
//! * [tlog-checkpoint](https://c2sp.org/tlog-checkpoint): origin line, decimal tree size,
//!   base64 root hash, optional non-empty extension lines, each ending in a newline.
//!
//! ML-DSA-44 signer keys: the `pqcrypto-mldsa` backend has no seeded key generation, so the
//! secret material of a type-0x06 signer key is the expanded secret key (2560 bytes)
//! followed by the public key (1312 bytes). This is our own convention (the specs define
//! no ML-DSA signer-key string).
//!
//! ```
//! use atom_policy::note::{Checkpoint, CheckpointMode, NoteSigner};
//! let signer = NoteSigner::ed25519_from_seed("example.com/log", [7u8; 32]).unwrap();
//! let cp = Checkpoint::new("example.com/log", 3, [0u8; 32]);
//! let signed = cp.sign(&[&signer], 1_700_000_000).unwrap();
//! let back = Checkpoint::verify(&signed, &[signer.verifier()], CheckpointMode::Classical).unwrap();
//! assert_eq!(back, cp);
//! ```

use crate::merkle::Hash;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signer as _, Verifier as _};
use pqcrypto_mldsa::mldsa44;
use pqcrypto_traits::sign::{DetachedSignature as _, PublicKey as _, SecretKey as _};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Signature type byte of Ed25519 note signatures.
pub const TYPE_ED25519: u8 = 0x01;
/// Signature type byte of timestamped ML-DSA-44 (sub)tree cosignatures.
pub const TYPE_MLDSA44_COSIGNATURE: u8 = 0x06;

/// Sizes of ML-DSA-44 objects (FIPS 204).
pub const MLDSA44_PUBLIC_KEY_LEN: usize = 1312;
/// ML-DSA-44 signature length.
pub const MLDSA44_SIGNATURE_LEN: usize = 2420;
/// Expanded ML-DSA-44 secret key length of the PQClean backend.
pub const MLDSA44_SECRET_KEY_LEN: usize = 2560;

/// Most signature lines accepted in one note (the spec demands at least 16).
pub const MAX_SIGNATURES: usize = 64;

/// Label that starts every ML-DSA-44 `cosigned_message`.
const COSIGNED_LABEL: &[u8; 12] = b"subtree/v1\n\0";

/// Why a note, key or checkpoint was rejected. Each variant names the failing check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// The note contains an ASCII control character other than newline.
    #[error("control character 0x{byte:02x} at byte {offset} (only newline is allowed)")]
    ControlCharacter {
        /// Byte offset.
        offset: usize,
        /// The character.
        byte: u8,
    },
    /// The note does not end in a newline.
    #[error("note does not end with a newline")]
    MissingFinalNewline,
    /// No blank line separates text and signatures.
    #[error("no blank line separating the note text from its signatures")]
    MissingSeparator,
    /// The note text is empty.
    #[error("note text is empty")]
    EmptyText,
    /// The signature block has no lines.
    #[error("note has no signature lines")]
    NoSignatures,
    /// More signature lines than we accept.
    #[error("note has {count} signature lines, more than the limit of {max}")]
    TooManySignatures {
        /// Lines found.
        count: usize,
        /// Limit.
        max: usize,
    },
    /// A signature line is not `— name base64`.
    #[error("signature line {line} is malformed: {reason}")]
    MalformedSignatureLine {
        /// 1-based number within the signature block.
        line: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// A key name is empty or contains a space or '+'.
    #[error("key name {name:?} is invalid: {reason}")]
    BadKeyName {
        /// The name.
        name: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A vkey or signer key string is malformed.
    #[error("malformed key string: {reason}")]
    MalformedKey {
        /// What is wrong.
        reason: &'static str,
    },
    /// The key id written in a key string differs from the one computed from the key.
    #[error("key {name}: stated key id {stated:08x} but the key hashes to {computed:08x}")]
    KeyIdMismatch {
        /// Key name.
        name: String,
        /// Id in the string.
        stated: u32,
        /// Id computed from name, type and public key.
        computed: u32,
    },
    /// A signature type we do not implement.
    #[error(
        "unsupported signature type 0x{0:02x} (supported: 0x01 Ed25519, 0x06 ML-DSA-44 cosignature)"
    )]
    UnsupportedType(u8),
    /// Key material of the wrong length for its type.
    #[error("key material for type 0x{key_type:02x} has {len} bytes, expected {expected}")]
    WrongKeyLength {
        /// Signature type.
        key_type: u8,
        /// Actual length.
        len: usize,
        /// Expected length.
        expected: usize,
    },
    /// The key material is not a valid key of its type.
    #[error("key material for type 0x{0:02x} is not a valid key")]
    InvalidKey(u8),
    /// A signature of a known key has the wrong length.
    #[error("signature by {name} (key id {key_id:08x}) has {len} bytes, expected {expected}")]
    WrongSignatureLength {
        /// Key name.
        name: String,
        /// Key id.
        key_id: u32,
        /// Actual length.
        len: usize,
        /// Expected length.
        expected: usize,
    },
    /// A signature of a known key does not verify.
    #[error("bad signature for key {name} (key id {key_id:08x}, type 0x{key_type:02x})")]
    BadSignature {
        /// Key name.
        name: String,
        /// Key id.
        key_id: u32,
        /// Signature type.
        key_type: u8,
    },
    /// A cosignature timestamp exceeds 2^63 - 1.
    #[error("cosignature timestamp {0} exceeds 2^63-1")]
    TimestampTooLarge(u64),
    /// No signature line comes from any of the known keys.
    #[error("unknown key: no signature from a known key (known: {known})")]
    NoKnownSignature {
        /// The known keys, `name+id` each.
        known: String,
    },
    /// A key that must sign (hybrid mode) has no signature line.
    #[error(
        "missing signature by required key {name} (key id {key_id:08x}, type 0x{key_type:02x})"
    )]
    MissingSignature {
        /// Key name.
        name: String,
        /// Key id.
        key_id: u32,
        /// Signature type.
        key_type: u8,
    },
    /// Hybrid mode needs both an Ed25519 and an ML-DSA-44 key.
    #[error("mode {mode} needs {needs}")]
    ModeKeys {
        /// The mode.
        mode: &'static str,
        /// What is missing.
        needs: &'static str,
    },
    /// An unknown `PQC_MODE` value.
    #[error("PQC_MODE {0:?} is not 'hybrid' or 'classical'")]
    BadMode(String),
    /// A checkpoint body line is wrong.
    #[error("checkpoint line {line}: {reason}")]
    BadCheckpoint {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// An ML-DSA cosignature needs a name or origin of 1..255 bytes.
    #[error("{what} has {len} bytes; the cosigned message allows 1..255")]
    NameLength {
        /// "cosigner name" or "log origin".
        what: &'static str,
        /// Actual length.
        len: usize,
    },
    /// The checkpoint's origin is not the expected one.
    #[error("checkpoint origin {got:?} is not the expected {expected:?}")]
    OriginMismatch {
        /// Expected origin.
        expected: String,
        /// Origin in the checkpoint.
        got: String,
    },
}

/// `SHA-256(name || 0x0A || type || public key)[:4]` as a big-endian u32.
pub fn key_id(name: &str, key_type: u8, public_key: &[u8]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([0x0A, key_type]);
    h.update(public_key);
    let d = h.finalize();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

fn check_name(name: &str) -> Result<(), NoteError> {
    let bad = |reason| {
        Err(NoteError::BadKeyName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("empty");
    }
    if name.contains('+') {
        return bad("contains '+'");
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("contains a space or control character");
    }
    Ok(())
}

#[derive(Clone)]
enum PublicKind {
    Ed25519(ed25519_dalek::VerifyingKey),
    MlDsa44(Box<mldsa44::PublicKey>),
}

/// A key that verifies note signatures: name, key id and public key of one type.
///
/// ```
/// use atom_policy::note::NoteVerifier;
/// let v = NoteVerifier::from_vkey("example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k").unwrap();
/// assert_eq!(v.name(), "example.com/foo");
/// assert_eq!(v.key_id(), 0x530d903a);
/// ```
#[derive(Clone)]
pub struct NoteVerifier {
    name: String,
    key_id: u32,
    kind: PublicKind,
}

impl std::fmt::Debug for NoteVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NoteVerifier({})", self.to_vkey())
    }
}

impl NoteVerifier {
    /// An Ed25519 (type 0x01) verifier from the 32-byte public key.
    pub fn ed25519(name: &str, public_key: &[u8]) -> Result<Self, NoteError> {
        Self::from_parts(name, TYPE_ED25519, public_key)
    }

    /// An ML-DSA-44 cosignature (type 0x06) verifier from the 1312-byte public key.
    pub fn mldsa44(name: &str, public_key: &[u8]) -> Result<Self, NoteError> {
        Self::from_parts(name, TYPE_MLDSA44_COSIGNATURE, public_key)
    }

    fn from_parts(name: &str, key_type: u8, pk: &[u8]) -> Result<Self, NoteError> {
        check_name(name)?;
        let kind = match key_type {
            TYPE_ED25519 => {
                let bytes: [u8; 32] = pk.try_into().map_err(|_| NoteError::WrongKeyLength {
                    key_type,
                    len: pk.len(),
                    expected: 32,
                })?;
                PublicKind::Ed25519(
                    ed25519_dalek::VerifyingKey::from_bytes(&bytes)
                        .map_err(|_| NoteError::InvalidKey(key_type))?,
                )
            }
            TYPE_MLDSA44_COSIGNATURE => {
                if pk.len() != MLDSA44_PUBLIC_KEY_LEN {
                    return Err(NoteError::WrongKeyLength {
                        key_type,
                        len: pk.len(),
                        expected: MLDSA44_PUBLIC_KEY_LEN,
                    });
                }
                PublicKind::MlDsa44(Box::new(
                    mldsa44::PublicKey::from_bytes(pk)
                        .map_err(|_| NoteError::InvalidKey(key_type))?,
                ))
            }
            other => return Err(NoteError::UnsupportedType(other)),
        };
        Ok(Self {
            name: name.to_string(),
            key_id: key_id(name, key_type, pk),
            kind,
        })
    }

    /// Parse a verifier key `name+hex(key id)+base64(type || public key)`; the stated key id
    /// must match the computed one.
    pub fn from_vkey(vkey: &str) -> Result<Self, NoteError> {
        // splitn: base64 key material may itself contain '+'.
        let mut parts = vkey.trim_end().splitn(3, '+');
        let (Some(name), Some(id_hex), Some(key_b64)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(NoteError::MalformedKey {
                reason: "a vkey has exactly three '+'-separated parts",
            });
        };
        let stated = parse_key_id(id_hex)?;
        let raw = B64.decode(key_b64).map_err(|_| NoteError::MalformedKey {
            reason: "key material is not valid base64",
        })?;
        let Some((&key_type, pk)) = raw.split_first() else {
            return Err(NoteError::MalformedKey {
                reason: "key material is empty",
            });
        };
        let v = Self::from_parts(name, key_type, pk)?;
        if v.key_id != stated {
            return Err(NoteError::KeyIdMismatch {
                name: name.to_string(),
                stated,
                computed: v.key_id,
            });
        }
        Ok(v)
    }

    /// The vkey string of this verifier.
    pub fn to_vkey(&self) -> String {
        let mut raw = vec![self.key_type()];
        raw.extend_from_slice(&self.public_key());
        format!("{}+{:08x}+{}", self.name, self.key_id, B64.encode(raw))
    }

    /// Key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Key id.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// Signature type byte.
    pub fn key_type(&self) -> u8 {
        match self.kind {
            PublicKind::Ed25519(_) => TYPE_ED25519,
            PublicKind::MlDsa44(_) => TYPE_MLDSA44_COSIGNATURE,
        }
    }

    /// Raw public key bytes.
    pub fn public_key(&self) -> Vec<u8> {
        match &self.kind {
            PublicKind::Ed25519(k) => k.to_bytes().to_vec(),
            PublicKind::MlDsa44(k) => k.as_bytes().to_vec(),
        }
    }

    /// Verify one signature (the bytes after the 4-byte key id) over `text`. For type 0x06 the
    /// text must be a checkpoint; the cosignature's timestamp is returned.
    pub fn verify(&self, text: &str, sig: &[u8]) -> Result<Option<u64>, NoteError> {
        let bad = || NoteError::BadSignature {
            name: self.name.clone(),
            key_id: self.key_id,
            key_type: self.key_type(),
        };
        let wrong_len = |expected| NoteError::WrongSignatureLength {
            name: self.name.clone(),
            key_id: self.key_id,
            len: sig.len(),
            expected,
        };
        match &self.kind {
            PublicKind::Ed25519(k) => {
                let s = ed25519_dalek::Signature::from_slice(sig).map_err(|_| wrong_len(64))?;
                k.verify(text.as_bytes(), &s).map_err(|_| bad())?;
                Ok(None)
            }
            PublicKind::MlDsa44(k) => {
                if sig.len() != 8 + MLDSA44_SIGNATURE_LEN {
                    return Err(wrong_len(8 + MLDSA44_SIGNATURE_LEN));
                }
                let (ts, s) = sig.split_at(8);
                let mut tsb = [0u8; 8];
                tsb.copy_from_slice(ts);
                let timestamp = u64::from_be_bytes(tsb);
                if timestamp > i64::MAX as u64 {
                    return Err(NoteError::TimestampTooLarge(timestamp));
                }
                let cp = Checkpoint::parse(text)?;
                let msg = cosigned_message(&self.name, timestamp, &cp)?;
                let s = mldsa44::DetachedSignature::from_bytes(s)
                    .map_err(|_| wrong_len(8 + MLDSA44_SIGNATURE_LEN))?;
                mldsa44::verify_detached_signature(&s, &msg, k).map_err(|_| bad())?;
                Ok(Some(timestamp))
            }
        }
    }
}

fn parse_key_id(id_hex: &str) -> Result<u32, NoteError> {
    if id_hex.len() != 8 || !id_hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(NoteError::MalformedKey {
            reason: "key id is not 8 hex digits",
        });
    }
    u32::from_str_radix(id_hex, 16).map_err(|_| NoteError::MalformedKey {
        reason: "key id is not 8 hex digits",
    })
}

/// The ML-DSA-44 `cosigned_message` of tlog-cosignature for a whole checkpoint
/// (start = 0, end = tree size).
pub fn cosigned_message(
    cosigner: &str,
    timestamp: u64,
    cp: &Checkpoint,
) -> Result<Vec<u8>, NoteError> {
    let name_len = |what, s: &str| {
        u8::try_from(s.len())
            .ok()
            .filter(|&l| l > 0)
            .ok_or(NoteError::NameLength { what, len: s.len() })
    };
    let nl = name_len("cosigner name", cosigner)?;
    let ol = name_len("log origin", &cp.origin)?;
    let mut m = Vec::with_capacity(12 + 1 + cosigner.len() + 8 + 1 + cp.origin.len() + 48);
    m.extend_from_slice(COSIGNED_LABEL);
    m.push(nl);
    m.extend_from_slice(cosigner.as_bytes());
    m.extend_from_slice(&timestamp.to_be_bytes());
    m.push(ol);
    m.extend_from_slice(cp.origin.as_bytes());
    m.extend_from_slice(&0u64.to_be_bytes());
    m.extend_from_slice(&cp.size.to_be_bytes());
    m.extend_from_slice(&cp.root);
    Ok(m)
}

enum SecretKind {
    Ed25519(Box<ed25519_dalek::SigningKey>),
    MlDsa44 {
        sk: Box<mldsa44::SecretKey>,
        pk: Box<mldsa44::PublicKey>,
    },
}

/// A key that signs notes: name, type and secret key.
///
/// ```
/// use atom_policy::note::NoteSigner;
/// let s = NoteSigner::ed25519_from_seed("example.com/log", [1u8; 32]).unwrap();
/// let again = NoteSigner::from_signer_key(&s.to_signer_key()).unwrap();
/// assert_eq!(again.verifier().to_vkey(), s.verifier().to_vkey());
/// ```
pub struct NoteSigner {
    name: String,
    key_id: u32,
    kind: SecretKind,
}

impl std::fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NoteSigner({}+{:08x}, <secret>)", self.name, self.key_id)
    }
}

impl NoteSigner {
    /// An Ed25519 signer from its 32-byte secret seed (RFC 8032).
    pub fn ed25519_from_seed(name: &str, seed: [u8; 32]) -> Result<Self, NoteError> {
        check_name(name)?;
        let sk = ed25519_dalek::SigningKey::from_bytes(&seed);
        let key_id = key_id(name, TYPE_ED25519, sk.verifying_key().as_bytes());
        Ok(Self {
            name: name.to_string(),
            key_id,
            kind: SecretKind::Ed25519(Box::new(sk)),
        })
    }

    /// A fresh Ed25519 signer from the operating system's RNG.
    pub fn generate_ed25519(name: &str) -> Result<Self, NoteError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut seed[..]);
        Self::ed25519_from_seed(name, *seed)
    }

    /// An ML-DSA-44 cosignature signer from the expanded secret key (2560 bytes) and the
    /// public key (1312 bytes).
    pub fn mldsa44(name: &str, secret_key: &[u8], public_key: &[u8]) -> Result<Self, NoteError> {
        check_name(name)?;
        let t = TYPE_MLDSA44_COSIGNATURE;
        if secret_key.len() != MLDSA44_SECRET_KEY_LEN {
            return Err(NoteError::WrongKeyLength {
                key_type: t,
                len: secret_key.len(),
                expected: MLDSA44_SECRET_KEY_LEN,
            });
        }
        if public_key.len() != MLDSA44_PUBLIC_KEY_LEN {
            return Err(NoteError::WrongKeyLength {
                key_type: t,
                len: public_key.len(),
                expected: MLDSA44_PUBLIC_KEY_LEN,
            });
        }
        let sk =
            mldsa44::SecretKey::from_bytes(secret_key).map_err(|_| NoteError::InvalidKey(t))?;
        let pk =
            mldsa44::PublicKey::from_bytes(public_key).map_err(|_| NoteError::InvalidKey(t))?;
        // The expanded secret key carries rho (its first 32 bytes), which is also the first
        // 32 bytes of the public key: a cheap check that the two belong together.
        if secret_key[..32] != public_key[..32] {
            return Err(NoteError::InvalidKey(t));
        }
        Ok(Self {
            name: name.to_string(),
            key_id: key_id(name, t, public_key),
            kind: SecretKind::MlDsa44 {
                sk: Box::new(sk),
                pk: Box::new(pk),
            },
        })
    }

    /// A fresh ML-DSA-44 signer (the backend draws from the operating system's RNG).
    pub fn generate_mldsa44(name: &str) -> Result<Self, NoteError> {
        let (pk, sk) = mldsa44::keypair();
        Self::mldsa44(name, sk.as_bytes(), pk.as_bytes())
    }

    /// Parse a signer key `PRIVATE+KEY+name+hex(key id)+base64(type || secret)`.
    pub fn from_signer_key(s: &str) -> Result<Self, NoteError> {
        let s = s.trim_end();
        let Some(rest) = s.strip_prefix("PRIVATE+KEY+") else {
            return Err(NoteError::MalformedKey {
                reason: "a signer key starts with PRIVATE+KEY+",
            });
        };
        let mut parts = rest.splitn(3, '+');
        let (Some(name), Some(id_hex), Some(key_b64)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(NoteError::MalformedKey {
                reason: "a signer key has name, key id and key after PRIVATE+KEY",
            });
        };
        let stated = parse_key_id(id_hex)?;
        let raw = Zeroizing::new(B64.decode(key_b64).map_err(|_| NoteError::MalformedKey {
            reason: "key material is not valid base64",
        })?);
        let Some((&key_type, key)) = raw.split_first() else {
            return Err(NoteError::MalformedKey {
                reason: "key material is empty",
            });
        };
        let signer = match key_type {
            TYPE_ED25519 => {
                let seed: [u8; 32] = key.try_into().map_err(|_| NoteError::WrongKeyLength {
                    key_type,
                    len: key.len(),
                    expected: 32,
                })?;
                Self::ed25519_from_seed(name, seed)?
            }
            TYPE_MLDSA44_COSIGNATURE => {
                if key.len() != MLDSA44_SECRET_KEY_LEN + MLDSA44_PUBLIC_KEY_LEN {
                    return Err(NoteError::WrongKeyLength {
                        key_type,
                        len: key.len(),
                        expected: MLDSA44_SECRET_KEY_LEN + MLDSA44_PUBLIC_KEY_LEN,
                    });
                }
                let (sk, pk) = key.split_at(MLDSA44_SECRET_KEY_LEN);
                Self::mldsa44(name, sk, pk)?
            }
            other => return Err(NoteError::UnsupportedType(other)),
        };
        if signer.key_id != stated {
            return Err(NoteError::KeyIdMismatch {
                name: name.to_string(),
                stated,
                computed: signer.key_id,
            });
        }
        Ok(signer)
    }

    /// The signer key string (secret: store with mode 0600).
    pub fn to_signer_key(&self) -> Zeroizing<String> {
        let mut raw = Zeroizing::new(vec![self.key_type()]);
        match &self.kind {
            SecretKind::Ed25519(k) => raw.extend_from_slice(k.as_bytes()),
            SecretKind::MlDsa44 { sk, pk } => {
                raw.extend_from_slice(sk.as_bytes());
                raw.extend_from_slice(pk.as_bytes());
            }
        }
        Zeroizing::new(format!(
            "PRIVATE+KEY+{}+{:08x}+{}",
            self.name,
            self.key_id,
            B64.encode(&raw[..])
        ))
    }

    /// Key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Key id.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// Signature type byte.
    pub fn key_type(&self) -> u8 {
        match self.kind {
            SecretKind::Ed25519(_) => TYPE_ED25519,
            SecretKind::MlDsa44 { .. } => TYPE_MLDSA44_COSIGNATURE,
        }
    }

    /// The matching verifier.
    pub fn verifier(&self) -> NoteVerifier {
        let kind = match &self.kind {
            SecretKind::Ed25519(k) => PublicKind::Ed25519(k.verifying_key()),
            SecretKind::MlDsa44 { pk, .. } => PublicKind::MlDsa44(pk.clone()),
        };
        NoteVerifier {
            name: self.name.clone(),
            key_id: self.key_id,
            kind,
        }
    }

    /// Sign `text` (the bytes after the key id). `timestamp` (POSIX seconds) is used by the
    /// 0x06 cosignature only; for 0x06 the text must be a checkpoint.
    pub fn sign(&self, text: &str, timestamp: u64) -> Result<Vec<u8>, NoteError> {
        match &self.kind {
            SecretKind::Ed25519(k) => Ok(k.sign(text.as_bytes()).to_bytes().to_vec()),
            SecretKind::MlDsa44 { sk, .. } => {
                if timestamp > i64::MAX as u64 {
                    return Err(NoteError::TimestampTooLarge(timestamp));
                }
                let cp = Checkpoint::parse(text)?;
                let msg = cosigned_message(&self.name, timestamp, &cp)?;
                let sig = mldsa44::detached_sign(&msg, sk);
                let mut out = Vec::with_capacity(8 + MLDSA44_SIGNATURE_LEN);
                out.extend_from_slice(&timestamp.to_be_bytes());
                out.extend_from_slice(sig.as_bytes());
                Ok(out)
            }
        }
    }
}

/// One signature line of a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    /// Key name.
    pub name: String,
    /// Key id (first 4 bytes of the decoded signature).
    pub key_id: u32,
    /// The signature bytes after the key id.
    pub signature: Vec<u8>,
}

/// A signature that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Key name.
    pub name: String,
    /// Key id.
    pub key_id: u32,
    /// Signature type.
    pub key_type: u8,
    /// Cosignature timestamp (type 0x06).
    pub timestamp: Option<u64>,
}

/// A parsed signed note.
///
/// ```
/// use atom_policy::note::{Note, NoteVerifier};
/// let v = NoteVerifier::from_vkey("example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k").unwrap();
/// let signed = "This is an example message.\n\n\u{2014} example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n";
/// let note = Note::parse(signed).unwrap();
/// assert_eq!(note.verify_any(&[v]).unwrap().len(), 1);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// The text, including its final newline.
    pub text: String,
    /// Signature lines in order.
    pub signatures: Vec<NoteSignature>,
}

impl Note {
    /// Parse a signed note, checking the format rules of the spec.
    pub fn parse(s: &str) -> Result<Self, NoteError> {
        if let Some((offset, &byte)) = s
            .as_bytes()
            .iter()
            .enumerate()
            .find(|(_, b)| **b < 0x20 && **b != b'\n')
        {
            return Err(NoteError::ControlCharacter { offset, byte });
        }
        if !s.ends_with('\n') {
            return Err(NoteError::MissingFinalNewline);
        }
        // The text is separated from the signatures by the last blank line.
        let Some(sep) = s.rfind("\n\n") else {
            return Err(NoteError::MissingSeparator);
        };
        let text = &s[..sep + 1];
        let block = &s[sep + 2..];
        if text == "\n" || text.is_empty() {
            return Err(NoteError::EmptyText);
        }
        if block.is_empty() {
            return Err(NoteError::NoSignatures);
        }
        let lines: Vec<&str> = block[..block.len() - 1].split('\n').collect();
        if lines.len() > MAX_SIGNATURES {
            return Err(NoteError::TooManySignatures {
                count: lines.len(),
                max: MAX_SIGNATURES,
            });
        }
        let mut signatures = Vec::with_capacity(lines.len());
        for (i, line) in lines.iter().enumerate() {
            let bad = |reason| NoteError::MalformedSignatureLine {
                line: i + 1,
                reason,
            };
            let rest = line
                .strip_prefix("\u{2014} ")
                .ok_or_else(|| bad("does not start with an em dash and a space"))?;
            let (name, b64) = rest
                .split_once(' ')
                .ok_or_else(|| bad("no space between key name and signature"))?;
            check_name(name).map_err(|_| bad("key name is empty or has a space or '+'"))?;
            let raw = B64
                .decode(b64)
                .map_err(|_| bad("signature is not valid base64"))?;
            if raw.len() < 5 {
                return Err(bad("signature shorter than key id plus one byte"));
            }
            signatures.push(NoteSignature {
                name: name.to_string(),
                key_id: u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]),
                signature: raw[4..].to_vec(),
            });
        }
        Ok(Note {
            text: text.to_string(),
            signatures,
        })
    }

    /// Sign `text` (must end in a newline) with every signer.
    pub fn sign(text: &str, signers: &[&NoteSigner], timestamp: u64) -> Result<Self, NoteError> {
        if !text.ends_with('\n') {
            return Err(NoteError::MissingFinalNewline);
        }
        let mut signatures = Vec::with_capacity(signers.len());
        for s in signers {
            signatures.push(NoteSignature {
                name: s.name().to_string(),
                key_id: s.key_id(),
                signature: s.sign(text, timestamp)?,
            });
        }
        Ok(Note {
            text: text.to_string(),
            signatures,
        })
    }

    /// Serialise as a signed note.
    pub fn to_text(&self) -> String {
        let mut out = self.text.clone();
        out.push('\n');
        for s in &self.signatures {
            let mut raw = s.key_id.to_be_bytes().to_vec();
            raw.extend_from_slice(&s.signature);
            out.push_str("\u{2014} ");
            out.push_str(&s.name);
            out.push(' ');
            out.push_str(&B64.encode(raw));
            out.push('\n');
        }
        out
    }

    /// Spec semantics: ignore signatures by unknown keys, reject the note if a signature by a
    /// known key fails, and require at least one verified signature.
    pub fn verify_any(&self, verifiers: &[NoteVerifier]) -> Result<Vec<Verified>, NoteError> {
        let mut ok = Vec::new();
        for s in &self.signatures {
            if let Some(v) = verifiers
                .iter()
                .find(|v| v.name == s.name && v.key_id == s.key_id)
            {
                let timestamp = v.verify(&self.text, &s.signature)?;
                ok.push(Verified {
                    name: v.name.clone(),
                    key_id: v.key_id,
                    key_type: v.key_type(),
                    timestamp,
                });
            }
        }
        if ok.is_empty() {
            let known = verifiers
                .iter()
                .map(|v| format!("{}+{:08x}", v.name, v.key_id))
                .collect::<Vec<_>>()
                .join(", ");
            return Err(NoteError::NoKnownSignature { known });
        }
        Ok(ok)
    }

    /// Like [`Note::verify_any`], and additionally every verifier given must have signed.
    pub fn verify_all(&self, verifiers: &[NoteVerifier]) -> Result<Vec<Verified>, NoteError> {
        let ok = self.verify_any(verifiers)?;
        for v in verifiers {
            if !ok.iter().any(|o| o.name == v.name && o.key_id == v.key_id) {
                return Err(NoteError::MissingSignature {
                    name: v.name.clone(),
                    key_id: v.key_id,
                    key_type: v.key_type(),
                });
            }
        }
        Ok(ok)
    }
}

/// Which signatures a checkpoint carries and needs (`PQC_MODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointMode {
    /// Ed25519 only.
    Classical,
    /// Ed25519 and ML-DSA-44; verification requires both.
    Hybrid,
}

impl TryFrom<crate::config::PqcMode> for CheckpointMode {
    type Error = NoteError;

    /// `PQC_MODE=off` has no checkpoint mode: checkpoints are always signed.
    fn try_from(mode: crate::config::PqcMode) -> Result<Self, NoteError> {
        Self::parse(mode.as_str())
    }
}

impl CheckpointMode {
    /// Parse a `PQC_MODE` value (`hybrid` or `classical`, case-insensitive).
    pub fn parse(s: &str) -> Result<Self, NoteError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "hybrid" => Ok(Self::Hybrid),
            "classical" => Ok(Self::Classical),
            _ => Err(NoteError::BadMode(s.to_string())),
        }
    }

    /// The `PQC_MODE` spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Classical => "classical",
            Self::Hybrid => "hybrid",
        }
    }
}

/// A tlog checkpoint body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Log identity (first line).
    pub origin: String,
    /// Tree size.
    pub size: u64,
    /// Root hash at that size.
    pub root: Hash,
    /// Optional extension lines (without newlines).
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// A checkpoint without extension lines.
    pub fn new(origin: &str, size: u64, root: Hash) -> Self {
        Self {
            origin: origin.to_string(),
            size,
            root,
            extensions: Vec::new(),
        }
    }

    /// The note text: origin, size, base64 root, extensions, each ending in a newline.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        );
        for e in &self.extensions {
            s.push_str(e);
            s.push('\n');
        }
        s
    }

    /// Parse a checkpoint note text.
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let bad = |line, reason| NoteError::BadCheckpoint { line, reason };
        let Some(body) = text.strip_suffix('\n') else {
            return Err(NoteError::MissingFinalNewline);
        };
        let lines: Vec<&str> = body.split('\n').collect();
        if lines.len() < 3 {
            return Err(bad(
                lines.len() + 1,
                "a checkpoint has at least three lines",
            ));
        }
        if lines[0].is_empty() {
            return Err(bad(1, "origin is empty"));
        }
        let size_line = lines[1];
        if size_line.is_empty()
            || !size_line.bytes().all(|b| b.is_ascii_digit())
            || (size_line.len() > 1 && size_line.starts_with('0'))
        {
            return Err(bad(2, "tree size is not a decimal without leading zeros"));
        }
        let size: u64 = size_line
            .parse()
            .map_err(|_| bad(2, "tree size does not fit in 64 bits"))?;
        let root_raw = B64
            .decode(lines[2])
            .map_err(|_| bad(3, "root hash is not valid base64"))?;
        let root: Hash = root_raw
            .try_into()
            .map_err(|_| bad(3, "root hash is not 32 bytes"))?;
        let mut extensions = Vec::new();
        for (i, e) in lines[3..].iter().enumerate() {
            if e.is_empty() {
                return Err(bad(i + 4, "extension line is empty"));
            }
            extensions.push((*e).to_string());
        }
        Ok(Self {
            origin: lines[0].to_string(),
            size,
            root,
            extensions,
        })
    }

    /// Sign as a signed note with every signer (e.g. Ed25519 then ML-DSA-44 in hybrid mode).
    pub fn sign(&self, signers: &[&NoteSigner], timestamp: u64) -> Result<String, NoteError> {
        Ok(Note::sign(&self.to_text(), signers, timestamp)?.to_text())
    }

    /// Verify a signed checkpoint. `Classical`: an Ed25519 verifier must be given and its
    /// signature must verify. `Hybrid`: an Ed25519 and an ML-DSA-44 verifier must be given
    /// and both signatures must verify. Signatures by other keys are ignored; a bad signature
    /// by any given key rejects the checkpoint.
    pub fn verify(
        signed: &str,
        verifiers: &[NoteVerifier],
        mode: CheckpointMode,
    ) -> Result<Self, NoteError> {
        let has = |t| verifiers.iter().any(|v| v.key_type() == t);
        if !has(TYPE_ED25519) {
            return Err(NoteError::ModeKeys {
                mode: mode.as_str(),
                needs: "an Ed25519 verifier key",
            });
        }
        if mode == CheckpointMode::Hybrid && !has(TYPE_MLDSA44_COSIGNATURE) {
            return Err(NoteError::ModeKeys {
                mode: mode.as_str(),
                needs: "an ML-DSA-44 verifier key",
            });
        }
        let note = Note::parse(signed)?;
        let cp = Self::parse(&note.text)?;
        let required: Vec<NoteVerifier> = verifiers
            .iter()
            .filter(|v| mode == CheckpointMode::Hybrid || v.key_type() == TYPE_ED25519)
            .cloned()
            .collect();
        // Known keys beyond the required ones must still verify if present.
        note.verify_any(verifiers)?;
        note.verify_all(&required)?;
        Ok(cp)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn cosigned_message_layout() {
        let cp = Checkpoint::new("o", 5, [9u8; 32]);
        let m = cosigned_message("w", 7, &cp).unwrap();
        let mut want = b"subtree/v1\n\0".to_vec();
        want.extend([1, b'w']);
        want.extend(7u64.to_be_bytes());
        want.extend([1, b'o']);
        want.extend(0u64.to_be_bytes());
        want.extend(5u64.to_be_bytes());
        want.extend([9u8; 32]);
        assert_eq!(m, want);
        assert!(matches!(
            cosigned_message("", 0, &cp),
            Err(NoteError::NameLength { .. })
        ));
    }

    #[test]
    fn checkpoint_text_roundtrip_and_rejections() {
        let mut cp = Checkpoint::new("example.com/log", 20852163, [1u8; 32]);
        cp.extensions.push("ext".into());
        assert_eq!(Checkpoint::parse(&cp.to_text()).unwrap(), cp);
        assert!(matches!(
            Checkpoint::parse("o\n01\nAA==\n"),
            Err(NoteError::BadCheckpoint { line: 2, .. })
        ));
        assert!(matches!(
            Checkpoint::parse("o\n1\nAA==\n"),
            Err(NoteError::BadCheckpoint { line: 3, .. })
        ));
        assert!(matches!(
            Checkpoint::parse("o\n1\n"),
            Err(NoteError::BadCheckpoint { .. })
        ));
    }
}
