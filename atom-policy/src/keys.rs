//! Signing keys: ML-DSA-44/65/87, ECDSA P-256, Ed25519 and hybrid pairs, and their text file format.
//!
//! A key is one or two *components*. A single-algorithm key has one; a hybrid key has a classical
//! component (ECDSA P-256 or Ed25519) first and an ML-DSA component second. Each component has its
//! own key id (SHA-256 of its raw public key), which is what signatures name; the key as a whole has
//! a key id too (SHA-256 of its components' raw public keys concatenated in order).
//!
//! The file format is documented in `docs/formats.md`. Secret key files are created with mode 0600
//! and secret material never appears in `Debug` output.
//!
//! ```
//! use atom_policy::keys::{KeySpec, SigningKey};
//!
//! let key = SigningKey::generate(KeySpec::Hybrid(atom_policy::keys::Algorithm::MlDsa65));
//! assert_eq!(key.components().len(), 2);
//! let public = key.verifying_key();
//! let text = public.to_text();
//! let parsed = atom_policy::keys::VerifyingKey::from_text(&text).unwrap();
//! assert_eq!(parsed.key_id(), public.key_id());
//! assert!(format!("{key:?}").contains("<REDACTED>"));
//! ```

use crate::error::{Error, Result};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use p256::pkcs8::{EncodePublicKey, LineEnding};
use pqcrypto_traits::sign::{DetachedSignature as _, PublicKey as _, SecretKey as _};
use rand_core::OsRng;
use sha2::{Digest, Sha256};
use std::fmt;
use std::path::Path;
use zeroize::Zeroizing;

/// A single signature algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    /// ML-DSA-44 (FIPS 204, security category 2).
    MlDsa44,
    /// ML-DSA-65 (FIPS 204, security category 3): the default.
    MlDsa65,
    /// ML-DSA-87 (FIPS 204, security category 5).
    MlDsa87,
    /// ECDSA over NIST P-256 with SHA-256, DER signatures (what OpenSSF model signing verifies).
    EcdsaP256,
    /// Ed25519 (what signed notes use).
    Ed25519,
}

impl Algorithm {
    /// Every algorithm.
    pub const ALL: [Algorithm; 5] = [
        Algorithm::MlDsa44,
        Algorithm::MlDsa65,
        Algorithm::MlDsa87,
        Algorithm::EcdsaP256,
        Algorithm::Ed25519,
    ];

    /// The algorithm's name in files and on the command line, e.g. `ml-dsa-65`.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::MlDsa44 => "ml-dsa-44",
            Algorithm::MlDsa65 => "ml-dsa-65",
            Algorithm::MlDsa87 => "ml-dsa-87",
            Algorithm::EcdsaP256 => "ecdsa-p256",
            Algorithm::Ed25519 => "ed25519",
        }
    }

    /// Parses a name as written by [`Algorithm::name`].
    pub fn from_name(name: &str) -> Result<Self> {
        Algorithm::ALL
            .into_iter()
            .find(|a| a.name() == name)
            .ok_or_else(|| Error::UnknownAlgorithm(name.to_owned()))
    }

    /// True for the ML-DSA family.
    pub fn is_post_quantum(self) -> bool {
        matches!(
            self,
            Algorithm::MlDsa44 | Algorithm::MlDsa65 | Algorithm::MlDsa87
        )
    }

    /// Length in bytes of a raw public key of this algorithm.
    pub fn public_key_len(self) -> usize {
        match self {
            Algorithm::MlDsa44 => pqcrypto_mldsa::mldsa44::public_key_bytes(),
            Algorithm::MlDsa65 => pqcrypto_mldsa::mldsa65::public_key_bytes(),
            Algorithm::MlDsa87 => pqcrypto_mldsa::mldsa87::public_key_bytes(),
            Algorithm::EcdsaP256 => 65,
            Algorithm::Ed25519 => 32,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What to generate: one algorithm, or a hybrid of ECDSA P-256 and the given ML-DSA level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySpec {
    /// A single-algorithm key.
    Single(Algorithm),
    /// ECDSA P-256 + the given ML-DSA level (which must be post-quantum).
    Hybrid(Algorithm),
}

impl KeySpec {
    /// Parses `ml-dsa-65`, `ecdsa-p256`, ..., `hybrid` (= ECDSA P-256 + ML-DSA-65),
    /// `hybrid-ml-dsa-44` or `hybrid-ml-dsa-87`.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "hybrid" => Ok(KeySpec::Hybrid(Algorithm::MlDsa65)),
            _ => match s.strip_prefix("hybrid-") {
                Some(level) => {
                    let alg = Algorithm::from_name(level)?;
                    if alg.is_post_quantum() {
                        Ok(KeySpec::Hybrid(alg))
                    } else {
                        Err(Error::UnknownAlgorithm(s.to_owned()))
                    }
                }
                None => Algorithm::from_name(s).map(KeySpec::Single),
            },
        }
    }
}

