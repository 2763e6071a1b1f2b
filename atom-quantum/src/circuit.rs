//! The circuit IR: registers, instructions, conditions and a builder.

use crate::error::{Error, Result};
use crate::expr::Param;
use crate::gates::GateKind;

/// A named register (quantum or classical): `size` bits starting at flat index `start`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Register {
    /// Register name as written in OpenQASM.
    pub name: String,
    /// Number of bits.
    pub size: usize,
    /// Flat index of bit 0 of the register.
    pub start: usize,
}

/// `if (creg == value)`: the instruction runs only when the classical register, read as an
/// unsigned integer with its bit 0 least significant, equals `value`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Condition {
    /// Index into [`Circuit::cregs`].
    pub creg: usize,
    /// The value compared with.
    pub value: u64,
}

/// What an instruction does.
#[derive(Debug, Clone, PartialEq)]
pub enum Operation {
    /// A unitary gate with its parameters.
    Gate {
        /// Which gate.
        kind: GateKind,
        /// Its parameters (numbers or expressions over circuit symbols).
        params: Vec<Param>,
    },
    /// Measure `qubits[0]` into `clbits[0]` (Z basis).
    Measure,
    /// Reset `qubits[0]` to |0>.
    Reset,
    /// Barrier over `qubits` (no effect on simulation).
    Barrier,
}

/// One instruction of a circuit.
#[derive(Debug, Clone, PartialEq)]
pub struct Instruction {
    /// The operation.
    pub op: Operation,
    /// Flat qubit indices (gate arguments in order).
    pub qubits: Vec<usize>,
    /// Flat clbit indices (only for measure).
    pub clbits: Vec<usize>,
    /// Classical condition, if any.
    pub condition: Option<Condition>,
}

/// A quantum circuit: registers and a list of instructions.
///
/// Qubit `i` is bit `i` (least significant first) of a statevector index, as in Qiskit.
///
/// ```
/// use atom_quantum::Circuit;
/// let mut bell = Circuit::new(2, 2);
/// bell.h(0).cx(0, 1).measure(0, 0).measure(1, 1);
/// assert_eq!(bell.num_qubits(), 2);
/// assert!(bell.to_qasm().unwrap().contains("cx q[0],q[1];"));
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Circuit {
    qregs: Vec<Register>,
    cregs: Vec<Register>,
    instructions: Vec<Instruction>,
}

macro_rules! gate1 {
    ($($m:ident => $k:ident),*) => {$(
        #[doc = concat!("Append `", stringify!($m), "` on `q`.")]
        pub fn $m(&mut self, q: usize) -> &mut Self {
            self.push_gate(GateKind::$k, vec![], vec![q])
        }
    )*};
}
macro_rules! gate1p {
    ($($m:ident => $k:ident),*) => {$(
        #[doc = concat!("Append `", stringify!($m), "(theta)` on `q`.")]
        pub fn $m(&mut self, theta: impl Into<Param>, q: usize) -> &mut Self {
            self.push_gate(GateKind::$k, vec![theta.into()], vec![q])
        }
    )*};
}
macro_rules! gate2 {
    ($($m:ident => $k:ident),*) => {$(
        #[doc = concat!("Append `", stringify!($m), "` on (`a`, `b`); controls come first.")]
        pub fn $m(&mut self, a: usize, b: usize) -> &mut Self {
            self.push_gate(GateKind::$k, vec![], vec![a, b])
        }
    )*};
}
macro_rules! gate2p {
    ($($m:ident => $k:ident),*) => {$(
        #[doc = concat!("Append `", stringify!($m), "(theta)` on (`a`, `b`).")]
        pub fn $m(&mut self, theta: impl Into<Param>, a: usize, b: usize) -> &mut Self {
            self.push_gate(GateKind::$k, vec![theta.into()], vec![a, b])
        }
    )*};
}

impl Circuit {
    /// A circuit with one quantum register `q[num_qubits]` and, if `num_clbits > 0`, one
    /// classical register `c[num_clbits]`.
    pub fn new(num_qubits: usize, num_clbits: usize) -> Circuit {
        let mut c = Circuit::default();
        if num_qubits > 0 {
            c.add_qreg("q", num_qubits);
        }
        if num_clbits > 0 {
            c.add_creg("c", num_clbits);
        }
        c
    }

    /// Add a quantum register; returns its index.
    pub fn add_qreg(&mut self, name: &str, size: usize) -> usize {
        let start = self.num_qubits();
        self.qregs.push(Register {
            name: name.to_string(),
            size,
            start,
        });
        self.qregs.len() - 1
    }

    /// Add a classical register; returns its index.
    pub fn add_creg(&mut self, name: &str, size: usize) -> usize {
        let start = self.num_clbits();
        self.cregs.push(Register {
            name: name.to_string(),
            size,
            start,
        });
        self.cregs.len() - 1
    }

    /// Quantum registers in declaration order.
    pub fn qregs(&self) -> &[Register] {
        &self.qregs
    }

