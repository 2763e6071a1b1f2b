//! The worked hybrid example: a variational quantum classifier on the two-moons dataset.
//!
//! A neural feature encoder (`angles = π · tanh(W x + b)`, served as ONNX) maps a 2-D point to
//! four rotation angles; a 2-qubit circuit with data re-uploading and eight trained rotations
//! turns them into `⟨Z₀⟩`; a classical stage thresholds it into a label. Training runs on our own
//! simulator with exact parameter-shift gradients for the circuit and the chain rule through the
//! encoder, using Adam. The dataset is generated in code as scikit-learn's `make_moons` does.

use super::job::{ClassicalOp, Observable, Pipeline, Stage, StageOp, Value};
use atom_quantum::{Circuit, PauliSum, SimOptions, Simulator};
use std::collections::BTreeMap;
use std::f64::consts::PI;

/// A labelled 2-D dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// Points.
    pub x: Vec<[f64; 2]>,
    /// Labels (0 or 1).
    pub y: Vec<u8>,
}

/// A small deterministic generator (SplitMix64) so datasets need no RNG crate.
#[derive(Debug, Clone)]
struct SplitMix(u64);

impl SplitMix {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        // Box–Muller.
        let u1 = self.uniform().max(f64::MIN_POSITIVE);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * PI * u2).cos()
    }
}

/// Two interleaving half circles (scikit-learn's `make_moons`): `n / 2` points of class 0 on
/// the upper moon, the rest of class 1 on the lower one, with Gaussian noise of std `noise`,
/// shuffled with `seed`.
///
/// ```
/// let d = atom_fabric::hybrid::vqc::make_moons(100, 0.1, 7);
/// assert_eq!(d.x.len(), 100);
/// assert_eq!(d.y.iter().filter(|&&y| y == 1).count(), 50);
/// ```
pub fn make_moons(n: usize, noise: f64, seed: u64) -> Dataset {
    let n_out = n / 2;
    let n_in = n - n_out;
    let mut rng = SplitMix(seed);
    let mut pts: Vec<([f64; 2], u8)> = Vec::with_capacity(n);
    let lin = |i: usize, m: usize| {
        if m <= 1 {
            0.0
        } else {
            PI * i as f64 / (m - 1) as f64
        }
    };
    for i in 0..n_out {
        let t = lin(i, n_out);
        pts.push(([t.cos(), t.sin()], 0));
    }
    for i in 0..n_in {
        let t = lin(i, n_in);
        pts.push(([1.0 - t.cos(), 0.5 - t.sin()], 1));
    }
    for (p, _) in &mut pts {
        p[0] += noise * rng.normal();
        p[1] += noise * rng.normal();
    }
    // Fisher–Yates.
    for i in (1..pts.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        pts.swap(i, j);
    }
    Dataset {
        x: pts.iter().map(|p| p.0).collect(),
        y: pts.iter().map(|p| p.1).collect(),
    }
}

/// Data angles the encoder produces.
pub const ANGLES: usize = 4;
/// Trained circuit rotations.
pub const THETAS: usize = 8;

/// The trained classifier.
#[derive(Debug, Clone, PartialEq)]
pub struct VqcModel {
    /// Encoder weights, `ANGLES × 2`.
    pub w: [[f64; 2]; ANGLES],
    /// Encoder bias.
    pub b: [f64; ANGLES],
    /// Circuit rotations.
    pub theta: [f64; THETAS],
}

/// The circuit with data angles `a` and rotations `t` (numbers or symbol names).
fn circuit_ops(a: &[String; ANGLES], t: &[String; THETAS]) -> String {
    format!(
        "OPENQASM 2.0;\ninclude \"qelib1.inc\";\nqreg q[2];\n\
         ry({a0}) q[0];\nry({a1}) q[1];\nry({t0}) q[0];\nry({t1}) q[1];\nrz({t2}) q[0];\nrz({t3}) q[1];\ncx q[0],q[1];\n\
         ry({a2}) q[0];\nry({a3}) q[1];\nry({t4}) q[0];\nry({t5}) q[1];\ncx q[0],q[1];\nry({t6}) q[0];\nry({t7}) q[1];\n",
        a0 = a[0],
        a1 = a[1],
        a2 = a[2],
        a3 = a[3],
        t0 = t[0],
        t1 = t[1],
        t2 = t[2],
        t3 = t[3],
        t4 = t[4],
        t5 = t[5],
        t6 = t[6],
        t7 = t[7],
    )
}

fn build(angles: &[f64; ANGLES], theta: &[f64; THETAS]) -> Circuit {
    let mut c = Circuit::new(2, 0);
    c.ry(angles[0], 0).ry(angles[1], 1);
    c.ry(theta[0], 0)
        .ry(theta[1], 1)
        .rz(theta[2], 0)
        .rz(theta[3], 1);
    c.cx(0, 1);
    c.ry(angles[2], 0).ry(angles[3], 1);
    c.ry(theta[4], 0).ry(theta[5], 1);
    c.cx(0, 1);
    c.ry(theta[6], 0).ry(theta[7], 1);
    c
}

struct Evaluator {
    sim: Simulator,
    z0: PauliSum,
}

