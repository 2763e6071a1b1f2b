//! End-to-end tests of the hybrid coordinator: the worked VQC example through ONNX (tract), the
//! simulator and a classical stage; P2 manifests; P5 tenants; P6 budgets; failover; audit proofs;
//! telemetry that carries no payload (P1).
#![allow(clippy::unwrap_used)]

use atom_fabric::hybrid::vqc::{self, VqcModel};
use atom_fabric::hybrid::{
    CatalogModel, Coordinator, CoordinatorConfig, HybridError, JobMode, JobState, JobStatement,
    JobSubmission, MemoryAudit, QuantumTarget, Value,
};
use atom_policy::audit::{AuditEntry, AuditLog, LogConfig, OpenOptions, Outcome};
use atom_policy::config::{Mode, PqcMode};
use atom_policy::keyring::KeyRing;
use atom_policy::keys::{Algorithm, KeySpec, SigningKey};
use atom_policy::merkle;
use atom_policy::note::{Checkpoint, CheckpointMode, NoteSigner};
use atom_quantum::{BackendResult, Circuit, QuantumBackend, RunOptions};
use serde_json::json;
use std::sync::{Arc, Mutex, OnceLock};

const BELL: &str = "OPENQASM 2.0;\ninclude \"qelib1.inc\";\nqreg q[2];\ncreg c[2];\nh q[0];\ncx q[0],q[1];\nmeasure q -> c;\n";

fn key() -> &'static SigningKey {
    static K: OnceLock<SigningKey> = OnceLock::new();
    K.get_or_init(|| SigningKey::generate(KeySpec::Hybrid(Algorithm::MlDsa65)))
}

fn production() -> CoordinatorConfig {
    CoordinatorConfig {
        mode: Mode::new(PqcMode::Hybrid, false),
        ..CoordinatorConfig::default()
    }
}

fn simulation() -> CoordinatorConfig {
    CoordinatorConfig {
        mode: Mode::new(PqcMode::Off, true),
        ..CoordinatorConfig::default()
    }
}

fn signed(tenant: &str, mode: JobMode, payload: serde_json::Value) -> JobSubmission {
    let manifest = JobStatement::for_job(tenant, mode, &payload)
        .sign(key(), Mode::default())
        .unwrap();
    JobSubmission {
        tenant: tenant.into(),
        mode,
        payload,
        manifest: Some(manifest),
    }
}

fn trained() -> &'static VqcModel {
    static M: OnceLock<VqcModel> = OnceLock::new();
    M.get_or_init(|| {
        let train = vqc::make_moons(60, 0.1, 11);
        let (m, losses) = vqc::train(&train, 40, 3).unwrap();
        assert!(
            losses.last().unwrap() < &(losses[0] * 0.6),
            "training did not lower the loss: {losses:?}"
        );
        m
    })
}

/// A provider in an outage: every call fails (what a down remote backend answers).
struct DownProvider;

impl QuantumBackend for DownProvider {
    fn name(&self) -> &str {
        "down-provider"
    }
    fn run(&self, _: &Circuit, _: &RunOptions) -> atom_quantum::Result<BackendResult> {
        Err(atom_quantum::Error::Backend(
            "connection refused (provider outage)".into(),
        ))
    }
}

fn audit_log(dir: &std::path::Path) -> (Arc<Mutex<AuditLog>>, NoteSigner) {
    let signer = NoteSigner::ed25519_from_seed("atom.test/hybrid", [9u8; 32]).unwrap();
    let p = dir.join("audit");
    AuditLog::create(
        &p,
        &LogConfig::new(
            "atom.test/hybrid",
            CheckpointMode::Classical,
            &[signer.verifier()],
        ),
    )
    .unwrap();
    let (log, _) = AuditLog::open(&p, OpenOptions::default()).unwrap();
    (Arc::new(Mutex::new(log)), signer)
}

