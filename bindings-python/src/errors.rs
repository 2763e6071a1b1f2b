//! The exception hierarchy and the mapping of core errors onto it.

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

create_exception!(
    _native,
    AtomError,
    PyException,
    "Base class of every atom-fabric error."
);
create_exception!(
    _native,
    ConfigError,
    AtomError,
    "An invalid setting (PQC_MODE, a mode or option)."
);
create_exception!(
    _native,
    KeyFormatError,
    AtomError,
    "A key file or key string could not be used."
);
create_exception!(
    _native,
    VerificationError,
    AtomError,
    "A signature, manifest, proof or checkpoint did not verify."
);
create_exception!(
    _native,
    ManifestError,
    VerificationError,
    "A model manifest check failed (digest, missing or extra file)."
);
create_exception!(
    _native,
    FabricError,
    AtomError,
    "The scheduler refused a command (unknown node or request, invalid transition, policy)."
);
create_exception!(
    _native,
    AuditError,
    AtomError,
    "The audit log refused an entry or found damage."
);
create_exception!(
    _native,
    QuantumError,
    AtomError,
    "A circuit could not be built or simulated."
);
create_exception!(
    _native,
    QasmError,
    QuantumError,
    "OpenQASM 2 text did not parse (message has line:column)."
);
create_exception!(
    _native,
    MemoryLimitError,
    QuantumError,
    "A statevector would not fit in the memory limit."
);

create_exception!(
    _native,
    HybridError,
    AtomError,
    "A hybrid job was refused (invalid field, tenant, queue full) or could not be found."
);

/// A core error on its way to Python (the orphan rule forbids `From<core::Error> for PyErr` here).
pub enum BindError {
    /// From atom-policy.
    Policy(atom_policy::Error),
    /// From atom-quantum.
    Quantum(atom_quantum::Error),
    /// From atom-fabric.
    Fabric(atom_fabric::FabricError),
    /// From the hybrid coordinator.
    Hybrid(atom_fabric::hybrid::HybridError),
    /// A bad argument.
    Value(String),
    /// File access.
    Io(std::io::Error),
}

impl From<atom_policy::Error> for BindError {
    fn from(e: atom_policy::Error) -> Self {
        BindError::Policy(e)
    }
}

impl From<atom_quantum::Error> for BindError {
    fn from(e: atom_quantum::Error) -> Self {
        BindError::Quantum(e)
    }
}

impl From<std::io::Error> for BindError {
    fn from(e: std::io::Error) -> Self {
        BindError::Io(e)
    }
}

impl From<BindError> for PyErr {
    fn from(e: BindError) -> PyErr {
        use atom_policy::Error as P;
        match e {
            BindError::Policy(err) => {
                let msg = err.to_string();
                match err {
                    P::Manifest(_) => ManifestError::new_err(msg),
                    P::Verify(_) | P::Jwt(_) | P::Proof(_) | P::Note(_) => {
                        VerificationError::new_err(msg)
                    }
                    P::Audit(_) => AuditError::new_err(msg),
                    P::KeyFormat(_) | P::KeyUnsuitable { .. } | P::UnknownAlgorithm(_) => {
                        KeyFormatError::new_err(msg)
                    }
                    P::Config { .. } | P::UnsignedOutsideSimulation => ConfigError::new_err(msg),
                    P::Io { source, .. } => {
                        pyo3::exceptions::PyOSError::new_err(format!("{msg} ({source})"))
                    }
                    _ => AtomError::new_err(msg),
                }
            }
            BindError::Quantum(err) => {
                let msg = err.to_string();
                match err {
                    atom_quantum::Error::Parse { .. } => QasmError::new_err(msg),
                    atom_quantum::Error::Memory { .. } => MemoryLimitError::new_err(msg),
                    _ => QuantumError::new_err(msg),
                }
            }
            BindError::Fabric(err) => FabricError::new_err(err.to_string()),
            BindError::Hybrid(err) => {
                use atom_fabric::hybrid::HybridError as H;
                let msg = err.to_string();
                match err {
                    H::Unsigned | H::Manifest(_) | H::ManifestMismatch(_) => {
                        VerificationError::new_err(msg)
                    }
                    H::Audit(_) => AuditError::new_err(msg),
                    _ => HybridError::new_err(msg),
                }
            }
            BindError::Value(msg) => pyo3::exceptions::PyValueError::new_err(msg),
            BindError::Io(err) => pyo3::exceptions::PyOSError::new_err(err.to_string()),
        }
    }
}

/// Result of binding functions.
pub type BindResult<T> = Result<T, BindError>;

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("AtomError", py.get_type::<AtomError>())?;
    m.add("ConfigError", py.get_type::<ConfigError>())?;
    m.add("KeyFormatError", py.get_type::<KeyFormatError>())?;
    m.add("VerificationError", py.get_type::<VerificationError>())?;
    m.add("ManifestError", py.get_type::<ManifestError>())?;
    m.add("AuditError", py.get_type::<AuditError>())?;
    m.add("QuantumError", py.get_type::<QuantumError>())?;
    m.add("FabricError", py.get_type::<FabricError>())?;
    m.add("QasmError", py.get_type::<QasmError>())?;
    m.add("MemoryLimitError", py.get_type::<MemoryLimitError>())?;
    m.add("HybridError", py.get_type::<HybridError>())?;
    Ok(())
}
