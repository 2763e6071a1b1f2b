//! End-to-end tests of `atom serve` as a separate process on loopback: authentication (P5),
//! bad input never answered with a 5xx, a signed hybrid job in production mode, and a bounded
//! concurrent load whose every response is counted.
#![allow(clippy::unwrap_used)]

use atom_fabric::hybrid::{JobMode, JobStatement};
use atom_policy::config::Mode;
use atom_policy::jwt::JwtValidator;
use atom_policy::keys::{Algorithm, KeySpec, SigningKey};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SECRET: &str = "test-secret-for-hs256-tokens-0123456789";

struct Host {
    child: Child,
    scheduler: u16,
    agent: u16,
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &Path, env: &[(&str, &str)]) -> Host {
    let ports = dir.join("ports.json");
    let _ = std::fs::remove_file(&ports);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_atom"));
    cmd.args([
        "serve",
        "--scheduler-port",
        "0",
        "--agent-port",
        "0",
        "--env-default",
        "/nonexistent",
        "--data-dir",
    ])
    .arg(dir.join("state"))
    .arg("--ports-file")
    .arg(&ports)
    .env_remove("SIMULATION_MODE")
    .env_remove("PQC_MODE")
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ports.exists() {
        if let Some(s) = child.try_wait().unwrap() {
            panic!("atom serve exited: {s}");
        }
        assert!(Instant::now() < deadline, "atom serve did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(20));
    let p: Value = serde_json::from_str(&std::fs::read_to_string(&ports).unwrap()).unwrap();
    Host {
        child,
        scheduler: p["scheduler"].as_u64().unwrap() as u16,
        agent: p["agent"].as_u64().unwrap() as u16,
    }
}

/// A minimal HTTP/1.1 client (one request per connection), so bodies and headers can be
/// arbitrary bytes.
fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Value) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let text = String::from_utf8_lossy(&out);
    let status: u16 = text.split(' ').nth(1).unwrap().parse().unwrap();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    (
        status,
        serde_json::from_str(body).unwrap_or(Value::String(body.to_owned())),
    )
}

fn post(port: u16, path: &str, token: Option<&str>, body: &Value) -> (u16, Value) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut h = vec![("Content-Type", "application/json")];
    if let Some(a) = &auth {
        h.push(("Authorization", a.as_str()));
    }
    http(port, "POST", path, &h, body.to_string().as_bytes())
}

fn token(tenant: &str, exp_offset: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    JwtValidator::hs256(SECRET.as_bytes())
        .issue_hs256(
            SECRET.as_bytes(),
            tenant,
            now,
            (now as i64 + exp_offset) as u64,
        )
        .unwrap()
}

fn production(dir: &Path) -> Host {
    start(
        dir,
        &[
            ("SIMULATION_MODE", "false"),
            ("PQC_MODE", "hybrid"),
            ("ATOM_JWT_HS256_SECRET", SECRET),
        ],
    )
}