/// Hex SHA-256 of `bytes`.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The public half of one key component.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PublicComponent {
    algorithm: Algorithm,
    bytes: Vec<u8>,
}

impl PublicComponent {
    /// Builds a component from raw public key bytes (ECDSA: SEC1 uncompressed point, 65 bytes;
    /// Ed25519: 32 bytes; ML-DSA: the FIPS 204 encoding), checking that they parse.
    pub fn from_raw(algorithm: Algorithm, bytes: Vec<u8>) -> Result<Self> {
        let bad = |why: String| Error::KeyFormat(format!("{algorithm} public key: {why}"));
        match algorithm {
            Algorithm::EcdsaP256 => {
                let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&bytes)
                    .map_err(|_| bad("not a valid P-256 point".into()))?;
                // Normalise to the uncompressed encoding so key ids are stable.
                let bytes = vk.to_encoded_point(false).as_bytes().to_vec();
                return Ok(Self { algorithm, bytes });
            }
            Algorithm::Ed25519 => {
                let arr: [u8; 32] = bytes
                    .as_slice()
                    .try_into()
                    .map_err(|_| bad(format!("expected 32 bytes, got {}", bytes.len())))?;
                ed25519_dalek::VerifyingKey::from_bytes(&arr)
                    .map_err(|_| bad("not a valid Ed25519 point".into()))?;
            }
            _ => {
                if bytes.len() != algorithm.public_key_len() {
                    return Err(bad(format!(
                        "expected {} bytes, got {}",
                        algorithm.public_key_len(),
                        bytes.len()
                    )));
                }
            }
        }
        Ok(Self { algorithm, bytes })
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Raw public key bytes.
    pub fn raw(&self) -> &[u8] {
        &self.bytes
    }

    /// Hex SHA-256 of the raw public key: the id signatures carry.
    pub fn key_id(&self) -> String {
        sha256_hex(&self.bytes)
    }

    /// The public key as a PEM SubjectPublicKeyInfo (ECDSA only: what `model_signing` reads).
    pub fn to_pem(&self) -> Result<String> {
        if self.algorithm != Algorithm::EcdsaP256 {
            return Err(Error::KeyUnsuitable {
                key_id: self.key_id(),
                reason: format!(
                    "PEM export is for ecdsa-p256 keys, this is {}",
                    self.algorithm
                ),
            });
        }
        let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&self.bytes)
            .map_err(|_| Error::KeyFormat("stored P-256 point is invalid".into()))?;
        vk.to_public_key_pem(LineEnding::LF)
            .map_err(|e| Error::KeyFormat(format!("PEM encoding failed: {e}")))
    }

    /// Checks `signature` over `message`; `Ok(false)` when it does not verify.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match self.algorithm {
            Algorithm::MlDsa44 => mldsa_verify::<44>(&self.bytes, message, signature),
            Algorithm::MlDsa65 => mldsa_verify::<65>(&self.bytes, message, signature),
            Algorithm::MlDsa87 => mldsa_verify::<87>(&self.bytes, message, signature),
            Algorithm::EcdsaP256 => {
                // aws-lc (already linked for TLS) verifies P-256 an order of magnitude faster
                // than the pure-Rust curve; DER signatures, SHA-256.
                aws_lc_rs::signature::UnparsedPublicKey::new(
                    &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1,
                    &self.bytes,
                )
                .verify(message, signature)
                .is_ok()
            }
            Algorithm::Ed25519 => {
                let Ok(arr) = <[u8; 32]>::try_from(self.bytes.as_slice()) else {
                    return false;
                };
                let Ok(vk) = ed25519_dalek::VerifyingKey::from_bytes(&arr) else {
                    return false;
                };
                let Ok(sig) = ed25519_dalek::Signature::from_slice(signature) else {
                    return false;
                };
                vk.verify_strict(message, &sig).is_ok()
            }
        }
    }
}

