//! The statevector's allocation: fallible, and first touched in parallel.
//!
//! A 30-qubit double-precision state is 16 GiB, four million page faults on 4 KiB pages; when
//! the vector is zeroed in place by one thread they are taken one by one. Zeroing it from the
//! thread pool spreads the faults and the writes over the cores. (Transparent huge pages were
//! tried and dropped: with `defrag = madvise` the kernel compacts memory synchronously on the
//! first touch, which made the allocation slower and its time unpredictable here.)

use super::kernels::{C, Real};
use rayon::prelude::*;

/// A zeroed state of `dim` amplitudes; `None` when the allocation fails.
pub(crate) fn zeroed_state<T: Real>(dim: usize) -> Option<Vec<C<T>>> {
    let mut v: Vec<C<T>> = Vec::new();
    v.try_reserve_exact(dim).ok()?;
    v.par_extend(rayon::iter::repeat_n(C::<T>::default(), dim));
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The state is fully zeroed and of the requested length.
    #[test]
    fn zeroed_states_of_every_size() {
        for n in [0usize, 3, 17, 20, 22] {
            let v = zeroed_state::<f64>(1 << n).expect("allocation");
            assert_eq!(v.len(), 1 << n);
            assert!(v.iter().all(|z| z.re == 0.0 && z.im == 0.0));
        }
        let v = zeroed_state::<f32>(1 << 21).expect("allocation");
        assert!(v.iter().all(|z| z.re == 0.0 && z.im == 0.0));
    }

    /// An impossible size is `None`, not an abort.
    #[test]
    fn impossible_sizes_fail_cleanly() {
        assert!(zeroed_state::<f64>(usize::MAX / 8).is_none());
    }
}
