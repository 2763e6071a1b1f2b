//! The crate's error type.

use std::path::PathBuf;

/// Every failure of atom-policy, each saying exactly what failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done (`read`, `write`, `create`, ...).
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A key file or key string could not be parsed.
    #[error("invalid key: {0}")]
    KeyFormat(String),
    /// An algorithm name is not one we know.
    #[error(
        "unknown algorithm `{0}` (expected one of ml-dsa-44, ml-dsa-65, ml-dsa-87, ecdsa-p256, ed25519, hybrid)"
    )]
    UnknownAlgorithm(String),
    /// The key cannot be used for what was asked (e.g. classical mode with an ML-DSA-only key).
    #[error("key {key_id} cannot be used here: {reason}")]
    KeyUnsuitable {
        /// Hex key id of the key.
        key_id: String,
        /// Why it does not fit.
        reason: String,
    },
    /// A signature did not verify; the inner error names the check that failed.
    #[error("verification failed: {0}")]
    Verify(#[from] crate::signature::VerifyError),
    /// A model manifest did not verify or could not be built.
    #[error("manifest: {0}")]
    Manifest(#[from] crate::manifest::ManifestError),
    /// A key rotation was refused.
    #[error("key rotation refused: {0}")]
    Rotation(String),
    /// `PQC_MODE=off` outside simulation.
    #[error("PQC_MODE=off (unsigned) is allowed only when SIMULATION_MODE=true")]
    UnsignedOutsideSimulation,
    /// A configuration value is invalid.
    #[error("invalid configuration {name}={value:?}: {reason}")]
    Config {
        /// Variable or setting name.
        name: String,
        /// The value given.
        value: String,
        /// What was expected.
        reason: String,
    },
    /// A JWT was rejected; the inner error names the check that failed.
    #[error("token rejected: {0}")]
    Jwt(#[from] crate::jwt::JwtError),
    /// The post-quantum handshake failed.
    #[error("handshake: {0}")]
    Handshake(String),
    /// A Merkle proof did not verify; the inner error names the check.
    #[error("merkle proof: {0}")]
    Proof(#[from] crate::merkle::ProofError),
    /// A signed note or checkpoint did not verify or parse.
    #[error("signed note: {0}")]
    Note(#[from] crate::note::NoteError),
    /// The audit log failed (I/O, damage found, refused entry).
    #[error("audit log: {0}")]
    Audit(#[from] crate::audit::AuditError),
    /// A JSON document was malformed.
    #[error("malformed JSON in {what}: {source}")]
    Json {
        /// Which document.
        what: String,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn json(what: impl Into<String>, source: serde_json::Error) -> Self {
        Error::Json {
            what: what.into(),
            source,
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
