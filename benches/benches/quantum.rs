//! Statevector simulation benchmarks: QFT, GHZ, random u3+cx layers (depth 20) and quantum
//! volume style layers, at moderate n. The side-by-side comparison with Qiskit Aer, qulacs, qsim
//! and PRISM-Q lives in `benches/quantum/side_by_side.py`.
#![allow(missing_docs)]

use atom_quantum::{Circuit, Precision, SimOptions, simulate};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use std::f64::consts::PI;
use std::hint::black_box;

struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 11
    }
    fn angle(&mut self) -> f64 {
        (self.next() as f64 / (1u64 << 53) as f64) * 2.0 * PI - PI
    }
    fn perm(&mut self, n: usize) -> Vec<usize> {
        let mut p: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            p.swap(i, j);
        }
        p
    }
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

fn ghz(n: usize) -> Circuit {
    let mut c = Circuit::new(n, 0);
    c.h(0);
    for q in 1..n {
        c.cx(q - 1, q);
    }
    c
}

fn random_layers(n: usize, depth: usize) -> Circuit {
    let mut r = Lcg(1);
    let mut c = Circuit::new(n, 0);
    for _ in 0..depth {
        for q in 0..n {
            c.u3(r.angle(), r.angle(), r.angle(), q);
        }
        let p = r.perm(n);
        for pair in p.chunks_exact(2) {
            c.cx(pair[0], pair[1]);
        }
    }
    c
}

/// Quantum-volume-like layers: random pairs, each a generic two-qubit block
/// (u3 on both, cx, u3 on both, cx, u3 on both, cx, u3 on both).
fn quantum_volume(n: usize, depth: usize) -> Circuit {
    let mut r = Lcg(7);
    let mut c = Circuit::new(n, 0);
    for _ in 0..depth {
        let p = r.perm(n);
        for pair in p.chunks_exact(2) {
            let (a, b) = (pair[0], pair[1]);
            for _ in 0..3 {
                c.u3(r.angle(), r.angle(), r.angle(), a)
                    .u3(r.angle(), r.angle(), r.angle(), b)
                    .cx(a, b);
            }
            c.u3(r.angle(), r.angle(), r.angle(), a)
                .u3(r.angle(), r.angle(), r.angle(), b);
        }
    }
    c
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("quantum");
    g.sample_size(10);
    for n in [16usize, 20] {
        let circuits = [
            ("qft", qft(n)),
            ("ghz", ghz(n)),
            ("random_u3_cx_d20", random_layers(n, 20)),
            ("quantum_volume", quantum_volume(n, n)),
        ];
        for (name, circ) in &circuits {
            for (pname, p) in [("f64", Precision::Double), ("f32", Precision::Single)] {
                let o = SimOptions {
                    precision: p,
                    seed: Some(1),
                    ..SimOptions::default()
                };
                g.bench_with_input(
                    BenchmarkId::new(format!("{name}/{pname}"), n),
                    circ,
                    |b, circ| b.iter(|| black_box(simulate(circ, &o).map(|r| r.seconds()))),
                );
            }
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
