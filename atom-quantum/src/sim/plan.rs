//! From instructions to simulator steps: gate fusion and kernel classification.

use crate::circuit::{Circuit, Condition, Operation};
use crate::error::Result;
use crate::gates::{GateKind, Matrix, compose};
use num_complex::Complex64;

/// How an op's matrix acts on its targets (after removing control qubits).
#[derive(Debug, Clone)]
pub(crate) enum OpKind {
    /// Dense `2^t × 2^t` matrix over the targets.
    Dense(Matrix),
    /// Diagonal (`2^t` entries); may have no targets at all (a phase on the control subspace).
    Diag(Vec<Complex64>),
    /// One nonzero per column: column `c` goes to row `perm[c]` times `phase[c]`.
    Mono {
        perm: Vec<usize>,
        phase: Vec<Complex64>,
    },
}

/// A simulator operation: apply `kind` on `targets` where every qubit in `controls` is 1.
#[derive(Debug, Clone)]
pub(crate) struct Op {
    pub targets: Vec<usize>,
    pub controls: Vec<usize>,
    pub kind: OpKind,
}

impl Op {
    /// Rough time per amplitude (in units of one complex multiply-add), used to decide whether
    /// fusing pays. The constant is the cost of streaming a cache block through one more op,
    /// which measurement showed to be comparable to a dense 2-qubit product; the per-kind weights
    /// follow the kernels (gathered permutations and multi-qubit diagonals are slower per element).
    ///
    /// With the `vector` kernels a permutation costs one read and write of its registers
    /// whatever its width (lane permutations are single instructions).
    fn cost(&self, vector: bool) -> f64 {
        let c = (1u64 << self.controls.len()) as f64;
        let t = self.targets.len() as f64;
        let w = match self.kind {
            OpKind::Dense(_) => 2f64.powf(t),
            OpKind::Diag(_) => 0.6 + 0.5 * t,
            OpKind::Mono { .. } if t <= 1.0 || vector => 0.8,
            OpKind::Mono { .. } => 2.0 * t,
        };
        OP_OVERHEAD + w / c
    }
}

/// One simulation step.
#[derive(Debug, Clone)]
pub(crate) enum Step {
    Op(Op, Option<Condition>),
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

const EPS: f64 = 1e-14;

/// Fixed cost of one more op in a pass (see [`Op::cost`]).
const OP_OVERHEAD: f64 = 2.0;

fn is_zero(v: Complex64) -> bool {
    v.norm_sqr() < EPS * EPS
}

/// Classify a dense matrix over `qubits` (bit j of the index = `qubits[j]`). `None` = identity.
pub(crate) fn classify(m: &[Complex64], qubits: &[usize]) -> Option<Op> {
    let k = qubits.len();
    let d = 1usize << k;
    let one = Complex64::new(1.0, 0.0);
    let is_id_entry = |r: usize, c: usize| -> bool {
        let v = m[r * d + c];
        if r == c { is_zero(v - one) } else { is_zero(v) }
    };
    let mut cbits = vec![];
    for b in 0..k {
        let mut ctrl = true;
        'outer: for r in 0..d {
            for c in 0..d {
                if ((r >> b) & 1 == 0 || (c >> b) & 1 == 0) && !is_id_entry(r, c) {
                    ctrl = false;
                    break 'outer;
                }
            }
        }
        if ctrl {
            cbits.push(b);
        }
    }
    let tbits: Vec<usize> = (0..k).filter(|b| !cbits.contains(b)).collect();
    let cmask: usize = cbits.iter().map(|b| 1usize << b).sum();
    let t = tbits.len();
    let td = 1usize << t;
    let expand = |x: usize| -> usize {
        tbits
            .iter()
            .enumerate()
            .map(|(j, b)| ((x >> j) & 1) << b)
            .sum::<usize>()
            | cmask
    };
    let sub: Vec<Complex64> = (0..td * td)
        .map(|i| m[expand(i / td) * d + expand(i % td)])
        .collect();
    let controls: Vec<usize> = cbits.iter().map(|&b| qubits[b]).collect();
    let targets: Vec<usize> = tbits.iter().map(|&b| qubits[b]).collect();
    let diagonal = (0..td).all(|r| (0..td).all(|c| r == c || is_zero(sub[r * td + c])));
    if diagonal {
        let dg: Vec<Complex64> = (0..td).map(|i| sub[i * td + i]).collect();
        if dg.iter().all(|v| is_zero(v - one)) {
            return None;
        }
        return Some(Op {
            targets,
            controls,
            kind: OpKind::Diag(dg),
        });
    }
    let mut perm = vec![0; td];
    let mut phase = vec![Complex64::new(0.0, 0.0); td];
    let mut mono = true;
    for c in 0..td {
        let nz: Vec<usize> = (0..td).filter(|&r| !is_zero(sub[r * td + c])).collect();
        if nz.len() != 1 {
            mono = false;
            break;
        }
        perm[c] = nz[0];
        phase[c] = sub[nz[0] * td + c];
    }
    if mono {
        return Some(Op {
            targets,
            controls,
            kind: OpKind::Mono { perm, phase },
        });
    }
    Some(Op {
        targets,
        controls,
        kind: OpKind::Dense(sub),
    })
}

