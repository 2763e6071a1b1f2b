//! Simulator against analytic states and invariants.
#![allow(clippy::unwrap_used)]

use atom_quantum::{
    Circuit, Complex64, Error, GateKind, Param, PauliSum, Precision, SimOptions, simulate,
};
use proptest::prelude::*;
use std::f64::consts::PI;

fn sv(c: &Circuit, o: &SimOptions) -> Vec<Complex64> {
    simulate(c, o).unwrap().into_statevector().into_f64()
}

fn opts() -> SimOptions {
    SimOptions {
        seed: Some(1),
        ..SimOptions::default()
    }
}

#[test]
fn ghz_is_analytic() {
    for n in [1usize, 2, 5, 13, 16] {
        let mut c = Circuit::new(n, 0);
        c.h(0);
        for q in 1..n {
            c.cx(q - 1, q);
        }
        let s = sv(&c, &opts());
        let h = std::f64::consts::FRAC_1_SQRT_2;
        for (i, a) in s.iter().enumerate() {
            let want = if i == 0 || i == (1 << n) - 1 { h } else { 0.0 };
            assert!(
                (a - Complex64::new(want, 0.0)).norm() < 1e-12,
                "n={n} i={i} {a}"
            );
        }
    }
}

#[test]
fn bell_states_and_bit_order() {
    // x on qubit 0 only: index 1 (qubit 0 = least significant bit).
    let mut c = Circuit::new(3, 0);
    c.x(0);
    assert!((sv(&c, &opts())[1].re - 1.0).abs() < 1e-15);
    // x x h cx: |11> -> (|10> - |11>)/√2 -> (|10> - |01>)/√2 (ket = |q1 q0>).
    let mut b = Circuit::new(2, 0);
    b.x(0).x(1).h(0).cx(0, 1);
    let s = sv(&b, &opts());
    let h = std::f64::consts::FRAC_1_SQRT_2;
    assert!(
        (s[2].re - h).abs() < 1e-12 && (s[1].re + h).abs() < 1e-12,
        "{s:?}"
    );
}

fn qft(n: usize) -> Circuit {
    let mut c = Circuit::new(n, 0);
    for j in (0..n).rev() {
        c.h(j);
        for k in (0..j).rev() {
            c.cp(PI / f64::from(1u32 << (j - k)), k, j);
        }
    }
    for q in 0..n / 2 {
        c.swap(q, n - 1 - q);
    }
    c
}

#[test]
fn qft_of_basis_states_is_analytic() {
    // QFT|x> = 2^{-n/2} Σ_k e^{2πi x k / 2^n} |k>.
    for (n, x) in [
        (3usize, 5usize),
        (6, 19),
        (10, 777),
        (14, 12345),
        (16, 40000),
    ] {
        let mut c = Circuit::new(n, 0);
        for q in 0..n {
            if (x >> q) & 1 == 1 {
                c.x(q);
            }
        }
        let q = qft(n);
        for inst in q.instructions() {
            c.push(inst.clone());
        }
        for prec in [Precision::Double, Precision::Single] {
            let s = sv(
                &c,
                &SimOptions {
                    precision: prec,
                    ..opts()
                },
            );
            let dim = 1usize << n;
            let norm = (dim as f64).sqrt().recip();
            let tol = if prec == Precision::Double {
                1e-10
            } else {
                1e-5
            };
            for (k, a) in s.iter().enumerate() {
                let ph = 2.0 * PI * ((x * k) % dim) as f64 / dim as f64;
                let want = Complex64::from_polar(norm, ph);
                assert!((a - want).norm() < tol, "n={n} k={k} {a} vs {want}");
            }
        }
    }
}

#[test]
fn counts_follow_qiskit_format() {
    // Two registers: c0[2] then c1[1]; key = "c1 c0" with clbit 0 rightmost.
    let mut c = Circuit::new(3, 0);
    c.add_creg("a", 2);
    c.add_creg("b", 1);
    c.x(0).x(2);
    c.measure(0, 0).measure(1, 1).measure(2, 2);
    let r = simulate(
        &c,
        &SimOptions {
            shots: 50,
            ..opts()
        },
    )
    .unwrap();
    assert_eq!(r.counts().len(), 1);
    assert_eq!(r.counts()["1 01"], 50);
}

#[test]
fn sampling_is_seeded_and_matches_probabilities() {
    let mut c = Circuit::new(2, 2);
    c.ry(2.0 * (0.3f64).sqrt().asin(), 0)
        .h(1)
        .measure(0, 0)
        .measure(1, 1);
    let o = SimOptions {
        shots: 40_000,
        seed: Some(99),
        ..SimOptions::default()
    };
    let a = simulate(&c, &o).unwrap();
    let b = simulate(&c, &o).unwrap();
    assert_eq!(a.counts(), b.counts());
    // P(q0=1) = 0.3, P(q1=1) = 0.5: each key within 5 standard deviations.
    for (key, p) in [("00", 0.35f64), ("01", 0.15), ("10", 0.35), ("11", 0.15)] {
        let n = a.counts().get(key).copied().unwrap_or(0) as f64;
        let sd = (40_000.0 * p * (1.0 - p)).sqrt();
        assert!((n - 40_000.0 * p).abs() < 5.0 * sd, "{key}: {n}");
    }
}

