//! Pauli strings, weighted sums of them, and their expectation values.

use super::kernels::{C, Real};
use crate::error::{Error, Result};
use rayon::prelude::*;

/// A tensor product of Paulis, written as Qiskit labels: the rightmost letter acts on qubit 0.
///
/// ```
/// use atom_quantum::PauliString;
/// let zz = PauliString::from_label("ZIZ").unwrap(); // Z on qubits 0 and 2
/// assert_eq!(zz.label(), "ZIZ");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PauliString {
    /// Letter per qubit, index = qubit.
    ops: Vec<u8>,
}

impl PauliString {
    /// Parse a label of `I`, `X`, `Y`, `Z` (rightmost = qubit 0).
    pub fn from_label(label: &str) -> Result<PauliString> {
        let mut ops = Vec::with_capacity(label.len());
        for ch in label.chars().rev() {
            match ch {
                'I' | 'X' | 'Y' | 'Z' => ops.push(ch as u8),
                _ => {
                    return Err(Error::Observable(format!(
                        "`{ch}` in \"{label}\" is not one of I, X, Y, Z"
                    )));
                }
            }
        }
        Ok(PauliString { ops })
    }

    /// Build from `(qubit, letter)` pairs on `num_qubits` qubits.
    pub fn from_sparse(num_qubits: usize, terms: &[(usize, char)]) -> Result<PauliString> {
        let mut ops = vec![b'I'; num_qubits];
        for &(q, ch) in terms {
            if q >= num_qubits {
                return Err(Error::Observable(format!(
                    "qubit {q} out of range for {num_qubits} qubits"
                )));
            }
            if !matches!(ch, 'I' | 'X' | 'Y' | 'Z') {
                return Err(Error::Observable(format!(
                    "`{ch}` is not one of I, X, Y, Z"
                )));
            }
            ops[q] = ch as u8;
        }
        Ok(PauliString { ops })
    }

    /// Number of qubits the string covers.
    pub fn num_qubits(&self) -> usize {
        self.ops.len()
    }

    /// The Qiskit label (rightmost = qubit 0).
    pub fn label(&self) -> String {
        self.ops.iter().rev().map(|&c| c as char).collect()
    }

    pub(crate) fn expectation<T: Real>(&self, state: &[C<T>]) -> Result<f64> {
        let n = state.len().trailing_zeros() as usize;
        if self.ops.len() != n {
            return Err(Error::Observable(format!(
                "Pauli string on {} qubits for a {n}-qubit state",
                self.ops.len()
            )));
        }
        let (mut flip, mut zmask, mut ny) = (0usize, 0usize, 0u32);
        for (q, &c) in self.ops.iter().enumerate() {
            match c {
                b'X' => flip |= 1 << q,
                b'Y' => {
                    flip |= 1 << q;
                    zmask |= 1 << q;
                    ny += 1;
                }
                b'Z' => zmask |= 1 << q,
                _ => {}
            }
        }
        // P|i> = i^ny (-1)^{popcount(i & zmask)} |i ^ flip>, so <ψ|P|ψ> = Σ conj(ψ[i^flip]) ψ[i] s(i).
        let term = |i: usize| -> (f64, f64) {
            let a = state[i];
            let b = state[i ^ flip].conj();
            let p = b * a;
            let s = if (i & zmask).count_ones() % 2 == 1 {
                -1.0
            } else {
                1.0
            };
            (p.re.to_f64() * s, p.im.to_f64() * s)
        };
        let (re, im) = if state.len() >= 1 << 14 {
            (0..state.len())
                .into_par_iter()
                .map(term)
                .reduce(|| (0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1))
        } else {
            (0..state.len())
                .map(term)
                .fold((0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1))
        };
        // Multiply by i^ny and keep the real part (P is Hermitian).
        Ok(match ny % 4 {
            0 => re,
            1 => -im,
            2 => -re,
            _ => im,
        })
    }
}

/// A real-weighted sum of Pauli strings (a Hermitian observable).
///
/// ```
/// use atom_quantum::{Circuit, PauliSum, SimOptions, simulate};
/// let mut c = Circuit::new(2, 0);
/// c.h(0).cx(0, 1);
/// let r = simulate(&c, &SimOptions::default()).unwrap();
/// let h = PauliSum::from_terms(&[(0.5, "ZZ"), (0.5, "XX")]).unwrap();
/// assert!((r.expectation(&h).unwrap() - 1.0).abs() < 1e-12);
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PauliSum {
    /// `(coefficient, string)` terms.
    pub terms: Vec<(f64, PauliString)>,
}

impl PauliSum {
    /// From `(coefficient, label)` pairs.
    pub fn from_terms(terms: &[(f64, &str)]) -> Result<PauliSum> {
        let mut out = vec![];
        for (c, l) in terms {
            out.push((*c, PauliString::from_label(l)?));
        }
        Ok(PauliSum { terms: out })
    }

    pub(crate) fn expectation<T: Real>(&self, state: &[C<T>]) -> Result<f64> {
        let mut acc = 0.0;
        for (c, p) in &self.terms {
            acc += c * p.expectation(state)?;
        }
        Ok(acc)
    }
}

impl From<PauliString> for PauliSum {
    fn from(p: PauliString) -> Self {
        PauliSum {
            terms: vec![(1.0, p)],
        }
    }
}