impl Evaluator {
    fn new() -> Result<Self, atom_quantum::Error> {
        Ok(Self {
            sim: Simulator::new(SimOptions::default()),
            z0: PauliSum::from_terms(&[(1.0, "IZ")])?,
        })
    }
    fn z0(&self, a: &[f64; ANGLES], t: &[f64; THETAS]) -> Result<f64, atom_quantum::Error> {
        self.sim.run(&build(a, t))?.expectation(&self.z0)
    }
}

impl VqcModel {
    /// The encoder's angles for a point.
    pub fn angles(&self, x: &[f64; 2]) -> [f64; ANGLES] {
        std::array::from_fn(|k| PI * (self.w[k][0] * x[0] + self.w[k][1] * x[1] + self.b[k]).tanh())
    }

    /// `⟨Z₀⟩` for a point (class 1 when negative), computed here without the coordinator.
    pub fn expectation(&self, x: &[f64; 2]) -> Result<f64, atom_quantum::Error> {
        Evaluator::new()?.z0(&self.angles(x), &self.theta)
    }

    /// The encoder as ONNX (`x: [1, 2]` → `y: [1, 4]`).
    pub fn encoder_onnx(&self) -> Vec<u8> {
        let w: Vec<f32> = self.w.iter().flatten().map(|v| *v as f32).collect();
        let b: Vec<f32> = self.b.iter().map(|v| *v as f32).collect();
        // Shapes are fixed above, so this cannot fail.
        super::onnx::dense_tanh(&w, &b, 2, ANGLES, PI as f32).unwrap_or_default()
    }

    /// The circuit as OpenQASM 2 with free symbols `a0..a3` for the data angles.
    pub fn qasm(&self) -> String {
        let a: [String; ANGLES] = std::array::from_fn(|k| format!("a{k}"));
        let t: [String; THETAS] = std::array::from_fn(|j| format!("{:.17}", self.theta[j]));
        circuit_ops(&a, &t)
    }

    /// The hybrid pipeline: `encode` (neural, the catalog model `encoder`) → `classify`
    /// (quantum, `⟨Z₀⟩`) → `decide` (classical threshold into `label`). Input `x` (2 numbers).
    pub fn pipeline(&self, encoder: &str) -> Pipeline {
        let bind: BTreeMap<String, String> = (0..ANGLES)
            .map(|k| (format!("a{k}"), format!("angles[{k}]")))
            .collect();
        Pipeline {
            inputs: BTreeMap::from([("x".to_string(), Value::List(vec![0.0, 0.0]))]),
            stages: vec![
                Stage {
                    name: "encode".into(),
                    op: StageOp::Neural {
                        model: encoder.into(),
                        input: "x".into(),
                        shape: Some(vec![1, 2]),
                        output: "angles".into(),
                    },
                    fallback: None,
                },
                Stage {
                    name: "classify".into(),
                    op: StageOp::Quantum {
                        qasm: self.qasm(),
                        bind,
                        shots: 0,
                        observables: vec![Observable::Label("IZ".into())],
                        seed: None,
                        provider: None,
                        output: "z0".into(),
                    },
                    fallback: None,
                },
                Stage {
                    name: "decide".into(),
                    op: StageOp::Classical {
                        op: ClassicalOp::Threshold {
                            input: "z0".into(),
                            at: 0.0,
                            above: 0.0,
                            below: 1.0,
                        },
                        output: "label".into(),
                    },
                    fallback: None,
                },
            ],
        }
    }

    /// Accuracy on a dataset (through [`VqcModel::expectation`]).
    pub fn accuracy(&self, data: &Dataset) -> Result<f64, atom_quantum::Error> {
        let ev = Evaluator::new()?;
        let mut right = 0usize;
        for (x, y) in data.x.iter().zip(&data.y) {
            let z = ev.z0(&self.angles(x), &self.theta)?;
            if u8::from(z < 0.0) == *y {
                right += 1;
            }
        }
        Ok(right as f64 / data.x.len().max(1) as f64)
    }
}

/// Loss and exact gradients of one point: `(⟨Z₀⟩ − target)²`, with `target = +1` for class 0
/// and `−1` for class 1. Returns `(loss, dW, db, dθ)`.
#[allow(clippy::type_complexity)]
fn point_gradient(
    ev: &Evaluator,
    m: &VqcModel,
    x: &[f64; 2],
    y: u8,
) -> Result<(f64, [[f64; 2]; ANGLES], [f64; ANGLES], [f64; THETAS]), atom_quantum::Error> {
    let target = if y == 0 { 1.0 } else { -1.0 };
    let a = m.angles(x);
    let e = ev.z0(&a, &m.theta)?;
    let dl = 2.0 * (e - target);
    let shift = PI / 2.0;
    let mut dtheta = [0.0; THETAS];
    for j in 0..THETAS {
        let (mut p, mut q) = (m.theta, m.theta);
        p[j] += shift;
        q[j] -= shift;
        dtheta[j] = dl * 0.5 * (ev.z0(&a, &p)? - ev.z0(&a, &q)?);
    }
    let (mut dw, mut db) = ([[0.0; 2]; ANGLES], [0.0; ANGLES]);
    for k in 0..ANGLES {
        let (mut p, mut q) = (a, a);
        p[k] += shift;
        q[k] -= shift;
        let de_da = 0.5 * (ev.z0(&p, &m.theta)? - ev.z0(&q, &m.theta)?);
        let z = m.w[k][0] * x[0] + m.w[k][1] * x[1] + m.b[k];
        let da_dz = PI * (1.0 - z.tanh().powi(2));
        let g = dl * de_da * da_dz;
        dw[k] = [g * x[0], g * x[1]];
        db[k] = g;
    }
    Ok(((e - target).powi(2), dw, db, dtheta))
}

