//! Vector plans: one op laid out for SIMD kernels that hold `W` consecutive amplitudes per
//! register.
//!
//! The kernels in `simd` never look at a matrix. An op is turned, once per pass, into
//! *lane coefficients*: with `x[c]` the register of `W` amplitudes at offset `off[c]` of a group
//! and `P_m` the lane permutation `i -> i ^ m` (for `m` a combination of the op's targets below
//! `log2 W`), every output register is
//!
//! ```text
//! out[r] = Σ_(c, m) w[r][c][m] ⊙ P_m(x[c])
//! ```
//!
//! with `w` a vector of `W` complex numbers (one per lane). This one form covers dense,
//! diagonal and permutation matrices, controls inside or outside the register, and targets at
//! any bit position; the cost is two fused multiply-adds per term and register, so a dense
//! `k`-qubit op costs `2^k` complex multiply-adds per amplitude wherever its targets lie.

use super::engine::KindT;
use super::kernels::{C, Real};

/// Most `(c, m)` input registers a non-diagonal plan may read per group (a dense 5-qubit op).
pub(crate) const MAX_PAIRS: usize = 32;

/// Marks a term whose coefficient is 1 in every lane (an add, no multiply).
pub(crate) const UNIT: u32 = u32::MAX;

/// One term of a sparse row: input register `pair` (= `c * nm + mi`) times coefficient `coef`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Term {
    pub pair: u16,
    pub coef: u32,
}

/// A term while the plan is built: input pair, lane coefficients, whether they are all 1.
type RowTerm<T> = (usize, Vec<C<T>>, bool);

/// How the kernel walks the terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    /// Elementwise: `out[r] = w[r] ⊙ x[r]` (diagonal ops); any number of registers per group.
    Diagonal,
    /// Every `(r, pair)` coefficient stored, at `coef[r * pairs + pair]`.
    Full,
    /// Only the nonzero terms, row by row (`rows[r]` is a range of `terms`).
    Sparse,
}

/// An op prepared for one block layout.
#[derive(Debug, Clone)]
pub(crate) struct VecPlan<T> {
    /// Bits the group counter steps over: the lane bits, high targets and high controls.
    pub mask: usize,
    /// High control bits, set in every group's base index.
    pub cbase: usize,
    /// Offsets (in amplitudes) of the group's registers, `DH` of them.
    pub off: Vec<usize>,
    /// Lane masks `m` in use, `masks[0] == 0`.
    pub masks: Vec<usize>,
    /// Input registers read per group (`off.len() * masks.len()`).
    pub pairs: usize,
    /// Which `(c, m)` registers some term reads.
    pub used: Vec<bool>,
    /// Which `(c, m)` registers some term multiplies (and so needs with `re`, `im` swapped).
    pub used_swapped: Vec<bool>,
    /// Sparse layout: rows that are one input register as it is (a permutation), by pair.
    pub copy: Vec<Option<u16>>,
    /// Rows whose output equals their input (no store).
    pub skip: Vec<bool>,
    /// Sparse layout: per row, the range of its terms.
    pub rows: Vec<(u32, u32)>,
    pub terms: Vec<Term>,
    /// Coefficients, `4 W` reals each: `W` lanes of `(re, re)` then `W` lanes of `(-im, im)`.
    pub coef: Vec<T>,
    pub layout: Layout,
}

#[cfg(test)]
impl<T: Real> VecPlan<T> {
    /// Number of registers per group.
    pub fn dh(&self) -> usize {
        self.off.len()
    }
}

/// The op's matrix entry for local target indices `row`, `col` (local bit `q` = matrix bit
/// `tj[q]`; the bits of `fixed` are set in the matrix index).
fn entry<T: Real>(kind: &KindT<T>, tj: &[usize], fixed: usize, row: usize, col: usize) -> C<T> {
    let full = |x: usize| -> usize {
        tj.iter()
            .enumerate()
            .fold(fixed, |acc, (q, &j)| acc | (((x >> q) & 1) << j))
    };
    let zero = C::<T>::default();
    match kind {
        KindT::Dense(m) => {
            let d = 1usize << tj.len();
            m.get(full(row) * d + full(col)).copied().unwrap_or(zero)
        }
        KindT::Diag(d) => {
            if row == col {
                d.get(full(row)).copied().unwrap_or(zero)
            } else {
                zero
            }
        }
        KindT::Mono { perm, phase } => {
            let (fr, fc) = (full(row), full(col));
            if perm.get(fc) == Some(&fr) {
                phase.get(fc).copied().unwrap_or(zero)
            } else {
                zero
            }
        }
    }
}

