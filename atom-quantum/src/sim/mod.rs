//! The statevector simulator.

mod engine;
mod kernels;
mod memory;
mod pauli;
mod plan;
mod rng;
mod simd;
mod vector;

pub use kernels::Real;
pub use pauli::{PauliString, PauliSum};

use crate::circuit::{Circuit, Condition};
use crate::error::{Error, Result};
use engine::{ExecConfig, OpT, collapse, prob_one, run_ops};
use num_complex::{Complex, Complex32, Complex64};
use plan::{PlanOptions, Step};
use rayon::prelude::*;
use rng::Rng;
use std::collections::BTreeMap;
use std::time::Instant;

/// Floating-point precision of the amplitudes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// complex f64 (16 bytes per amplitude).
    #[default]
    Double,
    /// complex f32 (8 bytes per amplitude).
    Single,
}

impl Precision {
    /// Bytes per amplitude.
    pub fn amplitude_bytes(self) -> u64 {
        match self {
            Precision::Double => 16,
            Precision::Single => 8,
        }
    }
}

/// Simulation options.
///
/// ```
/// use atom_quantum::{Precision, SimOptions};
/// let o = SimOptions { shots: 1000, seed: Some(42), precision: Precision::Single, ..SimOptions::default() };
/// assert_eq!(o.max_fused_qubits, SimOptions::default().max_fused_qubits);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct SimOptions {
    /// Amplitude precision.
    pub precision: Precision,
    /// Number of measurement samples (0 = no counts).
    pub shots: u64,
    /// Seed for sampling and mid-circuit measurement; `None` takes one from the clock.
    pub seed: Option<u64>,
    /// Most bytes the state may take; `None` = `MemAvailable` from `/proc/meminfo`.
    pub memory_limit: Option<u64>,
    /// Fuse consecutive gates into blocks (when it lowers the work).
    pub fusion: bool,
    /// Largest fused block, in qubits.
    pub max_fused_qubits: usize,
    /// log2 of the cache block (amplitudes) that passes work in.
    pub chunk_bits: usize,
    /// Most high qubits gathered into one cache block.
    pub max_high_qubits: usize,
    /// Which kernels run the gates.
    pub kernels: Kernels,
}

/// The kernel family a simulation uses.
///
/// `Auto` takes the widest vector unit the CPU has (AVX-512, else AVX2 with FMA, else the
/// portable kernels; `ATOM_QUANTUM_NO_SIMD` in the environment forces the portable ones).
/// Naming a family the CPU lacks makes [`simulate`] fail with [`Error::Backend`].
///
/// ```
/// use atom_quantum::{Circuit, Kernels, SimOptions, simulate};
/// let mut c = Circuit::new(2, 0);
/// c.h(0).cx(0, 1);
/// let o = SimOptions { kernels: Kernels::Portable, ..SimOptions::default() };
/// let p = simulate(&c, &o).unwrap().probabilities();
/// assert!((p[0] - 0.5).abs() < 1e-12 && (p[3] - 0.5).abs() < 1e-12);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kernels {
    /// The fastest the CPU supports.
    #[default]
    Auto,
    /// Auto-vectorised kernels, on any CPU.
    Portable,
    /// 256-bit AVX2 and FMA kernels.
    Avx2,
    /// 512-bit AVX-512 kernels.
    Avx512,
}

impl Default for SimOptions {
    fn default() -> Self {
        let e = ExecConfig::default();
        SimOptions {
            precision: Precision::Double,
            shots: 0,
            seed: None,
            memory_limit: None,
            fusion: true,
            max_fused_qubits: 3,
            chunk_bits: e.chunk_bits,
            max_high_qubits: e.max_high,
            kernels: Kernels::Auto,
        }
    }
}

/// Amplitudes in the precision they were computed in. Index bit `i` is qubit `i`.
#[derive(Debug, Clone, PartialEq)]
pub enum StateVector {
    /// complex f64 amplitudes.
    Double(Vec<Complex64>),
    /// complex f32 amplitudes.
    Single(Vec<Complex32>),
}