/// Trains the classifier with full-batch Adam for `epochs`; returns the model and the loss of
/// each epoch.
pub fn train(
    data: &Dataset,
    epochs: usize,
    seed: u64,
) -> Result<(VqcModel, Vec<f64>), atom_quantum::Error> {
    let ev = Evaluator::new()?;
    let mut rng = SplitMix(seed);
    let mut m = VqcModel {
        w: std::array::from_fn(|_| [rng.normal(), rng.normal()]),
        b: std::array::from_fn(|_| 0.1 * rng.normal()),
        theta: std::array::from_fn(|_| 0.1 * rng.normal()),
    };
    const P: usize = ANGLES * 3 + THETAS;
    let (lr, b1, b2, eps) = (0.08, 0.9, 0.999, 1e-8);
    let (mut mom, mut vel) = ([0.0f64; P], [0.0f64; P]);
    let mut losses = Vec::with_capacity(epochs);
    let n = data.x.len().max(1) as f64;
    for epoch in 1..=epochs {
        let mut grad = [0.0f64; P];
        let mut loss = 0.0;
        for (x, y) in data.x.iter().zip(&data.y) {
            let (l, dw, db, dt) = point_gradient(&ev, &m, x, *y)?;
            loss += l;
            for k in 0..ANGLES {
                grad[2 * k] += dw[k][0];
                grad[2 * k + 1] += dw[k][1];
                grad[2 * ANGLES + k] += db[k];
            }
            for j in 0..THETAS {
                grad[3 * ANGLES + j] += dt[j];
            }
        }
        losses.push(loss / n);
        let mut params: Vec<&mut f64> = Vec::with_capacity(P);
        for row in m.w.iter_mut() {
            for v in row.iter_mut() {
                params.push(v);
            }
        }
        params.extend(m.b.iter_mut());
        params.extend(m.theta.iter_mut());
        let t = epoch as i32;
        for (i, p) in params.into_iter().enumerate() {
            let g = grad[i] / n;
            mom[i] = b1 * mom[i] + (1.0 - b1) * g;
            vel[i] = b2 * vel[i] + (1.0 - b2) * g * g;
            let mh = mom[i] / (1.0 - b1.powi(t));
            let vh = vel[i] / (1.0 - b2.powi(t));
            *p -= lr * mh / (vh.sqrt() + eps);
        }
    }
    Ok((m, losses))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parameter_shift_matches_finite_differences() {
        let d = make_moons(4, 0.1, 3);
        let (m, _) = train(&d, 1, 5).unwrap();
        let ev = Evaluator::new().unwrap();
        let (_, dw, db, dt) = point_gradient(&ev, &m, &d.x[0], d.y[0]).unwrap();
        let loss = |m: &VqcModel| {
            let t = if d.y[0] == 0 { 1.0 } else { -1.0 };
            (ev.z0(&m.angles(&d.x[0]), &m.theta).unwrap() - t).powi(2)
        };
        let h = 1e-6;
        for (j, g) in dt.iter().enumerate() {
            let (mut p, mut q) = (m.clone(), m.clone());
            p.theta[j] += h;
            q.theta[j] -= h;
            let fd = (loss(&p) - loss(&q)) / (2.0 * h);
            assert!((fd - g).abs() < 1e-5, "theta {j}: {fd} vs {g}");
        }
        for k in 0..ANGLES {
            let (mut p, mut q) = (m.clone(), m.clone());
            p.b[k] += h;
            q.b[k] -= h;
            let fd = (loss(&p) - loss(&q)) / (2.0 * h);
            assert!((fd - db[k]).abs() < 1e-5, "b {k}: {fd} vs {}", db[k]);
            let (mut p, mut q) = (m.clone(), m.clone());
            p.w[k][1] += h;
            q.w[k][1] -= h;
            let fd = (loss(&p) - loss(&q)) / (2.0 * h);
            assert!((fd - dw[k][1]).abs() < 1e-5, "w {k}: {fd} vs {}", dw[k][1]);
        }
    }

    #[test]
    fn moons_are_two_half_circles() {
        let d = make_moons(200, 0.0, 1);
        for (x, y) in d.x.iter().zip(&d.y) {
            let r = if *y == 0 {
                (x[0].powi(2) + x[1].powi(2)).sqrt()
            } else {
                ((x[0] - 1.0).powi(2) + (x[1] - 0.5).powi(2)).sqrt()
            };
            assert!((r - 1.0).abs() < 1e-12);
        }
    }
}