#[test]
fn mid_circuit_measure_reset_and_if() {
    // Teleport-like: measure q0 (in |1>), then conditionally flip q1; reset q0.
    let src = r#"OPENQASM 2.0; include "qelib1.inc";
        qreg q[2]; creg m[1]; creg out[1];
        x q[0]; measure q[0] -> m[0]; if (m == 1) x q[1]; reset q[0]; measure q[1] -> out[0];"#;
    let c = Circuit::from_qasm(src).unwrap();
    let r = simulate(
        &c,
        &SimOptions {
            shots: 20,
            ..opts()
        },
    )
    .unwrap();
    assert_eq!(r.counts()["1 1"], 20);
    let s = r.statevector();
    assert!((s.get(2).unwrap().re - 1.0).abs() < 1e-12); // q0 reset to 0, q1 = 1
    // Random mid-circuit outcome: h then measure then copy to q1 via if: always equal bits.
    let src2 = r#"OPENQASM 2.0; include "qelib1.inc";
        qreg q[2]; creg c[2];
        h q[0]; measure q[0] -> c[0]; if (c == 1) x q[1]; measure q[1] -> c[1];"#;
    let c2 = Circuit::from_qasm(src2).unwrap();
    let r2 = simulate(
        &c2,
        &SimOptions {
            shots: 400,
            ..opts()
        },
    )
    .unwrap();
    let ones = r2.counts().get("11").copied().unwrap_or(0);
    let zeros = r2.counts().get("00").copied().unwrap_or(0);
    assert_eq!(ones + zeros, 400);
    assert!(ones > 140 && zeros > 140, "{:?}", r2.counts());
}

#[test]
fn expectation_of_pauli_sums() {
    // |+> ⊗ |0> ⊗ |i>: <X0>=... label rightmost = qubit 0.
    let mut c = Circuit::new(3, 0);
    c.h(0).h(2).s(2);
    let r = simulate(&c, &opts()).unwrap();
    let e = |l: &str| {
        r.expectation(&PauliSum::from_terms(&[(1.0, l)]).unwrap())
            .unwrap()
    };
    assert!((e("IIX") - 1.0).abs() < 1e-12);
    assert!((e("IZI") - 1.0).abs() < 1e-12);
    assert!((e("YII") - 1.0).abs() < 1e-12);
    assert!(e("XII").abs() < 1e-12);
    assert!((e("YZX") - 1.0).abs() < 1e-12);
    let h = PauliSum::from_terms(&[(2.0, "IIX"), (-0.5, "IZI"), (3.0, "ZII")]).unwrap();
    assert!((r.expectation(&h).unwrap() - 1.5).abs() < 1e-12);
    assert!(
        r.expectation(&PauliSum::from_terms(&[(1.0, "XX")]).unwrap())
            .is_err()
    );
}

#[test]
fn memory_is_checked_before_allocating() {
    let c = Circuit::new(30, 0);
    let o = SimOptions {
        memory_limit: Some(1 << 20),
        ..opts()
    };
    match simulate(&c, &o) {
        Err(Error::Memory {
            qubits: 30,
            needed,
            available,
        }) => {
            assert_eq!(needed, 16 << 30);
            assert_eq!(available, 1 << 20);
        }
        other => panic!("expected a memory error, got {other:?}"),
    }
    let single = SimOptions {
        precision: Precision::Single,
        memory_limit: Some(8 << 20),
        ..opts()
    };
    assert!(simulate(&Circuit::new(20, 0), &single).is_ok());
    assert!(simulate(&Circuit::new(21, 0), &single).is_err());
}

#[test]
fn unbound_parameters_are_reported_and_binding_works() {
    let mut c = Circuit::new(1, 0);
    c.rx(Param::symbol("theta"), 0);
    assert!(matches!(
        simulate(&c, &opts()),
        Err(Error::UnboundParameter(_))
    ));
    let b = c.bind(&[("theta", PI)]);
    let s = sv(&b, &opts());
    assert!((s[1] - Complex64::new(0.0, -1.0)).norm() < 1e-12);
}

fn random_circuit(n: usize, gates: &[(usize, Vec<usize>, Vec<f64>)]) -> Circuit {
    let fixed: Vec<GateKind> = GateKind::ALL
        .iter()
        .copied()
        .filter(|g| g.num_qubits() <= n)
        .collect();
    let mut c = Circuit::new(n, 0);
    for (gi, perm, ps) in gates {
        let g = fixed[gi % fixed.len()];
        let qs: Vec<usize> = perm.iter().take(g.num_qubits()).copied().collect();
        let params: Vec<Param> = ps
            .iter()
            .take(g.num_params())
            .map(|v| Param::Num(*v))
            .collect();
        c.gate(g, &params, &qs);
    }
    c
}