#[test]
fn jwt_is_required_and_bound_to_the_tenant_outside_simulation() {
    let dir = tempfile::tempdir().unwrap();
    let h = production(dir.path());
    let node = json!({"node_id": "n1", "gpus": 2});
    assert_eq!(post(h.scheduler, "/node/register", None, &node).0, 401);
    assert_eq!(
        post(
            h.scheduler,
            "/node/register",
            Some(&token("ops", 300)),
            &node
        )
        .0,
        201
    );
    let req =
        json!({"tenant_id": "t1", "model_id": "m", "model_version": "v", "resources": {"gpu": 1}});
    let (s, b) = post(h.scheduler, "/schedule", None, &req);
    assert_eq!(s, 401, "{b}");
    assert_eq!(
        post(h.scheduler, "/schedule", Some(&token("t2", 300)), &req).0,
        403
    );
    assert_eq!(
        post(h.scheduler, "/schedule", Some(&token("t1", -3600)), &req).0,
        401
    );
    assert_eq!(
        post(h.scheduler, "/schedule", Some("not.a.jwt"), &req).0,
        401
    );
    let forged = {
        let t = token("t1", 300);
        let mut parts: Vec<String> = t.split('.').map(str::to_owned).collect();
        parts[2] = "AAAA".into();
        parts.join(".")
    };
    assert_eq!(post(h.scheduler, "/schedule", Some(&forged), &req).0, 401);
    // alg=none is refused.
    let none = format!(
        "{}.{}.",
        "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0", "eyJ0ZW5hbnRfaWQiOiJ0MSIsImV4cCI6OTk5OTk5OTk5OX0"
    );
    assert_eq!(post(h.scheduler, "/schedule", Some(&none), &req).0, 401);
    let (s, b) = post(h.scheduler, "/schedule", Some(&token("t1", 300)), &req);
    assert_eq!(s, 201, "{b}");

    // P2: a client cannot claim its model manifest was verified; a production deploy without
    // that fact is refused.
    let claimed = json!({"tenant_id": "t1", "model_id": "m", "model_version": "v2", "resources": {"gpu": 1},
        "deploy": {"production": true, "manifest_verified": true, "approved_by": "ops"}});
    let (s, b) = post(h.scheduler, "/schedule", Some(&token("t1", 300)), &claimed);
    assert_eq!(s, 422, "{b}");
    assert_eq!(b["error"]["field"], "deploy.manifest_verified");
    let unverified = json!({"tenant_id": "t1", "model_id": "m", "model_version": "v2", "resources": {"gpu": 1},
        "deploy": {"production": true, "approved_by": "ops"}});
    let (s, b) = post(
        h.scheduler,
        "/schedule",
        Some(&token("t1", 300)),
        &unverified,
    );
    assert!(
        s == 403 || s == 422,
        "production deploy without a verified manifest: {s} {b}"
    );
    assert!(b.to_string().contains("P2"), "{b}");

    // Hybrid jobs: unsigned refused (P2), signed accepted and run.
    let payload = json!({"stages": [{"name": "bell", "kind": "quantum", "shots": 64, "seed": 1,
        "qasm": "OPENQASM 2.0;\ninclude \"qelib1.inc\";\nqreg q[2];\ncreg c[2];\nh q[0];\ncx q[0],q[1];\nmeasure q -> c;\n",
        "output": "c"}]});
    let unsigned = json!({"tenant": "t1", "mode": "quantum", "payload": payload});
    let (s, b) = post(h.agent, "/agent/submit", Some(&token("t1", 300)), &unsigned);
    assert_eq!(s, 403, "{b}");
    assert_eq!(b["error"]["field"], "manifest");
    let key = SigningKey::generate(KeySpec::Hybrid(Algorithm::MlDsa65));
    let trusted = dir.path().join("state/keys/trusted");
    std::fs::create_dir_all(&trusted).unwrap();
    std::fs::write(trusted.join("jobs.pub"), key.verifying_key().to_text()).unwrap();
    drop(h);
    let h = production(dir.path());
    let manifest = JobStatement::for_job("t1", JobMode::Quantum, &payload)
        .sign(&key, Mode::default())
        .unwrap();
    let signed =
        json!({"tenant": "t1", "mode": "quantum", "payload": payload, "manifest": manifest});
    let (s, b) = post(h.agent, "/agent/submit", Some(&token("t1", 300)), &signed);
    assert_eq!(s, 201, "{b}");
    let id = b["id"].as_str().unwrap().to_owned();
    let auth = format!("Bearer {}", token("t1", 300));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (s, st) = http(
            h.agent,
            "GET",
            &format!("/agent/status/{id}"),
            &[("Authorization", &auth)],
            b"",
        );
        assert_eq!(s, 200, "{st}");
        if st["state"] == "completed" {
            assert_eq!(st["manifest"]["verified"], true);
            let c = &st["outputs"]["c"];
            assert_eq!(
                c["00"].as_u64().unwrap_or(0) + c["11"].as_u64().unwrap_or(0),
                64
            );
            break;
        }
        assert!(Instant::now() < deadline, "job did not finish: {st}");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Another tenant's token does not see the job.
    let other = format!("Bearer {}", token("t2", 300));
    assert_eq!(
        http(
            h.agent,
            "GET",
            &format!("/agent/status/{id}"),
            &[("Authorization", &other)],
            b""
        )
        .0,
        404
    );
}