    /// Classical registers in declaration order.
    pub fn cregs(&self) -> &[Register] {
        &self.cregs
    }

    /// Total qubits.
    pub fn num_qubits(&self) -> usize {
        self.qregs.iter().map(|r| r.size).sum()
    }

    /// Total classical bits.
    pub fn num_clbits(&self) -> usize {
        self.cregs.iter().map(|r| r.size).sum()
    }

    /// The instructions in program order.
    pub fn instructions(&self) -> &[Instruction] {
        &self.instructions
    }

    /// Append an instruction as is (checked by [`Circuit::validate`]).
    pub fn push(&mut self, inst: Instruction) -> &mut Self {
        self.instructions.push(inst);
        self
    }

    /// Append any gate; arity is checked by [`Circuit::validate`].
    pub fn gate(&mut self, kind: GateKind, params: &[Param], qubits: &[usize]) -> &mut Self {
        self.push_gate(kind, params.to_vec(), qubits.to_vec())
    }

    fn push_gate(&mut self, kind: GateKind, params: Vec<Param>, qubits: Vec<usize>) -> &mut Self {
        self.push(Instruction {
            op: Operation::Gate { kind, params },
            qubits,
            clbits: vec![],
            condition: None,
        })
    }

    gate1!(id => I, x => X, y => Y, z => Z, h => H, s => S, sdg => Sdg, t => T, tdg => Tdg,
        sx => SX, sxdg => SXdg);
    gate1p!(rx => RX, ry => RY, rz => RZ, p => P, u1 => U1);
    gate2!(cx => CX, cy => CY, cz => CZ, ch => CH, swap => Swap, csx => CSX, cs => CS,
        csdg => CSdg, ecr => ECR, iswap => ISwap, dcx => DCX);
    gate2p!(crx => CRX, cry => CRY, crz => CRZ, cp => CP, cu1 => CU1, rxx => RXX, ryy => RYY,
        rzz => RZZ, rzx => RZX);

    /// Append `u(theta, phi, lam)` on `q`.
    pub fn u(
        &mut self,
        theta: impl Into<Param>,
        phi: impl Into<Param>,
        lam: impl Into<Param>,
        q: usize,
    ) -> &mut Self {
        self.push_gate(
            GateKind::U,
            vec![theta.into(), phi.into(), lam.into()],
            vec![q],
        )
    }

    /// Append `u3(theta, phi, lam)` on `q`.
    pub fn u3(
        &mut self,
        theta: impl Into<Param>,
        phi: impl Into<Param>,
        lam: impl Into<Param>,
        q: usize,
    ) -> &mut Self {
        self.push_gate(
            GateKind::U3,
            vec![theta.into(), phi.into(), lam.into()],
            vec![q],
        )
    }

    /// Append `u2(phi, lam)` on `q`.
    pub fn u2(&mut self, phi: impl Into<Param>, lam: impl Into<Param>, q: usize) -> &mut Self {
        self.push_gate(GateKind::U2, vec![phi.into(), lam.into()], vec![q])
    }

    /// Append `r(theta, phi)` on `q`.
    pub fn r(&mut self, theta: impl Into<Param>, phi: impl Into<Param>, q: usize) -> &mut Self {
        self.push_gate(GateKind::R, vec![theta.into(), phi.into()], vec![q])
    }

    /// Append `cu(theta, phi, lam, gamma)` with control `c` and target `t`.
    pub fn cu(
        &mut self,
        theta: impl Into<Param>,
        phi: impl Into<Param>,
        lam: impl Into<Param>,
        gamma: impl Into<Param>,
        c: usize,
        t: usize,
    ) -> &mut Self {
        self.push_gate(
            GateKind::CU,
            vec![theta.into(), phi.into(), lam.into(), gamma.into()],
            vec![c, t],
        )
    }

    /// Append Toffoli `ccx a, b, t`.
    pub fn ccx(&mut self, a: usize, b: usize, t: usize) -> &mut Self {
        self.push_gate(GateKind::CCX, vec![], vec![a, b, t])
    }

    /// Append `cswap c, a, b`.
    pub fn cswap(&mut self, c: usize, a: usize, b: usize) -> &mut Self {
        self.push_gate(GateKind::CSwap, vec![], vec![c, a, b])
    }

    /// Append a multi-controlled X on `controls` and `target`.
    pub fn mcx(&mut self, controls: &[usize], target: usize) -> &mut Self {
        let mut q = controls.to_vec();
        q.push(target);
        let kind = match controls.len() {
            0 => GateKind::X,
            n => GateKind::Mcx(u8::try_from(n).unwrap_or(u8::MAX)),
        };
        self.push_gate(kind, vec![], q)
    }

    /// Measure qubit `q` into clbit `c`.
    pub fn measure(&mut self, q: usize, c: usize) -> &mut Self {
        self.push(Instruction {
            op: Operation::Measure,
            qubits: vec![q],
            clbits: vec![c],
            condition: None,
        })
    }

