//! Python bindings of atom-fabric: the `atom_fabric._native` extension module.
//!
//! The core crates stay free of PyO3. Their errors are mapped through `errors::BindError` into
//! the `atom_fabric.errors` exception hierarchy. Long work (simulation, hashing, signing,
//! verification) releases the GIL; statevectors and probabilities move into numpy arrays without a
//! copy.

mod audit;
mod errors;
mod fabric;
mod hybrid;
mod policy;
mod quantum;

use pyo3::prelude::*;

/// The extension module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    errors::register(m)?;
    policy::register(m)?;
    audit::register(m)?;
    fabric::register(m)?;
    hybrid::register(m)?;
    quantum::register(m)?;
    Ok(())
}