#[test]
fn vqc_classifies_held_out_moons_end_to_end_with_provable_audit() {
    let dir = tempfile::tempdir().unwrap();
    let model = trained();
    let onnx = dir.path().join("encoder.onnx");
    std::fs::write(&onnx, model.encoder_onnx()).unwrap();
    let (log, signer) = audit_log(dir.path());
    let mut c = Coordinator::new(production(), KeyRing::trusting(key().verifying_key()))
        .with_audit(Box::new(log.clone()));
    c.router_mut()
        .add_quantum(QuantumTarget::local(1 << 30, 1e9));
    c.router_mut()
        .add_neural(atom_fabric::hybrid::NeuralTarget::in_process(2));
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
        true,
    )
    .unwrap();

    let test = vqc::make_moons(40, 0.1, 99);
    let mut ids = vec![];
    for x in &test.x {
        let payload = json!({"pipeline": "vqc-moons", "inputs": {"x": [x[0], x[1]]}});
        ids.push(
            c.submit(
                signed("acme", JobMode::Hybrid, payload),
                Some("acme"),
                1_000,
            )
            .unwrap(),
        );
    }
    assert_eq!(c.run_all(2_000), test.x.len());
    let mut right = 0;
    for ((id, x), y) in ids.iter().zip(&test.x).zip(&test.y) {
        let s = c.status("acme", id).unwrap();
        assert_eq!(s.state, JobState::Completed, "{:?}", s.error);
        assert_eq!(s.stages.len(), 3);
        assert_eq!(s.stages[0].target.as_deref(), Some("local/cpu"));
        assert_eq!(s.stages[1].target.as_deref(), Some("local"));
        let label = s.outputs["label"].numbers().unwrap()[0];
        // The coordinator's path (tract f32 encoder, simulator) agrees with the direct f64 path.
        let Value::List(z) = &s.outputs["z0"] else {
            panic!()
        };
        let direct = model.expectation(x).unwrap();
        assert!((z[0] - direct).abs() < 1e-4, "{} vs {direct}", z[0]);
        if label as u8 == *y {
            right += 1;
        }
        assert!(s.manifest.verified);
        assert_eq!(s.queue_wait_ms, Some(1_000));
    }
    let accuracy = right as f64 / test.x.len() as f64;
    assert!(accuracy >= 0.85, "held-out accuracy {accuracy}");

    // Auditor: every record of one job is in the signed checkpoint's tree.
    let s = c.status("acme", &ids[0]).unwrap();
    // submit, route ×2, stage ×3, complete
    assert_eq!(s.audit.len(), 7, "{:?}", s.audit);
    let mut guard = log.lock().unwrap();
    let text = guard.checkpoint(&[&signer], 1_700_000_000).unwrap();
    let cp = Checkpoint::verify(&text, &[signer.verifier()], CheckpointMode::Classical).unwrap();
    let mut actions = vec![];
    for &i in &s.audit {
        let rec = guard.read_record(i).unwrap();
        let proof = guard.inclusion_proof(i, cp.size).unwrap();
        merkle::verify_inclusion(&merkle::leaf_hash(&rec), i, cp.size, &proof, &cp.root).unwrap();
        let e = AuditEntry::from_json(std::str::from_utf8(&rec).unwrap()).unwrap();
        actions.push(e.action);
    }
    assert_eq!(
        actions,
        [
            "job.submit",
            "job.route",
            "job.stage",
            "job.route",
            "job.stage",
            "job.stage",
            "job.complete"
        ]
    );
    // A wrong record does not prove.
    let other = guard.read_record(s.audit[0] + 1).unwrap();
    let proof = guard.inclusion_proof(s.audit[0], cp.size).unwrap();
    assert!(
        merkle::verify_inclusion(
            &merkle::leaf_hash(&other),
            s.audit[0],
            cp.size,
            &proof,
            &cp.root
        )
        .is_err()
    );
}

