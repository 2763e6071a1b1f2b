//! In-place kernels on a contiguous block of amplitudes, with bit positions local to the block.
//!
//! Loops are written over `split_at_mut` halves and zipped iterators where the layout allows it,
//! so that the compiler can vectorise them without `unsafe`.

use num_complex::Complex;
use std::fmt::Debug;

/// Real scalar of the statevector (`f64` or `f32`).
pub trait Real:
    num_traits::Float + Send + Sync + Default + Debug + 'static + std::iter::Sum + num_traits::NumAssign
{
    /// Convert from f64 (rounding for f32).
    fn from_f64(v: f64) -> Self;
    /// Widen to f64.
    fn to_f64(self) -> f64;
}

impl Real for f64 {
    fn from_f64(v: f64) -> Self {
        v
    }
    fn to_f64(self) -> f64 {
        self
    }
}

impl Real for f32 {
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    fn to_f64(self) -> f64 {
        self as f64
    }
}

pub(crate) type C<T> = Complex<T>;

/// `acc + a * b`; with `F` the products are fused multiply-adds (only used where the CPU has FMA).
#[inline(always)]
fn cmac<T: Real, const F: bool>(acc: C<T>, a: C<T>, b: C<T>) -> C<T> {
    if F {
        C::new(
            a.re.mul_add(b.re, (-a.im).mul_add(b.im, acc.re)),
            a.re.mul_add(b.im, a.im.mul_add(b.re, acc.im)),
        )
    } else {
        acc + a * b
    }
}

#[inline(always)]
fn cmul<T: Real, const F: bool>(a: C<T>, b: C<T>) -> C<T> {
    if F {
        C::new(
            a.re.mul_add(b.re, -(a.im * b.im)),
            a.re.mul_add(b.im, a.im * b.re),
        )
    } else {
        a * b
    }
}

/// Spread the bits of `r` over the positions not in `holes` (sorted ascending).
#[inline(always)]
pub(crate) fn deposit(mut r: usize, holes: &[usize]) -> usize {
    for &h in holes {
        let low = r & ((1usize << h) - 1);
        r = low | ((r >> h) << (h + 1));
    }
    r
}

#[inline(always)]
fn offsets(tpos: &[usize], out: &mut [usize]) {
    for (l, o) in out.iter_mut().enumerate() {
        *o = tpos
            .iter()
            .enumerate()
            .map(|(j, p)| ((l >> j) & 1) << p)
            .sum();
    }
}

fn sorted_holes(tpos: &[usize], cmask: usize) -> Vec<usize> {
    let mut holes: Vec<usize> = tpos.to_vec();
    let mut m = cmask;
    while m != 0 {
        let b = m.trailing_zeros() as usize;
        holes.push(b);
        m &= m - 1;
    }
    holes.sort_unstable();
    holes
}

/// Dense matrix on `tpos` (matrix bit j = local bit `tpos[j]`), only where `cmask` bits are set.
#[inline(always)]
pub(crate) fn dense<T: Real, const F: bool>(
    buf: &mut [C<T>],
    tpos: &[usize],
    cmask: usize,
    m: &[C<T>],
) {
    let k = tpos.len();
    if k == 0 {
        return;
    }
    if cmask == 0 && (1..=3).contains(&k) {
        let lo = tpos.iter().copied().min().unwrap_or(0);
        let hi = tpos.iter().copied().max().unwrap_or(0);
        if lo >= 3 {
            match k {
                1 => return streams1::<T, F>(buf, tpos, m),
                2 => return streams2::<T, F>(buf, tpos, m),
                _ => return streams3::<T, F>(buf, tpos, m),
            }
        }
        if hi < 6 && buf.len() >= 64 {
            match k {
                1 => return table::<T, F, 2>(buf, tpos, m),
                2 => return table::<T, F, 4>(buf, tpos, m),
                _ => return table::<T, F, 8>(buf, tpos, m),
            }
        }
    }
    match k {
        1 if cmask == 0 => dense1::<T, F>(buf, tpos[0], m),
        1 => dense_n::<T, F, 2>(buf, tpos, cmask, m),
        2 if cmask == 0 && tpos[0].min(tpos[1]) >= 1 => dense2_streams::<T, F>(buf, tpos, m),
        2 => dense_n::<T, F, 4>(buf, tpos, cmask, m),
        3 => dense_n::<T, F, 8>(buf, tpos, cmask, m),
        4 => dense_n::<T, F, 16>(buf, tpos, cmask, m),
        5 => dense_n::<T, F, 32>(buf, tpos, cmask, m),
        _ => dense_dyn::<T, F>(buf, tpos, cmask, m),
    }
}

