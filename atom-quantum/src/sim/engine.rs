//! Executes ops on the whole state: cache-blocked passes, in parallel over blocks.
//!
//! A *pass* is a run of consecutive ops whose non-diagonal target qubits all lie either below
//! `chunk_bits` or in a small set `H` of high qubits. The state is cut into blocks of
//! `2^chunk_bits` amplitudes; a task gathers the `2^|H|` blocks that differ only in the `H` bits
//! into a small scratch buffer (cache-resident), applies every op of the pass there, and writes
//! them back. So one pass costs one read and one write of the state, whatever the number of ops.
//! Controls and diagonal factors on qubits outside the task are constant per task and are
//! resolved from the task's base index.

use super::kernels::{C, Real, dense, deposit, diag, mono};
use super::plan::{Op, OpKind};
use super::simd::Backend;
use super::vector::{self, VecPlan};
use rayon::prelude::*;

/// An op with amplitudes converted to the state's precision.
#[derive(Debug, Clone)]
pub(crate) struct OpT<T> {
    pub targets: Vec<usize>,
    pub controls: Vec<usize>,
    pub kind: KindT<T>,
}

#[derive(Debug, Clone)]
pub(crate) enum KindT<T> {
    Dense(Vec<C<T>>),
    Diag(Vec<C<T>>),
    Mono { perm: Vec<usize>, phase: Vec<C<T>> },
}

impl<T: Real> OpT<T> {
    pub fn from_op(op: &Op) -> Self {
        let cv = |v: &[num_complex::Complex64]| -> Vec<C<T>> {
            v.iter()
                .map(|z| C::new(T::from_f64(z.re), T::from_f64(z.im)))
                .collect()
        };
        let kind = match &op.kind {
            OpKind::Dense(m) => KindT::Dense(cv(m)),
            OpKind::Diag(d) => KindT::Diag(cv(d)),
            OpKind::Mono { perm, phase } => KindT::Mono {
                perm: perm.clone(),
                phase: cv(phase),
            },
        };
        OpT {
            targets: op.targets.clone(),
            controls: op.controls.clone(),
            kind,
        }
    }

    fn essential(&self) -> &[usize] {
        match self.kind {
            KindT::Diag(_) => &[],
            _ => &self.targets,
        }
    }
}

/// Tuning knobs of the executor.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ExecConfig {
    /// log2 of the contiguous block size.
    pub chunk_bits: usize,
    /// Most high qubits gathered per task.
    pub max_high: usize,
    /// States below this many qubits run on one thread.
    pub parallel_threshold: usize,
    /// The kernel family.
    pub backend: Backend,
}

impl Default for ExecConfig {
    fn default() -> Self {
        ExecConfig {
            chunk_bits: 12,
            max_high: 4,
            parallel_threshold: 14,
            backend: Backend::Portable,
        }
    }
}

pub(crate) struct LocalOp<'a, T> {
    kind: &'a KindT<T>,
    tpos: Vec<usize>,
    tj: Vec<usize>,
    out_t: Vec<(usize, usize)>,
    lcmask: usize,
    ocmask: usize,
    /// The op prepared for the vector kernels (when its layout is the same in every task).
    pub(crate) vplan: Option<VecPlan<T>>,
}