impl fmt::Debug for PublicComponent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicComponent")
            .field("algorithm", &self.algorithm)
            .field("key_id", &self.key_id())
            .finish()
    }
}

fn mldsa_verify<const L: u16>(pk: &[u8], msg: &[u8], sig: &[u8]) -> bool {
    macro_rules! v {
        ($m:ident) => {{
            let (Ok(pk), Ok(sig)) = (
                pqcrypto_mldsa::$m::PublicKey::from_bytes(pk),
                pqcrypto_mldsa::$m::DetachedSignature::from_bytes(sig),
            ) else {
                return false;
            };
            pqcrypto_mldsa::$m::verify_detached_signature(&sig, msg, &pk).is_ok()
        }};
    }
    match L {
        44 => v!(mldsa44),
        65 => v!(mldsa65),
        _ => v!(mldsa87),
    }
}

/// One component of a signing key: the public part and the secret (zeroized on drop).
#[derive(Clone)]
pub struct SecretComponent {
    public: PublicComponent,
    secret: Zeroizing<Vec<u8>>,
}

impl SecretComponent {
    /// Generates a fresh component from the operating system's RNG.
    pub fn generate(algorithm: Algorithm) -> Self {
        macro_rules! gen_mldsa {
            ($m:ident) => {{
                let (pk, sk) = pqcrypto_mldsa::$m::keypair();
                (pk.as_bytes().to_vec(), sk.as_bytes().to_vec())
            }};
        }
        let (public, secret) = match algorithm {
            Algorithm::MlDsa44 => gen_mldsa!(mldsa44),
            Algorithm::MlDsa65 => gen_mldsa!(mldsa65),
            Algorithm::MlDsa87 => gen_mldsa!(mldsa87),
            Algorithm::EcdsaP256 => {
                let sk = p256::ecdsa::SigningKey::random(&mut OsRng);
                let pk = sk
                    .verifying_key()
                    .to_encoded_point(false)
                    .as_bytes()
                    .to_vec();
                (pk, sk.to_bytes().to_vec())
            }
            Algorithm::Ed25519 => {
                let sk = ed25519_dalek::SigningKey::generate(&mut OsRng);
                (
                    sk.verifying_key().to_bytes().to_vec(),
                    sk.to_bytes().to_vec(),
                )
            }
        };
        Self {
            public: PublicComponent {
                algorithm,
                bytes: public,
            },
            secret: Zeroizing::new(secret),
        }
    }

    /// Builds a component from raw bytes, checking that the secret matches the public key.
    pub fn from_raw(algorithm: Algorithm, public: Vec<u8>, secret: Vec<u8>) -> Result<Self> {
        let secret = Zeroizing::new(secret);
        let public = PublicComponent::from_raw(algorithm, public)?;
        let component = Self { public, secret };
        // A signature made with the secret must verify under the public key: this catches a
        // file whose halves come from different keys.
        let probe = b"atom-fabric key consistency check";
        let sig = component.sign(probe)?;
        if !component.public.verify(probe, &sig) {
            return Err(Error::KeyFormat(format!(
                "{algorithm} secret key does not match its public key"
            )));
        }
        Ok(component)
    }

    /// The public half.
    pub fn public(&self) -> &PublicComponent {
        &self.public
    }

    /// Raw secret bytes (for writing the key file).
    fn secret_raw(&self) -> &[u8] {
        &self.secret
    }