/// Lanes processed together: the loops below over `0..L` are what the compiler vectorises.
const L: usize = 8;

#[inline(always)]
fn fma<T: Real, const F: bool>(a: T, b: T, c: T) -> T {
    if F { a.mul_add(b, c) } else { a * b + c }
}

/// Reorder a `D×D` matrix so that its bit j follows `tpos` sorted ascending.
#[inline(always)]
fn sorted_matrix<T: Real, const D: usize>(
    tpos: &[usize],
    m: &[C<T>],
) -> ([usize; 3], [[C<T>; D]; D]) {
    let k = tpos.len();
    let mut order = [0usize; 3];
    for (j, o) in order.iter_mut().enumerate().take(k) {
        *o = j;
    }
    order[..k].sort_by_key(|&j| tpos[j]);
    let mut pos = [0usize; 3];
    for j in 0..k {
        pos[j] = tpos[order[j]];
    }
    // new index bit j = old bit order[j]
    let map = |x: usize| -> usize { (0..k).map(|j| ((x >> j) & 1) << order[j]).sum() };
    let mut mm = [[C::<T>::default(); D]; D];
    for (r, row) in mm.iter_mut().enumerate() {
        for (c, v) in row.iter_mut().enumerate() {
            *v = m[map(r) * D + map(c)];
        }
    }
    (pos, mm)
}

/// `out = M x` for `D` streams of equal length, `L` lanes at a time (structure of arrays in registers).
#[inline(always)]
fn lanes<T: Real, const F: bool, const D: usize>(s: &mut [&mut [C<T>]; D], m: &[[C<T>; D]; D]) {
    let len = s[0].len();
    let mut i = 0;
    while i + L <= len {
        let mut xr = [[T::zero(); L]; D];
        let mut xi = [[T::zero(); L]; D];
        for d in 0..D {
            let src = &s[d][i..i + L];
            for l in 0..L {
                xr[d][l] = src[l].re;
                xi[d][l] = src[l].im;
            }
        }
        for r in 0..D {
            let mut or = [T::zero(); L];
            let mut oi = [T::zero(); L];
            for c in 0..D {
                let (mr, mi) = (m[r][c].re, m[r][c].im);
                for l in 0..L {
                    or[l] = fma::<T, F>(mr, xr[c][l], or[l]);
                    or[l] = fma::<T, F>(-mi, xi[c][l], or[l]);
                    oi[l] = fma::<T, F>(mr, xi[c][l], oi[l]);
                    oi[l] = fma::<T, F>(mi, xr[c][l], oi[l]);
                }
            }
            let dst = &mut s[r][i..i + L];
            for l in 0..L {
                dst[l] = C::new(or[l], oi[l]);
            }
        }
        i += L;
    }
    while i < len {
        let mut v = [C::<T>::default(); D];
        for d in 0..D {
            v[d] = s[d][i];
        }
        for r in 0..D {
            let mut acc = C::<T>::default();
            for c in 0..D {
                acc = cmac::<T, F>(acc, m[r][c], v[c]);
            }
            s[r][i] = acc;
        }
        i += 1;
    }
}

#[inline(always)]
fn streams1<T: Real, const F: bool>(buf: &mut [C<T>], tpos: &[usize], m: &[C<T>]) {
    let (pos, mm) = sorted_matrix::<T, 2>(tpos, m);
    let h = 1usize << pos[0];
    for blk in buf.chunks_exact_mut(2 * h) {
        let (a, b) = blk.split_at_mut(h);
        lanes::<T, F, 2>(&mut [a, b], &mm);
    }
}