/// A gate as an op, without building huge matrices for wide controlled gates.
fn gate_op(kind: GateKind, params: &[f64], qubits: &[usize]) -> Option<Op> {
    if qubits.len() > 5
        && let Some((nc, base)) = kind.controlled_form(params)
    {
        let mut op = classify(&base, &qubits[nc..])?;
        op.controls.extend_from_slice(&qubits[..nc]);
        return Some(op);
    }
    classify(&kind.matrix(params), qubits)
}

struct Block {
    qubits: Vec<usize>,
    matrix: Option<Matrix>,
    /// The diagonal when the block is diagonal (kept even past `max_qubits`).
    diag: Option<Vec<Complex64>>,
    op: Option<Op>,
    alive: bool,
}

/// Diagonal blocks may grow to this many qubits: they cost one table lookup per amplitude.
const MAX_DIAG_QUBITS: usize = 10;

fn diagonal_of(m: &[Complex64]) -> Option<Vec<Complex64>> {
    let d = (m.len() as f64).sqrt().round() as usize;
    for r in 0..d {
        for c in 0..d {
            if r != c && !is_zero(m[r * d + c]) {
                return None;
            }
        }
    }
    Some((0..d).map(|i| m[i * d + i]).collect())
}

/// Classify a diagonal over `qubits` (bit j of the index = `qubits[j]`). `None` = identity.
fn classify_diag(dg: &[Complex64], qubits: &[usize]) -> Option<Op> {
    let k = qubits.len();
    let one = Complex64::new(1.0, 0.0);
    let cbits: Vec<usize> = (0..k)
        .filter(|&b| {
            dg.iter()
                .enumerate()
                .all(|(i, v)| (i >> b) & 1 == 1 || is_zero(v - one))
        })
        .collect();
    let tbits: Vec<usize> = (0..k).filter(|b| !cbits.contains(b)).collect();
    let cmask: usize = cbits.iter().map(|b| 1usize << b).sum();
    let sub: Vec<Complex64> = (0..1usize << tbits.len())
        .map(|x| {
            dg[tbits
                .iter()
                .enumerate()
                .map(|(j, b)| ((x >> j) & 1) << b)
                .sum::<usize>()
                | cmask]
        })
        .collect();
    if sub.iter().all(|v| is_zero(v - one)) {
        return None;
    }
    Some(Op {
        targets: tbits.iter().map(|&b| qubits[b]).collect(),
        controls: cbits.iter().map(|&b| qubits[b]).collect(),
        kind: OpKind::Diag(sub),
    })
}