fn gates_strategy(n: usize) -> impl Strategy<Value = Vec<(usize, Vec<usize>, Vec<f64>)>> {
    let perm = Just((0..n).collect::<Vec<usize>>()).prop_shuffle();
    prop::collection::vec(
        (0usize..64, perm, prop::collection::vec(-4.0f64..4.0, 4)),
        1..60,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    /// Fused, unfused and differently blocked runs agree (and stay normalised).
    #[test]
    fn fused_matches_unfused((n, gates) in (1usize..=7).prop_flat_map(|n| (Just(n), gates_strategy(n)))) {
        let c = random_circuit(n, &gates);
        let base = sv(&c, &SimOptions { fusion: false, ..opts() });
        let norm: f64 = base.iter().map(|a| a.norm_sqr()).sum();
        prop_assert!((norm - 1.0).abs() < 1e-10);
        for (k, cb, hi) in [(2usize, 2usize, 1usize), (3, 3, 2), (4, 1, 3), (5, 12, 4)] {
            let o = SimOptions { fusion: true, max_fused_qubits: k, chunk_bits: cb, max_high_qubits: hi, ..opts() };
            let s = sv(&c, &o);
            for (a, b) in s.iter().zip(&base) {
                prop_assert!((a - b).norm() < 1e-10, "k={} cb={}: {} vs {}", k, cb, a, b);
            }
        }
    }
}

#[test]
fn blocked_passes_match_on_a_larger_state() {
    // 16 qubits with small blocks forces gathered high qubits in every pass.
    let n = 16;
    let mut c = Circuit::new(n, 0);
    let mut x = 12345u64;
    let mut rnd = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..6 {
        for q in 0..n {
            c.u(
                (rnd() % 1000) as f64 / 300.0,
                (rnd() % 1000) as f64 / 300.0,
                0.1,
                q,
            );
        }
        for _ in 0..n / 2 {
            let a = (rnd() % n as u64) as usize;
            let b = (a + 1 + (rnd() % (n as u64 - 1)) as usize) % n;
            c.cx(a, b);
        }
        c.mcx(&[0, 5, 9, 14, 15], 3);
    }
    let base = sv(
        &c,
        &SimOptions {
            fusion: false,
            chunk_bits: 16,
            ..opts()
        },
    );
    for (cb, hi, k) in [(4usize, 2usize, 3usize), (8, 4, 4), (10, 3, 2)] {
        let s = sv(
            &c,
            &SimOptions {
                chunk_bits: cb,
                max_high_qubits: hi,
                max_fused_qubits: k,
                ..opts()
            },
        );
        let err = s
            .iter()
            .zip(&base)
            .map(|(a, b)| (a - b).norm())
            .fold(0.0, f64::max);
        assert!(err < 1e-10, "cb={cb} hi={hi} k={k}: {err}");
    }
}

/// Straightforward reference: every gate as a full matrix-vector product over its qubits.
fn naive(c: &Circuit) -> Vec<Complex64> {
    let n = c.num_qubits();
    let mut s = vec![Complex64::new(0.0, 0.0); 1 << n];
    s[0] = Complex64::new(1.0, 0.0);
    for inst in c.instructions() {
        if let atom_quantum::Operation::Gate { kind, params } = &inst.op {
            let ps: Vec<f64> = params.iter().map(|p| p.as_f64().unwrap()).collect();
            let m = kind.matrix(&ps);
            let k = inst.qubits.len();
            let d = 1usize << k;
            let mut out = vec![Complex64::new(0.0, 0.0); 1 << n];
            for (i, o) in out.iter_mut().enumerate() {
                let row: usize = inst
                    .qubits
                    .iter()
                    .enumerate()
                    .map(|(j, &q)| ((i >> q) & 1) << j)
                    .sum();
                let rest = inst.qubits.iter().fold(i, |acc, &q| acc & !(1 << q));
                for col in 0..d {
                    let src = inst
                        .qubits
                        .iter()
                        .enumerate()
                        .fold(rest, |acc, (j, &q)| acc | (((col >> j) & 1) << q));
                    *o += m[row * d + col] * s[src];
                }
            }
            s = out;
        }
    }
    s
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]
    /// Every kernel path (contiguous streams, gathered tables, generic, controlled, blocked passes)
    /// against the naive reference.
    #[test]
    fn kernels_match_naive_reference((n, gates) in (3usize..=10).prop_flat_map(|n| (Just(n), gates_strategy(n)))) {
        let c = random_circuit(n, &gates);
        let want = naive(&c);
        for (k, cb, hi, p) in [(1usize, 12usize, 4usize, Precision::Double), (3, 4, 2, Precision::Double), (2, 6, 3, Precision::Single), (4, 3, 1, Precision::Double)] {
            let s = sv(&c, &SimOptions { max_fused_qubits: k, chunk_bits: cb, max_high_qubits: hi, precision: p, ..opts() });
            let tol = if p == Precision::Double { 1e-10 } else { 1e-5 };
            for (a, b) in s.iter().zip(&want) {
                prop_assert!((a - b).norm() < tol, "k={} cb={}: {} vs {}", k, cb, a, b);
            }
        }
    }
}