#[test]
fn no_client_input_gets_a_server_error() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(
        dir.path(),
        &[("SIMULATION_MODE", "true"), ("PQC_MODE", "off")],
    );
    let bodies: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"null".to_vec(),
        b"[]".to_vec(),
        b"{\"tenant_id\":".to_vec(),
        vec![0xff, 0xfe, 0x00],
        b"{\"tenant_id\":\"t\",\"model_id\":\"m\",\"model_version\":\"v\",\"resources\":{\"gpu\":4294967296}}".to_vec(),
        b"{\"tenant_id\":\"t\",\"model_id\":\"m\",\"model_version\":\"v\",\"resources\":{\"gpu\":65}}".to_vec(),
        b"{\"tenant_id\":\"t\",\"model_id\":\"m\",\"model_version\":\"v\",\"resources\":{\"mem\":\"9e99GB\"}}".to_vec(),
        b"{\"tenant_id\":\"\",\"model_id\":\"m\",\"model_version\":\"v\",\"resources\":{}}".to_vec(),
        b"{\"node_id\":\"n\",\"gpus\":[{\"model\":1}]}".to_vec(),
        b"{\"tenant\":\"t\",\"mode\":\"hybrid\",\"payload\":{\"stages\":[{\"name\":\"s\",\"kind\":\"classical\",\"op\":\"argmax\",\"input\":\"nope\",\"output\":\"o\"}]}}".to_vec(),
        b"{\"tenant\":\"t\",\"mode\":\"quantum\",\"payload\":{\"stages\":[{\"name\":\"s\",\"kind\":\"quantum\",\"qasm\":\"OPENQASM 2.0;\\ninclude \\\"qelib1.inc\\\";\\nqreg q[40];\\nh q;\\n\",\"observables\":[\"Z\"],\"output\":\"e\"}]}}".to_vec(),
        vec![b'{'; 100_000],
        vec![b'['; 5000],
    ];
    let routes = [
        (h.scheduler, "/schedule"),
        (h.scheduler, "/node/register"),
        (h.scheduler, "/resources/register"),
        (h.scheduler, "/node/launch"),
        (h.scheduler, "/node/metrics"),
        (h.scheduler, "/autoscale/sets"),
        (h.scheduler, "/schedule/req-1/release"),
        (h.agent, "/agent/submit"),
    ];
    for (port, path) in routes {
        for b in &bodies {
            let (s, v) = http(
                port,
                "POST",
                path,
                &[("Content-Type", "application/json")],
                b,
            );
            assert!(
                (400..500).contains(&s),
                "{path} {:?} -> {s} {v}",
                String::from_utf8_lossy(&b[..b.len().min(80)])
            );
            assert!(
                v["error"]["code"].is_string(),
                "{path}: not a JSON error: {v}"
            );
        }
    }
    for path in [
        "/schedule/x",
        "/schedule/req-999999999999999999999",
        "/audit/proof/-1",
        "/audit/proof/999",
        "/slo/%ff/m",
        "/agent/status/job-x",
    ] {
        let port = if path.starts_with("/agent") {
            h.agent
        } else {
            h.scheduler
        };
        let (s, v) = http(port, "GET", path, &[], b"");
        assert!((400..500).contains(&s), "{path} -> {s} {v}");
    }
    // The host is still healthy.
    let (s, v) = http(h.scheduler, "GET", "/health", &[], b"");
    assert_eq!((s, v["status"].as_str()), (200, Some("ok")));
}