impl StateVector {
    /// Number of amplitudes (`2^n`).
    pub fn len(&self) -> usize {
        match self {
            StateVector::Double(v) => v.len(),
            StateVector::Single(v) => v.len(),
        }
    }

    /// Whether there are no amplitudes (never for a simulated state).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Amplitude `i` widened to f64.
    pub fn get(&self, i: usize) -> Option<Complex64> {
        match self {
            StateVector::Double(v) => v.get(i).copied(),
            StateVector::Single(v) => v.get(i).map(|z| Complex64::new(z.re as f64, z.im as f64)),
        }
    }

    /// The amplitudes as f64 (moves the buffer when already f64, no copy).
    pub fn into_f64(self) -> Vec<Complex64> {
        match self {
            StateVector::Double(v) => v,
            StateVector::Single(v) => v
                .into_iter()
                .map(|z| Complex64::new(z.re as f64, z.im as f64))
                .collect(),
        }
    }

    /// `|a_i|^2` for every index.
    pub fn probabilities(&self) -> Vec<f64> {
        match self {
            StateVector::Double(v) => v.par_iter().map(|z| z.norm_sqr()).collect(),
            StateVector::Single(v) => v.par_iter().map(|z| z.norm_sqr() as f64).collect(),
        }
    }
}

/// What a simulation produced.
#[derive(Debug, Clone, PartialEq)]
pub struct SimResult {
    state: StateVector,
    counts: BTreeMap<String, u64>,
    shots: u64,
    seconds: f64,
    ops: usize,
    passes_hint: usize,
}

impl SimResult {
    /// The final statevector (before terminal measurements; for circuits with mid-circuit
    /// measurement or reset, the state of the last sampled trajectory).
    pub fn statevector(&self) -> &StateVector {
        &self.state
    }

    /// Move the statevector out (no copy).
    pub fn into_statevector(self) -> StateVector {
        self.state
    }

    /// Probabilities of every basis state (qubit 0 = least significant bit of the index).
    pub fn probabilities(&self) -> Vec<f64> {
        self.state.probabilities()
    }

    /// Measurement counts keyed as Qiskit does: clbit 0 rightmost, registers separated by a
    /// space, the last declared register leftmost.
    pub fn counts(&self) -> &BTreeMap<String, u64> {
        &self.counts
    }

    /// Shots sampled.
    pub fn shots(&self) -> u64 {
        self.shots
    }

    /// Wall-clock seconds of the simulation (planning, state evolution and sampling).
    pub fn seconds(&self) -> f64 {
        self.seconds
    }

    /// Number of kernel operations after fusion.
    pub fn fused_ops(&self) -> usize {
        self.ops
    }

    /// Number of passes over the state the unitary part took (each pass reads and writes the
    /// state once; for trajectories, the passes of the last shot).
    pub fn passes(&self) -> usize {
        self.passes_hint
    }

    /// `<ψ|H|ψ>` for a weighted sum of Pauli strings over all qubits.
    pub fn expectation(&self, observable: &PauliSum) -> Result<f64> {
        match &self.state {
            StateVector::Double(v) => observable.expectation(v),
            StateVector::Single(v) => observable.expectation(v),
        }
    }
}

/// Bytes of `MemAvailable` in `/proc/meminfo`, if readable.
pub fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("MemAvailable:") {
            let kb: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
            return kb.checked_mul(1024);
        }
    }
    None
}

/// Bytes a statevector of `num_qubits` needs, or `None` on overflow.
pub fn state_bytes(num_qubits: usize, precision: Precision) -> Option<u64> {
    if num_qubits >= 60 {
        return None;
    }
    (1u64 << num_qubits).checked_mul(precision.amplitude_bytes())
}

