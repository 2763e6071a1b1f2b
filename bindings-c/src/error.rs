//! The crate's error type and the stable error kinds the C++ header maps onto exceptions.

use std::fmt;

/// Stable error kinds. Every error that crosses to C++ carries one as the prefix of its message
/// (`"<kind>: <message>"`), so the C++ header picks the exception class without parsing prose.
///
/// ```
/// use atom_fabric_cxx::{Error, ErrorKind};
/// let e = Error::InvalidInput("replicas must be >= 1".into());
/// assert_eq!(e.kind(), ErrorKind::InvalidInput);
/// assert_eq!(e.wire().to_string(), "invalid_input: replicas must be >= 1");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// A malformed argument (bad JSON, bad key text, bad UTF-8, out-of-range value).
    InvalidInput,
    /// No such request, node or record.
    NotFound,
    /// A signature, proof or checkpoint did not verify.
    Verify,
    /// A model manifest check failed (digest mismatch, missing or extra file).
    Manifest,
    /// The scheduler refused a command (invalid transition, policy, spec conflict).
    Fabric,
    /// The audit log refused an entry or found damage.
    Audit,
    /// A circuit could not be built or simulated.
    Quantum,
    /// OpenQASM 2 text did not parse (the message starts with `line:column`).
    Qasm,
    /// A statevector would not fit in the memory limit.
    MemoryLimit,
    /// A file could not be read or written.
    Io,
    /// A bug (a caught panic or a poisoned lock); the object may be unusable afterwards.
    Internal,
}

impl ErrorKind {
    /// The stable wire name (`invalid_input`, `not_found`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Verify => "verify",
            ErrorKind::Manifest => "manifest",
            ErrorKind::Fabric => "fabric",
            ErrorKind::Audit => "audit",
            ErrorKind::Quantum => "quantum",
            ErrorKind::Qasm => "qasm",
            ErrorKind::MemoryLimit => "memory_limit",
            ErrorKind::Io => "io",
            ErrorKind::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every failure of the C++ API.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// From the trust layer (keys, manifests, audit log, notes, proofs).
    #[error("{0}")]
    Policy(#[from] atom_policy::Error),
    /// From the quantum simulator or the OpenQASM parser.
    #[error("{0}")]
    Quantum(#[from] atom_quantum::Error),
    /// From the scheduler or its store.
    #[error("{0}")]
    Fabric(#[from] atom_fabric::FabricError),
    /// A bad argument detected by the binding itself.
    #[error("{0}")]
    InvalidInput(String),
    /// A circuit argument out of range (qubit or clbit index).
    #[error("{0}")]
    Circuit(String),
    /// A caught panic or a poisoned lock.
    #[error("{0}")]
    Internal(String),
}

impl From<atom_policy::audit::AuditError> for Error {
    fn from(e: atom_policy::audit::AuditError) -> Self {
        Error::Policy(e.into())
    }
}

impl From<atom_policy::note::NoteError> for Error {
    fn from(e: atom_policy::note::NoteError) -> Self {
        Error::Policy(e.into())
    }
}

fn audit_kind(e: &atom_policy::audit::AuditError) -> ErrorKind {
    use atom_policy::audit::AuditError as A;
    match e {
        A::InvalidEntry { .. } | A::EntryJson(_) | A::EntrySize { .. } | A::Config(_) => {
            ErrorKind::InvalidInput
        }
        A::Proof(atom_policy::merkle::ProofError::IndexOutOfRange { .. }) => ErrorKind::NotFound,
        A::Checkpoint(_) | A::Proof(_) => ErrorKind::Verify,
        A::Io { .. } => ErrorKind::Io,
        _ => ErrorKind::Audit,
    }
}

impl Error {
    /// The stable kind of this error.
    pub fn kind(&self) -> ErrorKind {
        use atom_policy::Error as P;
        match self {
            Error::Policy(e) => match e {
                P::Manifest(_) => ErrorKind::Manifest,
                P::Verify(_) | P::Jwt(_) | P::Proof(_) | P::Note(_) => ErrorKind::Verify,
                P::Audit(a) => audit_kind(a),
                P::Io { .. } => ErrorKind::Io,
                P::KeyFormat(_)
                | P::KeyUnsuitable { .. }
                | P::UnknownAlgorithm(_)
                | P::Config { .. }
                | P::UnsignedOutsideSimulation
                | P::Json { .. }
                | P::Rotation(_) => ErrorKind::InvalidInput,
                _ => ErrorKind::Internal,
            },
            Error::Quantum(e) => match e {
                atom_quantum::Error::Parse { .. } => ErrorKind::Qasm,
                atom_quantum::Error::Memory { .. } => ErrorKind::MemoryLimit,
                _ => ErrorKind::Quantum,
            },
            Error::Fabric(e) => {
                use atom_fabric::FabricError as F;
                match e {
                    F::InvalidInput(_) => ErrorKind::InvalidInput,
                    F::RequestNotFound(_) | F::NodeNotFound(_) => ErrorKind::NotFound,
                    F::Io { .. } => ErrorKind::Io,
                    _ => ErrorKind::Fabric,
                }
            }
            Error::InvalidInput(_) => ErrorKind::InvalidInput,
            Error::Circuit(_) => ErrorKind::Quantum,
            Error::Internal(_) => ErrorKind::Internal,
        }
    }

    /// The error as it crosses the bridge: `"<kind>: <message>"`.
    pub fn wire(&self) -> WireError {
        WireError(format!("{}: {}", self.kind(), self))
    }
}

/// The text of an error on its way to C++ (what `rust::Error::what()` returns there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError(pub String);

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<Error> for WireError {
    fn from(e: Error) -> Self {
        e.wire()
    }
}

/// Result of every bridge function.
pub type BridgeResult<T> = std::result::Result<T, WireError>;

/// Runs `f`, turning its error into the wire form and a panic into an `internal` error, so that
/// no Rust panic ever unwinds into (or aborts) the C++ host.
pub(crate) fn guard<T>(f: impl FnOnce() -> Result<T, Error>) -> BridgeResult<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r.map_err(WireError::from),
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            Err(Error::Internal(format!("panic: {msg}")).wire())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_of_core_errors() {
        let q = Error::from(atom_quantum::Error::Parse {
            line: 3,
            column: 1,
            message: "x".into(),
        });
        assert_eq!(q.kind(), ErrorKind::Qasm);
        assert_eq!(q.wire().0, "qasm: 3:1: x");
        let f = Error::from(atom_fabric::FabricError::RequestNotFound("req-9".into()));
        assert_eq!(f.kind(), ErrorKind::NotFound);
    }

    #[test]
    fn panics_become_internal_errors() {
        let r: BridgeResult<()> = guard(|| panic!("boom"));
        assert_eq!(r, Err(WireError("internal: panic: boom".into())));
    }
}
