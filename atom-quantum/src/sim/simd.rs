//! Run-time CPU dispatch: the same safe kernels compiled a second time with AVX2 and FMA enabled.
//!
//! This is the only module that uses `unsafe`: calling a `#[target_feature]` function is unsafe
//! because it would be undefined behaviour on a CPU without those features, so the call is made
//! only after `is_x86_feature_detected!` confirmed them.
#![allow(unsafe_code)]

use super::engine::LocalOp;
use super::kernels::{C, Real};

#[cfg(target_arch = "x86_64")]
fn has_avx2_fma() -> bool {
    use std::sync::OnceLock;
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        std::env::var_os("ATOM_QUANTUM_NO_SIMD").is_none()
            && is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
    })
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn apply_all_avx2<T: Real>(ops: &[LocalOp<'_, T>], buf: &mut [C<T>], base: usize) {
    for op in ops {
        op.apply_with::<true>(buf, base);
    }
}

fn apply_all_portable<T: Real>(ops: &[LocalOp<'_, T>], buf: &mut [C<T>], base: usize) {
    for op in ops {
        op.apply_with::<false>(buf, base);
    }
}

/// Apply `ops` in order to one block, with the fastest code path the CPU supports.
pub(crate) fn apply_all<T: Real>(ops: &[LocalOp<'_, T>], buf: &mut [C<T>], base: usize) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: `has_avx2_fma` checked at run time that this CPU supports AVX2 and FMA, the
        // only requirement of `apply_all_avx2`; its body is safe Rust.
        unsafe { apply_all_avx2(ops, buf, base) };
        return;
    }
    apply_all_portable(ops, buf, base);
}

#[cfg(test)]
mod tests {
    use super::super::{SimOptions, simulate};
    use crate::Circuit;

    /// The AVX2/FMA path (taken on this machine when available) agrees with analytic results.
    #[test]
    fn dispatched_kernels_give_analytic_results() {
        let mut c = Circuit::new(4, 0);
        c.h(0).cx(0, 1).ry(1.0, 2).cx(2, 3).u(0.3, 0.2, 0.1, 3);
        let s = simulate(&c, &SimOptions::default())
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
        assert!(odd < 1e-24);
        // P(q2 = 1) = sin^2(0.5).
        let p2: f64 = s
            .iter()
            .enumerate()
            .filter(|(i, _)| (i >> 2) & 1 == 1)
            .map(|(_, a)| a.norm_sqr())
            .sum();
        assert!((p2 - 0.5f64.sin().powi(2)).abs() < 1e-12);
    }
}