#[inline(always)]
fn streams2<T: Real, const F: bool>(buf: &mut [C<T>], tpos: &[usize], m: &[C<T>]) {
    let (pos, mm) = sorted_matrix::<T, 4>(tpos, m);
    let (ha, hb) = (1usize << pos[0], 1usize << pos[1]);
    for blk in buf.chunks_exact_mut(2 * hb) {
        let (lo, hi) = blk.split_at_mut(hb);
        for (l2, h2) in lo.chunks_exact_mut(2 * ha).zip(hi.chunks_exact_mut(2 * ha)) {
            let (s0, s1) = l2.split_at_mut(ha);
            let (s2, s3) = h2.split_at_mut(ha);
            lanes::<T, F, 4>(&mut [s0, s1, s2, s3], &mm);
        }
    }
}

#[inline(always)]
fn streams3<T: Real, const F: bool>(buf: &mut [C<T>], tpos: &[usize], m: &[C<T>]) {
    let (pos, mm) = sorted_matrix::<T, 8>(tpos, m);
    let (ha, hb, hc) = (1usize << pos[0], 1usize << pos[1], 1usize << pos[2]);
    for blk in buf.chunks_exact_mut(2 * hc) {
        let (lo, hi) = blk.split_at_mut(hc);
        for (l2, h2) in lo.chunks_exact_mut(2 * hb).zip(hi.chunks_exact_mut(2 * hb)) {
            let (l20, l21) = l2.split_at_mut(hb);
            let (h20, h21) = h2.split_at_mut(hb);
            let it = l20
                .chunks_exact_mut(2 * ha)
                .zip(l21.chunks_exact_mut(2 * ha))
                .zip(
                    h20.chunks_exact_mut(2 * ha)
                        .zip(h21.chunks_exact_mut(2 * ha)),
                );
            for ((a, b), (c, d)) in it {
                let (s0, s1) = a.split_at_mut(ha);
                let (s2, s3) = b.split_at_mut(ha);
                let (s4, s5) = c.split_at_mut(ha);
                let (s6, s7) = d.split_at_mut(ha);
                lanes::<T, F, 8>(&mut [s0, s1, s2, s3, s4, s5, s6, s7], &mm);
            }
        }
    }
}

/// Targets all below bit 6: gather `L` groups from a small block by a precomputed index table.
#[inline(always)]
fn table<T: Real, const F: bool, const D: usize>(buf: &mut [C<T>], tpos: &[usize], m: &[C<T>]) {
    let mut mm = [[C::<T>::default(); D]; D];
    for (r, row) in mm.iter_mut().enumerate() {
        row.copy_from_slice(&m[r * D..(r + 1) * D]);
    }
    let hi = tpos.iter().copied().max().unwrap_or(0);
    let groups_bits = (hi + 1).max(3 + D.trailing_zeros() as usize) - D.trailing_zeros() as usize;
    let block = D << groups_bits;
    let groups = 1usize << groups_bits;
    let mut holes: Vec<usize> = tpos.to_vec();
    holes.sort_unstable();
    let mut off = [0usize; D];
    offsets(tpos, &mut off);
    let bases: Vec<usize> = (0..groups).map(|g| deposit(g, &holes)).collect();
    for blk in buf.chunks_exact_mut(block) {
        for gb in bases.chunks_exact(L) {
            let mut xr = [[T::zero(); L]; D];
            let mut xi = [[T::zero(); L]; D];
            for d in 0..D {
                for l in 0..L {
                    let z = blk[gb[l] + off[d]];
                    xr[d][l] = z.re;
                    xi[d][l] = z.im;
                }
            }
            for r in 0..D {
                let mut or = [T::zero(); L];
                let mut oi = [T::zero(); L];
                for c in 0..D {
                    let (mr, mi) = (mm[r][c].re, mm[r][c].im);
                    for l in 0..L {
                        or[l] = fma::<T, F>(mr, xr[c][l], or[l]);
                        or[l] = fma::<T, F>(-mi, xi[c][l], or[l]);
                        oi[l] = fma::<T, F>(mr, xi[c][l], oi[l]);
                        oi[l] = fma::<T, F>(mi, xr[c][l], oi[l]);
                    }
                }
                for l in 0..L {
                    blk[gb[l] + off[r]] = C::new(or[l], oi[l]);
                }
            }
        }
    }
}

