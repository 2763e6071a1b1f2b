//! `atom demo`: starts the hosts on loopback (a child `atom serve`), then walks the documents'
//! scenario over HTTP — nodes, two tenants (one queues on its quota), a signed hybrid job —
//! and ends with the policy matrix and an audit inclusion proof verified offline.

use super::CliError;
use atom_fabric::hybrid::{JobMode, JobStatement};
use atom_policy::config::Mode;
use atom_policy::jwt::JwtValidator;
use atom_policy::keys::{Algorithm, KeySpec, SigningKey};
use atom_policy::merkle;
use atom_policy::note::{Checkpoint, CheckpointMode, NoteVerifier};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        // SIGTERM first, so the host drains and syncs its audit log.
        #[cfg(unix)]
        {
            let _ = Command::new("kill").arg(self.0.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.0.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn http(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Result<(u16, Value), CliError> {
    let err = |e: std::io::Error| CliError::failed(format!("HTTP {method} {path}: {e}"));
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(err)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(err)?;
    let payload = body.map(Value::to_string).unwrap_or_default();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        payload.len()
    );
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(&payload);
    s.write_all(req.as_bytes()).map_err(err)?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(err)?;
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| CliError::failed(format!("HTTP {method} {path}: bad response")))?;
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("");
    Ok((
        status,
        serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.to_owned())),
    ))
}

fn step(n: u32, what: &str) {
    println!("\n[{n}] {what}");
}

/// Runs the demo.
pub fn run() -> Result<(), CliError> {
    let work = std::env::temp_dir().join(format!("atom-demo-hosts-{}", std::process::id()));
    let r = scenario(&work);
    let _ = std::fs::remove_dir_all(&work);
    r
}