/// The statevector simulator.
///
/// ```
/// use atom_quantum::{Circuit, SimOptions, Simulator};
/// let mut ghz = Circuit::new(3, 3);
/// ghz.h(0).cx(0, 1).cx(1, 2);
/// for q in 0..3 { ghz.measure(q, q); }
/// let sim = Simulator::new(SimOptions { shots: 100, seed: Some(1), ..SimOptions::default() });
/// let r = sim.run(&ghz).unwrap();
/// let p = r.probabilities();
/// assert!((p[0] - 0.5).abs() < 1e-12 && (p[7] - 0.5).abs() < 1e-12);
/// assert_eq!(r.counts().values().sum::<u64>(), 100);
/// assert!(r.counts().keys().all(|k| k == "000" || k == "111"));
/// ```
#[derive(Debug, Clone, Default)]
pub struct Simulator {
    options: SimOptions,
}

/// Run `circuit` with `options` (same as `Simulator::new(options.clone()).run(circuit)`).
pub fn simulate(circuit: &Circuit, options: &SimOptions) -> Result<SimResult> {
    Simulator::new(options.clone()).run(circuit)
}

impl Simulator {
    /// A simulator with these options.
    pub fn new(options: SimOptions) -> Simulator {
        Simulator { options }
    }

    /// The options in use.
    pub fn options(&self) -> &SimOptions {
        &self.options
    }

    /// Check that the state fits; returns the bytes needed.
    pub fn check_memory(&self, num_qubits: usize) -> Result<u64> {
        let limit = self
            .options
            .memory_limit
            .or_else(available_memory)
            .unwrap_or(u64::MAX);
        match state_bytes(num_qubits, self.options.precision) {
            Some(needed) if needed <= limit => Ok(needed),
            needed => Err(Error::Memory {
                qubits: num_qubits,
                needed: needed.unwrap_or(u64::MAX),
                available: limit,
            }),
        }
    }

    /// Simulate a circuit (all parameters must be bound).
    pub fn run(&self, circuit: &Circuit) -> Result<SimResult> {
        circuit.validate()?;
        if let Some(p) = circuit.parameters().first() {
            return Err(Error::UnboundParameter(p.clone()));
        }
        self.check_memory(circuit.num_qubits())?;
        match self.options.precision {
            Precision::Double => self.run_t::<f64>(circuit, StateVector::Double),
            Precision::Single => self.run_t::<f32>(circuit, StateVector::Single),
        }
    }

