//! The crate's one error type.

use thiserror::Error;

/// Everything that can go wrong in atom-quantum.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum Error {
    /// OpenQASM 2.0 text that could not be read; `line` and `column` are 1-based.
    #[error("{line}:{column}: {message}")]
    Parse {
        /// 1-based line of the offending token.
        line: usize,
        /// 1-based column of the offending token.
        column: usize,
        /// What was found and what was expected instead.
        message: String,
    },
    /// A circuit that is not well formed (bad qubit index, wrong parameter count, ...).
    #[error("invalid circuit: {0}")]
    Circuit(String),
    /// A gate parameter references a symbol that has no value.
    #[error("parameter `{0}` is not bound to a value")]
    UnboundParameter(String),
    /// The statevector would not fit in the memory allowed for it.
    #[error(
        "a {qubits}-qubit statevector needs {needed} bytes but only {available} bytes are available"
    )]
    Memory {
        /// Number of qubits requested.
        qubits: usize,
        /// Bytes the state needs.
        needed: u64,
        /// Bytes allowed (the configured limit or the available memory).
        available: u64,
    },
    /// An observable that does not fit the circuit (wrong length, unknown Pauli letter).
    #[error("invalid observable: {0}")]
    Observable(String),
    /// Backend / provider failure (unknown provider name, provider error).
    #[error("backend: {0}")]
    Backend(String),
}

/// Result alias used throughout the crate.
pub type Result<T> = std::result::Result<T, Error>;
