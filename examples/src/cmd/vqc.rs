//! `atom vqc`: the worked hybrid example end to end — train a variational quantum classifier on
//! two moons, export its encoder as ONNX, register the pipeline with a coordinator, classify
//! held-out points as hybrid jobs (neural → quantum → classical) and report the accuracy.

use super::CliError;
use atom_fabric::hybrid::vqc::{self};
use atom_fabric::hybrid::{
    CatalogModel, Coordinator, CoordinatorConfig, JobMode, JobState, JobSubmission, MemoryAudit,
    QuantumTarget,
};
use atom_policy::config::{Mode, PqcMode};
use atom_policy::keyring::KeyRing;

/// Arguments of `atom vqc`.
#[derive(Debug, clap::Args)]
pub struct VqcArgs {
    /// Training points.
    #[arg(long, default_value_t = 100)]
    train: usize,
    /// Held-out points.
    #[arg(long, default_value_t = 100)]
    test: usize,
    /// Training epochs (full-batch Adam).
    #[arg(long, default_value_t = 60)]
    epochs: usize,
    /// Gaussian noise of the moons.
    #[arg(long, default_value_t = 0.1)]
    noise: f64,
    /// Seed (data and initial weights).
    #[arg(long, default_value_t = 7)]
    seed: u64,
}

/// Runs `atom vqc`.
pub fn run(a: VqcArgs) -> Result<(), CliError> {
    if a.train < 2 || a.test < 1 {
        return Err(CliError::input(
            "--train must be at least 2 and --test at least 1",
        ));
    }
    let train = vqc::make_moons(a.train, a.noise, a.seed);
    let test = vqc::make_moons(a.test, a.noise, a.seed.wrapping_add(1000));
    let t0 = std::time::Instant::now();
    let (model, losses) =
        vqc::train(&train, a.epochs, a.seed).map_err(|e| CliError::failed(e.to_string()))?;
    println!(
        "trained on {} points, {} epochs in {:.2} s: loss {:.4} -> {:.4}, training accuracy {:.3}",
        a.train,
        a.epochs,
        t0.elapsed().as_secs_f64(),
        losses.first().copied().unwrap_or(0.0),
        losses.last().copied().unwrap_or(0.0),
        model
            .accuracy(&train)
            .map_err(|e| CliError::failed(e.to_string()))?
    );
    let dir = std::env::temp_dir().join(format!("atom-vqc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| CliError::failed(e.to_string()))?;
    let onnx = dir.join("vqc-encoder.onnx");
    std::fs::write(&onnx, model.encoder_onnx()).map_err(|e| CliError::failed(e.to_string()))?;
    let audit = MemoryAudit::default();
    let mut c = Coordinator::new(
        CoordinatorConfig {
            mode: Mode::new(PqcMode::Off, true),
            ..CoordinatorConfig::default()
        },
        KeyRing::new(),
    )
    .with_audit(Box::new(audit.clone()));
    c.router_mut()
        .add_quantum(QuantumTarget::local(1 << 30, 1.5e9));
    c.router_mut()
        .add_neural(atom_fabric::hybrid::NeuralTarget::in_process(1));
    c.register_model(
        "vqc-encoder",
        CatalogModel {
            path: onnx,
            framework: "onnx".into(),
        },
    );
    c.register_pipeline(
        "vqc-moons",
        model.pipeline("vqc-encoder"),
        JobMode::Hybrid,
        false,
    )
    .map_err(|e| CliError::failed(e.to_string()))?;
    let t1 = std::time::Instant::now();
    let mut ids = Vec::with_capacity(test.x.len());
    for x in &test.x {
        let job = JobSubmission {
            tenant: "demo".into(),
            mode: JobMode::Hybrid,
            payload: serde_json::json!({"pipeline": "vqc-moons", "inputs": {"x": [x[0], x[1]]}}),
            manifest: None,
        };
        ids.push(
            c.submit(job, None, 0)
                .map_err(|e| CliError::failed(e.to_string()))?,
        );
    }
    c.run_all(0);
    let mut right = 0usize;
    for (id, y) in ids.iter().zip(&test.y) {
        let s = c
            .status("demo", id)
            .map_err(|e| CliError::failed(e.to_string()))?;
        if s.state != JobState::Completed {
            return Err(CliError::failed(format!("{id}: {:?}", s.error)));
        }
        let label = s
            .outputs
            .get("label")
            .and_then(|v| v.numbers())
            .and_then(|n| n.first().copied());
        if label.map(|l| l as u8) == Some(*y) {
            right += 1;
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    let entries = audit.entries.lock().map(|e| e.len()).unwrap_or(0);
    println!(
        "classified {} held-out points as hybrid jobs (ONNX encoder -> 2-qubit circuit -> threshold) in {:.2} s: accuracy {:.3}; {} audit entries",
        test.x.len(),
        t1.elapsed().as_secs_f64(),
        right as f64 / test.x.len() as f64,
        entries
    );
    Ok(())
}
