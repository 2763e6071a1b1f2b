//! The handshake bridge (H.2.E1): X25519 + ML-KEM-768 hybrid key agreement for model transport,
//! and rustls configurations that negotiate the X25519MLKEM768 TLS group under `PQC_MODE=hybrid`.
//!
//! The two shared secrets are combined as the X25519MLKEM768 TLS group does (ML-KEM-768 secret
//! first, then the X25519 secret) and expanded with HKDF-SHA256 into a 32-byte session key, bound to
//! both public messages of the exchange.
//!
//! ```
//! use atom_policy::handshake::HybridKeyPair;
//! let responder = HybridKeyPair::generate();
//! let (ciphertext, initiator_key) = atom_policy::handshake::initiate(&responder.public_bytes()).unwrap();
//! let responder_key = responder.respond(&ciphertext).unwrap();
//! assert_eq!(initiator_key.as_bytes(), responder_key.as_bytes());
//! ```

use crate::config::{Mode, PqcMode};
use crate::error::{Error, Result};
use crate::keys::sha256_hex;
use pqcrypto_mlkem::mlkem768;
use pqcrypto_traits::kem::{Ciphertext as _, PublicKey as _, SecretKey as _, SharedSecret as _};
use rand_core::OsRng;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::sync::Arc;
use zeroize::Zeroizing;

/// The hybrid group's name as TLS registers it.
pub const GROUP_NAME: &str = "X25519MLKEM768";
/// The KEM.
pub const KEM_NAME: &str = "ML-KEM-768";
const MLKEM_PK: usize = 1184;
const MLKEM_CT: usize = 1088;
const HKDF_INFO: &[u8] = b"atom-fabric hybrid handshake v1";

/// A 32-byte session key (zeroized on drop).
pub struct SessionKey(Zeroizing<[u8; 32]>);

impl SessionKey {
    /// The key bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(<REDACTED>)")
    }
}

/// A responder's long-lived hybrid key pair.
pub struct HybridKeyPair {
    mlkem_pk: Vec<u8>,
    mlkem_sk: Zeroizing<Vec<u8>>,
    x25519: x25519_dalek::StaticSecret,
}

impl std::fmt::Debug for HybridKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HybridKeyPair")
            .field("sha256", &sha256_hex(&self.public_bytes()))
            .field("secret", &"<REDACTED>")
            .finish()
    }
}

impl HybridKeyPair {
    /// A fresh key pair.
    pub fn generate() -> Self {
        let (pk, sk) = mlkem768::keypair();
        Self {
            mlkem_pk: pk.as_bytes().to_vec(),
            mlkem_sk: Zeroizing::new(sk.as_bytes().to_vec()),
            x25519: x25519_dalek::StaticSecret::random_from_rng(OsRng),
        }
    }

    /// The public key: ML-KEM-768 encapsulation key (1184 bytes) then the X25519 key (32 bytes),
    /// the layout of an X25519MLKEM768 key share.
    pub fn public_bytes(&self) -> Vec<u8> {
        let mut out = self.mlkem_pk.clone();
        out.extend_from_slice(x25519_dalek::PublicKey::from(&self.x25519).as_bytes());
        out
    }

    /// Completes the exchange from the initiator's ciphertext.
    pub fn respond(&self, ciphertext: &[u8]) -> Result<SessionKey> {
        if ciphertext.len() != MLKEM_CT + 32 {
            return Err(Error::Handshake(format!(
                "ciphertext must be {} bytes (ML-KEM-768 ciphertext + X25519 share), got {}",
                MLKEM_CT + 32,
                ciphertext.len()
            )));
        }
        let ct = mlkem768::Ciphertext::from_bytes(&ciphertext[..MLKEM_CT])
            .map_err(|e| Error::Handshake(format!("ML-KEM ciphertext: {e}")))?;
        let sk = mlkem768::SecretKey::from_bytes(&self.mlkem_sk)
            .map_err(|e| Error::Handshake(format!("ML-KEM secret key: {e}")))?;
        let kem_ss = mlkem768::decapsulate(&ct, &sk);
        let peer: [u8; 32] = ciphertext[MLKEM_CT..]
            .try_into()
            .map_err(|_| Error::Handshake("X25519 share must be 32 bytes".into()))?;
        let dh = self
            .x25519
            .diffie_hellman(&x25519_dalek::PublicKey::from(peer));
        if !dh.was_contributory() {
            return Err(Error::Handshake("X25519 share is a low-order point".into()));
        }
        derive(
            kem_ss.as_bytes(),
            dh.as_bytes(),
            &self.public_bytes(),
            ciphertext,
        )
    }
}