    fn run_t<T: Real>(
        &self,
        circuit: &Circuit,
        wrap: fn(Vec<Complex<T>>) -> StateVector,
    ) -> Result<SimResult> {
        let start = Instant::now();
        let o = &self.options;
        let n = circuit.num_qubits();
        let backend = simd::resolve(o.kernels)?;
        let popts = PlanOptions {
            fusion: o.fusion,
            max_fused_qubits: o.max_fused_qubits.clamp(1, 5),
            vector: backend != simd::Backend::Portable,
        };
        let (steps, finals) = plan::plan(circuit, popts)?;
        let steps: Vec<StepT<T>> = steps.iter().map(StepT::from_step).collect();
        let cfg = ExecConfig {
            chunk_bits: o.chunk_bits.clamp(1, 24),
            max_high: o.max_high_qubits.min(8),
            backend,
            ..ExecConfig::default()
        };
        let dim = 1usize << n;
        let mut state: Vec<Complex<T>> =
            memory::zeroed_state(dim).ok_or_else(|| Error::Memory {
                qubits: n,
                needed: state_bytes(n, o.precision).unwrap_or(u64::MAX),
                available: o.memory_limit.or_else(available_memory).unwrap_or(0),
            })?;
        let seed = o.seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        });
        let ncl = circuit.num_clbits();
        let dynamic = steps.iter().any(|s| !matches!(s, StepT::Op(_, None)));
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        let nops = steps.len();
        let mut passes = 0;
        if !dynamic {
            // The buffer is freshly zeroed: only |0...0> needs its amplitude.
            if let Some(a) = state.first_mut() {
                *a = Complex::new(T::one(), T::zero());
            }
            let ops: Vec<OpT<T>> = steps
                .into_iter()
                .filter_map(|s| match s {
                    StepT::Op(op, _) => Some(op),
                    _ => None,
                })
                .collect();
            passes = run_ops(&mut state, n, &ops, &cfg);
            if o.shots > 0 && !finals.is_empty() {
                let mut rng = Rng::new(seed);
                let samples = sample(&state, o.shots, &mut rng);
                let clbits = vec![false; ncl];
                for idx in samples {
                    let mut bits = clbits.clone();
                    for &(q, c) in &finals {
                        bits[c] = (idx >> q) & 1 == 1;
                    }
                    *counts.entry(format_bits(circuit, &bits)).or_insert(0) += 1;
                }
            }
        } else {
            // Trajectories: every shot runs the circuit with its own random stream.
            let shots = o.shots.max(1);
            for shot in 0..shots {
                let mut rng = Rng::new(seed ^ shot.wrapping_mul(0x9E37_79B9_7F4A_7C15));
                reset_state(&mut state);
                let mut bits = vec![false; ncl];
                passes = run_steps(&mut state, n, &steps, &cfg, circuit, &mut bits, &mut rng);
                if o.shots > 0 {
                    if !finals.is_empty() {
                        let idx = sample(&state, 1, &mut rng).first().copied().unwrap_or(0);
                        for &(q, c) in &finals {
                            bits[c] = (idx >> q) & 1 == 1;
                        }
                    }
                    if ncl > 0 {
                        *counts.entry(format_bits(circuit, &bits)).or_insert(0) += 1;
                    }
                }
            }
        }
        Ok(SimResult {
            state: wrap(state),
            counts,
            shots: o.shots,
            seconds: start.elapsed().as_secs_f64(),
            ops: nops,
            passes_hint: passes,
        })
    }
}

enum StepT<T> {
    Op(OpT<T>, Option<Condition>),
    Measure {
        qubit: usize,
        clbit: usize,
        cond: Option<Condition>,
    },
    Reset {
        qubit: usize,
        cond: Option<Condition>,
    },
}

impl<T: Real> StepT<T> {
    fn from_step(s: &Step) -> Self {
        match s {
            Step::Op(op, c) => StepT::Op(OpT::from_op(op), *c),
            Step::Measure { qubit, clbit, cond } => StepT::Measure {
                qubit: *qubit,
                clbit: *clbit,
                cond: *cond,
            },
            Step::Reset { qubit, cond } => StepT::Reset {
                qubit: *qubit,
                cond: *cond,
            },
        }
    }
}

fn reset_state<T: Real>(state: &mut [Complex<T>]) {
    state.par_iter_mut().for_each(|a| *a = Complex::default());
    if let Some(a) = state.first_mut() {
        *a = Complex::new(T::one(), T::zero());
    }
}

fn cond_holds(circuit: &Circuit, bits: &[bool], cond: Option<Condition>) -> bool {
    let Some(c) = cond else { return true };
    let Some(reg) = circuit.cregs().get(c.creg) else {
        return false;
    };
    let mut v: u128 = 0;
    for i in (0..reg.size).rev() {
        v = (v << 1) | u128::from(bits.get(reg.start + i).copied().unwrap_or(false));
        if v > u128::from(u64::MAX) {
            return false;
        }
    }
    v == u128::from(c.value)
}