#[test]
fn manifests_are_required_and_bound_to_the_job() {
    let audit = MemoryAudit::default();
    let mut c = Coordinator::new(production(), KeyRing::trusting(key().verifying_key()))
        .with_audit(Box::new(audit.clone()));
    c.router_mut()
        .add_quantum(QuantumTarget::local(1 << 30, 1e9));
    let payload = json!({"stages": [{"name": "bell", "kind": "quantum", "qasm": BELL, "shots": 10, "output": "c"}]});

    let unsigned = JobSubmission {
        tenant: "acme".into(),
        mode: JobMode::Quantum,
        payload: payload.clone(),
        manifest: None,
    };
    assert!(matches!(
        c.submit(unsigned, Some("acme"), 0),
        Err(HybridError::Unsigned)
    ));
    // The refusal is audited as a P2 denial.
    let entries = audit.entries.lock().unwrap().clone();
    assert_eq!(entries.last().unwrap().decision.outcome, Outcome::Deny);
    assert_eq!(
        entries.last().unwrap().decision.reason.as_deref(),
        Some("manifest_missing")
    );

    // Signed for another payload.
    let mut other = signed("acme", JobMode::Quantum, json!({"stages": []}));
    other.payload = payload.clone();
    assert!(matches!(
        c.submit(other, Some("acme"), 0),
        Err(HybridError::ManifestMismatch(_))
    ));
    // Signed for another tenant.
    let mut moved = signed("evil", JobMode::Quantum, payload.clone());
    moved.tenant = "acme".into();
    assert!(matches!(
        c.submit(moved, Some("acme"), 0),
        Err(HybridError::ManifestMismatch(_))
    ));
    // Signed by an untrusted key.
    let stranger = SigningKey::generate(KeySpec::Hybrid(Algorithm::MlDsa65));
    let mut foreign = signed("acme", JobMode::Quantum, payload.clone());
    foreign.manifest = Some(
        JobStatement::for_job("acme", JobMode::Quantum, &payload)
            .sign(&stranger, Mode::default())
            .unwrap(),
    );
    assert!(matches!(
        c.submit(foreign, Some("acme"), 0),
        Err(HybridError::Manifest(_))
    ));
    // P5: the token's tenant must be the job's; no token outside simulation.
    assert!(matches!(
        c.submit(
            signed("acme", JobMode::Quantum, payload.clone()),
            Some("other"),
            0
        ),
        Err(HybridError::Forbidden(_))
    ));
    assert!(matches!(
        c.submit(signed("acme", JobMode::Quantum, payload.clone()), None, 0),
        Err(HybridError::Unauthenticated(_))
    ));
    // A good one runs, and other tenants cannot see it.
    let id = c
        .submit(signed("acme", JobMode::Quantum, payload), Some("acme"), 0)
        .unwrap();
    c.run_all(1);
    assert_eq!(c.status("acme", &id).unwrap().state, JobState::Completed);
    assert!(matches!(
        c.status("other", &id),
        Err(HybridError::NotFound(_))
    ));
}

#[test]
fn failover_to_the_next_provider_then_to_the_declared_fallback() {
    let audit = MemoryAudit::default();
    let mut c = Coordinator::new(simulation(), KeyRing::new()).with_audit(Box::new(audit.clone()));
    c.router_mut()
        .add_quantum(QuantumTarget::provider(Arc::new(DownProvider), 30));
    c.router_mut()
        .add_quantum(QuantumTarget::local(1 << 30, 1e9));
    let stage = |fallback: Option<serde_json::Value>| {
        let mut s = json!({"name": "bell", "kind": "quantum", "qasm": BELL, "shots": 2000, "seed": 5,
                           "provider": "down-provider", "output": "c"});
        if let Some(f) = fallback {
            s["fallback"] = f;
        }
        json!({"stages": [s, {"name": "p", "kind": "classical", "op": "parity_expectation", "input": "c", "output": "zz"}]})
    };
    let sub = |p| JobSubmission {
        tenant: "t1".into(),
        mode: JobMode::Quantum,
        payload: p,
        manifest: None,
    };
    let id = c.submit(sub(stage(None)), None, 0).unwrap();
    c.run_all(10);
    let s = c.status("t1", &id).unwrap();
    assert_eq!(s.state, JobState::Completed, "{:?}", s.error);
    assert_eq!(s.stages[0].failovers.len(), 1);
    assert_eq!(s.stages[0].failovers[0].target, "down-provider");
    assert!(s.stages[0].failovers[0].reason.contains("outage"));
    assert_eq!(s.stages[0].target.as_deref(), Some("local"));
    // A Bell pair has even parity only: <ZZ> = 1 exactly, whatever the samples.
    assert_eq!(s.outputs["zz"], Value::Number(1.0));
    // TVD of 2000 shots against (0.5, 0.5), as computed by hand from the counts.
    let Value::Counts(counts) = &s.outputs["c"] else {
        panic!()
    };
    let p00 = counts.get("00").copied().unwrap_or(0) as f64 / 2000.0;
    let tvd = s.stages[0].quantum.as_ref().unwrap().tvd.unwrap();
    assert!((tvd - (p00 - 0.5).abs()).abs() < 1e-12, "{tvd} vs {p00}");
    assert!(tvd < 0.05);
    let entries = audit.entries.lock().unwrap().clone();
    assert!(entries.iter().any(|e| e.action == "job.failover"));

    // Only the down provider, with a declared fallback value.
    let mut c2 = Coordinator::new(simulation(), KeyRing::new());
    c2.router_mut()
        .add_quantum(QuantumTarget::provider(Arc::new(DownProvider), 30));
    let id = c2
        .submit(
            sub(stage(Some(json!({"value": {"00": 1, "11": 1}})))),
            None,
            0,
        )
        .unwrap();
    c2.run_all(10);
    let s = c2.status("t1", &id).unwrap();
    assert_eq!(s.state, JobState::Completed, "{:?}", s.error);
    assert!(s.stages[0].fallback_used);
    assert_eq!(s.stages[0].target.as_deref(), Some("fallback"));
    // Without a fallback the job fails, saying why.
    let id = c2.submit(sub(stage(None)), None, 100_000).unwrap();
    c2.run_all(100_000);
    let s = c2.status("t1", &id).unwrap();
    assert_eq!(s.state, JobState::Failed);
    assert!(s.error.unwrap().contains("outage"));
}