fn derive(kem_ss: &[u8], dh_ss: &[u8], public: &[u8], ciphertext: &[u8]) -> Result<SessionKey> {
    let mut ikm = Zeroizing::new(Vec::with_capacity(64));
    ikm.extend_from_slice(kem_ss);
    ikm.extend_from_slice(dh_ss);
    // Salt binds the key to this exchange's public messages.
    let mut transcript = sha2::Sha256::default();
    sha2::Digest::update(&mut transcript, public);
    sha2::Digest::update(&mut transcript, ciphertext);
    let salt = sha2::Digest::finalize(transcript);
    let hk = hkdf::Hkdf::<Sha256>::new(Some(&salt), &ikm);
    let mut okm = Zeroizing::new([0u8; 32]);
    hk.expand(HKDF_INFO, okm.as_mut())
        .map_err(|_| Error::Handshake("HKDF expand failed".into()))?;
    Ok(SessionKey(okm))
}

/// Starts an exchange with a responder's public key: returns the ciphertext to send
/// (ML-KEM-768 ciphertext then an ephemeral X25519 share) and the session key.
pub fn initiate(responder_public: &[u8]) -> Result<(Vec<u8>, SessionKey)> {
    if responder_public.len() != MLKEM_PK + 32 {
        return Err(Error::Handshake(format!(
            "public key must be {} bytes (ML-KEM-768 + X25519), got {}",
            MLKEM_PK + 32,
            responder_public.len()
        )));
    }
    let pk = mlkem768::PublicKey::from_bytes(&responder_public[..MLKEM_PK])
        .map_err(|e| Error::Handshake(format!("ML-KEM public key: {e}")))?;
    let (kem_ss, ct) = mlkem768::encapsulate(&pk);
    let eph = x25519_dalek::EphemeralSecret::random_from_rng(OsRng);
    let eph_pub = x25519_dalek::PublicKey::from(&eph);
    let peer: [u8; 32] = responder_public[MLKEM_PK..]
        .try_into()
        .map_err(|_| Error::Handshake("X25519 key must be 32 bytes".into()))?;
    let dh = eph.diffie_hellman(&x25519_dalek::PublicKey::from(peer));
    if !dh.was_contributory() {
        return Err(Error::Handshake("X25519 key is a low-order point".into()));
    }
    let mut ciphertext = ct.as_bytes().to_vec();
    ciphertext.extend_from_slice(eph_pub.as_bytes());
    let key = derive(
        kem_ss.as_bytes(),
        dh.as_bytes(),
        responder_public,
        &ciphertext,
    )?;
    Ok((ciphertext, key))
}

/// The report behind `GET /pqc/handshake`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandshakeReport {
    /// `ok` when a self-test exchange derived the same key on both sides.
    pub status: String,
    /// The key-agreement group, `X25519MLKEM768`.
    pub algorithm: String,
    /// The KEM, `ML-KEM-768`.
    pub kem: String,
    /// Hex SHA-256 of the active hybrid public key.
    pub sha256: String,
    /// `PQC_MODE` in force.
    pub pqc_mode: String,
    /// The active signing key's algorithm and id, when one is loaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key: Option<SigningKeyInfo>,
}

/// Which signing key is active.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningKeyInfo {
    /// e.g. `ecdsa-p256+ml-dsa-65`.
    pub algorithm: String,
    /// Hex key id.
    pub key_id: String,
}

