//! The gate set and the exact unitary matrix of every gate.
//!
//! Matrices follow Qiskit's conventions exactly (same global phase), in little-endian order over the
//! gate's own arguments: argument 0 is the least significant bit of the matrix index. For a
//! controlled gate the controls are the first arguments, so `cx c, t` has the matrix
//! `|0><0| ⊗ I + |1><1| ⊗ X` written with the control as bit 0.

use num_complex::Complex64;
use std::f64::consts::{FRAC_1_SQRT_2, PI};

/// A row-major square matrix of side `2^k`.
pub type Matrix = Vec<Complex64>;

macro_rules! gates {
    ($($(#[$doc:meta])* $var:ident = $name:literal, $nq:expr, $np:expr, $lib:expr;)*) => {
        /// Every gate the IR knows. Parameters are kept beside the kind in [`crate::Instruction`].
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum GateKind {
            $($(#[$doc])* $var,)*
            /// Multi-controlled X with the given number of controls (controls first, target last).
            Mcx(u8),
        }

        impl GateKind {
            /// Every fixed-arity gate (all but [`GateKind::Mcx`]).
            pub const ALL: &'static [GateKind] = &[$(GateKind::$var,)*];

            /// The OpenQASM / Qiskit name.
            pub fn name(self) -> &'static str {
                match self { $(GateKind::$var => $name,)* GateKind::Mcx(_) => "mcx" }
            }

            /// Number of qubits the gate acts on.
            pub fn num_qubits(self) -> usize {
                match self { $(GateKind::$var => $nq,)* GateKind::Mcx(c) => c as usize + 1 }
            }

            /// Number of real parameters.
            pub fn num_params(self) -> usize {
                match self { $(GateKind::$var => $np,)* GateKind::Mcx(_) => 0 }
            }

            /// Whether `qiskit.qasm2` knows the gate from `include "qelib1.inc"` (the original
            /// library plus the gates Qiskit assumes without defining them).
            pub fn in_qelib1(self) -> bool {
                match self { $(GateKind::$var => $lib,)* GateKind::Mcx(_) => false }
            }

            /// Library gate for a `qelib1.inc` name (`None` for other names).
            pub fn from_qelib1_name(name: &str) -> Option<GateKind> {
                match name { $($name if $lib => Some(GateKind::$var),)* _ => None }
            }

            /// Any known gate by name, including those Qiskit writes as `gate` definitions.
            /// `mcx` is not returned here since its arity comes from the call site.
            pub fn from_name(name: &str) -> Option<GateKind> {
                match name { $($name => Some(GateKind::$var),)* _ => None }
            }
        }
    };
}

gates! {
    /// Identity.
    I = "id", 1, 0, true;
    /// Pauli X.
    X = "x", 1, 0, true;
    /// Pauli Y.
    Y = "y", 1, 0, true;
    /// Pauli Z.
    Z = "z", 1, 0, true;
    /// Hadamard.
    H = "h", 1, 0, true;
    /// S = sqrt(Z).
    S = "s", 1, 0, true;
    /// S†.
    Sdg = "sdg", 1, 0, true;
    /// T = sqrt(S).
    T = "t", 1, 0, true;
    /// T†.
    Tdg = "tdg", 1, 0, true;
    /// sqrt(X).
    SX = "sx", 1, 0, true;
    /// sqrt(X)†.
    SXdg = "sxdg", 1, 0, true;
    /// X rotation `exp(-i θ X / 2)`.
    RX = "rx", 1, 1, true;
    /// Y rotation.
    RY = "ry", 1, 1, true;
    /// Z rotation `diag(e^{-iφ/2}, e^{iφ/2})`.
    RZ = "rz", 1, 1, true;
    /// Phase `diag(1, e^{iλ})`.
    P = "p", 1, 1, true;
    /// Legacy phase gate, same matrix as `p`.
    U1 = "u1", 1, 1, true;
    /// `u2(φ, λ) = u(π/2, φ, λ)`.
    U2 = "u2", 1, 2, true;
    /// Legacy `u3(θ, φ, λ)`, same matrix as `u`.
    U3 = "u3", 1, 3, true;
    /// Generic single-qubit `u(θ, φ, λ)`.
    U = "u", 1, 3, true;
    /// Legacy idle gate `u0(γ)`: the identity.
    U0 = "u0", 1, 1, true;
    /// `r(θ, φ)`: rotation by θ about the axis cos φ X + sin φ Y.
    R = "r", 1, 2, false;
    /// Controlled X.
    CX = "cx", 2, 0, true;
    /// Controlled Y.
    CY = "cy", 2, 0, true;
    /// Controlled Z.
    CZ = "cz", 2, 0, true;
    /// Controlled Hadamard.
    CH = "ch", 2, 0, true;
    /// Swap.
    Swap = "swap", 2, 0, true;
    /// Controlled RX.
    CRX = "crx", 2, 1, true;
    /// Controlled RY.
    CRY = "cry", 2, 1, true;
    /// Controlled RZ.
    CRZ = "crz", 2, 1, true;
    /// Legacy controlled phase.
    CU1 = "cu1", 2, 1, true;
    /// Controlled phase.
    CP = "cp", 2, 1, true;
    /// Legacy controlled u3 (no global phase).
    CU3 = "cu3", 2, 3, true;
    /// Controlled `e^{iγ} u(θ, φ, λ)`.
    CU = "cu", 2, 4, true;
    /// Controlled sqrt(X).
    CSX = "csx", 2, 0, true;
    /// Controlled S.
    CS = "cs", 2, 0, false;
    /// Controlled S†.
    CSdg = "csdg", 2, 0, false;
    /// `exp(-i θ X⊗X / 2)`.
    RXX = "rxx", 2, 1, true;
    /// `exp(-i θ Y⊗Y / 2)`.
    RYY = "ryy", 2, 1, false;
    /// `exp(-i θ Z⊗Z / 2)`.
    RZZ = "rzz", 2, 1, true;
    /// `exp(-i θ X_1 Z_0 / 2)` (Z on the first argument, X on the second).
    RZX = "rzx", 2, 1, false;
    /// Echoed cross-resonance gate.
    ECR = "ecr", 2, 0, false;
    /// iSWAP.
    ISwap = "iswap", 2, 0, false;
    /// Double CNOT: `cx a,b; cx b,a`.
    DCX = "dcx", 2, 0, false;
    /// `xx_minus_yy(θ, β)`.
    XXMinusYY = "xx_minus_yy", 2, 2, false;
    /// `xx_plus_yy(θ, β)`.
    XXPlusYY = "xx_plus_yy", 2, 2, false;
    /// Toffoli.
    CCX = "ccx", 3, 0, true;
    /// Fredkin (controlled swap).
    CSwap = "cswap", 3, 0, true;
    /// Doubly controlled Z.
    CCZ = "ccz", 3, 0, false;
    /// Simplified (relative-phase) Toffoli.
    RCCX = "rccx", 3, 0, true;
    /// Triply controlled X.
    C3X = "c3x", 4, 0, true;
    /// Triply controlled sqrt(X).
    C3SX = "c3sqrtx", 4, 0, true;
    /// Relative-phase triply controlled X (`rc3x`, Qiskit's `rcccx`).
    RC3X = "rc3x", 4, 0, true;
    /// Quadruply controlled X.
    C4X = "c4x", 5, 0, true;
}

fn c(re: f64, im: f64) -> Complex64 {
    Complex64::new(re, im)
}

fn eix(x: f64) -> Complex64 {
    Complex64::from_polar(1.0, x)
}

fn u_mat(theta: f64, phi: f64, lam: f64) -> Matrix {
    let (s, co) = ((theta / 2.0).sin(), (theta / 2.0).cos());
    vec![c(co, 0.0), -eix(lam) * s, eix(phi) * s, eix(phi + lam) * co]
}

/// `|0><0|⊗I + |1><1|⊗U` on `nc` controls (low bits) and the targets of `base` (high bits).
pub(crate) fn controlled(base: &[Complex64], nc: usize) -> Matrix {
    let bt = (base.len() as f64).sqrt().round() as usize;
    let dim = bt << nc;
    let cm = (1usize << nc) - 1;
    let mut m = vec![Complex64::new(0.0, 0.0); dim * dim];
    for r in 0..dim {
        for col in 0..dim {
            m[r * dim + col] = if r & cm == cm && col & cm == cm {
                base[(r >> nc) * bt + (col >> nc)]
            } else if r == col {
                c(1.0, 0.0)
            } else {
                c(0.0, 0.0)
            };
        }
    }
    m
}

/// Apply a `2^g` gate matrix acting on `pos` (bit positions) to a `2^k` vector in place.
pub(crate) fn apply_small(vec: &mut [Complex64], gate: &[Complex64], pos: &[usize]) {
    let g = pos.len();
    let gd = 1usize << g;
    let mask: usize = pos.iter().map(|p| 1usize << p).sum();
    let mut tmp = vec![Complex64::new(0.0, 0.0); gd];
    for base in 0..vec.len() {
        if base & mask != 0 {
            continue;
        }
        let off = |l: usize| -> usize {
            pos.iter()
                .enumerate()
                .map(|(j, p)| ((l >> j) & 1) << p)
                .sum::<usize>()
        };
        for (r, t) in tmp.iter_mut().enumerate() {
            let mut acc = Complex64::new(0.0, 0.0);
            for col in 0..gd {
                acc += gate[r * gd + col] * vec[base + off(col)];
            }
            *t = acc;
        }
        for (r, t) in tmp.iter().enumerate() {
            vec[base + off(r)] = *t;
        }
    }
}

/// Compose a sequence of gates `(matrix, positions)` on `k` qubits into one `2^k` matrix.
pub(crate) fn compose(k: usize, gates: &[(Matrix, Vec<usize>)]) -> Matrix {
    let d = 1usize << k;
    let mut out = vec![Complex64::new(0.0, 0.0); d * d];
    let mut col = vec![Complex64::new(0.0, 0.0); d];
    for j in 0..d {
        col.iter_mut().for_each(|v| *v = Complex64::new(0.0, 0.0));
        col[j] = c(1.0, 0.0);
        for (m, p) in gates {
            apply_small(&mut col, m, p);
        }
        for r in 0..d {
            out[r * d + j] = col[r];
        }
    }
    out
}

fn h1() -> Matrix {
    let h = FRAC_1_SQRT_2;
    vec![c(h, 0.0), c(h, 0.0), c(h, 0.0), c(-h, 0.0)]
}

fn diag(d: &[Complex64]) -> Matrix {
    let n = d.len();
    let mut m = vec![Complex64::new(0.0, 0.0); n * n];
    for (i, v) in d.iter().enumerate() {
        m[i * n + i] = *v;
    }
    m
}

/// Toffoli-like gates built from their exact (phase-free) qelib1 definitions.
fn from_steps(k: usize, steps: &[(GateKind, &[f64], &[usize])]) -> Matrix {
    let gates: Vec<(Matrix, Vec<usize>)> = steps
        .iter()
        .map(|(g, p, q)| (g.matrix(p), q.to_vec()))
        .collect();
    compose(k, &gates)
}

impl GateKind {
    /// The exact unitary for the given parameter values (little-endian over the arguments).
    ///
    /// Missing parameters count as 0; callers validate arity first.
    ///
    /// ```
    /// use atom_quantum::GateKind;
    /// let m = GateKind::CX.matrix(&[]);
    /// // control = argument 0 = bit 0: |01> (index 1) -> |11> (index 3)
    /// assert_eq!(m[3 * 4 + 1].re, 1.0);
    /// ```
    pub fn matrix(self, params: &[f64]) -> Matrix {
        let p = |i: usize| params.get(i).copied().unwrap_or(0.0);
        let one = c(1.0, 0.0);
        let zero = c(0.0, 0.0);
        let i1 = c(0.0, 1.0);
        match self {
            GateKind::I | GateKind::U0 => vec![one, zero, zero, one],
            GateKind::X => vec![zero, one, one, zero],
            GateKind::Y => vec![zero, -i1, i1, zero],
            GateKind::Z => diag(&[one, -one]),
            GateKind::H => h1(),
            GateKind::S => diag(&[one, i1]),
            GateKind::Sdg => diag(&[one, -i1]),
            GateKind::T => diag(&[one, eix(PI / 4.0)]),
            GateKind::Tdg => diag(&[one, eix(-PI / 4.0)]),
            GateKind::SX => vec![c(0.5, 0.5), c(0.5, -0.5), c(0.5, -0.5), c(0.5, 0.5)],
            GateKind::SXdg => vec![c(0.5, -0.5), c(0.5, 0.5), c(0.5, 0.5), c(0.5, -0.5)],
            GateKind::RX => {
                let (s, co) = ((p(0) / 2.0).sin(), (p(0) / 2.0).cos());
                vec![c(co, 0.0), c(0.0, -s), c(0.0, -s), c(co, 0.0)]
            }
            GateKind::RY => {
                let (s, co) = ((p(0) / 2.0).sin(), (p(0) / 2.0).cos());
                vec![c(co, 0.0), c(-s, 0.0), c(s, 0.0), c(co, 0.0)]
            }
            GateKind::RZ => diag(&[eix(-p(0) / 2.0), eix(p(0) / 2.0)]),
            GateKind::P | GateKind::U1 => diag(&[one, eix(p(0))]),
            GateKind::U2 => u_mat(PI / 2.0, p(0), p(1)),
            GateKind::U3 | GateKind::U => u_mat(p(0), p(1), p(2)),
            GateKind::R => {
                let (th, ph) = (p(0), p(1));
                let (s, co) = ((th / 2.0).sin(), (th / 2.0).cos());
                vec![
                    c(co, 0.0),
                    -i1 * eix(-ph) * s,
                    -i1 * eix(ph) * s,
                    c(co, 0.0),
                ]
            }
            GateKind::CX => controlled(&GateKind::X.matrix(&[]), 1),
            GateKind::CY => controlled(&GateKind::Y.matrix(&[]), 1),
            GateKind::CZ => controlled(&GateKind::Z.matrix(&[]), 1),
            GateKind::CH => controlled(&h1(), 1),
            GateKind::Swap => {
                let mut m = vec![zero; 16];
                for (r, col) in [(0, 0), (1, 2), (2, 1), (3, 3)] {
                    m[r * 4 + col] = one;
                }
                m
            }
            GateKind::CRX => controlled(&GateKind::RX.matrix(params), 1),
            GateKind::CRY => controlled(&GateKind::RY.matrix(params), 1),
            GateKind::CRZ => controlled(&GateKind::RZ.matrix(params), 1),
            GateKind::CU1 | GateKind::CP => controlled(&GateKind::P.matrix(params), 1),
            GateKind::CU3 => controlled(&u_mat(p(0), p(1), p(2)), 1),
            GateKind::CU => {
                let g = eix(p(3));
                let base: Matrix = u_mat(p(0), p(1), p(2)).into_iter().map(|v| v * g).collect();
                controlled(&base, 1)
            }
            GateKind::CSX => controlled(&GateKind::SX.matrix(&[]), 1),
            GateKind::CS => diag(&[one, one, one, i1]),
            GateKind::CSdg => diag(&[one, one, one, -i1]),
            GateKind::RXX | GateKind::RYY => {
                let (s, co) = ((p(0) / 2.0).sin(), (p(0) / 2.0).cos());
                // cos I - i sin P; XX flips both bits with sign +1, YY with sign -1 on |00>,|11>.
                let sg = if self == GateKind::RXX { 1.0 } else { -1.0 };
                let mut m = vec![zero; 16];
                for i in 0..4 {
                    m[i * 4 + i] = c(co, 0.0);
                    let j = i ^ 3;
                    let sign = if i == 0 || i == 3 { sg } else { 1.0 };
                    m[j * 4 + i] = c(0.0, -s * sign);
                }
                m
            }
            GateKind::RZZ => {
                let (a, b) = (eix(-p(0) / 2.0), eix(p(0) / 2.0));
                diag(&[a, b, b, a])
            }
            GateKind::RZX => {
                let (s, co) = ((p(0) / 2.0).sin(), (p(0) / 2.0).cos());
                let mut m = vec![zero; 16];
                for i in 0..4 {
                    m[i * 4 + i] = c(co, 0.0);
                    let z = if i & 1 == 0 { 1.0 } else { -1.0 };
                    m[(i ^ 2) * 4 + i] = c(0.0, -s * z);
                }
                m
            }
            GateKind::ECR => {
                let h = FRAC_1_SQRT_2;
                vec![
                    zero,
                    c(h, 0.0),
                    zero,
                    c(0.0, h), //
                    c(h, 0.0),
                    zero,
                    c(0.0, -h),
                    zero, //
                    zero,
                    c(0.0, h),
                    zero,
                    c(h, 0.0), //
                    c(0.0, -h),
                    zero,
                    c(h, 0.0),
                    zero,
                ]
            }
            GateKind::ISwap => {
                let mut m = vec![zero; 16];
                m[0] = one;
                m[4 + 2] = i1;
                m[2 * 4 + 1] = i1;
                m[15] = one;
                m
            }
            GateKind::DCX => from_steps(
                2,
                &[(GateKind::CX, &[], &[0, 1]), (GateKind::CX, &[], &[1, 0])],
            ),
            GateKind::XXMinusYY | GateKind::XXPlusYY => {
                let (th, be) = (p(0), p(1));
                let (s, co) = ((th / 2.0).sin(), (th / 2.0).cos());
                let mut m = diag(&[one, one, one, one]);
                let (a, b) = if self == GateKind::XXMinusYY {
                    (0, 3)
                } else {
                    (1, 2)
                };
                m[a * 4 + a] = c(co, 0.0);
                m[b * 4 + b] = c(co, 0.0);
                m[a * 4 + b] = -i1 * s * eix(-be);
                m[b * 4 + a] = -i1 * s * eix(be);
                m
            }
            GateKind::CCX => controlled(&GateKind::X.matrix(&[]), 2),
            GateKind::CSwap => controlled(&GateKind::Swap.matrix(&[]), 1),
            GateKind::CCZ => controlled(&GateKind::Z.matrix(&[]), 2),
            GateKind::RCCX => {
                let q = PI / 4.0;
                from_steps(
                    3,
                    &[
                        (GateKind::H, &[], &[2]),
                        (GateKind::P, &[q], &[2]),
                        (GateKind::CX, &[], &[1, 2]),
                        (GateKind::P, &[-q], &[2]),
                        (GateKind::CX, &[], &[0, 2]),
                        (GateKind::P, &[q], &[2]),
                        (GateKind::CX, &[], &[1, 2]),
                        (GateKind::P, &[-q], &[2]),
                        (GateKind::H, &[], &[2]),
                    ],
                )
            }
            GateKind::RC3X => {
                let q = PI / 4.0;
                let (h, t, td) = (
                    (GateKind::H, &[][..]),
                    (GateKind::P, &[q][..]),
                    (GateKind::P, &[-q][..]),
                );
                let cx = |a: usize| (GateKind::CX, &[][..], a);
                let steps: Vec<(GateKind, &[f64], Vec<usize>)> = vec![
                    (h.0, h.1, vec![3]),
                    (t.0, t.1, vec![3]),
                    (cx(2).0, cx(2).1, vec![2, 3]),
                    (td.0, td.1, vec![3]),
                    (h.0, h.1, vec![3]),
                    (GateKind::CX, &[], vec![0, 3]),
                    (t.0, t.1, vec![3]),
                    (GateKind::CX, &[], vec![1, 3]),
                    (td.0, td.1, vec![3]),
                    (GateKind::CX, &[], vec![0, 3]),
                    (t.0, t.1, vec![3]),
                    (GateKind::CX, &[], vec![1, 3]),
                    (td.0, td.1, vec![3]),
                    (h.0, h.1, vec![3]),
                    (t.0, t.1, vec![3]),
                    (GateKind::CX, &[], vec![2, 3]),
                    (td.0, td.1, vec![3]),
                    (h.0, h.1, vec![3]),
                ];
                let gates: Vec<(Matrix, Vec<usize>)> = steps
                    .into_iter()
                    .map(|(g, p, q)| (g.matrix(p), q))
                    .collect();
                compose(4, &gates)
            }
            GateKind::C3X => controlled(&GateKind::X.matrix(&[]), 3),
            GateKind::C3SX => controlled(&GateKind::SX.matrix(&[]), 3),
            GateKind::C4X => controlled(&GateKind::X.matrix(&[]), 4),
            GateKind::Mcx(n) => controlled(&GateKind::X.matrix(&[]), n as usize),
        }
    }

    /// For gates that are "controls + small target gate", the number of controls and the target
    /// matrix. Used to simulate wide controlled gates without a dense matrix.
    pub fn controlled_form(self, params: &[f64]) -> Option<(usize, Matrix)> {
        let x = GateKind::X.matrix(&[]);
        Some(match self {
            GateKind::CX => (1, x),
            GateKind::CCX => (2, x),
            GateKind::C3X => (3, x),
            GateKind::C4X => (4, x),
            GateKind::Mcx(n) => (n as usize, x),
            GateKind::C3SX => (3, GateKind::SX.matrix(&[])),
            GateKind::CCZ => (2, GateKind::Z.matrix(&[])),
            GateKind::CSwap => (1, GateKind::Swap.matrix(&[])),
            GateKind::CY => (1, GateKind::Y.matrix(&[])),
            GateKind::CZ => (1, GateKind::Z.matrix(&[])),
            GateKind::CH => (1, h1()),
            GateKind::CRX => (1, GateKind::RX.matrix(params)),
            GateKind::CRY => (1, GateKind::RY.matrix(params)),
            GateKind::CRZ => (1, GateKind::RZ.matrix(params)),
            GateKind::CP | GateKind::CU1 => (1, GateKind::P.matrix(params)),
            GateKind::CSX => (1, GateKind::SX.matrix(&[])),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_unitary(m: &[Complex64]) -> bool {
        let d = (m.len() as f64).sqrt().round() as usize;
        for i in 0..d {
            for j in 0..d {
                let mut acc = Complex64::new(0.0, 0.0);
                for k in 0..d {
                    acc += m[k * d + i].conj() * m[k * d + j];
                }
                let want = if i == j { 1.0 } else { 0.0 };
                if (acc - Complex64::new(want, 0.0)).norm() > 1e-12 {
                    return false;
                }
            }
        }
        true
    }

    #[test]
    fn every_gate_is_unitary() {
        let params = [0.3, -1.1, 2.4, 0.7];
        for &g in GateKind::ALL
            .iter()
            .chain(&[GateKind::Mcx(1), GateKind::Mcx(5)])
        {
            let m = g.matrix(&params[..g.num_params()]);
            assert_eq!(m.len(), 1 << (2 * g.num_qubits()), "{}", g.name());
            assert!(is_unitary(&m), "{} is not unitary", g.name());
        }
    }

    #[test]
    fn controlled_form_matches_matrix() {
        let params = [0.3, 0.1, -0.2, 0.5];
        for &g in GateKind::ALL {
            if let Some((nc, base)) = g.controlled_form(&params[..g.num_params()]) {
                let full = controlled(&base, nc);
                let m = g.matrix(&params[..g.num_params()]);
                for (a, b) in full.iter().zip(&m) {
                    assert!((a - b).norm() < 1e-15, "{}", g.name());
                }
            }
        }
    }

    #[test]
    fn textbook_identities() {
        // Independent identities: HZH = X, SX^2 = X, rccx = Toffoli up to phases on |11x>.
        let h = GateKind::H.matrix(&[]);
        let z = GateKind::Z.matrix(&[]);
        let hzh = compose(1, &[(h.clone(), vec![0]), (z, vec![0]), (h, vec![0])]);
        let x = GateKind::X.matrix(&[]);
        for (a, b) in hzh.iter().zip(&x) {
            assert!((a - b).norm() < 1e-15);
        }
        let sx = GateKind::SX.matrix(&[]);
        let sx2 = compose(1, &[(sx.clone(), vec![0]), (sx, vec![0])]);
        for (a, b) in sx2.iter().zip(&x) {
            assert!((a - b).norm() < 1e-15);
        }
        let rccx = GateKind::RCCX.matrix(&[]);
        // |011> (controls set, target 0) -> |111> up to a phase.
        assert!((rccx[7 * 8 + 3].norm() - 1.0).abs() < 1e-12);
        let dcx = GateKind::DCX.matrix(&[]);
        // cx(0,1) then cx(1,0): |01> -> |11> -> |10>.
        assert!((dcx[2 * 4 + 1].re - 1.0).abs() < 1e-15);
    }
}