#[test]
fn p6_rejects_a_statevector_that_does_not_fit() {
    let audit = MemoryAudit::default();
    let mut c = Coordinator::new(simulation(), KeyRing::new()).with_audit(Box::new(audit.clone()));
    // 64 MiB: 2^22 × 16 B = 64 MiB fits; 2^23 × 8 B = 64 MiB fits single; 2^24 fits neither.
    c.router_mut()
        .add_quantum(QuantumTarget::local(64 << 20, 1e12));
    let qasm =
        |n: usize| format!("OPENQASM 2.0;\ninclude \"qelib1.inc\";\nqreg q[{n}];\nh q[0];\n");
    let sub = |n| JobSubmission {
        tenant: "t1".into(),
        mode: JobMode::Quantum,
        payload: json!({"stages": [{"name": "s", "kind": "quantum", "qasm": qasm(n), "observables": [format!("{}Z", "I".repeat(n - 1))], "output": "e"}]}),
        manifest: None,
    };
    let big = c.submit(sub(24), None, 0).unwrap();
    let degraded = c.submit(sub(23), None, 0).unwrap();
    let fits = c.submit(sub(22), None, 0).unwrap();
    c.run_all(1);
    let s = c.status("t1", &big).unwrap();
    assert_eq!(s.state, JobState::Failed);
    let err = s.error.unwrap();
    assert!(
        err.contains("p6.memory") && err.contains("268435456 B"),
        "{err}"
    );
    let s = c.status("t1", &degraded).unwrap();
    assert_eq!(s.state, JobState::Completed, "{:?}", s.error);
    assert_eq!(s.stages[0].precision.as_deref(), Some("single"));
    assert!(
        s.stages[0]
            .degraded
            .as_deref()
            .unwrap()
            .contains("2^23 × 16 B")
    );
    // <Z0> after H is 0.
    let Value::List(e) = &s.outputs["e"] else {
        panic!()
    };
    assert!(e[0].abs() < 1e-6);
    let s = c.status("t1", &fits).unwrap();
    assert_eq!(s.stages[0].precision.as_deref(), Some("double"));
    let entries = audit.entries.lock().unwrap().clone();
    assert!(entries.iter().any(|e| e.action == "job.route"
        && e.decision.outcome == Outcome::Deny
        && e.decision.reason.as_deref() == Some("p6.memory")));
}

#[test]
fn tenant_queues_are_served_round_robin() {
    let mut c = Coordinator::new(simulation(), KeyRing::new());
    c.router_mut()
        .add_quantum(QuantumTarget::local(1 << 30, 1e9));
    let sub = |t: &str| JobSubmission {
        tenant: t.into(),
        mode: JobMode::Quantum,
        payload: json!({"stages": [{"name": "s", "kind": "quantum", "qasm": BELL, "shots": 1, "output": "c"}]}),
        manifest: None,
    };
    let a: Vec<String> = (0..4)
        .map(|_| c.submit(sub("a"), None, 0).unwrap())
        .collect();
    let b = c.submit(sub("b"), None, 0).unwrap();
    assert_eq!(c.run_next(1).unwrap(), a[0]);
    assert_eq!(c.run_next(1).unwrap(), b);
    assert_eq!(c.run_next(1).unwrap(), a[1]);
    // Queue limit per tenant (429 at the host).
    let mut small = Coordinator::new(
        CoordinatorConfig {
            max_queue_per_tenant: 2,
            ..simulation()
        },
        KeyRing::new(),
    );
    small.submit(sub("a"), None, 0).unwrap();
    small.submit(sub("a"), None, 0).unwrap();
    assert!(matches!(
        small.submit(sub("a"), None, 0),
        Err(HybridError::QueueFull { limit: 2, .. })
    ));
    small.submit(sub("b"), None, 0).unwrap();
}