    /// Signs `message`. ML-DSA is pure ML-DSA with an empty context (FIPS 204, hedged);
    /// ECDSA P-256 is SHA-256 with a DER signature (aws-lc, random nonce); Ed25519 is RFC 8032.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>> {
        let alg = self.public.algorithm;
        let bad = || Error::KeyFormat(format!("{alg} secret key has the wrong length"));
        macro_rules! sign_mldsa {
            ($m:ident) => {{
                let sk =
                    pqcrypto_mldsa::$m::SecretKey::from_bytes(&self.secret).map_err(|_| bad())?;
                pqcrypto_mldsa::$m::detached_sign(message, &sk)
                    .as_bytes()
                    .to_vec()
            }};
        }
        Ok(match alg {
            Algorithm::MlDsa44 => sign_mldsa!(mldsa44),
            Algorithm::MlDsa65 => sign_mldsa!(mldsa65),
            Algorithm::MlDsa87 => sign_mldsa!(mldsa87),
            Algorithm::EcdsaP256 => {
                let kp = aws_lc_rs::signature::EcdsaKeyPair::from_private_key_and_public_key(
                    &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
                    &self.secret,
                    &self.public.bytes,
                )
                .map_err(|_| bad())?;
                kp.sign(&aws_lc_rs::rand::SystemRandom::new(), message)
                    .map_err(|_| Error::KeyFormat("ECDSA signing failed".into()))?
                    .as_ref()
                    .to_vec()
            }
            Algorithm::Ed25519 => {
                let arr: [u8; 32] = self.secret.as_slice().try_into().map_err(|_| bad())?;
                let sk = ed25519_dalek::SigningKey::from_bytes(&arr);
                ed25519_dalek::Signer::sign(&sk, message)
                    .to_bytes()
                    .to_vec()
            }
        })
    }
}

impl fmt::Debug for SecretComponent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretComponent")
            .field("public", &self.public)
            .field("secret", &"<REDACTED>")
            .finish()
    }
}

/// A signing key: one component, or a classical and an ML-DSA component (hybrid).
#[derive(Clone)]
pub struct SigningKey {
    components: Vec<SecretComponent>,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("algorithm", &self.algorithm_label())
            .field("key_id", &self.key_id())
            .field("secret", &"<REDACTED>")
            .finish()
    }
}

fn check_components<T>(components: &[T], alg: impl Fn(&T) -> Algorithm) -> Result<()> {
    match components {
        [_] => Ok(()),
        [c, p] if !alg(c).is_post_quantum() && alg(p).is_post_quantum() => Ok(()),
        [_, _] => Err(Error::KeyFormat(
            "a hybrid key is a classical component (ecdsa-p256 or ed25519) followed by an ml-dsa component"
                .into(),
        )),
        _ => Err(Error::KeyFormat(format!(
            "a key has one or two components, found {}",
            components.len()
        ))),
    }
}

fn label(algs: impl Iterator<Item = Algorithm>) -> String {
    algs.map(Algorithm::name).collect::<Vec<_>>().join("+")
}

impl SigningKey {
    /// Generates a new key.
    pub fn generate(spec: KeySpec) -> Self {
        let components = match spec {
            KeySpec::Single(alg) => vec![SecretComponent::generate(alg)],
            KeySpec::Hybrid(pq) => vec![
                SecretComponent::generate(Algorithm::EcdsaP256),
                SecretComponent::generate(if pq.is_post_quantum() {
                    pq
                } else {
                    Algorithm::MlDsa65
                }),
            ],
        };
        Self { components }
    }

    /// Builds a key from components (one, or classical then ML-DSA).
    pub fn from_components(components: Vec<SecretComponent>) -> Result<Self> {
        check_components(&components, |c| c.public.algorithm)?;
        Ok(Self { components })
    }

    /// The components, classical first.
    pub fn components(&self) -> &[SecretComponent] {
        &self.components
    }

    /// The classical component, if any.
    pub fn classical(&self) -> Option<&SecretComponent> {
        self.components
            .iter()
            .find(|c| !c.public.algorithm.is_post_quantum())
    }

