//! SIMD kernels (AVX-512 and AVX2 with FMA, chosen at run time) and the dispatch to them.
//!
//! This is the only module that uses `unsafe`, for three things: calling `#[target_feature]`
//! functions (undefined behaviour on a CPU without the features, so each call is made only
//! after `is_x86_feature_detected!` confirmed them), unaligned vector loads and stores (each on
//! a slice whose length was checked), and viewing `[Complex<T>]` as `[T]` (`Complex` is
//! `#[repr(C)]` with two fields, so `n` complex numbers are `2n` reals at the same address).
//!
//! The vector kernels evaluate a [`VecPlan`]: `out[r] = Σ w ⊙ P_m(x[c])` on interleaved
//! `(re, im)` registers, two fused multiply-adds per term (the real part of `w` duplicated, then
//! its imaginary part with alternating sign times the register with `re` and `im` swapped).
#![allow(unsafe_code)]

use super::Kernels;
use super::engine::LocalOp;
use super::kernels::{C, Real};
use super::vector::VecPlan;
use crate::error::{Error, Result};
use std::any::TypeId;

/// The kernel family an execution uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    /// The auto-vectorised kernels of `kernels` (compiled a second time with AVX2/FMA).
    Portable,
    /// 256-bit registers with FMA.
    Avx2,
    /// 512-bit registers.
    Avx512,
}

impl Backend {
    /// Amplitudes per register for reals of `bytes` bytes (0 = no vector kernels).
    pub fn width(self, bytes: usize) -> usize {
        match (self, bytes) {
            (Backend::Avx512, 8) => 4,
            (Backend::Avx512, 4) => 8,
            (Backend::Avx2, 8) => 2,
            (Backend::Avx2, 4) => 4,
            _ => 0,
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn detect() -> (bool, bool) {
    use std::sync::OnceLock;
    static HAS: OnceLock<(bool, bool)> = OnceLock::new();
    *HAS.get_or_init(|| {
        let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
        (avx2, avx2 && is_x86_feature_detected!("avx512f"))
    })
}

#[cfg(not(target_arch = "x86_64"))]
fn detect() -> (bool, bool) {
    (false, false)
}

/// Whether `ATOM_QUANTUM_NO_SIMD` is set (read once: the portable path asks per op).
fn no_simd() -> bool {
    use std::sync::OnceLock;
    static NO: OnceLock<bool> = OnceLock::new();
    *NO.get_or_init(|| std::env::var_os("ATOM_QUANTUM_NO_SIMD").is_some())
}

/// The backend for a request: `Auto` takes the widest the CPU has (and `Portable` when
/// `ATOM_QUANTUM_NO_SIMD` is set); asking for one the CPU lacks is an error.
pub(crate) fn resolve(k: Kernels) -> Result<Backend> {
    let (avx2, avx512) = detect();
    match k {
        Kernels::Auto if no_simd() => Ok(Backend::Portable),
        Kernels::Auto if avx512 => Ok(Backend::Avx512),
        Kernels::Auto if avx2 => Ok(Backend::Avx2),
        Kernels::Auto | Kernels::Portable => Ok(Backend::Portable),
        Kernels::Avx2 if avx2 => Ok(Backend::Avx2),
        Kernels::Avx512 if avx512 => Ok(Backend::Avx512),
        Kernels::Avx2 => Err(Error::Backend("this CPU has no AVX2 and FMA".into())),
        Kernels::Avx512 => Err(Error::Backend("this CPU has no AVX-512".into())),
    }
}

/// The reals of a complex slice, when `T` is `R`.
fn reals_mut<T: Real, R: 'static>(buf: &mut [C<T>]) -> Option<&mut [R]> {
    if TypeId::of::<T>() != TypeId::of::<R>() {
        return None;
    }
    let len = buf.len() * 2;
    // SAFETY: `T` and `R` are the same type (checked above); `Complex<T>` is `#[repr(C)]`
    // `{ re: T, im: T }`, so the slice's `len / 2` elements are `len` consecutive `T`s with
    // `T`'s alignment, and the returned slice borrows `buf` mutably for its whole life.
    Some(unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast::<R>(), len) })
}