#[test]
fn invalid_jobs_name_the_field() {
    let mut c = Coordinator::new(simulation(), KeyRing::new());
    let cases = [
        (
            json!({"stages": [{"name": "s", "kind": "quantum", "qasm": "OPENQASM 2.0;\nqreg q[1];\nfoo q[0];\n", "output": "c"}]}),
            "payload.stages[0].qasm",
        ),
        (
            json!({"stages": [{"name": "n", "kind": "neural", "model": "nope", "input": "x", "output": "y"}], "inputs": {"x": 1.0}}),
            "payload.stages[0].model",
        ),
        (json!({"x": 1}), "payload"),
        (json!([1, 2]), "payload"),
        (json!({"pipeline": "missing"}), "payload.pipeline"),
    ];
    for (payload, field) in cases {
        let sub = JobSubmission {
            tenant: "t1".into(),
            mode: JobMode::Hybrid,
            payload,
            manifest: None,
        };
        match c.submit(sub, None, 0) {
            Err(HybridError::Invalid { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{field}: {other:?}"),
        }
    }
    let bad_tenant = JobSubmission {
        tenant: "Bad Tenant".into(),
        mode: JobMode::Quantum,
        payload: json!({}),
        manifest: None,
    };
    assert!(matches!(
        c.submit(bad_tenant, None, 0),
        Err(HybridError::Invalid { field, .. }) if field == "tenant"
    ));
}

/// Captures everything `tracing` writes during the test.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn no_raw_payload_reaches_metrics_logs_or_the_audit_log() {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = audit_log(dir.path());
    tracing::subscriber::with_default(subscriber, || {
        let mut c =
            Coordinator::new(simulation(), KeyRing::new()).with_audit(Box::new(log.clone()));
        c.router_mut()
            .add_quantum(QuantumTarget::local(1 << 30, 1e9));
        c.router_mut()
            .add_quantum(QuantumTarget::provider(Arc::new(DownProvider), 30));
        let qasm = "OPENQASM 2.0;\ninclude \"qelib1.inc\";\n// patient-4711-secret\nqreg q[1];\ncreg c[1];\nry(theta) q[0];\nmeasure q -> c;\n";
        let sub = JobSubmission {
            tenant: "t1".into(),
            mode: JobMode::Quantum,
            payload: json!({
                "inputs": {"secret_angle": 0.918273645},
                "stages": [{"name": "s", "kind": "quantum", "qasm": qasm, "bind": {"theta": "secret_angle"},
                            "shots": 100, "provider": "down-provider", "output": "c"}]
            }),
            manifest: None,
        };
        let id = c.submit(sub, None, 0).unwrap();
        c.run_all(1);
        assert_eq!(c.status("t1", &id).unwrap().state, JobState::Completed);
        let mut reg = prometheus_client::registry::Registry::default();
        c.telemetry().register(&mut reg);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
        assert!(text.contains("nf_quantum_shots_total{target=\"local\"} 100"));
        assert!(
            text.contains("nf_hybrid_failovers_total{kind=\"quantum\",code=\"target_error\"} 1")
        );
        for marker in [
            "patient-4711",
            "0.918273645",
            "918273645",
            "secret_angle",
            "ry(",
            "theta",
        ] {
            assert!(!text.contains(marker), "metrics leak {marker}");
        }
    });
    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("circuit_sha256"), "logs: {logs}");
    let mut audit_bytes = vec![];
    {
        let g = log.lock().unwrap();
        for i in 0..g.size() {
            audit_bytes.extend(g.read_record(i).unwrap());
        }
    }
    let audit_text = String::from_utf8(audit_bytes).unwrap();
    assert!(audit_text.contains("job.submit"));
    for marker in [
        "patient-4711",
        "0.918273645",
        "918273645",
        "secret_angle",
        "theta",
        "outage",
    ] {
        assert!(!logs.contains(marker), "logs leak {marker}: {logs}");
        assert!(!audit_text.contains(marker), "audit leaks {marker}");
    }
}
