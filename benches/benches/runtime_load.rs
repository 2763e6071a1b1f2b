//! Model load time through the runtime hooks (P6 budget: under 800 ms per load), and one
//! inference, for the test ONNX models.

use atom_fabric::runtime::{RuntimeRegistry, Tensor};
use criterion::{Criterion, criterion_group, criterion_main};
use std::path::PathBuf;

fn model(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../atom-fabric/tests/data/onnx")
        .join(name)
}

fn load(c: &mut Criterion) {
    let registry = RuntimeRegistry::with_builtins();
    for name in ["mlp.onnx", "conv.onnx"] {
        let path = model(name);
        c.bench_function(&format!("onnx/load/{name}"), |b| {
            b.iter(|| registry.load_model("onnx", &path).expect("load"))
        });
    }
    let mlp = registry
        .load_model("onnx", &model("mlp.onnx"))
        .expect("load");
    let input = Tensor::new(vec![32, 4], vec![0.25; 128]).expect("tensor");
    c.bench_function("onnx/infer/mlp.onnx batch 32", |b| {
        b.iter(|| mlp.model.run(std::slice::from_ref(&input)).expect("run"))
    });
}

criterion_group!(benches, load);
criterion_main!(benches);