/// A slice of `T` as a slice of `R`, when they are the same type.
fn same<T: 'static, R: 'static>(s: &[T]) -> Option<&[R]> {
    if TypeId::of::<T>() != TypeId::of::<R>() {
        return None;
    }
    // SAFETY: `T` and `R` are the same type (checked above).
    Some(unsafe { std::slice::from_raw_parts(s.as_ptr().cast::<R>(), s.len()) })
}

/// Run a plan on `buf` with the vector kernels; `false` when this backend cannot (then the
/// caller uses the portable kernels).
fn run_plan<T: Real>(backend: Backend, plan: &VecPlan<T>, buf: &mut [C<T>]) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        let (avx2, avx512) = detect();
        if let (Some(b), Some(coef)) = (reals_mut::<T, f64>(buf), same::<T, f64>(&plan.coef)) {
            // SAFETY (both calls): the features each backend needs were detected at run time.
            return match backend {
                Backend::Avx512 if avx512 => unsafe { x86::avx512_f64::run(plan, coef, b) },
                Backend::Avx2 if avx2 => unsafe { x86::avx2_f64::run(plan, coef, b) },
                _ => false,
            };
        }
        if let (Some(b), Some(coef)) = (reals_mut::<T, f32>(buf), same::<T, f32>(&plan.coef)) {
            // SAFETY (both calls): the features each backend needs were detected at run time.
            return match backend {
                Backend::Avx512 if avx512 => unsafe { x86::avx512_f32::run(plan, coef, b) },
                Backend::Avx2 if avx2 => unsafe { x86::avx2_f32::run(plan, coef, b) },
                _ => false,
            };
        }
    }
    let _ = (backend, plan, buf);
    false
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn apply_portable_avx2<T: Real>(op: &LocalOp<'_, T>, buf: &mut [C<T>], base: usize) {
    op.apply_with::<true>(buf, base);
}

fn apply_portable<T: Real>(op: &LocalOp<'_, T>, buf: &mut [C<T>], base: usize) {
    #[cfg(target_arch = "x86_64")]
    if detect().0 && !no_simd() {
        // SAFETY: `detect` checked at run time that this CPU supports AVX2 and FMA, the only
        // requirement of `apply_portable_avx2`; its body is safe Rust.
        unsafe { apply_portable_avx2(op, buf, base) };
        return;
    }
    op.apply_with::<false>(buf, base);
}