#[test]
fn bounded_concurrent_load_is_fully_answered() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(
        dir.path(),
        &[
            ("SIMULATION_MODE", "true"),
            ("PQC_MODE", "off"),
            ("MAX_TENANT_GPUs", "1000"),
        ],
    );
    for n in 0..4 {
        let (s, _) = post(
            h.scheduler,
            "/node/register",
            None,
            &json!({"node_id": format!("n{n}"), "gpus": 8}),
        );
        assert_eq!(s, 201);
    }
    let (threads, per) = (8, 50);
    let port = h.scheduler;
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            std::thread::spawn(move || {
                let mut codes = std::collections::BTreeMap::<u16, u32>::new();
                for i in 0..per {
                    let body = json!({"tenant_id": format!("t{}", t % 4), "model_id": "m", "model_version": "v",
                                      "resources": {"gpu": 1, "gpu_milli": 100}, "idempotency_key": format!("{t}-{i}")});
                    *codes.entry(post(port, "/schedule", None, &body).0).or_default() += 1;
                }
                codes
            })
        })
        .collect();
    let mut total = std::collections::BTreeMap::<u16, u32>::new();
    for h in handles {
        for (k, v) in h.join().unwrap() {
            *total.entry(k).or_default() += v;
        }
    }
    let answered: u32 = total.values().sum();
    assert_eq!(answered, threads * per, "{total:?}");
    // 32 GPUs × 10 slices of 100 milli-GPU = 320 placements; the other 80 queue.
    assert_eq!(total.get(&201), Some(&320), "{total:?}");
    assert_eq!(total.get(&202), Some(&80), "{total:?}");
    let (_, res) = http(h.scheduler, "GET", "/resources", &[], b"");
    assert_eq!(res["allocated"]["gpu_milli"], 32_000);
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// The action for `model` in an autoscale answer.
fn action(answer: &Value, model: &str) -> Value {
    answer["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["model_id"] == model)
        .unwrap()
        .clone()
}

fn report(at_ms: u64, requests: u64, in_flight: u64) -> Value {
    // 17 cumulative buckets (16 bounds + Inf); every request took 40 ms (<= the 50 ms bound).
    let buckets: Vec<u64> = (0..17).map(|i| if i >= 6 { requests } else { 0 }).collect();
    json!({"node": "n0", "replica_id": "1-0", "request_id": 1, "tenant_id": "t1", "model_id": "m1",
           "model_version": "v1", "at_ms": at_ms, "requests_total": requests,
           "latency_sum_ms": requests as f64 * 40.0, "latency_buckets": buckets, "in_flight": in_flight})
}

#[test]
fn autoscaling_from_pushed_replica_metrics_is_planned_applied_audited_and_persisted() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("SIMULATION_MODE", "true"),
        ("PQC_MODE", "off"),
        ("MAX_TENANT_GPUs", "3"),
        ("ATOM_AUTOSCALE_INTERVAL_S", "0"),
    ];
    let h = start(dir.path(), &env);
    let (s, _) = post(
        h.scheduler,
        "/node/register",
        None,
        &json!({"node_id": "n0", "gpus": 8}),
    );
    assert_eq!(s, 201);
    let set = |model: &str, dry_run: bool| {
        json!({"tenant_id": "t1", "model_id": model, "model_version": "v1", "resources": {"gpu": 1},
               "config": {"min_replicas": 0, "max_replicas": 10, "target_per_replica": 2.0, "dry_run": dry_run}})
    };
    let (s, v) = post(h.scheduler, "/autoscale/sets", None, &set("m1", false));
    assert_eq!(s, 201, "{v}");
    assert!(v["audit_index"].is_u64());
    let (s, _) = post(h.scheduler, "/autoscale/sets", None, &set("m2", true));
    assert_eq!(s, 201);
    // Invalid sets and reports: 422 naming what is wrong, nothing kept.
    let mut bad = set("m3", false);
    bad["config"]["max_replicas"] = json!(0);
    bad["config"]["min_replicas"] = json!(2);
    let (s, v) = post(h.scheduler, "/autoscale/sets", None, &bad);
    assert_eq!(s, 422, "{v}");
    let mut r = report(now_ms(), 10, 1);
    r["latency_buckets"] = json!([1, 2]);
    let (s, v) = post(h.scheduler, "/node/metrics", None, &json!({"reports": [r]}));
    assert_eq!(
        (s, v["error"]["field"].as_str()),
        (422, Some("reports[0]")),
        "{v}"
    );

    // The node agent reports: 9 in flight, 200 requests/s of 40 ms (8 busy slots) -> 5 replicas
    // wanted at 2 per replica; the tenant's quota of 3 GPUs caps it (P6).
    let t = now_ms();
    let (s, v) = post(
        h.scheduler,
        "/node/metrics",
        None,
        &json!({"reports": [report(t - 1_000, 0, 0), report(t, 200, 9)]}),
    );
    assert_eq!((s, v["reports"].as_u64()), (202, Some(2)), "{v}");
    let (s, plan) = http(h.scheduler, "GET", "/autoscale/plan", &[], b"");
    assert_eq!(s, 200, "{plan}");
    let m1 = action(&plan, "m1");
    assert_eq!(
        (
            m1["decision"]["current"].as_u64(),
            m1["decision"]["desired"].as_u64()
        ),
        (Some(0), Some(3)),
        "{m1}"
    );
    assert!(
        m1["decision"]["reasons"].to_string().contains("quota"),
        "{m1}"
    );
    assert_eq!(m1["applied"], false);
    let (_, res) = http(h.scheduler, "GET", "/resources", &[], b"");
    assert!(
        res["tenants"]["t1"].is_null() || res["tenants"]["t1"]["quota_usage"][1]["gpu_milli"] == 0,
        "{res}"
    );

    // Reconcile applies m1 (dry_run false) through the scheduler and audits it; m2 stays a plan.
    let (s, v) = http(h.scheduler, "POST", "/autoscale/reconcile", &[], b"");
    assert_eq!(s, 200, "{v}");
    let (m1, m2) = (action(&v, "m1"), action(&v, "m2"));
    assert_eq!(
        (m1["applied"].as_bool(), m2["applied"].as_bool()),
        (Some(true), Some(false)),
        "{v}"
    );
    assert_eq!(m1["errors"], json!([]));
    let idx = m1["audit_index"].as_u64().unwrap();
    let (s, proof) = http(h.scheduler, "GET", &format!("/audit/proof/{idx}"), &[], b"");
    assert_eq!(s, 200, "{proof}");
    // The three requests it scheduled are audited just before, each on its own.
    for i in idx - 3..idx {
        let (s, p) = http(h.scheduler, "GET", &format!("/audit/proof/{i}"), &[], b"");
        assert_eq!(s, 200, "{p}");
        assert!(p.to_string().contains("autoscale.schedule"), "{p}");
    }
    assert!(proof.to_string().contains("autoscale.apply"), "{proof}");
    let (_, res) = http(h.scheduler, "GET", "/resources", &[], b"");
    assert_eq!(
        res["tenants"]["t1"]["quota_usage"][1]["gpu_milli"], 3000,
        "{res}"
    );
    // The three replicas are the set's current count now.
    let (_, v) = http(h.scheduler, "GET", "/autoscale/plan", &[], b"");
    let m1 = action(&v, "m1");
    assert_eq!(m1["decision"]["current"].as_u64(), Some(3), "{m1}");

    // The sets survive a restart (the replicas are in the journal).
    drop(h);
    let h = start(dir.path(), &env);
    let (_, v) = http(h.scheduler, "GET", "/autoscale/plan", &[], b"");
    let models: Vec<&str> = v["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["model_id"].as_str().unwrap())
        .collect();
    assert_eq!(models, ["m1", "m2"]);
    let m1 = &v["actions"][0];
    assert_eq!(m1["decision"]["current"].as_u64(), Some(3), "{m1}");
}