#[inline(always)]
fn dense1<T: Real, const F: bool>(buf: &mut [C<T>], t: usize, m: &[C<T>]) {
    let (m0, m1, m2, m3) = (m[0], m[1], m[2], m[3]);
    if t == 0 {
        for p in buf.chunks_exact_mut(2) {
            let (x, y) = (p[0], p[1]);
            p[0] = cmac::<T, F>(cmul::<T, F>(m0, x), m1, y);
            p[1] = cmac::<T, F>(cmul::<T, F>(m2, x), m3, y);
        }
        return;
    }
    let half = 1usize << t;
    for blk in buf.chunks_exact_mut(half * 2) {
        let (lo, hi) = blk.split_at_mut(half);
        for (a, b) in lo.iter_mut().zip(hi.iter_mut()) {
            let (x, y) = (*a, *b);
            *a = cmac::<T, F>(cmul::<T, F>(m0, x), m1, y);
            *b = cmac::<T, F>(cmul::<T, F>(m2, x), m3, y);
        }
    }
}

/// Two targets, both above bit 0: four contiguous streams per block.
#[inline(always)]
fn dense2_streams<T: Real, const F: bool>(buf: &mut [C<T>], tpos: &[usize], m: &[C<T>]) {
    // Order the targets so that `a < b`; permute the matrix to match.
    let (a, b, swap) = if tpos[0] < tpos[1] {
        (tpos[0], tpos[1], false)
    } else {
        (tpos[1], tpos[0], true)
    };
    let mut mm = [C::<T>::default(); 16];
    let map = |l: usize| if swap { ((l & 1) << 1) | (l >> 1) } else { l };
    for r in 0..4 {
        for c in 0..4 {
            mm[r * 4 + c] = m[map(r) * 4 + map(c)];
        }
    }
    let (ha, hb) = (1usize << a, 1usize << b);
    for blk in buf.chunks_exact_mut(hb * 2) {
        let (lo, hi) = blk.split_at_mut(hb);
        for (l2, h2) in lo.chunks_exact_mut(ha * 2).zip(hi.chunks_exact_mut(ha * 2)) {
            let (s0, s1) = l2.split_at_mut(ha);
            let (s2, s3) = h2.split_at_mut(ha);
            for (((x0, x1), x2), x3) in s0
                .iter_mut()
                .zip(s1.iter_mut())
                .zip(s2.iter_mut())
                .zip(s3.iter_mut())
            {
                let v = [*x0, *x1, *x2, *x3];
                let row = |r: usize| {
                    cmac::<T, F>(
                        cmac::<T, F>(
                            cmac::<T, F>(cmul::<T, F>(mm[r * 4], v[0]), mm[r * 4 + 1], v[1]),
                            mm[r * 4 + 2],
                            v[2],
                        ),
                        mm[r * 4 + 3],
                        v[3],
                    )
                };
                *x0 = row(0);
                *x1 = row(1);
                *x2 = row(2);
                *x3 = row(3);
            }
        }
    }
}

#[inline(always)]
fn dense_n<T: Real, const F: bool, const D: usize>(
    buf: &mut [C<T>],
    tpos: &[usize],
    cmask: usize,
    m: &[C<T>],
) {
    let holes = sorted_holes(tpos, cmask);
    let mut off = [0usize; D];
    offsets(tpos, &mut off);
    let mut mat = [[C::<T>::default(); D]; D];
    for (r, row) in mat.iter_mut().enumerate() {
        row.copy_from_slice(&m[r * D..(r + 1) * D]);
    }
    let h0 = holes[0];
    let inner = 1usize << h0;
    let outer = (buf.len() >> holes.len()) >> h0;
    let mut v = [C::<T>::default(); D];
    for ro in 0..outer {
        let base = deposit(ro << h0, &holes) | cmask;
        for i in base..base + inner {
            for (x, o) in v.iter_mut().zip(off.iter()) {
                *x = buf[i + o];
            }
            for (row, o) in mat.iter().zip(off.iter()) {
                let mut acc = C::<T>::default();
                for (a, x) in row.iter().zip(v.iter()) {
                    acc = cmac::<T, F>(acc, *a, *x);
                }
                buf[i + o] = acc;
            }
        }
    }
}