    /// The ML-DSA component, if any.
    pub fn post_quantum(&self) -> Option<&SecretComponent> {
        self.components
            .iter()
            .find(|c| c.public.algorithm.is_post_quantum())
    }

    /// The public key.
    pub fn verifying_key(&self) -> VerifyingKey {
        VerifyingKey {
            components: self.components.iter().map(|c| c.public.clone()).collect(),
        }
    }

    /// Hex key id of the whole key.
    pub fn key_id(&self) -> String {
        self.verifying_key().key_id()
    }

    /// `ml-dsa-65`, or `ecdsa-p256+ml-dsa-65` for a hybrid key.
    pub fn algorithm_label(&self) -> String {
        label(self.components.iter().map(|c| c.public.algorithm))
    }

    /// The key in the text format of `docs/formats.md`, secret included.
    pub fn to_text(&self) -> Zeroizing<String> {
        let mut out = Zeroizing::new(String::new());
        out.push_str("# atom-fabric signing key: SECRET, keep private\n");
        out.push_str(&header("secret", &self.algorithm_label(), &self.key_id()));
        for c in &self.components {
            let alg = c.public.algorithm;
            out.push_str(&format!("public.{alg}: {}\n", B64.encode(&c.public.bytes)));
            out.push_str(&format!("secret.{alg}: {}\n", B64.encode(c.secret_raw())));
        }
        out
    }

    /// Parses the text format.
    pub fn from_text(text: &str) -> Result<Self> {
        let parsed = ParsedKeyFile::parse(text, "secret")?;
        let mut components = Vec::new();
        for alg in &parsed.algorithms {
            let public = parsed.field(&format!("public.{alg}"))?;
            let secret = parsed.field(&format!("secret.{alg}"))?;
            components.push(SecretComponent::from_raw(*alg, public, secret)?);
        }
        let key = Self::from_components(components)?;
        parsed.check_key_id(&key.key_id())?;
        Ok(key)
    }

    /// Reads a key file.
    pub fn read(path: &Path) -> Result<Self> {
        let text =
            Zeroizing::new(std::fs::read_to_string(path).map_err(|e| Error::io("read", path, e))?);
        Self::from_text(&text)
    }

    /// Writes the key to a new file with mode 0600 (an existing file is not overwritten).
    pub fn write(&self, path: &Path) -> Result<()> {
        use std::io::Write as _;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            opts.mode(0o600);
        }
        let mut f = opts.open(path).map_err(|e| Error::io("create", path, e))?;
        f.write_all(self.to_text().as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|e| Error::io("write", path, e))
    }
}

/// A public key: one component, or a classical and an ML-DSA component (hybrid).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VerifyingKey {
    components: Vec<PublicComponent>,
}

impl VerifyingKey {
    /// Builds a key from components (one, or classical then ML-DSA).
    pub fn from_components(components: Vec<PublicComponent>) -> Result<Self> {
        check_components(&components, |c| c.algorithm)?;
        Ok(Self { components })
    }

    /// The components, classical first.
    pub fn components(&self) -> &[PublicComponent] {
        &self.components
    }

    /// The component whose key id is `key_id`.
    pub fn component(&self, key_id: &str) -> Option<&PublicComponent> {
        self.components.iter().find(|c| c.key_id() == key_id)
    }

    /// The classical component, if any.
    pub fn classical(&self) -> Option<&PublicComponent> {
        self.components
            .iter()
            .find(|c| !c.algorithm.is_post_quantum())
    }

    /// The ML-DSA component, if any.
    pub fn post_quantum(&self) -> Option<&PublicComponent> {
        self.components
            .iter()
            .find(|c| c.algorithm.is_post_quantum())
    }

    /// Hex SHA-256 of the components' raw public keys concatenated in order.
    pub fn key_id(&self) -> String {
        let mut h = Sha256::new();
        for c in &self.components {
            h.update(&c.bytes);
        }
        hex::encode(h.finalize())
    }

    /// `ml-dsa-65`, or `ecdsa-p256+ml-dsa-65` for a hybrid key.
    pub fn algorithm_label(&self) -> String {
        label(self.components.iter().map(|c| c.algorithm))
    }