fn run_steps<T: Real>(
    state: &mut [Complex<T>],
    n: usize,
    steps: &[StepT<T>],
    cfg: &ExecConfig,
    circuit: &Circuit,
    bits: &mut [bool],
    rng: &mut Rng,
) -> usize {
    let mut passes = 0;
    let mut i = 0;
    while i < steps.len() {
        // Batch consecutive unconditioned ops into one executor call.
        let startb = i;
        while i < steps.len() && matches!(steps[i], StepT::Op(_, None)) {
            i += 1;
        }
        if i > startb {
            let ops: Vec<OpT<T>> = steps[startb..i]
                .iter()
                .filter_map(|s| match s {
                    StepT::Op(op, _) => Some(op.clone()),
                    _ => None,
                })
                .collect();
            passes += run_ops(state, n, &ops, cfg);
            continue;
        }
        match &steps[i] {
            StepT::Op(op, cond) => {
                if cond_holds(circuit, bits, *cond) {
                    passes += run_ops(state, n, std::slice::from_ref(op), cfg);
                }
            }
            StepT::Measure { qubit, clbit, cond } => {
                if cond_holds(circuit, bits, *cond) {
                    let p1 = prob_one(state, *qubit);
                    let one = rng.uniform() < p1;
                    collapse(state, *qubit, one, if one { p1 } else { 1.0 - p1 });
                    if let Some(b) = bits.get_mut(*clbit) {
                        *b = one;
                    }
                }
            }
            StepT::Reset { qubit, cond } => {
                if cond_holds(circuit, bits, *cond) {
                    let p1 = prob_one(state, *qubit);
                    let one = rng.uniform() < p1;
                    collapse(state, *qubit, one, if one { p1 } else { 1.0 - p1 });
                    if one {
                        let x = OpT {
                            targets: vec![*qubit],
                            controls: vec![],
                            kind: engine::KindT::Mono {
                                perm: vec![1, 0],
                                phase: vec![Complex::new(T::one(), T::zero()); 2],
                            },
                        };
                        passes += run_ops(state, n, std::slice::from_ref(&x), cfg);
                    }
                }
            }
        }
        i += 1;
    }
    passes
}

/// Draw `shots` basis indices from |a_i|^2: sorted uniforms swept once over the state.
fn sample<T: Real>(state: &[Complex<T>], shots: u64, rng: &mut Rng) -> Vec<usize> {
    const BLOCK: usize = 1 << 12;
    let sums: Vec<f64> = state
        .par_chunks(BLOCK)
        .map(|c| c.iter().map(|a| a.norm_sqr().to_f64()).sum())
        .collect();
    let total: f64 = sums.iter().sum();
    let mut us: Vec<f64> = (0..shots).map(|_| rng.uniform() * total).collect();
    us.sort_by(f64::total_cmp);
    let mut out = Vec::with_capacity(us.len());
    let mut acc = 0.0;
    let mut k = 0;
    for (bi, s) in sums.iter().enumerate() {
        if k >= us.len() {
            break;
        }
        if acc + s <= us[k] && bi + 1 < sums.len() {
            acc += s;
            continue;
        }
        let base = bi * BLOCK;
        let chunk = &state[base..(base + BLOCK).min(state.len())];
        for (j, a) in chunk.iter().enumerate() {
            acc += a.norm_sqr().to_f64();
            while k < us.len() && us[k] < acc {
                out.push(base + j);
                k += 1;
            }
        }
    }
    // Rounding can leave the last few draws past the final sum: give them the last nonzero index.
    let last = state
        .iter()
        .rposition(|a| a.norm_sqr() > T::zero())
        .unwrap_or(0);
    while out.len() < us.len() {
        out.push(last);
    }
    out
}

/// Qiskit's count key: registers from last declared to first, each from its highest bit down.
pub(crate) fn format_bits(circuit: &Circuit, bits: &[bool]) -> String {
    let mut parts = vec![];
    for r in circuit.cregs().iter().rev() {
        let s: String = (0..r.size)
            .rev()
            .map(|i| {
                if bits.get(r.start + i).copied().unwrap_or(false) {
                    '1'
                } else {
                    '0'
                }
            })
            .collect();
        parts.push(s);
    }
    parts.join(" ")
}