impl<T: Real> LocalOp<'_, T> {
    /// Whether the op acts in the task whose first amplitude is `task_base` (its controls
    /// outside the task are all set there).
    #[inline]
    pub(crate) fn active(&self, task_base: usize) -> bool {
        task_base & self.ocmask == self.ocmask
    }

    /// Diagonal bits outside the task, as matrix-index bits for `task_base`.
    fn fixed_bits(&self, task_base: usize) -> usize {
        let mut fixed = 0;
        for &(mask, j) in &self.out_t {
            if task_base & mask != 0 {
                fixed |= 1 << j;
            }
        }
        fixed
    }

    /// The op prepared for the vector kernels of `b`, with the matrix-index bits `fixed` set,
    /// in a block of `nbits` local bits.
    fn plan(&self, fixed: usize, b: Backend, nbits: usize) -> Option<VecPlan<T>> {
        let w = b.width(std::mem::size_of::<T>());
        if w == 0 {
            return None;
        }
        vector::build(
            self.kind,
            &self.tpos,
            &self.tj,
            fixed,
            self.lcmask,
            w,
            nbits,
        )
    }

    /// A vector plan for one task, for ops whose diagonal depends on bits outside the task.
    pub(crate) fn task_plan(&self, task_base: usize, b: Backend, len: usize) -> Option<VecPlan<T>> {
        if self.out_t.is_empty() {
            return None;
        }
        self.plan(self.fixed_bits(task_base), b, len.trailing_zeros() as usize)
    }

    #[inline(always)]
    pub(crate) fn apply_with<const F: bool>(&self, buf: &mut [C<T>], task_base: usize) {
        if !self.active(task_base) {
            return;
        }
        match self.kind {
            KindT::Dense(m) => dense::<T, F>(buf, &self.tpos, self.lcmask, m),
            KindT::Mono { perm, phase } => mono(buf, &self.tpos, self.lcmask, perm, phase),
            KindT::Diag(d) => {
                let fixed = self.fixed_bits(task_base);
                diag(buf, &self.tpos, &self.tj, fixed, self.lcmask, d)
            }
        }
    }
}

fn localize<'a, T: Real>(
    op: &'a OpT<T>,
    cb: usize,
    high: &[usize],
    backend: Backend,
) -> LocalOp<'a, T> {
    let local = |q: usize| -> Option<usize> {
        if q < cb {
            Some(q)
        } else {
            high.iter().position(|&h| h == q).map(|m| cb + m)
        }
    };
    let mut lop = LocalOp {
        kind: &op.kind,
        tpos: vec![],
        tj: vec![],
        out_t: vec![],
        lcmask: 0,
        ocmask: 0,
        vplan: None,
    };
    for (j, &q) in op.targets.iter().enumerate() {
        match local(q) {
            Some(p) => {
                lop.tpos.push(p);
                lop.tj.push(j);
            }
            None => lop.out_t.push((1usize << q, j)),
        }
    }
    for &q in &op.controls {
        match local(q) {
            Some(p) => lop.lcmask |= 1 << p,
            None => lop.ocmask |= 1 << q,
        }
    }
    if lop.out_t.is_empty() {
        lop.vplan = lop.plan(0, backend, cb + high.len());
    }
    lop
}

/// Apply `ops` in order to `state` (length `2^n`).
pub(crate) fn run_ops<T: Real>(
    state: &mut [C<T>],
    n: usize,
    ops: &[OpT<T>],
    cfg: &ExecConfig,
) -> usize {
    let cb = cfg.chunk_bits.min(n);
    let mut remaining: Vec<&OpT<T>> = ops.iter().collect();
    let mut passes = 0;
    while !remaining.is_empty() {
        let (high, take, rest) = next_pass(&remaining, n, cb, cfg.max_high);
        run_pass(state, n, cb, &high, &take, cfg);
        passes += 1;
        remaining = rest;
    }
    passes
}

/// Split `ops` into the next pass and the rest. Ops are taken in order while their
/// non-diagonal high qubits fit in `max_high`; an op that does not fit is left for a later
/// pass and blocks every qubit it touches, so that a later op is pulled into this pass only
/// when it shares no qubit with anything left behind (it commutes past them). This keeps
/// passes full on layered circuits, where the next layer's local gates can run before the
/// current layer's remaining high ones.
#[allow(clippy::type_complexity)]
fn next_pass<'a, T: Real>(
    ops: &[&'a OpT<T>],
    n: usize,
    cb: usize,
    max_high: usize,
) -> (Vec<usize>, Vec<&'a OpT<T>>, Vec<&'a OpT<T>>) {
    let mut high: Vec<usize> = vec![];
    let mut take = vec![];
    let mut rest = vec![];
    let mut blocked = vec![false; n];
    let mut nblocked = 0usize;
    for (i, op) in ops.iter().enumerate() {
        let touched = op.targets.iter().chain(op.controls.iter());
        let is_blocked = touched
            .clone()
            .any(|&q| blocked.get(q).copied().unwrap_or(true));
        let mut fits = !is_blocked;
        if fits {
            let mut h2 = high.clone();
            for &q in op.essential() {
                if q >= cb && !h2.contains(&q) {
                    h2.push(q);
                }
            }
            if take.is_empty() || h2.len() <= max_high {
                high = h2;
                take.push(*op);
            } else {
                fits = false;
            }
        }
        if !fits {
            rest.push(*op);
            for &q in touched {
                if let Some(b) = blocked.get_mut(q)
                    && !*b
                {
                    *b = true;
                    nblocked += 1;
                }
            }
            if nblocked >= n {
                rest.extend_from_slice(&ops[i + 1..]);
                break;
            }
        }
    }
    high.sort_unstable();
    (high, take, rest)
}