    /// Measure qubit `i` into clbit `i` for every qubit (adds a register `meas` if needed,
    /// as Qiskit's `measure_all`).
    pub fn measure_all(&mut self) -> &mut Self {
        let n = self.num_qubits();
        let reg = self.add_creg("meas", n);
        let start = self.cregs[reg].start;
        for q in 0..n {
            self.measure(q, start + q);
        }
        self
    }

    /// Reset qubit `q` to |0>.
    pub fn reset(&mut self, q: usize) -> &mut Self {
        self.push(Instruction {
            op: Operation::Reset,
            qubits: vec![q],
            clbits: vec![],
            condition: None,
        })
    }

    /// Barrier over `qubits`.
    pub fn barrier(&mut self, qubits: &[usize]) -> &mut Self {
        self.push(Instruction {
            op: Operation::Barrier,
            qubits: qubits.to_vec(),
            clbits: vec![],
            condition: None,
        })
    }

    /// Make the last instruction conditional on `creg == value` (as OpenQASM's `if`).
    pub fn c_if(&mut self, creg: usize, value: u64) -> &mut Self {
        if let Some(last) = self.instructions.last_mut() {
            last.condition = Some(Condition { creg, value });
        }
        self
    }

    /// Names of the unbound symbols used by gate parameters, in first-use order.
    pub fn parameters(&self) -> Vec<String> {
        let mut out = vec![];
        for inst in &self.instructions {
            if let Operation::Gate { params, .. } = &inst.op {
                params.iter().for_each(|p| p.symbols(&mut out));
            }
        }
        out
    }

    /// A copy with the given symbols replaced by numbers (others stay symbolic).
    ///
    /// ```
    /// use atom_quantum::{Circuit, Param};
    /// let mut c = Circuit::new(1, 0);
    /// c.rx(Param::symbol("theta") * 2.0, 0);
    /// let bound = c.bind(&[("theta", 0.25)]);
    /// assert!(bound.parameters().is_empty());
    /// ```
    pub fn bind(&self, values: &[(&str, f64)]) -> Circuit {
        let mut out = self.clone();
        for inst in &mut out.instructions {
            if let Operation::Gate { params, .. } = &mut inst.op {
                for p in params.iter_mut() {
                    *p = p.substitute(&|s| {
                        values
                            .iter()
                            .find(|(n, _)| *n == s)
                            .map(|(_, v)| Param::Num(*v))
                    });
                    if let Some(v) = p.as_f64() {
                        *p = Param::Num(v);
                    }
                }
            }
        }
        out
    }

    /// Check indices, arities and conditions.
    pub fn validate(&self) -> Result<()> {
        let (nq, nc) = (self.num_qubits(), self.num_clbits());
        for (i, inst) in self.instructions.iter().enumerate() {
            let err = |m: String| Err(Error::Circuit(format!("instruction {i}: {m}")));
            for &q in &inst.qubits {
                if q >= nq {
                    return err(format!("qubit {q} out of range (circuit has {nq})"));
                }
            }
            for &c in &inst.clbits {
                if c >= nc {
                    return err(format!("clbit {c} out of range (circuit has {nc})"));
                }
            }
            if let Some(cond) = inst.condition
                && cond.creg >= self.cregs.len()
            {
                return err(format!(
                    "condition on classical register {} that does not exist",
                    cond.creg
                ));
            }
            match &inst.op {
                Operation::Gate { kind, params } => {
                    if inst.qubits.len() != kind.num_qubits() {
                        return err(format!(
                            "{} takes {} qubits, got {}",
                            kind.name(),
                            kind.num_qubits(),
                            inst.qubits.len()
                        ));
                    }
                    if params.len() != kind.num_params() {
                        return err(format!(
                            "{} takes {} parameters, got {}",
                            kind.name(),
                            kind.num_params(),
                            params.len()
                        ));
                    }
                    let mut qs = inst.qubits.clone();
                    qs.sort_unstable();
                    qs.dedup();
                    if qs.len() != inst.qubits.len() {
                        return err(format!("{} has repeated qubit arguments", kind.name()));
                    }
                }
                Operation::Measure => {
                    if inst.qubits.len() != 1 || inst.clbits.len() != 1 {
                        return err("measure takes one qubit and one clbit".into());
                    }
                }
                Operation::Reset => {
                    if inst.qubits.len() != 1 {
                        return err("reset takes one qubit".into());
                    }
                }
                Operation::Barrier => {}
            }
        }
        Ok(())
    }

    /// Number of gate layers (longest chain of instructions sharing qubits), barriers excluded.
    pub fn depth(&self) -> usize {
        let mut level = vec![0usize; self.num_qubits()];
        let mut depth = 0;
        for inst in &self.instructions {
            if inst.op == Operation::Barrier {
                continue;
            }
            let l = inst
                .qubits
                .iter()
                .filter_map(|&q| level.get(q))
                .max()
                .copied()
                .unwrap_or(0)
                + 1;
            for &q in &inst.qubits {
                if let Some(x) = level.get_mut(q) {
                    *x = l;
                }
            }
            depth = depth.max(l);
        }
        depth
    }
}
