//! The precheck: is the environment ready for production, only for simulation, or not at all?
//!
//! Rules (from the phase documents): PROCEED when PostgreSQL is reachable, Vault is configured
//! with a usable PQC key, and GPU nodes are configured (or simulation is on); otherwise, if
//! simulation is on (or not explicitly off, in which case missing infrastructure switches it on),
//! PROCEED_SIMULATION; otherwise BLOCK. Secrets are redacted; the effective environment's SHA-256
//! is reported so runs can be compared.
//!
//! ```
//! use atom_policy::config::Env;
//! use atom_policy::precheck::{run, Outcome, PrecheckOptions};
//! let report = run(&Env::new(), &Env::new(), &PrecheckOptions::default());
//! assert_eq!(report.decision, Outcome::ProceedSimulation); // nothing configured: simulate
//! assert!(report.simulation_forced);
//! ```

use crate::config::{Env, parse_bool};
use crate::keys::{SigningKey, sha256_hex};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// The variables the fabric reads (SPEC.md), reported and hashed.
pub const VARIABLES: [&str; 18] = [
    "POSTGRES_DSN",
    "VAULT_ADDR",
    "VAULT_PQC_KEY_PATH",
    "COSIGN_KEY_PATH",
    "PQC_MODE",
    "NEURAL_FABRIC_MODE",
    "SCHEDULER_PORT",
    "KUBECONFIG",
    "REDIS_URL",
    "SIMULATION_MODE",
    "GPU_NODES",
    "MAX_TENANT_GPUs",
    "MODEL_STORE_URL",
    "PROM_URL",
    "QUANTUM_PROVIDER",
    "QPU_REGION",
    "GPU_DRIVER_MOCK",
    "OPENAI_KEY",
];

/// The decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Outcome {
    /// Everything needed for production is present.
    Proceed,
    /// Run, in simulation.
    ProceedSimulation,
    /// Do not run.
    Block,
}

/// Options of a precheck run.
#[derive(Debug, Clone)]
pub struct PrecheckOptions {
    /// Timeout of the PostgreSQL connection attempt (default 3 s).
    pub postgres_timeout: Duration,
    /// Where `.env.default` was loaded from, if it was.
    pub env_default_path: Option<String>,
    /// Time of the run (unix seconds), for the report.
    pub now: u64,
}

impl Default for PrecheckOptions {
    fn default() -> Self {
        Self {
            postgres_timeout: Duration::from_secs(3),
            env_default_path: None,
            now: 0,
        }
    }
}

/// The precheck report (written as JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrecheckReport {
    /// PROCEED, PROCEED_SIMULATION or BLOCK.
    pub decision: Outcome,
    /// Whether the run proceeds in simulation.
    pub simulation_mode: bool,
    /// True when missing infrastructure switched simulation on.
    pub simulation_forced: bool,
    /// Why the decision is what it is.
    pub reasons: Vec<String>,
    /// Each check's result.
    pub checks: BTreeMap<String, String>,
    /// The known variables, secrets redacted.
    pub environment: BTreeMap<String, String>,
    /// SHA-256 of the effective environment (see [`env_sha256`]).
    pub env_sha256: String,
    /// Unix seconds.
    pub generated_at: u64,
}

/// True for names whose values are secret.
pub fn is_secret_name(name: &str) -> bool {
    let n = name.to_ascii_uppercase();
    ["KEY", "SECRET", "TOKEN", "PASSWORD", "PASSWD", "CREDENTIAL"]
        .iter()
        .any(|s| n.contains(s))
        && !n.ends_with("_PATH")
}

/// Redacts a variable's value: secrets become `<REDACTED>`, passwords inside URLs and DSNs too.
pub fn redact(name: &str, value: &str) -> String {
    if is_secret_name(name) {
        return "<REDACTED>".into();
    }
    redact_password(value)
}