fn run_pass<T: Real>(
    state: &mut [C<T>],
    n: usize,
    cb: usize,
    high: &[usize],
    ops: &[&OpT<T>],
    cfg: &ExecConfig,
) {
    let lops: Vec<LocalOp<'_, T>> = ops
        .iter()
        .map(|o| localize(o, cb, high, cfg.backend))
        .collect();
    let parallel = n >= cfg.parallel_threshold;
    let block = 1usize << cb;
    if high.is_empty() {
        let body = |(ci, chunk): (usize, &mut [C<T>])| {
            super::simd::apply_all(&lops, chunk, ci << cb, cfg.backend);
        };
        if parallel {
            state.par_chunks_mut(block).enumerate().for_each(body);
        } else {
            state.chunks_mut(block).enumerate().for_each(body);
        }
        return;
    }
    let h = high.len();
    let hbits: Vec<usize> = high.iter().map(|q| q - cb).collect();
    let mut chunks: Vec<Option<&mut [C<T>]>> = state.chunks_mut(block).map(Some).collect();
    let ntasks = chunks.len() >> h;
    let mut tasks: Vec<(usize, Vec<&mut [C<T>]>)> = Vec::with_capacity(ntasks);
    for r in 0..ntasks {
        let base = deposit(r, &hbits);
        let mut v = Vec::with_capacity(1 << h);
        for j in 0..(1usize << h) {
            let idx = base
                | hbits
                    .iter()
                    .enumerate()
                    .map(|(m, b)| ((j >> m) & 1) << b)
                    .sum::<usize>();
            if let Some(c) = chunks.get_mut(idx).and_then(Option::take) {
                v.push(c);
            }
        }
        tasks.push((base << cb, v));
    }
    let work = |scratch: &mut Vec<C<T>>, (tb, mut slices): (usize, Vec<&mut [C<T>]>)| {
        for (j, s) in slices.iter().enumerate() {
            scratch[j * block..(j + 1) * block].copy_from_slice(s);
        }
        super::simd::apply_all(&lops, scratch, tb, cfg.backend);
        for (j, s) in slices.iter_mut().enumerate() {
            s.copy_from_slice(&scratch[j * block..(j + 1) * block]);
        }
    };
    let size = block << h;
    if parallel {
        tasks
            .into_par_iter()
            .for_each_init(|| vec![C::<T>::default(); size], work);
    } else {
        let mut scratch = vec![C::<T>::default(); size];
        for t in tasks {
            work(&mut scratch, t);
        }
    }
}

/// Probability that qubit `q` reads 1.
pub(crate) fn prob_one<T: Real>(state: &[C<T>], q: usize) -> f64 {
    let bit = 1usize << q;
    let f = |(i, a): (usize, &C<T>)| {
        if i & bit != 0 {
            a.norm_sqr().to_f64()
        } else {
            0.0
        }
    };
    if state.len() >= 1 << 14 {
        state.par_iter().enumerate().map(f).sum()
    } else {
        state.iter().enumerate().map(f).sum()
    }
}

/// Project qubit `q` on `outcome` and renormalise by `1/sqrt(p)`.
pub(crate) fn collapse<T: Real>(state: &mut [C<T>], q: usize, outcome: bool, p: f64) {
    let bit = 1usize << q;
    let scale = T::from_f64(if p > 0.0 { 1.0 / p.sqrt() } else { 0.0 });
    let zero = C::<T>::default();
    let f = |(i, a): (usize, &mut C<T>)| {
        if ((i & bit) != 0) == outcome {
            *a *= scale;
        } else {
            *a = zero;
        }
    };
    if state.len() >= 1 << 14 {
        state.par_iter_mut().enumerate().for_each(f);
    } else {
        state.iter_mut().enumerate().for_each(f);
    }
}