fn scenario(work: &std::path::Path) -> Result<(), CliError> {
    let io = |e: std::io::Error| CliError::failed(format!("demo files: {e}"));
    let started = Instant::now();
    let secret = format!("demo-secret-{}", std::process::id());
    let now = super::trust::now();
    let tok = |tenant: &str| {
        JwtValidator::hs256(secret.as_bytes())
            .issue_hs256(secret.as_bytes(), tenant, now, now + 600)
            .map_err(|e| CliError::failed(format!("token: {e}")))
    };

    step(
        1,
        "start the hosts on loopback (production mode: JWT and signed jobs required)",
    );
    let job_key = SigningKey::generate(KeySpec::Hybrid(Algorithm::MlDsa65));
    let trusted = work.join("data/keys/trusted");
    std::fs::create_dir_all(&trusted).map_err(io)?;
    std::fs::write(trusted.join("jobs.pub"), job_key.verifying_key().to_text()).map_err(io)?;
    let ports_file = work.join("ports.json");
    let exe = std::env::current_exe().map_err(io)?;
    let child = Command::new(exe)
        .args([
            "serve",
            "--scheduler-port",
            "0",
            "--agent-port",
            "0",
            "--env-default",
            "/nonexistent",
            "--data-dir",
        ])
        .arg(work.join("data"))
        .arg("--ports-file")
        .arg(&ports_file)
        .env("SIMULATION_MODE", "false")
        .env("PQC_MODE", "hybrid")
        .env("MAX_TENANT_GPUs", "2")
        .env("ATOM_JWT_HS256_SECRET", &secret)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(io)?;
    let _server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ports_file.exists() {
        if Instant::now() > deadline {
            return Err(CliError::failed("atom serve did not start within 30 s"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(50));
    let ports: Value = serde_json::from_str(&std::fs::read_to_string(&ports_file).map_err(io)?)
        .map_err(|e| CliError::failed(format!("ports file: {e}")))?;
    let (sp, ap) = (
        ports["scheduler"].as_u64().unwrap_or(0) as u16,
        ports["agent"].as_u64().unwrap_or(0) as u16,
    );
    let (_, health) = http(sp, "GET", "/health", None, None)?;
    println!(
        "    scheduler :{sp}  hybrid agent :{ap}  status {}",
        health["status"]
    );

    step(
        2,
        "register two nodes (the documents' body, and a richer one)",
    );
    let ops = tok("ops")?;
    for body in [
        json!({"node_id": "node-sim-1", "gpus": 1}),
        json!({"node_id": "node-sim-2", "gpus": 4, "gpu_model": "A100", "labels": {"region": "eu-west"}}),
    ] {
        let (s, b) = http(sp, "POST", "/node/register", Some(&ops), Some(&body))?;
        println!("    {} -> {s} {}", body["node_id"], b["status"]);
    }

    step(
        3,
        "schedule models for two tenants (MAX_TENANT_GPUs=2: the third t1 request queues)",
    );
    let (t1, t2) = (tok("t1")?, tok("t2")?);
    for (tenant, token, model) in [
        ("t1", &t1, "m1"),
        ("t1", &t1, "m2"),
        ("t1", &t1, "m3"),
        ("t2", &t2, "m1"),
    ] {
        let req = json!({"tenant_id": tenant, "model_id": model, "model_version": "v1", "resources": {"gpu": 1, "mem": "4GB"}});
        let (s, b) = http(sp, "POST", "/schedule", Some(token), Some(&req))?;
        match b["status"].as_str() {
            Some("placed") => {
                let r = &b["placement"]["replicas"][0];
                println!(
                    "    {tenant}/{model} -> {s} placed {} on {} gpu {}",
                    b["request_id"], r["node"], r["devices"]
                );
            }
            _ => println!(
                "    {tenant}/{model} -> {s} {} ({}: {})",
                b["status"], b["reason"], b["detail"]
            ),
        }
    }

    step(
        4,
        "run a signed hybrid job: neural encoder (ONNX) -> circuit (sampled) -> parity",
    );
    let payload = json!({"pipeline": "angle-parity", "inputs": {"x": 0.7}});
    let manifest = JobStatement::for_job("t1", JobMode::Hybrid, &payload)
        .sign(&job_key, Mode::default())
        .map_err(|e| CliError::failed(e.to_string()))?;
    let job = json!({"tenant": "t1", "mode": "hybrid", "payload": payload, "manifest": manifest});
    let (s, b) = http(ap, "POST", "/agent/submit", Some(&t1), Some(&job))?;
    if s != 201 {
        return Err(CliError::failed(format!("submit: {s} {b}")));
    }
    let id = b["id"].as_str().unwrap_or("").to_owned();
    let status = loop {
        let (_, st) = http(ap, "GET", &format!("/agent/status/{id}"), Some(&t1), None)?;
        if st["state"] == "completed" || st["state"] == "failed" {
            break st;
        }
        if Instant::now() > deadline + Duration::from_secs(30) {
            return Err(CliError::failed(format!("job {id} did not finish")));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    println!(
        "    {id}: {} (manifest verified: {}, keys {})",
        status["state"],
        status["manifest"]["verified"],
        status["manifest"]["key_ids"].as_array().map_or(0, Vec::len)
    );
    for st in status["stages"].as_array().into_iter().flatten() {
        println!(
            "    stage {:9} {:9} on {:18} {:7.2} ms{}",
            st["name"].as_str().unwrap_or(""),
            st["kind"].as_str().unwrap_or(""),
            st["target"].as_str().unwrap_or(""),
            st["duration_ms"].as_f64().unwrap_or(0.0),
            st["quantum"]["tvd"]
                .as_f64()
                .map(|t| format!("  TVD {t:.4}"))
                .unwrap_or_default()
        );
    }
    println!(
        "    angles {}  counts {}  <ZZ> = {}",
        status["outputs"]["angles"]["data"], status["outputs"]["counts"], status["outputs"]["zz"]
    );

    step(5, "policy matrix of the decisions taken");
    let (_, matrix) = http(sp, "GET", "/policy/matrix", None, None)?;
    if let Some(rows) = matrix.as_object() {
        for (p, row) in rows {
            println!("    {p}: {row}");
        }
    }

    step(6, "prove the job's submission from the audit log, offline");
    let idx = status["audit"][0].as_u64().unwrap_or(0);
    let (_, proof) = http(sp, "GET", &format!("/audit/proof/{idx}"), None, None)?;
    let vkey = proof["verifier_key"].as_str().unwrap_or("");
    let verifier = NoteVerifier::from_vkey(vkey).map_err(|e| CliError::failed(e.to_string()))?;
    let cp = Checkpoint::verify(
        proof["checkpoint"].as_str().unwrap_or(""),
        &[verifier],
        CheckpointMode::Classical,
    )
    .map_err(|e| CliError::failed(format!("checkpoint: {e}")))?;
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let hashes: Vec<Vec<u8>> = proof["proof"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|h| h.as_str().and_then(|s| b64.decode(s).ok()))
        .collect();
    let record = proof["record"].as_str().unwrap_or("");
    merkle::verify_inclusion(
        &merkle::leaf_hash(record.as_bytes()),
        idx,
        cp.size,
        &hashes,
        &cp.root,
    )
    .map_err(|e| CliError::failed(format!("inclusion proof: {e}")))?;
    println!("    record {idx}: {record}");
    println!(
        "    checkpoint size {} root {} — signature and inclusion proof verified",
        cp.size,
        b64.encode(cp.root)
    );

    println!(
        "\ndemo finished in {:.1} s; stopping the hosts",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