fn redact_password(value: &str) -> String {
    // URL form: scheme://user:password@host
    if let Some((scheme, rest)) = value.split_once("://")
        && let Some((creds, host)) = rest.split_once('@')
        && let Some((user, _)) = creds.split_once(':')
    {
        return format!("{scheme}://{user}:<REDACTED>@{host}");
    }
    // key=value form: password=...
    value
        .split_whitespace()
        .map(|kv| match kv.split_once('=') {
            Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=<REDACTED>"),
            _ => kv.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// SHA-256 over `NAME=value\n` for every known variable that is set, sorted by name; secret
/// values enter as their own SHA-256 so the hash never helps guess them.
pub fn env_sha256(env: &Env) -> String {
    let mut text = String::new();
    for name in VARIABLES
        .iter()
        .copied()
        .collect::<std::collections::BTreeSet<_>>()
    {
        if let Some(v) = env.get(name) {
            let v = if is_secret_name(name) {
                sha256_hex(v.as_bytes())
            } else {
                v.to_owned()
            };
            text.push_str(&format!("{name}={v}\n"));
        }
    }
    sha256_hex(text.as_bytes())
}

/// Host and port of a PostgreSQL DSN (URL or key=value form).
pub fn dsn_host_port(dsn: &str) -> Option<(String, u16)> {
    if let Some(rest) = dsn
        .strip_prefix("postgresql://")
        .or_else(|| dsn.strip_prefix("postgres://"))
    {
        let authority = rest.split(['/', '?']).next().unwrap_or("");
        let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let (host, port) = if let Some(h) = hostport.strip_prefix('[') {
            let (h, p) = h.split_once(']')?;
            (h.to_owned(), p.strip_prefix(':').unwrap_or(""))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), p),
                None => (hostport.to_owned(), ""),
            }
        };
        let port = if port.is_empty() {
            5432
        } else {
            port.parse().ok()?
        };
        let host = if host.is_empty() {
            "localhost".into()
        } else {
            host
        };
        return Some((host, port));
    }
    let mut host = None;
    let mut port = 5432;
    for kv in dsn.split_whitespace() {
        match kv.split_once('=') {
            Some(("host", h)) => host = Some(h.to_owned()),
            Some(("port", p)) => port = p.parse().ok()?,
            _ => {}
        }
    }
    Some((host.unwrap_or_else(|| "localhost".into()), port))
}

/// Tries a real PostgreSQL connection: TCP connect, then the protocol's SSLRequest, to which a
/// PostgreSQL server answers `S` or `N`. Returns `REACHABLE` or `ERROR: ...`.
pub fn probe_postgres(dsn: &str, timeout: Duration) -> String {
    let Some((host, port)) = dsn_host_port(dsn) else {
        return "ERROR: cannot parse POSTGRES_DSN".into();
    };
    let addrs = match (host.as_str(), port).to_socket_addrs() {
        Ok(a) => a.collect::<Vec<_>>(),
        Err(e) => return format!("ERROR: resolve {host}: {e}"),
    };
    let mut last = format!("ERROR: no address for {host}");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(mut s) => {
                let _ = s.set_read_timeout(Some(timeout));
                let _ = s.set_write_timeout(Some(timeout));
                // SSLRequest: length 8, code 80877103.
                let req = [0u8, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
                let mut reply = [0u8; 1];
                return match s.write_all(&req).and_then(|()| s.read_exact(&mut reply)) {
                    Ok(()) if reply[0] == b'S' || reply[0] == b'N' => "REACHABLE".into(),
                    Ok(()) => format!("ERROR: {addr} answered, but not as PostgreSQL"),
                    Err(e) => format!("ERROR: {addr}: {e}"),
                };
            }
            Err(e) => last = format!("ERROR: connect {addr}: {e}"),
        }
    }
    last
}

fn key_check(env: &Env, var: &str) -> String {
    match env.get(var).filter(|p| !p.trim().is_empty()) {
        None => "MISSING".into(),
        Some(path) => match SigningKey::read(std::path::Path::new(path)) {
            Ok(k) => format!("OK ({}, key id {})", k.algorithm_label(), &k.key_id()[..16]),
            Err(e) => format!("INVALID: {e}"),
        },
    }
}

