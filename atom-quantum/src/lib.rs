//! atom-quantum: circuits, OpenQASM 2 and a statevector simulator.
//!
//! # Bit order (the same as Qiskit)
//!
//! * Qubit `i` is bit `i` of a statevector index: qubit 0 is the **least** significant bit.
//!   In a 2-qubit state, index 1 = `|q1 q0> = |01>` means qubit 0 is 1.
//! * Gate matrices ([`GateKind::matrix`]) are little-endian over the gate's own arguments, and
//!   controls come first: `cx c, t`.
//! * Count keys put clbit 0 **rightmost**; with several classical registers, each register is
//!   written from its highest bit down and registers are separated by a space, the last declared
//!   register leftmost (Qiskit's `Result.get_counts()` format).
//! * Pauli labels ([`PauliString::from_label`]) are Qiskit labels: the rightmost letter acts on
//!   qubit 0.
//!
//! # Example
//!
//! ```
//! use atom_quantum::{Circuit, PauliSum, Precision, SimOptions, simulate};
//!
//! let src = r#"
//! OPENQASM 2.0;
//! include "qelib1.inc";
//! qreg q[2];
//! creg c[2];
//! h q[0];
//! cx q[0],q[1];
//! measure q -> c;
//! "#;
//! let circuit = Circuit::from_qasm(src)?;
//! let opts = SimOptions { shots: 1000, seed: Some(7), ..SimOptions::default() };
//! let result = simulate(&circuit, &opts)?;
//! let p = result.probabilities();
//! assert!((p[0b00] - 0.5).abs() < 1e-12 && (p[0b11] - 0.5).abs() < 1e-12);
//! let counts = result.counts();
//! assert_eq!(counts["00"] + counts["11"], 1000);
//! let zz = PauliSum::from_terms(&[(1.0, "ZZ")])?;
//! assert!((result.expectation(&zz)? - 1.0).abs() < 1e-12);
//! // Amplitudes move out as a contiguous Vec<Complex<f64>> (no copy).
//! let amps = result.into_statevector().into_f64();
//! assert_eq!(amps.len(), 4);
//! // Round trip through OpenQASM 2.0.
//! let again = Circuit::from_qasm(&circuit.to_qasm()?)?;
//! assert_eq!(again.instructions().len(), circuit.instructions().len());
//! // Single precision.
//! let single = simulate(&circuit, &SimOptions { precision: Precision::Single, ..SimOptions::default() })?;
//! assert!((single.probabilities()[3] - 0.5).abs() < 1e-6);
//! # Ok::<(), atom_quantum::Error>(())
//! ```

mod backend;
mod circuit;
mod error;
mod expr;
mod gates;
mod qasm;
mod sim;

pub use backend::{
    BackendFactory, BackendResult, LocalSimulator, PROVIDER_ENV, ProviderRegistry, QuantumBackend,
    RunOptions,
};
pub use circuit::{Circuit, Condition, Instruction, Operation, Register};
pub use error::{Error, Result};
pub use expr::{BinOp, Func, Param};
pub use gates::{GateKind, Matrix};
pub use num_complex::{Complex32, Complex64};
pub use sim::{
    Kernels, PauliString, PauliSum, Precision, Real, SimOptions, SimResult, Simulator, StateVector,
    available_memory, simulate, state_bytes,
};
