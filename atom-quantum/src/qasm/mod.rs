//! OpenQASM 2.0: parser and exporter.
//!
//! The parser knows `qelib1.inc` as Qiskit does (the original library plus `u0 u p sx sxdg swap
//! cswap crx cry cp csx cu rxx rzz rccx rc3x c3x c3sqrtx c4x`), and also accepts the other gates
//! of [`crate::GateKind`] by name (`mcx` with any arity, `rcccx`) unless the file defines them
//! itself: a file's own `gate` definition always wins over a library gate of the same name.
//! Custom gates are expanded into their bodies, so a parsed circuit only holds library gates.

mod export;
mod lexer;
mod parser;

use crate::circuit::Circuit;
use crate::error::Result;

impl Circuit {
    /// Parse OpenQASM 2.0 source.
    ///
    /// ```
    /// use atom_quantum::Circuit;
    /// let c = Circuit::from_qasm("OPENQASM 2.0; include \"qelib1.inc\"; qreg q[2]; h q; cx q[0],q[1];").unwrap();
    /// assert_eq!(c.instructions().len(), 3); // `h q` broadcasts over the register
    /// let err = Circuit::from_qasm("OPENQASM 2.0;\nqreg q[1];\nh q[0];").unwrap_err();
    /// assert!(err.to_string().starts_with("3:1:"));
    /// ```
    pub fn from_qasm(src: &str) -> Result<Circuit> {
        parser::parse(src)
    }

    /// Parse OpenQASM 2.0 source whose top-level gate arguments may use the free parameters
    /// `symbols` (bind them later with [`Circuit::bind`]). OpenQASM 2 has no parameter
    /// declarations, so the caller names them.
    ///
    /// ```
    /// use atom_quantum::Circuit;
    /// let src = "OPENQASM 2.0; include \"qelib1.inc\"; qreg q[1]; ry(2*theta) q[0];";
    /// assert!(Circuit::from_qasm(src).is_err());
    /// let c = Circuit::from_qasm_with_parameters(src, &["theta"]).unwrap();
    /// assert_eq!(c.parameters(), ["theta"]);
    /// let bound = c.bind(&[("theta", 0.25)]);
    /// assert!(bound.parameters().is_empty());
    /// ```
    pub fn from_qasm_with_parameters(src: &str, symbols: &[&str]) -> Result<Circuit> {
        let symbols: Vec<String> = symbols.iter().map(|s| (*s).to_owned()).collect();
        parser::parse_with(src, &symbols)
    }

    /// Write the circuit as OpenQASM 2.0 (gates outside `qelib1.inc` get exact `gate` definitions).
    pub fn to_qasm(&self) -> Result<String> {
        export::export(self)
    }
}