/// Runs a self-test exchange against `pair` and reports.
pub fn report(
    pair: &HybridKeyPair,
    mode: Mode,
    signing: Option<SigningKeyInfo>,
) -> HandshakeReport {
    let ok = initiate(&pair.public_bytes())
        .and_then(|(ct, k1)| pair.respond(&ct).map(|k2| k1.as_bytes() == k2.as_bytes()))
        .unwrap_or(false);
    HandshakeReport {
        status: if ok { "ok" } else { "error" }.into(),
        algorithm: GROUP_NAME.into(),
        kem: KEM_NAME.into(),
        sha256: sha256_hex(&pair.public_bytes()),
        pqc_mode: mode.pqc.as_str().into(),
        signing_key: signing,
    }
}

/// The rustls crypto provider for `mode`: under hybrid only X25519MLKEM768 is offered and accepted.
pub fn tls_provider(mode: Mode) -> rustls::crypto::CryptoProvider {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    if mode.pqc == PqcMode::Hybrid {
        provider.kx_groups = vec![rustls::crypto::aws_lc_rs::kx_group::X25519MLKEM768];
    }
    provider
}

/// A TLS 1.3 server configuration for `mode` from a PEM certificate chain and private key.
pub fn tls_server_config(
    cert_pem: &[u8],
    key_pem: &[u8],
    mode: Mode,
) -> Result<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Handshake(format!("certificate PEM: {e}")))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| Error::Handshake(format!("private key PEM: {e}")))?;
    rustls::ServerConfig::builder_with_provider(Arc::new(tls_provider(mode)))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| Error::Handshake(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| Error::Handshake(e.to_string()))
}

/// A TLS 1.3 client configuration for `mode` trusting the PEM certificates in `roots_pem`.
pub fn tls_client_config(roots_pem: &[u8], mode: Mode) -> Result<rustls::ClientConfig> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(roots_pem) {
        let cert = cert.map_err(|e| Error::Handshake(format!("root PEM: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| Error::Handshake(format!("root certificate: {e}")))?;
    }
    Ok(
        rustls::ClientConfig::builder_with_provider(Arc::new(tls_provider(mode)))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| Error::Handshake(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn both_sides_agree_and_tampering_changes_the_key() {
        let pair = HybridKeyPair::generate();
        let public = pair.public_bytes();
        assert_eq!(public.len(), 1184 + 32);
        let (ct, k1) = initiate(&public).unwrap();
        assert_eq!(ct.len(), 1088 + 32);
        assert_eq!(pair.respond(&ct).unwrap().as_bytes(), k1.as_bytes());
        // ML-KEM decapsulation of a modified ciphertext yields an implicit-rejection secret.
        let mut bad = ct.clone();
        bad[10] ^= 1;
        assert_ne!(pair.respond(&bad).unwrap().as_bytes(), k1.as_bytes());
        let mut bad = ct.clone();
        bad[MLKEM_CT + 3] ^= 1;
        assert_ne!(pair.respond(&bad).unwrap().as_bytes(), k1.as_bytes());
        // Another responder cannot derive it.
        assert_ne!(
            HybridKeyPair::generate().respond(&ct).unwrap().as_bytes(),
            k1.as_bytes()
        );
        assert!(pair.respond(&ct[1..]).is_err());
        assert!(initiate(&public[1..]).is_err());
        // A low-order X25519 share is refused.
        let mut zero = ct.clone();
        zero[MLKEM_CT..].fill(0);
        assert!(pair.respond(&zero).is_err());
    }

    #[test]
    fn report_names_the_group_and_key() {
        let pair = HybridKeyPair::generate();
        let r = report(&pair, Mode::default(), None);
        assert_eq!(r.status, "ok");
        assert_eq!(r.algorithm, "X25519MLKEM768");
        assert_eq!(r.kem, "ML-KEM-768");
        assert_eq!(r.sha256, sha256_hex(&pair.public_bytes()));
    }
}
