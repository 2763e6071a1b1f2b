//! Audit log benchmarks (issue #3, H.3.5).
//!
//! * `audit/append_group_commit_10ms`: appends of 256-byte entries to an on-disk log with
//!   group commit (fdatasync when the oldest pending append is 10 ms old). Target >= 200k/s.
//! * `audit/append_hashing_only`: leaf hash + tree update of 256-byte entries in memory
//!   (no I/O). Target >= 1M/s.
//! * `audit/prove_verify/<N>`: inclusion proof generation from the on-disk log plus
//!   verification at a random index, on a log of N entries (default 10M, built once under
//!   `$ATOM_AUDIT_BENCH_DIR` or the temp dir; `ATOM_AUDIT_BENCH_SIZE` overrides N). Target <= 20 us.
//! * `audit/checkpoint_sign/{ed25519,mldsa44,hybrid}` and `audit/checkpoint_verify/hybrid`.
//!
//! Peak-RSS mode (for `/usr/bin/time -v`): `ATOM_AUDIT_RSS=append|prove|verify <bench binary>`
//! runs one operation on the big log and exits without running criterion:
//! `append` opens it and appends 1M entries with 10 ms group commit (the log keeps them;
//! proofs stay at size N), `prove` generates and
//! verifies 100k proofs at random indices, `verify` re-verifies the whole log.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use atom_policy::audit::{AuditLog, LogConfig, OpenOptions, SyncPolicy, verify_log};
use atom_policy::merkle::{self, Frontier};
use atom_policy::note::{Checkpoint, CheckpointMode, NoteSigner, NoteVerifier};
use criterion::{BenchmarkId, Criterion, Throughput};

const ORIGIN: &str = "bench.atom.example/audit";

/// A 256-byte canonical entry for record `i`.
fn entry(i: u64) -> Vec<u8> {
    let mut s = format!(
        r#"{{"action":"job.dispatch","actor":{{"tenant":"acme"}},"decision":{{"outcome":"allow","policies":["P2","P5"]}},"subject":{{"id":"hmac-sha256:{:064x}","kind":"job"}},"time":{},"v":1}}"#,
        i.wrapping_mul(0x9E37_79B9_7F4A_7C15),
        1_700_000_000_000u64 + i
    );
    s.truncate(256);
    while s.len() < 256 {
        s.push(' ');
    }
    s.into_bytes()
}

fn signer() -> NoteSigner {
    match NoteSigner::ed25519_from_seed(ORIGIN, [1u8; 32]) {
        Ok(s) => s,
        Err(e) => panic!("signer: {e}"),
    }
}

fn group_commit() -> OpenOptions {
    OpenOptions {
        sync: SyncPolicy::GroupCommit {
            max_entries: u64::MAX,
            max_delay_ms: 10,
        },
        ..OpenOptions::default()
    }
}

fn new_log(dir: &Path) -> PathBuf {
    let p = dir.join("log");
    let cfg = LogConfig::new(ORIGIN, CheckpointMode::Classical, &[signer().verifier()]);
    if let Err(e) = AuditLog::create(&p, &cfg) {
        panic!("create: {e}");
    }
    p
}

fn big_size() -> u64 {
    std::env::var("ATOM_AUDIT_BENCH_SIZE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000_000)
}

/// The big log, built once (and reused while its size matches).
fn big_log() -> (PathBuf, u64) {
    let n = big_size();
    let base = std::env::var_os("ATOM_AUDIT_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join(format!("atom-audit-bench-{n}"));
    let p = base.join("log");
    if p.join("checkpoint").exists() {
        return (p, n);
    }
    let _ = std::fs::remove_dir_all(&base);
    if let Err(e) = std::fs::create_dir_all(&base) {
        panic!("mkdir: {e}");
    }
    let p = new_log(&base);
    let t = Instant::now();
    let (mut log, _) = match AuditLog::open(
        &p,
        OpenOptions {
            sync: SyncPolicy::Manual,
            ..OpenOptions::default()
        },
    ) {
        Ok(l) => l,
        Err(e) => panic!("open: {e}"),
    };
    for i in 0..n {
        if let Err(e) = log.append(&entry(i), 0) {
            panic!("append: {e}");
        }
        if i % 1_000_000 == 999_999 {
            let _ = log.sync();
            eprintln!("built {} entries in {:?}", i + 1, t.elapsed());
        }
    }
    if let Err(e) = log.checkpoint(&[&signer()], 1_700_000_000) {
        panic!("checkpoint: {e}");
    }
    eprintln!("built a {n}-entry log in {:?}", t.elapsed());
    (p, n)
}

/// xorshift64* for deterministic random indices.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

fn bench_append(c: &mut Criterion) {
    let entries: Vec<Vec<u8>> = (0..4096).map(entry).collect();
    let mut g = c.benchmark_group("audit");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(4));
    g.bench_function("append_hashing_only", |b| {
        let mut f = Frontier::new();
        let mut i = 0usize;
        b.iter(|| {
            let leaf = merkle::leaf_hash(&entries[i & 4095]);
            f.push(leaf, |_, _, _| {});
            i += 1;
        });
        black_box(f.root());
    });
    let tmp = match tempfile::tempdir() {
        Ok(t) => t,
        Err(e) => panic!("tempdir: {e}"),
    };
    let p = new_log(tmp.path());
    let (mut log, _) = match AuditLog::open(&p, group_commit()) {
        Ok(l) => l,
        Err(e) => panic!("open: {e}"),
    };
    let start = Instant::now();
    g.bench_function("append_group_commit_10ms", |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            for k in 0..iters {
                let now = start.elapsed().as_millis() as u64;
                if let Err(e) = log.append(&entries[(k & 4095) as usize], now) {
                    panic!("append: {e}");
                }
            }
            // Everything appended in this batch is durable before the clock stops.
            let _ = log.sync();
            t.elapsed()
        });
    });
    g.finish();
}