fn diag_to_dense(dg: &[Complex64]) -> Matrix {
    let d = dg.len();
    let mut m = vec![Complex64::new(0.0, 0.0); d * d];
    for (i, v) in dg.iter().enumerate() {
        m[i * d + i] = *v;
    }
    m
}

fn block_cost(b: &Block, vector: bool) -> f64 {
    b.op.as_ref().map_or(0.0, |o| o.cost(vector))
}

/// What the blocks `owners` cost together.
fn owners_cost(owners: &[usize], blocks: &[Block], vector: bool) -> f64 {
    owners.iter().map(|&b| block_cost(&blocks[b], vector)).sum()
}

/// Widest permutation block the vector kernels take (their 32-register limit).
const MAX_MONO_QUBITS: usize = 5;

fn is_mono(op: Option<&Op>) -> bool {
    op.is_none_or(|o| matches!(o.kind, OpKind::Mono { .. }))
}

/// Fuse a run of unconditioned gates into ops of at most `max_qubits` qubits when it pays.
fn fuse(
    gates: &[(Matrix, Vec<usize>)],
    max_qubits: usize,
    vector: bool,
    nq: usize,
    out: &mut Vec<Step>,
) {
    let mut blocks: Vec<Block> = vec![];
    let mut owner: Vec<Option<usize>> = vec![None; nq];
    let fully_owned = |b: usize, blocks: &Vec<Block>, owner: &Vec<Option<usize>>| -> bool {
        blocks[b].matrix.is_some() && blocks[b].qubits.iter().all(|&q| owner[q] == Some(b))
    };
    for (m, qs) in gates {
        let mut owners: Vec<usize> = qs.iter().filter_map(|&q| owner[q]).collect();
        owners.sort_unstable();
        owners.dedup();
        let gdiag = diagonal_of(m);
        if let Some(gd) = &gdiag {
            // Merge into every owner when all of them can move to the end; otherwise into the
            // latest owner, which is always valid: every other qubit of the gate is last touched
            // by an earlier block, so nothing between that block and the gate touches it.
            let all_owned = !owners.is_empty()
                && owners
                    .iter()
                    .all(|&b| blocks[b].qubits.iter().all(|&q| owner[q] == Some(b)));
            let set: Vec<usize> = if all_owned {
                owners.clone()
            } else {
                owners.iter().max().map(|&b| vec![b]).unwrap_or_default()
            };
            if !set.is_empty() && set.iter().all(|&b| blocks[b].diag.is_some()) {
                let single_ok = !all_owned;
                let owners = set;
                let mut union: Vec<usize> = vec![];
                for &b in &owners {
                    for &q in &blocks[b].qubits {
                        if !union.contains(&q) {
                            union.push(q);
                        }
                    }
                }
                for &q in qs {
                    if !union.contains(&q) {
                        union.push(q);
                    }
                }
                if union.len() <= MAX_DIAG_QUBITS {
                    let project = |i: usize, sub: &[usize]| -> usize {
                        sub.iter()
                            .enumerate()
                            .map(|(j, q)| {
                                let p = union.iter().position(|u| u == q).unwrap_or(0);
                                ((i >> p) & 1) << j
                            })
                            .sum()
                    };
                    let nd: Vec<Complex64> = (0..1usize << union.len())
                        .map(|i| {
                            let mut v = gd[project(i, qs)];
                            for &b in &owners {
                                if let Some(bd) = &blocks[b].diag {
                                    v *= bd[project(i, &blocks[b].qubits)];
                                }
                            }
                            v
                        })
                        .collect();
                    let nop = classify_diag(&nd, &union);
                    let gate_cost = classify_diag(gd, qs).map_or(0.0, |o| o.cost(vector));
                    let old = owners_cost(&owners, &blocks, vector) + gate_cost;
                    if nop.as_ref().map_or(0.0, |o| o.cost(vector)) <= old + 1e-9 {
                        let matrix = if union.len() <= max_qubits {
                            Some(diag_to_dense(&nd))
                        } else {
                            None
                        };
                        let nb = Block {
                            qubits: union.clone(),
                            matrix,
                            diag: Some(nd),
                            op: nop,
                            alive: true,
                        };
                        let idx = if single_ok && !all_owned {
                            blocks[owners[0]] = nb;
                            owners[0]
                        } else {
                            for &b in &owners {
                                blocks[b].alive = false;
                            }
                            blocks.push(nb);
                            blocks.len() - 1
                        };
                        for &q in &union {
                            if owner[q].is_none()
                                || owners.contains(&owner[q].unwrap_or(usize::MAX))
                            {
                                owner[q] = Some(idx);
                            }
                        }
                        for &q in qs {
                            owner[q] = Some(idx);
                        }
                        continue;
                    }
                }
            }
        }
        let mut merged = false;
        if qs.len() <= max_qubits && !owners.is_empty() {
            // Case A: every touching block commutes with everything after it: merge all at the end.
            let all_owned = owners.iter().all(|&b| fully_owned(b, &blocks, &owner));
            // Case B: join the latest owner in place (valid: the gate's other qubits were last
            // touched by earlier blocks).
            let latest = owners.iter().copied().max().unwrap_or(0);
            let single_ok = !all_owned && blocks[latest].matrix.is_some();
            let owners: Vec<usize> = if all_owned {
                owners.clone()
            } else {
                vec![latest]
            };
            if all_owned || single_ok {
                let mut union: Vec<usize> = vec![];
                for &b in &owners {
                    for &q in &blocks[b].qubits {
                        if !union.contains(&q) {
                            union.push(q);
                        }
                    }
                }
                for &q in qs {
                    if !union.contains(&q) {
                        union.push(q);
                    }
                }
                // Permutations stay permutations when fused, and the vector kernels apply
                // one at the price of a copy: let them grow past the dense limit.
                let gate_op = classify(m, qs);
                let mono_only = vector
                    && is_mono(gate_op.as_ref())
                    && owners.iter().all(|&b| is_mono(blocks[b].op.as_ref()));
                let limit = if mono_only {
                    MAX_MONO_QUBITS.max(max_qubits)
                } else {
                    max_qubits
                };
                if union.len() <= limit {
                    let mut parts: Vec<(Matrix, Vec<usize>)> = vec![];
                    for &b in &owners {
                        if let Some(bm) = &blocks[b].matrix {
                            let pos = blocks[b]
                                .qubits
                                .iter()
                                .filter_map(|q| union.iter().position(|u| u == q))
                                .collect();
                            parts.push((bm.clone(), pos));
                        }
                    }
                    let pos = qs
                        .iter()
                        .filter_map(|q| union.iter().position(|u| u == q))
                        .collect();
                    parts.push((m.clone(), pos));
                    let nm = compose(union.len(), &parts);
                    let nop = classify(&nm, &union);
                    let gate_cost = gate_op.as_ref().map_or(0.0, |o| o.cost(vector));
                    let old = owners_cost(&owners, &blocks, vector) + gate_cost;
                    let new = nop.as_ref().map_or(0.0, |o| o.cost(vector));
                    if new <= old + 1e-9 {
                        let diag = diagonal_of(&nm);
                        let nb = Block {
                            qubits: union.clone(),
                            matrix: Some(nm),
                            diag,
                            op: nop,
                            alive: true,
                        };
                        let idx = if single_ok && !all_owned {
                            blocks[owners[0]] = nb;
                            owners[0]
                        } else {
                            for &b in &owners {
                                blocks[b].alive = false;
                            }
                            blocks.push(nb);
                            blocks.len() - 1
                        };
                        for &q in &union {
                            if owner[q].is_none()
                                || owners.contains(&owner[q].unwrap_or(usize::MAX))
                            {
                                owner[q] = Some(idx);
                            }
                        }
                        for &q in qs {
                            owner[q] = Some(idx);
                        }
                        merged = true;
                    }
                }
            }
        }
        if !merged {
            let small = qs.len() <= max_qubits;
            blocks.push(Block {
                qubits: qs.clone(),
                matrix: if small { Some(m.clone()) } else { None },
                diag: gdiag.clone(),
                op: classify(m, qs),
                alive: true,
            });
            let idx = blocks.len() - 1;
            for &q in qs {
                owner[q] = Some(idx);
            }
        }
    }
    for b in blocks {
        if b.alive
            && let Some(op) = b.op
        {
            out.push(Step::Op(op, None));
        }
    }
}

