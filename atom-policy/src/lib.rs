//! # atom-policy
//!
//! The trust layer of atom-fabric: post-quantum keys and signatures, signed model and job
//! manifests, the tamper-evident audit log, the seven policies P1–P7 and the precheck.
//!
//! - [`keys`]: ML-DSA-44/65/87, ECDSA P-256, Ed25519 and hybrid keys, and their file format.
//! - [`signature`]: signing and verification under `PQC_MODE` (hybrid / classical / off).
//! - [`dsse`]: DSSE envelopes; [`manifest`]: OpenSSF Model Signing bundles.
//! - [`keyring`]: trusted keys with validity windows and approved rotation (P3).
//! - [`handshake`]: X25519 + ML-KEM-768 hybrid key agreement and rustls configs.
//! - [`jwt`]: tenant validation (P5).
//! - [`policy`]: P1–P7 checks and the policy matrix; [`precheck`]: the environment precheck.
//!
//! ```
//! use atom_policy::config::Mode;
//! use atom_policy::keys::{Algorithm, KeySpec, SigningKey};
//! use atom_policy::keyring::KeyRing;
//! use atom_policy::dsse::{Envelope, JOB_PAYLOAD_TYPE};
//!
//! let key = SigningKey::generate(KeySpec::Hybrid(Algorithm::MlDsa65));
//! let envelope = Envelope::sign(JOB_PAYLOAD_TYPE, b"{\"mode\":\"quantum\"}", &key, Mode::default())?;
//! let ring = KeyRing::trusting(key.verifying_key());
//! envelope.verify(&ring, Mode::default(), 0, JOB_PAYLOAD_TYPE)?;
//! # Ok::<(), atom_policy::Error>(())
//! ```

pub mod audit;
pub mod config;
pub mod dsse;
mod error;
pub mod handshake;
pub mod jwt;
pub mod keyring;
pub mod keys;
pub mod manifest;
pub mod merkle;
pub mod note;
pub mod policy;
pub mod precheck;
pub mod signature;

pub use error::{Error, Result};