/// Apply `ops` in order to one block whose first amplitude has global index `base`.
pub(crate) fn apply_all<T: Real>(
    ops: &[LocalOp<'_, T>],
    buf: &mut [C<T>],
    base: usize,
    backend: Backend,
) {
    for op in ops {
        if !op.active(base) {
            continue;
        }
        if backend != Backend::Portable {
            if let Some(p) = &op.vplan {
                if run_plan(backend, p, buf) {
                    continue;
                }
            } else if let Some(p) = op.task_plan(base, backend, buf.len())
                && run_plan(backend, &p, buf)
            {
                continue;
            }
        }
        apply_portable(op, buf, base);
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! One module per (register width, precision); the kernel bodies are shared by `kernels!`.

    /// The kernels over a backend's primitives `ld`, `st`, `fma`, `mul`, `add`, `zero`,
    /// `perm` and `idx` (defined in the invoking module, with the same target features).
    macro_rules! kernels {
        ($feat:literal) => {
            use crate::sim::vector::{Layout, MAX_PAIRS, UNIT, VecPlan};

            /// Source real index of each real of a register for lane mask `m` (`swap`: with
            /// `re` and `im` exchanged).
            fn lanes(m: usize, swap: bool) -> [usize; 2 * W] {
                let mut out = [0usize; 2 * W];
                for (j, o) in out.iter_mut().enumerate() {
                    let (lane, part) = (j / 2, j % 2);
                    *o = 2 * (lane ^ m) + if swap { 1 - part } else { part };
                }
                out
            }

            /// The contiguous run below the lowest fixed bit of a group (`mask` without the lane
            /// bits), in amplitudes, and the mask that steps from one run to the next. Inside a
            /// run every register has the same coefficients, and `g + k` for `k < run` only
            /// sets bits that are zero in `g` (they are below every fixed bit and above the lanes
            /// or lanes themselves), so it stays inside the block.
            fn runs(mask: usize, namp: usize) -> (usize, usize) {
                let fixed = mask & !(W - 1);
                let run = if fixed == 0 {
                    namp
                } else {
                    (1usize << fixed.trailing_zeros()).min(namp)
                };
                (run, mask | (run - 1))
            }

            /// Apply `p` (coefficients `coef`) to the reals `buf` of a block; `false` (nothing
            /// done) when the plan does not fit the block.
            ///
            /// # Safety
            /// The CPU must support the features this module is compiled for.
            #[target_feature(enable = $feat)]
            pub(crate) unsafe fn run<P>(p: &VecPlan<P>, coef: &[R], buf: &mut [R]) -> bool {
                // Every register the kernels touch is `g + off[c]` with `g = base | cbase`,
                // `base < namp` clear of the mask bits and `off[c]` made of mask bits: when
                // `namp` is a power of two above every mask and control bit, that index plus
                // the `W` lanes (mask bits too) stays below `namp`. Checked once here, it lets
                // the loops below address the block without a bounds check per register.
                let namp = buf.len() / 2;
                let dh = p.off.len();
                let coef_needed = match p.layout {
                    Layout::Diagonal => dh,
                    Layout::Full => dh * p.pairs,
                    // Sparse terms name their coefficient; `ld` checks each one.
                    Layout::Sparse => 0,
                } * 4
                    * W;
                let offs_ok = p.off.iter().all(|&o| o & !p.mask == 0);
                if !namp.is_power_of_two()
                    || namp < W
                    || (p.mask | p.cbase) >= namp
                    || !offs_ok
                    || coef.len() < coef_needed
                    || p.skip.len() < dh
                    || p.copy.len() < dh
                    || p.used.len() < p.pairs
                    || p.used_swapped.len() < p.pairs
                    || p.masks.is_empty()
                    || p.masks.len() > 8
                    || (p.layout != Layout::Diagonal && p.pairs > MAX_PAIRS)
                {
                    return false;
                }
                let mut ip = [idx(&lanes(0, false)); 8];
                let mut is = [idx(&lanes(0, true)); 8];
                for (mi, &m) in p.masks.iter().enumerate() {
                    ip[mi] = idx(&lanes(m, false));
                    is[mi] = idx(&lanes(m, true));
                }
                // SAFETY (every call below): the block and plan were checked above.
                unsafe {
                    match p.layout {
                        Layout::Diagonal => diagonal(p, coef, buf, is[0]),
                        Layout::Sparse => sparse(p, coef, buf, &ip, &is),
                        Layout::Full => match (dh, p.masks.len()) {
                            (1, 2) => full::<P, 1, 2>(p, coef, buf, &ip, &is),
                            (1, 4) => full::<P, 1, 4>(p, coef, buf, &ip, &is),
                            (1, 8) => full::<P, 1, 8>(p, coef, buf, &ip, &is),
                            (2, 1) => full::<P, 2, 1>(p, coef, buf, &ip, &is),
                            (2, 2) => full::<P, 2, 2>(p, coef, buf, &ip, &is),
                            (2, 4) => full::<P, 2, 4>(p, coef, buf, &ip, &is),
                            (2, 8) => full::<P, 2, 8>(p, coef, buf, &ip, &is),
                            (4, 1) => full::<P, 4, 1>(p, coef, buf, &ip, &is),
                            (4, 2) => full::<P, 4, 2>(p, coef, buf, &ip, &is),
                            (4, 4) => full::<P, 4, 4>(p, coef, buf, &ip, &is),
                            (4, 8) => full::<P, 4, 8>(p, coef, buf, &ip, &is),
                            (8, 1) => full::<P, 8, 1>(p, coef, buf, &ip, &is),
                            (8, 2) => full::<P, 8, 2>(p, coef, buf, &ip, &is),
                            (8, 4) => full::<P, 8, 4>(p, coef, buf, &ip, &is),
                            (16, 1) => full::<P, 16, 1>(p, coef, buf, &ip, &is),
                            (16, 2) => full::<P, 16, 2>(p, coef, buf, &ip, &is),
                            (32, 1) => full::<P, 32, 1>(p, coef, buf, &ip, &is),
                            _ => sparse(p, coef, buf, &ip, &is),
                        },
                    }
                }
                true
            }

            /// `out[r] = w[r] ⊙ x[r]`.
            ///
            /// # Safety
            /// As for `run`, whose checks must have passed.
            #[target_feature(enable = $feat)]
            unsafe fn diagonal<P>(p: &VecPlan<P>, coef: &[R], buf: &mut [R], swap: I) {
                let namp = buf.len() / 2;
                let bp = buf.as_mut_ptr();
                let (run, outer) = runs(p.mask, namp);
                let mut base = 0usize;
                while base < namp {
                    let g = base | p.cbase;
                    for (r, &o) in p.off.iter().enumerate() {
                        if p.skip[r] {
                            continue;
                        }
                        let c = r * 4 * W;
                        let (cr, cm) = (ld(coef, c), ld(coef, c + 2 * W));
                        let start = g + o;
                        let mut k = 0;
                        while k < run {
                            let a = 2 * (start + k);
                            // SAFETY: `start + k` is a register inside the block (see `runs`).
                            let x = unsafe { ldp(bp, a) };
                            let y = fma(cr, x, mul(cm, perm(swap, x)));
                            // SAFETY: as for the load.
                            unsafe { stp(bp, a, y) };
                            k += W;
                        }
                    }
                    base = ((base | outer) + 1) & !outer;
                }
            }

            /// Every `(r, pair)` term, with the group size known at compile time.
            ///
            /// # Safety
            /// As for `run`, whose checks must have passed.
            #[target_feature(enable = $feat)]
            unsafe fn full<P, const DH: usize, const NM: usize>(
                p: &VecPlan<P>,
                coef: &[R],
                buf: &mut [R],
                ip: &[I; 8],
                is: &[I; 8],
            ) {
                let namp = buf.len() / 2;
                let mut off = [0usize; 32];
                off[..DH].copy_from_slice(&p.off[..DH]);
                let mut skip = [false; 32];
                skip[..DH].copy_from_slice(&p.skip[..DH]);
                let c = &coef[..DH * DH * NM * 4 * W];
                let bp = buf.as_mut_ptr();
                let step = |b: usize| ((b | p.mask) + 1) & !p.mask;
                let mut xp = [zero(); MAX_PAIRS];
                let mut xs = [zero(); MAX_PAIRS];
                let mut base = 0usize;
                // Small ops take two groups at a time: each coefficient loaded once serves
                // both (loads, not multiplies, bound a 2-qubit op), with registers to spare.
                if DH * NM <= 4 {
                    let mut yp = [zero(); 4];
                    let mut ys = [zero(); 4];
                    while base < namp {
                        let b2 = step(base);
                        if b2 >= namp {
                            break;
                        }
                        let (g, h) = (base | p.cbase, b2 | p.cbase);
                        for cc in 0..DH {
                            // SAFETY: registers inside the block (see `run`).
                            let (x, y) =
                                unsafe { (ldp(bp, 2 * (g + off[cc])), ldp(bp, 2 * (h + off[cc]))) };
                            for mi in 0..NM {
                                let q = cc * NM + mi;
                                xp[q] = if mi == 0 { x } else { perm(ip[mi], x) };
                                xs[q] = perm(is[mi], x);
                                yp[q] = if mi == 0 { y } else { perm(ip[mi], y) };
                                ys[q] = perm(is[mi], y);
                            }
                        }
                        for r in 0..DH {
                            if skip[r] {
                                continue;
                            }
                            let (mut a0, mut a1, mut b0, mut b1) = (zero(), zero(), zero(), zero());
                            for q in 0..DH * NM {
                                let ci = (r * DH * NM + q) * 4 * W;
                                let (cr, cm) = (ld(c, ci), ld(c, ci + 2 * W));
                                a0 = fma(cr, xp[q], a0);
                                b0 = fma(cr, yp[q], b0);
                                a1 = fma(cm, xs[q], a1);
                                b1 = fma(cm, ys[q], b1);
                            }
                            // SAFETY: registers inside the block (see `run`).
                            unsafe {
                                stp(bp, 2 * (g + off[r]), add(a0, a1));
                                stp(bp, 2 * (h + off[r]), add(b0, b1));
                            }
                        }
                        base = step(b2);
                    }
                }
                while base < namp {
                    let g = base | p.cbase;
                    for cc in 0..DH {
                        // SAFETY: a register inside the block (see `run`).
                        let x = unsafe { ldp(bp, 2 * (g + off[cc])) };
                        for mi in 0..NM {
                            xp[cc * NM + mi] = if mi == 0 { x } else { perm(ip[mi], x) };
                            xs[cc * NM + mi] = perm(is[mi], x);
                        }
                    }
                    for r in 0..DH {
                        if skip[r] {
                            continue;
                        }
                        // Two chains: the adds of one row do not wait on each other's latency.
                        let (mut a0, mut a1) = (zero(), zero());
                        for q in 0..DH * NM {
                            let ci = (r * DH * NM + q) * 4 * W;
                            a0 = fma(ld(c, ci), xp[q], a0);
                            a1 = fma(ld(c, ci + 2 * W), xs[q], a1);
                        }
                        // SAFETY: a register inside the block (see `run`).
                        unsafe { stp(bp, 2 * (g + off[r]), add(a0, a1)) };
                    }
                    base = step(base);
                }
            }

            /// Only the nonzero terms (permutations, sparse fused blocks, odd group sizes).
            ///
            /// # Safety
            /// As for `run`, whose checks must have passed.
            #[target_feature(enable = $feat)]
            unsafe fn sparse<P>(
                p: &VecPlan<P>,
                coef: &[R],
                buf: &mut [R],
                ip: &[I; 8],
                is: &[I; 8],
            ) {
                let namp = buf.len() / 2;
                let bp = buf.as_mut_ptr();
                let (dh, nm) = (p.off.len(), p.masks.len());
                let mut xp = [zero(); MAX_PAIRS];
                let mut xs = [zero(); MAX_PAIRS];
                let (run, outer) = runs(p.mask, namp);
                let mut base = 0usize;
                while base < namp {
                    let mut k = 0;
                    while k < run {
                        // `k` walks the contiguous registers below the lowest fixed bit.
                        let g = (base | p.cbase) + k;
                        k += W;
                        for cc in 0..dh {
                            if !p.used[cc * nm..(cc + 1) * nm].contains(&true) {
                                continue;
                            }
                            // SAFETY: a register inside the block (see `run`, `runs`).
                            let x = unsafe { ldp(bp, 2 * (g + p.off[cc])) };
                            for mi in 0..nm {
                                let q = cc * nm + mi;
                                if p.used[q] {
                                    xp[q] = if mi == 0 { x } else { perm(ip[mi], x) };
                                }
                                if p.used_swapped[q] {
                                    xs[q] = perm(is[mi], x);
                                }
                            }
                        }
                        for r in 0..dh {
                            if p.skip[r] {
                                continue;
                            }
                            if let Some(q) = p.copy[r] {
                                // SAFETY: a register inside the block (see `run`, `runs`).
                                unsafe { stp(bp, 2 * (g + p.off[r]), xp[q as usize]) };
                                continue;
                            }
                            let (s, e) = p.rows[r];
                            let mut acc = zero();
                            for t in &p.terms[s as usize..e as usize] {
                                let q = t.pair as usize;
                                if t.coef == UNIT {
                                    acc = add(acc, xp[q]);
                                } else {
                                    let ci = t.coef as usize * 4 * W;
                                    acc = fma(ld(coef, ci), xp[q], acc);
                                    acc = fma(ld(coef, ci + 2 * W), xs[q], acc);
                                }
                            }
                            // SAFETY: a register inside the block (see `run`, `runs`).
                            unsafe { stp(bp, 2 * (g + p.off[r]), acc) };
                        }
                    }
                    base = ((base | outer) + 1) & !outer;
                }
            }
        };
    }

    /// The arithmetic and memory primitives of one backend, from its intrinsics: `ld` from a
    /// checked slice, `ldp`/`stp` at raw addresses the caller vouches for, and `fma`, `mul`,
    /// `add`, `zero` on registers of type `$v`.
    macro_rules! arith {
        ($feat:literal, $v:ty, $load:ident, $store:ident, $fmadd:ident, $mul:ident, $add:ident, $zero:ident) => {
            #[target_feature(enable = $feat)]
            fn ld(s: &[R], i: usize) -> $v {
                let s = &s[i..i + 2 * W];
                // SAFETY: `s` holds exactly the `2 W` reals read; loadu has no alignment
                // requirement.
                unsafe { $load(s.as_ptr()) }
            }
            /// # Safety
            /// `p.add(i)` must be valid for reading `2 W` reals.
            #[target_feature(enable = $feat)]
            unsafe fn ldp(p: *const R, i: usize) -> $v {
                // SAFETY: the caller guarantees the `2 W` reals at `p + i` are readable.
                unsafe { $load(p.add(i)) }
            }
            /// # Safety
            /// `p.add(i)` must be valid for writing `2 W` reals.
            #[target_feature(enable = $feat)]
            unsafe fn stp(p: *mut R, i: usize, v: $v) {
                // SAFETY: the caller guarantees the `2 W` reals at `p + i` are writable.
                unsafe { $store(p.add(i), v) }
            }
            #[target_feature(enable = $feat)]
            fn fma(a: $v, b: $v, c: $v) -> $v {
                $fmadd(a, b, c)
            }
            #[target_feature(enable = $feat)]
            fn mul(a: $v, b: $v) -> $v {
                $mul(a, b)
            }
            #[target_feature(enable = $feat)]
            fn add(a: $v, b: $v) -> $v {
                $add(a, b)
            }
            #[target_feature(enable = $feat)]
            fn zero() -> $v {
                $zero()
            }
        };
    }

    pub(crate) mod avx512_f64 {
        use std::arch::x86_64::*;
        type R = f64;
        type I = __m512i;
        const W: usize = 4;

        arith!(
            "avx512f",
            __m512d,
            _mm512_loadu_pd,
            _mm512_storeu_pd,
            _mm512_fmadd_pd,
            _mm512_mul_pd,
            _mm512_add_pd,
            _mm512_setzero_pd
        );

        #[target_feature(enable = "avx512f")]
        fn perm(i: I, x: __m512d) -> __m512d {
            _mm512_permutexvar_pd(i, x)
        }
        #[target_feature(enable = "avx512f")]
        fn idx(src: &[usize; 2 * W]) -> I {
            let v: [i64; 8] = std::array::from_fn(|j| src[j] as i64);
            // SAFETY: `v` is 64 bytes, the size of the unaligned load.
            unsafe { _mm512_loadu_si512(v.as_ptr().cast()) }
        }

        kernels!("avx512f");
    }

    pub(crate) mod avx512_f32 {
        use std::arch::x86_64::*;
        type R = f32;
        type I = __m512i;
        const W: usize = 8;

        arith!(
            "avx512f",
            __m512,
            _mm512_loadu_ps,
            _mm512_storeu_ps,
            _mm512_fmadd_ps,
            _mm512_mul_ps,
            _mm512_add_ps,
            _mm512_setzero_ps
        );

        #[target_feature(enable = "avx512f")]
        fn perm(i: I, x: __m512) -> __m512 {
            _mm512_permutexvar_ps(i, x)
        }
        #[target_feature(enable = "avx512f")]
        fn idx(src: &[usize; 2 * W]) -> I {
            let v: [i32; 16] = std::array::from_fn(|j| src[j] as i32);
            // SAFETY: `v` is 64 bytes, the size of the unaligned load.
            unsafe { _mm512_loadu_si512(v.as_ptr().cast()) }
        }

        kernels!("avx512f");
    }

    pub(crate) mod avx2_f64 {
        use std::arch::x86_64::*;
        type R = f64;
        type I = __m256i;
        const W: usize = 2;

        arith!(
            "avx2,fma",
            __m256d,
            _mm256_loadu_pd,
            _mm256_storeu_pd,
            _mm256_fmadd_pd,
            _mm256_mul_pd,
            _mm256_add_pd,
            _mm256_setzero_pd
        );

        /// Doubles moved as pairs of 32-bit halves (AVX2 has no variable double permute).
        #[target_feature(enable = "avx2,fma")]
        fn perm(i: I, x: __m256d) -> __m256d {
            _mm256_castps_pd(_mm256_permutevar8x32_ps(_mm256_castpd_ps(x), i))
        }
        #[target_feature(enable = "avx2,fma")]
        fn idx(src: &[usize; 2 * W]) -> I {
            let v: [i32; 8] = std::array::from_fn(|j| (2 * src[j / 2] + j % 2) as i32);
            // SAFETY: `v` is 32 bytes, the size of the unaligned load.
            unsafe { _mm256_loadu_si256(v.as_ptr().cast()) }
        }

        kernels!("avx2,fma");
    }

    pub(crate) mod avx2_f32 {
        use std::arch::x86_64::*;
        type R = f32;
        type I = __m256i;
        const W: usize = 4;

        arith!(
            "avx2,fma",
            __m256,
            _mm256_loadu_ps,
            _mm256_storeu_ps,
            _mm256_fmadd_ps,
            _mm256_mul_ps,
            _mm256_add_ps,
            _mm256_setzero_ps
        );

        #[target_feature(enable = "avx2,fma")]
        fn perm(i: I, x: __m256) -> __m256 {
            _mm256_permutevar8x32_ps(x, i)
        }
        #[target_feature(enable = "avx2,fma")]
        fn idx(src: &[usize; 2 * W]) -> I {
            let v: [i32; 8] = std::array::from_fn(|j| src[j] as i32);
            // SAFETY: `v` is 32 bytes, the size of the unaligned load.
            unsafe { _mm256_loadu_si256(v.as_ptr().cast()) }
        }

        kernels!("avx2,fma");
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Kernels, SimOptions, simulate};
    use super::*;
    use crate::Circuit;

    /// The backends this CPU can run besides the portable one.
    fn vector_backends() -> Vec<Kernels> {
        let (avx2, avx512) = detect();
        let mut v = vec![];
        if avx2 {
            v.push(Kernels::Avx2);
        }
        if avx512 {
            v.push(Kernels::Avx512);
        }
        v
    }

    /// The dispatched kernels agree with analytic results.
    #[test]
    fn dispatched_kernels_give_analytic_results() {
        let mut c = Circuit::new(4, 0);
        c.h(0).cx(0, 1).ry(1.0, 2).cx(2, 3).u(0.3, 0.2, 0.1, 3);
        let mut kernels = vector_backends();
        kernels.push(Kernels::Portable);
        for k in kernels {
            let o = SimOptions {
                kernels: k,
                ..SimOptions::default()
            };
            let s = simulate(&c, &o)
                .unwrap_or_else(|e| panic!("{e}"))
                .into_statevector()
                .into_f64();
            let norm: f64 = s.iter().map(|a| a.norm_sqr()).sum();
            assert!((norm - 1.0).abs() < 1e-12);
            // Qubits 0,1 are a Bell pair: P(q0 != q1) = 0.
            let odd: f64 = s
                .iter()
                .enumerate()
                .filter(|(i, _)| (i & 1) != ((i >> 1) & 1))
                .map(|(_, a)| a.norm_sqr())
                .sum();
            assert!(odd < 1e-24, "{k:?}");
            // P(q2 = 1) = sin^2(0.5).
            let p2: f64 = s
                .iter()
                .enumerate()
                .filter(|(i, _)| (i >> 2) & 1 == 1)
                .map(|(_, a)| a.norm_sqr())
                .sum();
            assert!((p2 - 0.5f64.sin().powi(2)).abs() < 1e-12, "{k:?}");
        }
    }

    /// A circuit touching every lane and register position, with controls and diagonals
    /// inside and outside the cache block: each vector backend equals the portable kernels,
    /// in both precisions, fused and unfused, with small and large blocks.
    #[test]
    fn vector_backends_equal_portable_kernels() {
        let n = 9;
        let mut c = Circuit::new(n, 0);
        for layer in 0..4 {
            for q in 0..n {
                c.u(
                    0.3 + q as f64 * 0.1,
                    0.2 * layer as f64,
                    -0.4 + q as f64 * 0.05,
                    q,
                );
            }
            for q in 0..n - 1 {
                c.cx((q + layer) % n, (q + layer + 1) % n);
            }
            c.cp(0.7, 0, n - 1)
                .crz(0.4, n - 1, 1)
                .ccx(2, 7, 0)
                .swap(1, 6)
                .cz(3, 8);
            c.t(5)
                .s(0)
                .rzz(0.3, 0, 8)
                .rxx(0.2, 1, 2)
                .ch(8, 0)
                .cswap(0, 4, 8);
        }
        for precision in [
            super::super::Precision::Double,
            super::super::Precision::Single,
        ] {
            for (fusion, k, cb, hi) in [(false, 1, 3, 2), (true, 3, 4, 3), (true, 5, 9, 0)] {
                let opts = |kernels| SimOptions {
                    precision,
                    fusion,
                    max_fused_qubits: k,
                    chunk_bits: cb,
                    max_high_qubits: hi,
                    kernels,
                    ..SimOptions::default()
                };
                let reference = simulate(&c, &opts(Kernels::Portable))
                    .unwrap_or_else(|e| panic!("{e}"))
                    .into_statevector()
                    .into_f64();
                for kern in vector_backends() {
                    let s = simulate(&c, &opts(kern))
                        .unwrap_or_else(|e| panic!("{e}"))
                        .into_statevector()
                        .into_f64();
                    let tol = if precision == super::super::Precision::Double {
                        1e-12
                    } else {
                        1e-5
                    };
                    for (a, b) in s.iter().zip(&reference) {
                        assert!((a - b).norm() < tol, "{kern:?} {precision:?} k={k} cb={cb}");
                    }
                }
            }
        }
    }

    /// An unsupported request is a clear error, not a crash.
    #[test]
    fn missing_features_are_reported() {
        let (avx2, avx512) = detect();
        assert_eq!(resolve(Kernels::Avx512).is_ok(), avx512);
        assert_eq!(resolve(Kernels::Avx2).is_ok(), avx2);
        assert_eq!(resolve(Kernels::Portable).ok(), Some(Backend::Portable));
    }
}
