//! The tamper-evident audit log (H.3.5).
//!
//! * [`entry`]: what one record says ([`AuditEntry`], canonical JSON, keyed identifiers).
//! * [`AuditLog`]: the on-disk log: append-only `entries.dat` with per-record length and
//!   checksums, a Merkle tree hashed as RFC 6962/9162 whose interior hashes are persisted per
//!   level (so proofs cost O(log n) reads), signed checkpoints (C2SP tlog-checkpoint, see
//!   [`crate::note`]), crash recovery, inclusion and consistency proofs, and full
//!   verification ([`verify_log`]) that names the first bad record.
//!
//! The file formats are described in `docs/formats-audit.md`.

pub mod entry;
mod log;
mod record;
mod store;

pub use entry::{Actor, AuditEntry, Decision, KeyedId, Outcome, Subject, payload_digest};
pub use log::{
    Appended, AuditLog, DEFAULT_PROOF_CACHE, LogConfig, OpenOptions, Recovery, SyncPolicy,
    VerifyReport, verify_log,
};
pub use record::{Fault as RecordFault, crc32c};

use std::path::PathBuf;

/// Why an audit log operation failed. Each variant names the failing check and, for damage,
/// the first record affected.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// A file operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was done.
        op: &'static str,
        /// On which file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The directory is not an audit log (or of an unknown format).
    #[error("{} is not an audit log: {reason}", path.display())]
    NotALog {
        /// The path.
        path: PathBuf,
        /// What is missing or wrong.
        reason: String,
    },
    /// The log already exists.
    #[error("{} already holds an audit log", path.display())]
    AlreadyExists {
        /// The path.
        path: PathBuf,
    },
    /// A record is damaged (tampering or media corruption: never dropped silently).
    #[error("record {index} at offset {offset}: {fault}")]
    CorruptRecord {
        /// Record index.
        index: u64,
        /// Byte offset of its header in entries.dat.
        offset: u64,
        /// Which check failed.
        fault: record::Fault,
    },
    /// Records the log has committed to (indexed, or covered by a checkpoint) are missing.
    #[error(
        "log truncated: record {index} is missing or incomplete ({expected} records expected, {found} found)"
    )]
    Truncated {
        /// First missing record.
        index: u64,
        /// Records the indexes or the checkpoint require.
        expected: u64,
        /// Complete records present.
        found: u64,
    },
    /// A record does not hash to the leaf hash stored for its position (modified with a
    /// matching checksum, or records reordered).
    #[error("record {index} does not match its stored leaf hash (modified or reordered)")]
    LeafMismatch {
        /// Record index.
        index: u64,
    },
    /// A record does not end where the offset index says.
    #[error("record {index} ends at offset {actual}, the offset index says {stored}")]
    OffsetMismatch {
        /// Record index.
        index: u64,
        /// Offset found by parsing.
        actual: u64,
        /// Offset in offsets.dat.
        stored: u64,
    },
    /// A stored interior hash differs from the one recomputed from the records.
    #[error("stored tree hash at level {level} index {index} (leaves {first}..{end}) is wrong")]
    NodeMismatch {
        /// Tree level (1 = pairs of leaves).
        level: u32,
        /// Index within the level.
        index: u64,
        /// First leaf covered.
        first: u64,
        /// One past the last leaf covered.
        end: u64,
    },
    /// A derived file is shorter than its synced watermark.
    #[error("{} holds {have} items, the synced state needs {need}", file.display())]
    DerivedShort {
        /// The file.
        file: PathBuf,
        /// Items present.
        have: u64,
        /// Items required.
        need: u64,
    },
    /// The signed checkpoint covers more records than the log holds.
    #[error(
        "signed checkpoint has size {checkpoint_size} but the log holds {log_size} records (record {log_size} missing)"
    )]
    CheckpointAhead {
        /// Checkpoint size.
        checkpoint_size: u64,
        /// Records present.
        log_size: u64,
    },
    /// The tree rebuilt from the records does not have the signed root.
    #[error(
        "records 0..{size} do not hash to the root signed in the checkpoint (computed {computed})"
    )]
    CheckpointMismatch {
        /// Checkpoint size.
        size: u64,
        /// Hex root computed from the log.
        computed: String,
    },
    /// The checkpoint's origin is not this log's.
    #[error("checkpoint origin {got:?} is not this log's origin {expected:?}")]
    OriginMismatch {
        /// Log origin.
        expected: String,
        /// Checkpoint origin.
        got: String,
    },
    /// Checkpoint signature or format check failed.
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] crate::note::NoteError),
    /// Proof generation or verification failed.
    #[error("proof: {0}")]
    Proof(#[from] crate::merkle::ProofError),
    /// A field of an entry breaks the entry rules.
    #[error("entry field {field}: {reason}")]
    InvalidEntry {
        /// Field path.
        field: &'static str,
        /// Rule broken.
        reason: &'static str,
    },
    /// An entry is not valid JSON for the entry schema.
    #[error("entry is not a valid audit entry: {0}")]
    EntryJson(String),
    /// An entry is empty or larger than the 1 MiB record limit.
    #[error("entry of {len} bytes: must be 1 byte .. 1 MiB")]
    EntrySize {
        /// Its length.
        len: usize,
    },
    /// The log configuration is invalid.
    #[error("log configuration: {0}")]
    Config(String),
}
