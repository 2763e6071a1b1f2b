//! `atom demo`: a short real scenario through the library, printed step by step.

use super::CliError;
use atom_policy::config::{Mode, PqcMode};
use atom_policy::dsse::{Envelope, JOB_PAYLOAD_TYPE};
use atom_policy::handshake::{self, HybridKeyPair, SigningKeyInfo};
use atom_policy::jwt::JwtValidator;
use atom_policy::keyring::{KeyRing, Rotation};
use atom_policy::keys::{Algorithm, KeySpec, SigningKey};
use atom_policy::manifest::{HashOptions, ModelManifest, SignedBundle};
use atom_policy::policy::{
    Budgets, JobKind, PolicyEngine, PolicyMatrix, ResourceEstimate, RiskyAction, statevector_bytes,
};

fn step(n: u32, what: &str) {
    println!("\n[{n}] {what}");
}

/// Runs the demo: keys, a signed model manifest, a signed job, a key rotation, tenant tokens,
/// the handshake bridge and every policy, ending with the policy matrix.
pub fn run() -> Result<(), CliError> {
    let work = std::env::temp_dir().join(format!("atom-demo-{}", std::process::id()));
    let result = scenario(&work);
    let _ = std::fs::remove_dir_all(&work);
    result
}

fn scenario(work: &std::path::Path) -> Result<(), CliError> {
    let io = |e: std::io::Error| CliError::failed(format!("demo files: {e}"));
    let now = super::trust::now();
    let mode = Mode::new(PqcMode::Hybrid, false);
    let engine = PolicyEngine::new(
        mode,
        Budgets::default(),
        *b"atom-fabric demo P1 hashing key!",
    );
    let mut matrix = PolicyMatrix::new();

    step(1, "generate a hybrid ECDSA P-256 + ML-DSA-65 signing key");
    let key = SigningKey::generate(KeySpec::Hybrid(Algorithm::MlDsa65));
    println!(
        "    key {} ({})",
        &key.key_id()[..16],
        key.algorithm_label()
    );
    let mut ring = KeyRing::trusting(key.verifying_key());

    step(
        2,
        "sign a model manifest (OpenSSF model signing bundle, hybrid signatures)",
    );
    let model = work.join("resnet-tiny");
    std::fs::create_dir_all(model.join("weights")).map_err(io)?;
    std::fs::write(model.join("config.json"), br#"{"layers":4}"#).map_err(io)?;
    std::fs::write(model.join("weights/layer0.bin"), vec![42u8; 1 << 20]).map_err(io)?;
    let manifest = ModelManifest::hash_dir(&model, &HashOptions::default())?;
    let bundle = SignedBundle::sign(&manifest, &key, mode)?;
    for f in &manifest.files {
        println!("    {:24} sha256 {}", f.name, &f.digest[..16]);
    }
    let verified = bundle.verify_dir(&model, &ring, mode, now, &HashOptions::default());
    println!(
        "    verify: {}",
        if verified.is_ok() {
            "OK (ECDSA + ML-DSA)"
        } else {
            "FAILED"
        }
    );
    matrix.record(&engine.p2_signed(verified.map(|_| ()).map_err(|e| e.to_string())));

    step(3, "tamper with one weight file and verify again");
    std::fs::write(model.join("weights/layer0.bin"), vec![43u8; 1 << 20]).map_err(io)?;
    let tampered = bundle.verify_dir(&model, &ring, mode, now, &HashOptions::default());
    match &tampered {
        Err(e) => println!("    refused: {e}"),
        Ok(_) => return Err(CliError::failed("tampered model verified: this is a bug")),
    }
    matrix.record(&engine.p2_signed(tampered.map(|_| ()).map_err(|e| e.to_string())));

    step(4, "sign and verify a hybrid job manifest (DSSE)");
    let job = br#"{"tenant":"t1","mode":"hybrid","stages":["neural","quantum"]}"#;
    let envelope = Envelope::sign(JOB_PAYLOAD_TYPE, job, &key, mode)?;
    let (_, v) = envelope.verify(&ring, mode, now, JOB_PAYLOAD_TYPE)?;
    println!("    {} signatures verified", v.key_ids.len());
    matrix.record(&engine.p2_signed(Ok(())));

    step(5, "rotate the signing key (P3 needs approved_by)");
    let next = SigningKey::generate(KeySpec::Hybrid(Algorithm::MlDsa65));
    let unapproved = Rotation {
        approved_by: None,
        now,
        old_key_grace_secs: 86_400,
    };
    match ring.rotate(next.verifying_key(), &unapproved, mode) {
        Err(e) => println!("    without approval: {e}"),
        Ok(_) => {
            return Err(CliError::failed(
                "unapproved rotation accepted: this is a bug",
            ));
        }
    }
    matrix.record(&engine.p3_execution(RiskyAction::KeyRotation, None, false));
    let approved = Rotation {
        approved_by: Some("security-officer".into()),
        ..unapproved
    };
    let record = ring.rotate(next.verifying_key(), &approved, mode)?;
    println!(
        "    approved by security-officer: new key {}, old key verifies until {}",
        &record.new_key_id[..16],
        record.old_expires_at.unwrap_or(0)
    );
    matrix.record(&record.decision);
    let still = envelope.verify(&ring, mode, now, JOB_PAYLOAD_TYPE).is_ok();
    println!("    job signed by the retired key still verifies: {still}");

    step(6, "tenant tokens (P5)");
    let secret = b"demo-only shared secret, 32 bytes";
    let jwt = JwtValidator::hs256(secret).with_audience("atom-fabric");
    let token = jwt
        .issue_hs256(secret, "t1", now, now + 600)
        .map_err(|e| CliError::failed(e.to_string()))?;
    let ok = jwt.validate(&token, Some("t1"), now).map(|c| c.tenant_id);
    matrix.record(&engine.p5_tenant(ok.as_deref().ok(), "t1"));
    let cross = jwt.validate(&token, Some("t2"), now);
    println!("    t1 token for t1: {:?}", ok.map_err(|e| e.to_string()));
    println!(
        "    t1 token for t2: {}",
        cross
            .as_ref()
            .err()
            .map_or("accepted (bug)".to_owned(), |e| e.to_string())
    );
    matrix.record(&engine.p5_tenant(
        cross.ok().map(|c| c.tenant_id).as_deref().or(Some("t1")),
        "t2",
    ));

    step(
        7,
        "budgets (P6), telemetry (P1), observability (P4), snapshots (P7)",
    );
    let fits = ResourceEstimate {
        kind: JobKind::Quantum,
        latency_ms: 150,
        memory_bytes: statevector_bytes(20, 16).unwrap_or(u64::MAX),
    };
    let huge = ResourceEstimate {
        kind: JobKind::Quantum,
        latency_ms: 150,
        memory_bytes: statevector_bytes(34, 16).unwrap_or(u64::MAX),
    };
    for (label, est) in [("20-qubit circuit", fits), ("34-qubit circuit", huge)] {
        let d = engine.p6_budget(&est, None);
        println!("    {label}: {d:?}");
        matrix.record(&d);
    }
    let user = engine.p1_hash_identifier("t1", "alice@example.com");
    matrix.record(&engine.p1_telemetry(&[("tenant", "t1"), ("user", &user)]));
    matrix.record(&engine.p1_telemetry(&[("tenant", "t1"), ("user", "alice@example.com")]));
    println!("    user id in telemetry: {user}");
    matrix.record(&engine.p4_observability(&["/health", "/metrics", "/schedule"]));
    let original = &manifest.files[1].digest;
    let now_digest = ModelManifest::hash_dir(&model, &HashOptions::default())?.files[1]
        .digest
        .clone();
    matrix.record(&engine.p7_snapshot(original, &now_digest));

    step(8, "post-quantum handshake bridge (X25519 + ML-KEM-768)");
    let pair = HybridKeyPair::generate();
    let report = handshake::report(
        &pair,
        mode,
        Some(SigningKeyInfo {
            algorithm: next.algorithm_label(),
            key_id: next.key_id(),
        }),
    );
    println!("    {}", serde_json::to_string(&report).unwrap_or_default());

    println!("\nPolicy matrix\n");
    print!("{}", matrix.to_markdown());
    Ok(())
}