fn bench_prove(c: &mut Criterion) {
    let (p, n) = big_log();
    // Measure with the hash files in the page cache (a serving log's steady state): read them
    // once. Cold, each lower-level read is a disk read (about 0.8 ms per proof seen here).
    if let Ok(rd) = std::fs::read_dir(p.join("tree")) {
        for e in rd.flatten() {
            if let Ok(mut f) = std::fs::File::open(e.path()) {
                let _ = std::io::copy(&mut f, &mut std::io::sink());
            }
        }
    }
    let (log, _) = match AuditLog::open(&p, OpenOptions::default()) {
        Ok(l) => l,
        Err(e) => panic!("open: {e}"),
    };
    // The log may have grown (RSS append mode); proofs are for its first n entries.
    let root = match log.root_at(n) {
        Ok(r) => r,
        Err(e) => panic!("root: {e}"),
    };
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut g = c.benchmark_group("audit/prove_verify");
    g.measurement_time(Duration::from_secs(4));
    g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
        b.iter(|| {
            let i = rng.next() % n;
            let proof = match log.inclusion_proof(i, n) {
                Ok(p) => p,
                Err(e) => panic!("prove: {e}"),
            };
            let leaf = match log.leaf_hash(i) {
                Ok(l) => l,
                Err(e) => panic!("leaf: {e}"),
            };
            if let Err(e) = merkle::verify_inclusion(&leaf, i, n, &proof, &root) {
                panic!("verify: {e}");
            }
        });
    });
    g.finish();
}

fn bench_checkpoint(c: &mut Criterion) {
    let ed = signer();
    let ml = match NoteSigner::generate_mldsa44(ORIGIN) {
        Ok(s) => s,
        Err(e) => panic!("mldsa: {e}"),
    };
    let cp = Checkpoint::new(ORIGIN, 10_000_000, [7u8; 32]);
    let mut g = c.benchmark_group("audit/checkpoint_sign");
    g.measurement_time(Duration::from_secs(3));
    g.bench_function("ed25519", |b| b.iter(|| cp.sign(&[&ed], 1)));
    g.bench_function("mldsa44", |b| b.iter(|| cp.sign(&[&ml], 1)));
    g.bench_function("hybrid", |b| b.iter(|| cp.sign(&[&ed, &ml], 1)));
    g.finish();
    let signed = match cp.sign(&[&ed, &ml], 1) {
        Ok(s) => s,
        Err(e) => panic!("sign: {e}"),
    };
    let vs: Vec<NoteVerifier> = vec![ed.verifier(), ml.verifier()];
    let mut g = c.benchmark_group("audit/checkpoint_verify");
    g.measurement_time(Duration::from_secs(3));
    g.bench_function("hybrid", |b| {
        b.iter(|| Checkpoint::verify(&signed, &vs, CheckpointMode::Hybrid))
    });
    g.finish();
}

/// One operation on the big log, for peak-RSS measurement.
fn rss_mode(op: &str) {
    let (p, n) = big_log();
    let t = Instant::now();
    match op {
        "append" => {
            let (mut log, _) = match AuditLog::open(&p, group_commit()) {
                Ok(l) => l,
                Err(e) => panic!("open: {e}"),
            };
            let start = Instant::now();
            let base = log.size();
            for k in 0..1_000_000u64 {
                let now = start.elapsed().as_millis() as u64;
                if let Err(e) = log.append(&entry(base + k), now) {
                    panic!("append: {e}");
                }
            }
            let _ = log.sync();
            eprintln!(
                "appended 1M entries to a {}-entry log in {:?}",
                base,
                t.elapsed()
            );
        }
        "prove" => {
            let (log, _) = match AuditLog::open(&p, OpenOptions::default()) {
                Ok(l) => l,
                Err(e) => panic!("open: {e}"),
            };
            let root = match log.root_at(n) {
                Ok(r) => r,
                Err(e) => panic!("root: {e}"),
            };
            let mut rng = Rng(42);
            for _ in 0..100_000 {
                let i = rng.next() % n;
                let proof = log.inclusion_proof(i, n);
                let leaf = log.leaf_hash(i);
                match (proof, leaf) {
                    (Ok(pr), Ok(l)) => {
                        if merkle::verify_inclusion(&l, i, n, &pr, &root).is_err() {
                            panic!("proof {i} did not verify");
                        }
                    }
                    _ => panic!("prove {i} failed"),
                }
            }
            eprintln!("100k proofs generated and verified in {:?}", t.elapsed());
        }
        "verify" => match verify_log(&p, None, None) {
            Ok(r) => eprintln!("verified {} records in {:?}", r.records, t.elapsed()),
            Err(e) => panic!("verify: {e}"),
        },
        other => panic!("ATOM_AUDIT_RSS must be append, prove or verify, not {other}"),
    }
}

fn main() {
    if let Ok(op) = std::env::var("ATOM_AUDIT_RSS") {
        rss_mode(&op);
        return;
    }
    let mut c = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .configure_from_args();
    bench_append(&mut c);
    bench_checkpoint(&mut c);
    bench_prove(&mut c);
    c.final_summary();
}