fn dense_dyn<T: Real, const F: bool>(buf: &mut [C<T>], tpos: &[usize], cmask: usize, m: &[C<T>]) {
    let d = 1usize << tpos.len();
    let holes = sorted_holes(tpos, cmask);
    let mut off = vec![0usize; d];
    offsets(tpos, &mut off);
    let mut v = vec![C::<T>::default(); d];
    let count = buf.len() >> holes.len();
    for r in 0..count {
        let base = deposit(r, &holes) | cmask;
        for (x, o) in v.iter_mut().zip(off.iter()) {
            *x = buf[base + o];
        }
        for (r2, o) in off.iter().enumerate() {
            let mut acc = C::<T>::default();
            for (c2, x) in v.iter().enumerate() {
                acc = cmac::<T, F>(acc, m[r2 * d + c2], *x);
            }
            buf[base + o] = acc;
        }
    }
}

/// Monomial matrix: column c moves to row `perm[c]`, times `phase[c]`.
#[inline(always)]
pub(crate) fn mono<T: Real>(
    buf: &mut [C<T>],
    tpos: &[usize],
    cmask: usize,
    perm: &[usize],
    phase: &[C<T>],
) {
    let d = 1usize << tpos.len();
    let one = C::<T>::new(T::one(), T::zero());
    // X-like on one target: a plain swap of halves.
    if tpos.len() == 1 && perm[0] == 1 && phase.iter().all(|p| *p == one) {
        let t = tpos[0];
        if cmask == 0 && t > 0 {
            let half = 1usize << t;
            for blk in buf.chunks_exact_mut(half * 2) {
                let (lo, hi) = blk.split_at_mut(half);
                lo.swap_with_slice(hi);
            }
            return;
        }
        let holes = sorted_holes(tpos, cmask);
        let h0 = holes[0];
        let inner = 1usize << h0;
        let outer = (buf.len() >> holes.len()) >> h0;
        let o = 1usize << t;
        for ro in 0..outer {
            let base = deposit(ro << h0, &holes) | cmask;
            for i in base..base + inner {
                buf.swap(i, i + o);
            }
        }
        return;
    }
    let holes = sorted_holes(tpos, cmask);
    let mut off = vec![0usize; d];
    offsets(tpos, &mut off);
    let mut v = vec![C::<T>::default(); d];
    let count = buf.len() >> holes.len();
    for r in 0..count {
        let base = deposit(r, &holes) | cmask;
        for (x, o) in v.iter_mut().zip(off.iter()) {
            *x = buf[base + o];
        }
        for c in 0..d {
            buf[base + off[perm[c]]] = phase[c] * v[c];
        }
    }
}

/// Diagonal: amplitude i gets `d[fixed | Σ bit(i, pos[j]) << jbit[j]]`, only where `cmask` is set.
#[inline(always)]
pub(crate) fn diag<T: Real>(
    buf: &mut [C<T>],
    pos: &[usize],
    jbit: &[usize],
    fixed: usize,
    cmask: usize,
    d: &[C<T>],
) {
    if cmask == 0 && pos.len() == 1 {
        let (d0, d1) = (d[fixed], d[fixed | (1 << jbit[0])]);
        let half = 1usize << pos[0];
        let one = C::<T>::new(T::one(), T::zero());
        for blk in buf.chunks_exact_mut(half * 2) {
            let (lo, hi) = blk.split_at_mut(half);
            if d0 != one {
                lo.iter_mut().for_each(|x| *x *= d0);
            }
            if d1 != one {
                hi.iter_mut().for_each(|x| *x *= d1);
            }
        }
        return;
    }
    if pos.len() + cmask.count_ones() as usize <= 2 {
        return diag_patterns(buf, pos, jbit, fixed, cmask, d);
    }
    if pos.is_empty() {
        let f = d[fixed];
        if cmask == 0 {
            buf.iter_mut().for_each(|x| *x *= f);
            return;
        }
        let holes = sorted_holes(&[], cmask);
        let h0 = holes[0];
        let inner = 1usize << h0;
        let outer = (buf.len() >> holes.len()) >> h0;
        for ro in 0..outer {
            let base = deposit(ro << h0, &holes) | cmask;
            buf[base..base + inner].iter_mut().for_each(|x| *x *= f);
        }
        return;
    }
    // Two-level index: the bits below 6 come from a 64-entry table, the others are constant
    // over each run of 64 amplitudes.
    const RUN: usize = 64;
    let mut lo_tab = [0usize; RUN];
    for (r, t) in lo_tab.iter_mut().enumerate() {
        *t = pos
            .iter()
            .zip(jbit)
            .filter(|(p, _)| **p < 6)
            .map(|(p, j)| ((r >> p) & 1) << j)
            .sum();
    }
    let (cm_lo, cm_hi) = (cmask & (RUN - 1), cmask & !(RUN - 1));
    for (bi, blk) in buf.chunks_mut(RUN).enumerate() {
        let base = bi * RUN;
        if base & cm_hi != cm_hi {
            continue;
        }
        let hi = fixed
            | pos
                .iter()
                .zip(jbit)
                .filter(|(p, _)| **p >= 6)
                .map(|(p, j)| ((base >> p) & 1) << j)
                .sum::<usize>();
        if cm_lo == 0 {
            for (x, t) in blk.iter_mut().zip(lo_tab.iter()) {
                *x *= d[hi | t];
            }
        } else {
            for (r, (x, t)) in blk.iter_mut().zip(lo_tab.iter()).enumerate() {
                if r & cm_lo == cm_lo {
                    *x *= d[hi | t];
                }
            }
        }
    }
}