    /// The key in the text format of `docs/formats.md`.
    pub fn to_text(&self) -> String {
        let mut out = String::from("# atom-fabric public key\n");
        out.push_str(&header("public", &self.algorithm_label(), &self.key_id()));
        for c in &self.components {
            out.push_str(&format!(
                "public.{}: {}\n",
                c.algorithm,
                B64.encode(&c.bytes)
            ));
        }
        out
    }

    /// Parses the text format (a secret key file is accepted too: its public half is taken).
    pub fn from_text(text: &str) -> Result<Self> {
        let parsed = ParsedKeyFile::parse(text, "public")?;
        let mut components = Vec::new();
        for alg in &parsed.algorithms {
            let public = parsed.field(&format!("public.{alg}"))?;
            components.push(PublicComponent::from_raw(*alg, public)?);
        }
        let key = Self::from_components(components)?;
        parsed.check_key_id(&key.key_id())?;
        Ok(key)
    }

    /// Reads a public (or secret) key file.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io("read", path, e))?;
        Self::from_text(&text)
    }

    /// Writes the public key file.
    pub fn write(&self, path: &Path) -> Result<()> {
        std::fs::write(path, self.to_text()).map_err(|e| Error::io("write", path, e))
    }
}

const FORMAT: &str = "atom-key/v1";

fn header(kind: &str, alg: &str, key_id: &str) -> String {
    format!("format: {FORMAT}\ntype: {kind}\nalgorithm: {alg}\nkey-id: {key_id}\n")
}

struct ParsedKeyFile {
    algorithms: Vec<Algorithm>,
    key_id: String,
    fields: Vec<(String, String)>,
}