/// Runs the precheck on `env` (the process environment) over `defaults` (`.env.default`).
pub fn run(env: &Env, defaults: &Env, options: &PrecheckOptions) -> PrecheckReport {
    let effective = env.clone().with_defaults(defaults);
    let mut checks = BTreeMap::new();
    let mut reasons = Vec::new();

    let postgres = match effective
        .get("POSTGRES_DSN")
        .filter(|d| !d.trim().is_empty())
    {
        None => "MISSING".to_owned(),
        Some(dsn) => probe_postgres(dsn, options.postgres_timeout),
    };
    let vault = if effective.is_set("VAULT_ADDR") {
        "UP"
    } else {
        "MISSING"
    };
    let pqc_key = key_check(&effective, "VAULT_PQC_KEY_PATH");
    let cosign = key_check(&effective, "COSIGN_KEY_PATH");
    let gpu_nodes = match effective.get("GPU_NODES").map(str::trim) {
        None | Some("") => "NONE".to_owned(),
        Some("auto") => "auto".to_owned(),
        Some(list) => format!(
            "{} configured",
            list.split(',').filter(|s| !s.trim().is_empty()).count()
        ),
    };
    let provider = effective
        .get("QUANTUM_PROVIDER")
        .unwrap_or("local")
        .to_owned();
    let quantum = match provider.as_str() {
        "" | "local" | "mock" => "local statevector simulator (built in)".to_owned(),
        other => format!("{other} (external provider, registered at run time)"),
    };
    checks.insert("postgres".into(), postgres.clone());
    checks.insert("vault".into(), vault.into());
    checks.insert("pqc_key".into(), pqc_key.clone());
    checks.insert("cosign".into(), cosign.clone());
    checks.insert("gpu_nodes".into(), gpu_nodes.clone());
    checks.insert("quantum_runtime".into(), quantum);
    checks.insert(
        "env_default".into(),
        options
            .env_default_path
            .as_ref()
            .map_or("MISSING".into(), |p| format!("loaded from {p}")),
    );

    let pg_ok = postgres == "REACHABLE";
    let key_ok = pqc_key.starts_with("OK") || cosign.starts_with("OK");
    let vault_ok = vault == "UP" && key_ok;
    if !pg_ok {
        reasons.push(format!("PostgreSQL: {postgres}"));
    }
    if vault != "UP" {
        reasons.push("Vault: VAULT_ADDR not set".into());
    }
    if !key_ok {
        reasons.push(format!(
            "signing key: VAULT_PQC_KEY_PATH {pqc_key}, COSIGN_KEY_PATH {cosign}"
        ));
    }
    let explicit_sim = parse_bool(&effective, "SIMULATION_MODE").ok().flatten();
    let gpus_ok = gpu_nodes != "NONE";
    if !gpus_ok {
        reasons.push("GPU_NODES not set".into());
    }
    let infra_ok = pg_ok && vault_ok;
    let (decision, simulation, forced) = match explicit_sim {
        Some(true) if infra_ok => (Outcome::Proceed, true, false),
        Some(true) => (Outcome::ProceedSimulation, true, false),
        Some(false) if infra_ok && gpus_ok => (Outcome::Proceed, false, false),
        Some(false) => {
            reasons.push(
                "SIMULATION_MODE=false is set explicitly, so missing infrastructure blocks".into(),
            );
            (Outcome::Block, false, false)
        }
        None if infra_ok && gpus_ok => (Outcome::Proceed, false, false),
        None => {
            reasons
                .push("critical infrastructure missing: SIMULATION_MODE switched to true".into());
            (Outcome::ProceedSimulation, true, true)
        }
    };
    if parse_bool(&effective, "SIMULATION_MODE").is_err() {
        reasons.push("SIMULATION_MODE is not a boolean; treated as unset".into());
    }
    let environment = VARIABLES
        .iter()
        .filter_map(|n| effective.get(n).map(|v| ((*n).to_owned(), redact(n, v))))
        .collect();
    PrecheckReport {
        decision,
        simulation_mode: simulation,
        simulation_forced: forced,
        reasons,
        checks,
        environment,
        env_sha256: env_sha256(&effective),
        generated_at: options.now,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::keys::{Algorithm, KeySpec};

    fn fake_postgres() -> (u16, std::thread::JoinHandle<()>) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let h = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut buf = [0u8; 8];
            s.read_exact(&mut buf).unwrap();
            assert_eq!(buf, [0, 0, 0, 8, 4, 210, 22, 47]);
            s.write_all(b"N").unwrap();
        });
        (port, h)
    }

    #[test]
    fn proceed_when_everything_is_there() {
        let dir = tempfile::tempdir().unwrap();
        let key_path = dir.path().join("signing.key");
        SigningKey::generate(KeySpec::Hybrid(Algorithm::MlDsa65))
            .write(&key_path)
            .unwrap();
        let (port, h) = fake_postgres();
        let mut env = Env::new();
        env.set(
            "POSTGRES_DSN",
            format!("postgresql://atom:hunter2@127.0.0.1:{port}/atom"),
        )
        .set("VAULT_ADDR", "http://127.0.0.1:8200")
        .set("VAULT_PQC_KEY_PATH", key_path.to_str().unwrap())
        .set("GPU_NODES", "gpu-1,gpu-2")
        .set("SIMULATION_MODE", "false")
        .set("OPENAI_KEY", "sk-very-secret");
        let r = run(&env, &Env::new(), &PrecheckOptions::default());
        h.join().unwrap();
        assert_eq!(r.decision, Outcome::Proceed, "{r:?}");
        assert_eq!(r.checks["postgres"], "REACHABLE");
        assert_eq!(r.checks["gpu_nodes"], "2 configured");
        let json = serde_json::to_string(&r).unwrap();
        assert!(
            !json.contains("hunter2") && !json.contains("sk-very-secret"),
            "{json}"
        );
        assert_eq!(r.environment["OPENAI_KEY"], "<REDACTED>");
    }

    #[test]
    fn block_when_simulation_is_explicitly_off() {
        let mut env = Env::new();
        env.set("SIMULATION_MODE", "false");
        // A closed port: connection refused is reported, not a hang.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        env.set(
            "POSTGRES_DSN",
            format!("host=127.0.0.1 port={port} password=pw"),
        );
        let r = run(&env, &Env::new(), &PrecheckOptions::default());
        assert_eq!(r.decision, Outcome::Block);
        assert!(r.checks["postgres"].starts_with("ERROR"), "{:?}", r.checks);
        assert_eq!(
            r.environment["POSTGRES_DSN"],
            format!("host=127.0.0.1 port={port} password=<REDACTED>")
        );
    }

    #[test]
    fn defaults_switch_on_simulation_and_hash_changes_with_env() {
        let defaults = Env::parse_dotenv("NEURAL_FABRIC_MODE=simulation\nSIMULATION_MODE=true\nPQC_MODE=hybrid\nGPU_DRIVER_MOCK=true\n").unwrap();
        let r = run(&Env::new(), &defaults, &PrecheckOptions::default());
        assert_eq!(r.decision, Outcome::ProceedSimulation);
        assert!(r.simulation_mode && !r.simulation_forced);
        let mut env = Env::new();
        env.set("PQC_MODE", "classical");
        let r2 = run(&env, &defaults, &PrecheckOptions::default());
        assert_ne!(r.env_sha256, r2.env_sha256);
    }

    #[test]
    fn dsn_forms() {
        assert_eq!(
            dsn_host_port("postgres://u:p@db.example:6543/x"),
            Some(("db.example".into(), 6543))
        );
        assert_eq!(
            dsn_host_port("postgresql://[::1]/x"),
            Some(("::1".into(), 5432))
        );
        assert_eq!(dsn_host_port("host=h port=1"), Some(("h".into(), 1)));
        assert_eq!(dsn_host_port("postgres://h:notaport/x"), None);
        assert_eq!(
            redact("X", "postgres://u:p@h/db"),
            "postgres://u:<REDACTED>@h/db"
        );
        assert!(is_secret_name("OPENAI_KEY") && !is_secret_name("COSIGN_KEY_PATH"));
    }
}