/// Multiply by `f` the amplitudes whose local bits `bits` (1 or 2, ascending) equal `vals`:
/// nested contiguous runs, no per-element index arithmetic.
#[inline(always)]
fn scale_pattern<T: Real>(buf: &mut [C<T>], bits: &[usize], vals: &[bool], f: C<T>) {
    let pick = |half: usize, v: bool| -> std::ops::Range<usize> {
        if v { half..2 * half } else { 0..half }
    };
    match bits.len() {
        1 => {
            let h = 1usize << bits[0];
            for blk in buf.chunks_exact_mut(2 * h) {
                let r = pick(h, vals[0]);
                blk[r].iter_mut().for_each(|x| *x *= f);
            }
        }
        _ => {
            let (ha, hb) = (1usize << bits[0], 1usize << bits[1]);
            for blk in buf.chunks_exact_mut(2 * hb) {
                let rb = pick(hb, vals[1]);
                for sub in blk[rb].chunks_exact_mut(2 * ha) {
                    let ra = pick(ha, vals[0]);
                    sub[ra].iter_mut().for_each(|x| *x *= f);
                }
            }
        }
    }
}

/// Diagonal with at most two local bits (targets and controls together).
#[inline(always)]
fn diag_patterns<T: Real>(
    buf: &mut [C<T>],
    pos: &[usize],
    jbit: &[usize],
    fixed: usize,
    cmask: usize,
    d: &[C<T>],
) {
    let one = C::<T>::new(T::one(), T::zero());
    // Local bits: targets (with their diagonal index bit) then controls (must be 1).
    let mut bits: Vec<(usize, Option<usize>)> =
        pos.iter().zip(jbit).map(|(&p, &j)| (p, Some(j))).collect();
    let mut m = cmask;
    while m != 0 {
        bits.push((m.trailing_zeros() as usize, None));
        m &= m - 1;
    }
    bits.sort_unstable_by_key(|b| b.0);
    if bits.is_empty() {
        let f = d[fixed];
        if f != one {
            buf.iter_mut().for_each(|x| *x *= f);
        }
        return;
    }
    let nb = bits.len();
    let positions: Vec<usize> = bits.iter().map(|b| b.0).collect();
    for pat in 0..(1usize << nb) {
        let vals: Vec<bool> = (0..nb).map(|i| (pat >> i) & 1 == 1).collect();
        let mut idx = fixed;
        let mut ok = true;
        for (i, (_, role)) in bits.iter().enumerate() {
            match role {
                Some(j) => {
                    if vals[i] {
                        idx |= 1 << j;
                    }
                }
                None => ok &= vals[i],
            }
        }
        if !ok {
            continue;
        }
        let f = d[idx];
        if f != one {
            scale_pattern(buf, &positions, &vals, f);
        }
    }
}