impl ParsedKeyFile {
    fn parse(text: &str, want: &str) -> Result<Self> {
        let mut fields = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (k, v) = line.split_once(':').ok_or_else(|| {
                Error::KeyFormat(format!("line {}: expected `name: value`", n + 1))
            })?;
            fields.push((k.trim().to_owned(), v.trim().to_owned()));
        }
        let get = |name: &str| {
            fields
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .ok_or_else(|| Error::KeyFormat(format!("missing `{name}:` line")))
        };
        let format = get("format")?;
        if format != FORMAT {
            return Err(Error::KeyFormat(format!(
                "unsupported format `{format}` (expected {FORMAT})"
            )));
        }
        let kind = get("type")?;
        if want == "secret" && kind != "secret" {
            return Err(Error::KeyFormat(format!(
                "this is a {kind} key file; a secret key is needed"
            )));
        }
        if kind != "secret" && kind != "public" {
            return Err(Error::KeyFormat(format!("unknown key type `{kind}`")));
        }
        let algorithms = get("algorithm")?
            .split('+')
            .map(Algorithm::from_name)
            .collect::<Result<Vec<_>>>()?;
        let key_id = get("key-id")?;
        Ok(Self {
            algorithms,
            key_id,
            fields,
        })
    }

    fn field(&self, name: &str) -> Result<Vec<u8>> {
        let value = self
            .fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
            .ok_or_else(|| Error::KeyFormat(format!("missing `{name}:` line")))?;
        B64.decode(value)
            .map_err(|e| Error::KeyFormat(format!("`{name}` is not base64: {e}")))
    }

    fn check_key_id(&self, actual: &str) -> Result<()> {
        if self.key_id != actual {
            return Err(Error::KeyFormat(format!(
                "key-id line says {} but the public key hashes to {actual}",
                self.key_id
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sizes_match_fips_204() {
        // FIPS 204 Table 2: public key and signature sizes.
        let expect = [
            (Algorithm::MlDsa44, 1312, 2420),
            (Algorithm::MlDsa65, 1952, 3309),
            (Algorithm::MlDsa87, 2592, 4627),
        ];
        for (alg, pk, sig) in expect {
            let c = SecretComponent::generate(alg);
            assert_eq!(c.public().raw().len(), pk, "{alg} public key");
            assert_eq!(c.sign(b"m").unwrap().len(), sig, "{alg} signature");
        }
    }

    #[test]
    fn every_algorithm_signs_and_rejects_tampering() {
        for alg in Algorithm::ALL {
            let c = SecretComponent::generate(alg);
            let sig = c.sign(b"hello").unwrap();
            assert!(c.public().verify(b"hello", &sig), "{alg}");
            assert!(!c.public().verify(b"hellp", &sig), "{alg} wrong message");
            let mut bad = sig.clone();
            let last = bad.len() - 1;
            bad[last / 2] ^= 1;
            assert!(!c.public().verify(b"hello", &bad), "{alg} flipped bit");
            let other = SecretComponent::generate(alg);
            assert!(!other.public().verify(b"hello", &sig), "{alg} other key");
        }
    }

    #[test]
    fn text_round_trip_and_key_id() {
        for spec in [
            KeySpec::Single(Algorithm::MlDsa44),
            KeySpec::Single(Algorithm::Ed25519),
            KeySpec::Hybrid(Algorithm::MlDsa87),
        ] {
            let key = SigningKey::generate(spec);
            let back = SigningKey::from_text(&key.to_text()).unwrap();
            assert_eq!(back.key_id(), key.key_id());
            let pubkey = VerifyingKey::from_text(&key.verifying_key().to_text()).unwrap();
            assert_eq!(pubkey, key.verifying_key());
            // key id = SHA-256 of the public key bytes (concatenated for hybrid).
            let mut all = Vec::new();
            for c in key.components() {
                all.extend_from_slice(c.public().raw());
                assert_eq!(
                    c.public().key_id(),
                    hex::encode(Sha256::digest(c.public().raw()))
                );
            }
            assert_eq!(key.key_id(), hex::encode(Sha256::digest(&all)));
        }
    }

    #[test]
    fn mismatched_halves_and_bad_key_id_are_rejected() {
        let a = SigningKey::generate(KeySpec::Single(Algorithm::Ed25519));
        let b = SigningKey::generate(KeySpec::Single(Algorithm::Ed25519));
        let text = a.to_text();
        let b_text = b.to_text();
        let b_secret = b_text.lines().find(|l| l.starts_with("secret.")).unwrap();
        let mixed: String = text
            .lines()
            .map(|l| {
                if l.starts_with("secret.") {
                    b_secret
                } else {
                    l
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        let err = SigningKey::from_text(&mixed).unwrap_err().to_string();
        assert!(err.contains("does not match"), "{err}");

        let wrong_id = a
            .verifying_key()
            .to_text()
            .replace(&a.key_id(), &b.key_id());
        let err = VerifyingKey::from_text(&wrong_id).unwrap_err().to_string();
        assert!(err.contains("key-id line says"), "{err}");
        assert!(SigningKey::from_text(&a.verifying_key().to_text()).is_err());
    }

    #[test]
    fn debug_never_shows_secrets() {
        let key = SigningKey::generate(KeySpec::Hybrid(Algorithm::MlDsa65));
        let dbg = format!("{key:?} {:?}", key.components());
        assert!(dbg.contains("<REDACTED>"));
        for c in key.components() {
            let secret_b64 = B64.encode(c.secret_raw());
            assert!(!dbg.contains(&secret_b64[..16]));
        }
    }

    #[cfg(unix)]
    #[test]
    fn secret_file_is_0600() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.key");
        let key = SigningKey::generate(KeySpec::Single(Algorithm::MlDsa65));
        key.write(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(key.write(&path).is_err(), "never overwrites a key");
        assert_eq!(SigningKey::read(&path).unwrap().key_id(), key.key_id());
    }

    #[test]
    fn pem_export_parses_back() {
        let key = SigningKey::generate(KeySpec::Single(Algorithm::EcdsaP256));
        let pem = key.verifying_key().components()[0].to_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"));
        use p256::pkcs8::DecodePublicKey as _;
        let vk = p256::ecdsa::VerifyingKey::from_public_key_pem(&pem).unwrap();
        assert_eq!(
            vk.to_encoded_point(false).as_bytes(),
            key.verifying_key().components()[0].raw()
        );
    }
}