/// Steps to execute, and the terminal measurements as `(qubit, clbit)` pairs.
pub(crate) type Plan = (Vec<Step>, Vec<(usize, usize)>);

/// Options for planning.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PlanOptions {
    pub fusion: bool,
    pub max_fused_qubits: usize,
    /// Plan for the vector kernels (their cost model).
    pub vector: bool,
}

/// Turn a bound circuit into steps; terminal measurements are returned separately as
/// `(qubit, clbit)` pairs (they are sampled from the final state and do not collapse it).
pub(crate) fn plan(c: &Circuit, opts: PlanOptions) -> Result<Plan> {
    let insts = c.instructions();
    let nq = c.num_qubits();
    // A measurement is terminal when nothing later touches its qubit or its clbit and no later
    // instruction is conditioned.
    let mut terminal = vec![false; insts.len()];
    let mut touched_q = vec![false; nq];
    let mut touched_c = vec![false; c.num_clbits()];
    let mut cond_after = false;
    for (i, inst) in insts.iter().enumerate().rev() {
        if inst.op == Operation::Measure && inst.condition.is_none() && !cond_after {
            let (q, cb) = (inst.qubits[0], inst.clbits[0]);
            if !touched_q[q] && !touched_c[cb] {
                terminal[i] = true;
            }
        }
        if inst.condition.is_some() {
            cond_after = true;
        }
        if inst.op != Operation::Barrier {
            for &q in &inst.qubits {
                touched_q[q] = true;
            }
            for &cb in &inst.clbits {
                touched_c[cb] = true;
            }
        }
    }
    let mut steps = vec![];
    let mut finals = vec![];
    let mut run: Vec<(Matrix, Vec<usize>)> = vec![];
    let flush = |run: &mut Vec<(Matrix, Vec<usize>)>, steps: &mut Vec<Step>| {
        if opts.fusion {
            fuse(run, opts.max_fused_qubits, opts.vector, nq, steps);
        } else {
            for (m, qs) in run.iter() {
                if let Some(op) = classify(m, qs) {
                    steps.push(Step::Op(op, None));
                }
            }
        }
        run.clear();
    };
    for (i, inst) in insts.iter().enumerate() {
        match &inst.op {
            Operation::Barrier => {}
            Operation::Gate { kind, params } => {
                let mut vals = Vec::with_capacity(params.len());
                for p in params {
                    vals.push(p.eval(&|_| None)?);
                }
                if inst.condition.is_none() && inst.qubits.len() <= 5 {
                    run.push((kind.matrix(&vals), inst.qubits.clone()));
                } else {
                    flush(&mut run, &mut steps);
                    if let Some(op) = gate_op(*kind, &vals, &inst.qubits) {
                        steps.push(Step::Op(op, inst.condition));
                    }
                }
            }
            Operation::Measure => {
                if terminal[i] {
                    finals.push((inst.qubits[0], inst.clbits[0]));
                } else {
                    flush(&mut run, &mut steps);
                    steps.push(Step::Measure {
                        qubit: inst.qubits[0],
                        clbit: inst.clbits[0],
                        cond: inst.condition,
                    });
                }
            }
            Operation::Reset => {
                flush(&mut run, &mut steps);
                steps.push(Step::Reset {
                    qubit: inst.qubits[0],
                    cond: inst.condition,
                });
            }
        }
    }
    flush(&mut run, &mut steps);
    Ok((steps, finals))
}