/// Prepare `kind` acting on local bit positions `tpos` (matrix bits `tj`, the rest fixed to
/// `fixed`), where every local control in `lcmask` is 1, for registers of `w` amplitudes in a
/// block of `2^nbits`. `None` when the layout does not suit the vector kernels.
pub(crate) fn build<T: Real>(
    kind: &KindT<T>,
    tpos: &[usize],
    tj: &[usize],
    fixed: usize,
    lcmask: usize,
    w: usize,
    nbits: usize,
) -> Option<VecPlan<T>> {
    let lb = w.trailing_zeros() as usize;
    if nbits < lb || tpos.is_empty() && lcmask == 0 && !matches!(kind, KindT::Diag(_)) {
        return None;
    }
    let diagonal = matches!(kind, KindT::Diag(_));
    let lane_bits = w - 1;
    let low_c = lcmask & lane_bits;
    let high_c = lcmask & !lane_bits;
    // High targets in ascending position order; row/column bit h is highq[h].
    let mut highq: Vec<usize> = (0..tpos.len()).filter(|&q| tpos[q] >= lb).collect();
    highq.sort_unstable_by_key(|&q| tpos[q]);
    let lowq: Vec<usize> = (0..tpos.len()).filter(|&q| tpos[q] < lb).collect();
    let lowmask: usize = lowq.iter().map(|&q| 1usize << tpos[q]).sum();
    let dh = 1usize << highq.len();
    let off: Vec<usize> = (0..dh)
        .map(|r| {
            highq
                .iter()
                .enumerate()
                .map(|(h, &q)| ((r >> h) & 1) << tpos[q])
                .sum()
        })
        .collect();
    // All subsets of the low target bits, 0 first.
    let mut masks = vec![0usize];
    let mut sub = lowmask;
    while sub != 0 {
        masks.push(sub);
        sub = (sub - 1) & lowmask;
    }
    masks[1..].sort_unstable();
    if diagonal {
        masks.truncate(1);
    }
    let nm = masks.len();
    let pairs = dh * nm;
    if !diagonal && pairs > MAX_PAIRS {
        return None;
    }
    let local = |r: usize, lane: usize| -> usize {
        let mut x = 0;
        for (h, &q) in highq.iter().enumerate() {
            x |= ((r >> h) & 1) << q;
        }
        for &q in &lowq {
            x |= ((lane >> tpos[q]) & 1) << q;
        }
        x
    };
    let one = C::<T>::new(T::one(), T::zero());
    let zero = C::<T>::default();
    let tiny = T::from_f64(1e-30);
    let lane_coef = |r: usize, c: usize, m: usize, lane: usize| -> C<T> {
        if lane & low_c != low_c {
            if r == c && m == 0 { one } else { zero }
        } else {
            entry(kind, tj, fixed, local(r, lane), local(c, lane ^ m))
        }
    };
    let mut plan = VecPlan {
        mask: lane_bits | off.iter().fold(0, |a, &o| a | o) | high_c,
        cbase: high_c,
        off: off.clone(),
        masks: masks.clone(),
        pairs,
        used: vec![false; pairs],
        used_swapped: vec![false; pairs],
        copy: vec![None; dh],
        skip: vec![false; dh],
        rows: Vec::with_capacity(dh),
        terms: vec![],
        coef: vec![],
        layout: Layout::Sparse,
    };
    let push_coef = |coef: &mut Vec<T>, ws: &[C<T>]| {
        for z in ws {
            coef.push(z.re);
            coef.push(z.re);
        }
        for z in ws {
            coef.push(-z.im);
            coef.push(z.im);
        }
    };
    let mut ws = vec![zero; w];
    // Gather every row's terms first, then pick the layout.
    let mut rows: Vec<Vec<RowTerm<T>>> = Vec::with_capacity(dh);
    let mut nonzero = 0usize;
    for r in 0..dh {
        let mut row = vec![];
        let cands: Vec<usize> = if diagonal { vec![r] } else { (0..dh).collect() };
        for c in cands {
            for (mi, &m) in masks.iter().enumerate() {
                for (lane, wl) in ws.iter_mut().enumerate() {
                    *wl = lane_coef(r, c, m, lane);
                }
                if ws.iter().all(|z| z.norm_sqr() < tiny) {
                    continue;
                }
                let unit = ws.iter().all(|z| *z == one);
                row.push((c * nm + mi, ws.clone(), unit));
            }
        }
        nonzero += row.len();
        rows.push(row);
    }
    if diagonal {
        plan.layout = Layout::Diagonal;
        let (ones, zeros) = (vec![one; w], vec![zero; w]);
        for (r, row) in rows.iter().enumerate() {
            match row.as_slice() {
                [(_, _, true)] => {
                    plan.skip[r] = true;
                    push_coef(&mut plan.coef, &ones);
                }
                [(_, ws, false)] => push_coef(&mut plan.coef, ws),
                _ => push_coef(&mut plan.coef, &zeros),
            }
        }
        return Some(plan);
    }
    for (r, row) in rows.iter().enumerate() {
        if row.len() == 1 && row[0].2 && row[0].0 == r * nm {
            plan.skip[r] = true;
            continue;
        }
        for t in row {
            plan.used[t.0] = true;
            plan.used_swapped[t.0] |= !t.2;
        }
        if let [(p, _, true)] = row.as_slice() {
            plan.copy[r] = Some(*p as u16);
        }
    }
    if nonzero * 2 >= dh * pairs {
        plan.layout = Layout::Full;
        let zeros = vec![zero; w];
        for row in &rows {
            let mut it = row.iter().peekable();
            for p in 0..pairs {
                match it.peek() {
                    Some((pp, ws, _)) if *pp == p => {
                        push_coef(&mut plan.coef, ws);
                        it.next();
                    }
                    _ => push_coef(&mut plan.coef, &zeros),
                }
            }
        }
        // Every register is read in the full layout.
        plan.used.iter_mut().for_each(|u| *u = true);
        plan.used_swapped.iter_mut().for_each(|u| *u = true);
    } else {
        for row in &rows {
            let start = plan.terms.len() as u32;
            for (p, ws, unit) in row {
                let coef = if *unit {
                    UNIT
                } else {
                    let i = (plan.coef.len() / (4 * w)) as u32;
                    push_coef(&mut plan.coef, ws);
                    i
                };
                plan.terms.push(Term {
                    pair: *p as u16,
                    coef,
                });
            }
            plan.rows.push((start, plan.terms.len() as u32));
        }
    }
    Some(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use num_complex::Complex64;

    /// Apply a plan lane by lane (the kernels' arithmetic without SIMD), for checking `build`.
    fn apply_ref(p: &VecPlan<f64>, w: usize, buf: &mut [Complex64]) {
        let n = buf.len();
        let coef = |i: usize, lane: usize| -> Complex64 {
            let b = i * 4 * w;
            Complex64::new(p.coef[b + 2 * lane], p.coef[b + 2 * w + 2 * lane + 1])
        };
        let mut base = 0usize;
        while base < n {
            let g = base | p.cbase;
            let x: Vec<Vec<Complex64>> = p
                .off
                .iter()
                .map(|o| buf[g + o..g + o + w].to_vec())
                .collect();
            let input = |pair: usize, lane: usize| {
                let (c, mi) = (pair / p.masks.len(), pair % p.masks.len());
                x[c][lane ^ p.masks[mi]]
            };
            for r in 0..p.dh() {
                if p.skip[r] {
                    continue;
                }
                for lane in 0..w {
                    let v = match p.layout {
                        Layout::Diagonal => coef(r, lane) * x[r][lane],
                        Layout::Full => (0..p.pairs)
                            .map(|q| coef(r * p.pairs + q, lane) * input(q, lane))
                            .sum(),
                        Layout::Sparse => {
                            let (s, e) = p.rows[r];
                            p.terms[s as usize..e as usize]
                                .iter()
                                .map(|t| {
                                    let z = input(t.pair as usize, lane);
                                    if t.coef == UNIT {
                                        z
                                    } else {
                                        coef(t.coef as usize, lane) * z
                                    }
                                })
                                .sum()
                        }
                    };
                    buf[g + p.off[r] + lane] = v;
                }
            }
            base = ((base | p.mask) + 1) & !p.mask;
        }
    }

    /// Reference: apply a dense matrix on `tpos` under controls `cmask`, amplitude by amplitude.
    fn apply_dense_ref(buf: &mut [Complex64], tpos: &[usize], cmask: usize, m: &[Complex64]) {
        let k = tpos.len();
        let d = 1usize << k;
        let tmask: usize = tpos.iter().map(|p| 1usize << p).sum();
        for base in 0..buf.len() {
            if base & tmask != 0 || base & cmask != cmask {
                continue;
            }
            let idx = |x: usize| -> usize {
                base | (0..k).map(|j| ((x >> j) & 1) << tpos[j]).sum::<usize>()
            };
            let v: Vec<Complex64> = (0..d).map(|x| buf[idx(x)]).collect();
            for r in 0..d {
                buf[idx(r)] = (0..d).map(|c| m[r * d + c] * v[c]).sum();
            }
        }
    }

    fn state(n: usize) -> Vec<Complex64> {
        (0..1usize << n)
            .map(|i| Complex64::new((i as f64 * 0.37).sin(), (i as f64 * 0.11).cos()))
            .collect()
    }

    fn matrix(d: usize, seed: f64) -> Vec<Complex64> {
        (0..d * d)
            .map(|i| Complex64::new((i as f64 + seed).sin(), (i as f64 * 1.7 + seed).cos()))
            .collect()
    }

    /// Dense ops on every mix of low (in-register) and high targets and controls match the
    /// amplitude-by-amplitude product, for register widths 2, 4 and 8.
    #[test]
    fn plans_match_the_matrix_product() {
        let n = 7;
        let cases: &[(&[usize], usize)] = &[
            (&[0], 0),
            (&[1], 0),
            (&[4], 0),
            (&[0, 1], 0),
            (&[1, 0], 0),
            (&[2, 0], 0),
            (&[5, 1], 0),
            (&[3, 6], 0),
            (&[0, 5, 2], 0),
            (&[6, 2, 4], 0),
            (&[1], 1 << 0),
            (&[4], 1 << 1),
            (&[0], 1 << 5),
            (&[3, 0], (1 << 1) | (1 << 6)),
            (&[2, 1, 0], 0),
            (&[6, 5, 4, 3, 1], 0),
        ];
        for &w in &[2usize, 4, 8] {
            for (ci, &(tpos, cmask)) in cases.iter().enumerate() {
                let d = 1usize << tpos.len();
                let m = matrix(d, ci as f64);
                let tj: Vec<usize> = (0..tpos.len()).collect();
                let kind = KindT::Dense(m.clone());
                let Some(p) = build(&kind, tpos, &tj, 0, cmask, w, n) else {
                    assert!(tpos.len() == 5 && w == 8, "no plan for {tpos:?} w={w}");
                    continue;
                };
                let mut a = state(n);
                let mut b = a.clone();
                apply_ref(&p, w, &mut a);
                apply_dense_ref(&mut b, tpos, cmask, &m);
                for (x, y) in a.iter().zip(&b) {
                    assert!((x - y).norm() < 1e-12, "{tpos:?} c={cmask:b} w={w}");
                }
            }
        }
    }

    /// Diagonal and permutation ops, including diagonal bits fixed from outside the block.
    #[test]
    fn diagonal_and_permutation_plans() {
        let n = 6;
        let dg: Vec<Complex64> = (0..8)
            .map(|i| Complex64::from_polar(1.0, i as f64 * 0.3))
            .collect();
        for &w in &[2usize, 4, 8] {
            // Diagonal over local bits 0 and 4; matrix bit 1 fixed to 1 from outside.
            let kind = KindT::Diag(dg.clone());
            let p = build(&kind, &[0, 4], &[0, 2], 1 << 1, 0, w, n).expect("diagonal plan");
            let mut a = state(n);
            let b0 = a.clone();
            apply_ref(&p, w, &mut a);
            for i in 0..1usize << n {
                let di = (i & 1) | (1 << 1) | (((i >> 4) & 1) << 2);
                assert!((a[i] - dg[di] * b0[i]).norm() < 1e-12);
            }
            // SWAP of local bits 1 and 3 (a permutation) as a monomial op.
            let kind = KindT::Mono {
                perm: vec![0, 2, 1, 3],
                phase: vec![Complex64::new(1.0, 0.0); 4],
            };
            let p = build(&kind, &[1, 3], &[0, 1], 0, 0, w, n).expect("permutation plan");
            let mut a = state(n);
            apply_ref(&p, w, &mut a);
            let s = state(n);
            for (i, ai) in a.iter().enumerate() {
                let j = (i & !0b1010) | (((i >> 1) & 1) << 3) | (((i >> 3) & 1) << 1);
                assert_eq!(*ai, s[j]);
            }
        }
    }
}
