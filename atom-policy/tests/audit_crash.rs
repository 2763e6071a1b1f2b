//! Crash safety: a writer process appends in a loop under group commit and prints each
//! acknowledgement after durability; the test SIGKILLs it at random moments (200 times),
//! reopens the log, and checks that every acknowledged entry is present, intact and in order,
//! and that the log verifies.
//!
//! The writer is this test binary itself, re-executed with `ATOM_AUDIT_CRASH_CHILD` set so
//! that only [`crash_writer_child`] does work (no extra binary target needed).
#![allow(clippy::unwrap_used, missing_docs)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use atom_policy::audit::{AuditLog, LogConfig, OpenOptions, SyncPolicy, verify_log};
use atom_policy::note::{CheckpointMode, NoteSigner};

const ORIGIN: &str = "atom.example/crash";
const CHILD_ENV: &str = "ATOM_AUDIT_CRASH_CHILD";
const KILLS: usize = 200;

fn signer() -> NoteSigner {
    NoteSigner::ed25519_from_seed(ORIGIN, [11u8; 32]).unwrap()
}

/// The deterministic payload of record `i` (about 256 bytes).
fn payload(i: u64) -> Vec<u8> {
    let mut s = format!(
        r#"{{"action":"job.dispatch","actor":{{"tenant":"acme"}},"decision":{{"outcome":"allow","policies":["P2"]}},"subject":{{"id":"hmac-sha256:{:064x}","kind":"job"}},"time":{i},"v":1}}"#,
        i.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    );
    while s.len() < 256 {
        s.push(' ');
    }
    s.into_bytes()
}

fn now_ms(start: Instant) -> u64 {
    start.elapsed().as_millis() as u64
}

/// The writer. Runs only when re-executed by the test below.
#[test]
fn crash_writer_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return; // normal test run: nothing to do here
    };
    let opts = OpenOptions {
        sync: SyncPolicy::GroupCommit {
            max_entries: 16,
            max_delay_ms: 1,
        },
        ..OpenOptions::default()
    };
    let (mut log, _) = AuditLog::open(Path::new(&dir), opts).unwrap();
    let start = Instant::now();
    let mut acked = log.durable_size();
    let key = signer();
    println!("ready {acked}");
    loop {
        let i = log.size();
        let a = log.append(&payload(i), now_ms(start)).unwrap();
        let mut durable = a.durable_size;
        if i % 200 == 199 {
            // Checkpoints now and then, so recovery also checks against signed roots.
            log.checkpoint(&[&key], 0).unwrap();
            durable = log.durable_size();
        }
        durable = durable.max(log.tick(now_ms(start)).unwrap());
        if durable > acked {
            acked = durable;
            // Acknowledged only after durability.
            println!("ack {acked}");
        }
    }
}

#[test]
fn sigkill_during_appends_never_loses_acknowledged_entries() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    AuditLog::create(
        &dir,
        &LogConfig::new(ORIGIN, CheckpointMode::Classical, &[signer().verifier()]),
    )
    .unwrap();
    let exe = std::env::current_exe().unwrap();
    // Deterministic "random" kill points (xorshift64*).
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    let mut next = || {
        rng ^= rng >> 12;
        rng ^= rng << 25;
        rng ^= rng >> 27;
        rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    let mut max_acked = 0u64;
    let mut checked_upto = 0u64;
    let mut torn_drops = 0u64;
    let started = Instant::now();
    for round in 0..KILLS {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash_writer_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Wait until the writer is running, then let it append for a random while.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let l = rx.recv_timeout(Duration::from_secs(20)).unwrap();
            // libtest may print "test crash_writer_child ... " on the same line first.
            if l.contains("ready ") {
                break;
            }
            assert!(Instant::now() < deadline, "writer did not start");
        }
        let run_for = Duration::from_micros(next() % 25_000);
        std::thread::sleep(run_for);
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        for l in rx.try_iter() {
            if let Some(pos) = l.find("ack ") {
                max_acked = max_acked.max(l[pos + 4..].trim().parse().unwrap());
            }
        }
        // Reopen: every acknowledged entry is there, intact, in order.
        let (log, rec) = AuditLog::open(&dir, OpenOptions::default()).unwrap();
        torn_drops += u64::from(rec.dropped_tail_bytes > 0);
        assert!(
            log.size() >= max_acked,
            "round {round}: {} records after reopen, {max_acked} acknowledged",
            log.size()
        );
        for i in checked_upto..log.size() {
            assert_eq!(log.read_record(i).unwrap(), payload(i), "record {i}");
        }
        checked_upto = log.size();
        drop(log);
        if round % 25 == 24 {
            let rep = verify_log(&dir, None, None).unwrap();
            assert!(rep.records >= max_acked);
        }
    }
    let rep = verify_log(&dir, None, None).unwrap();
    assert!(rep.records >= max_acked);
    assert!(max_acked > 0);
    eprintln!(
        "{KILLS} kills in {:?}: {} records, {max_acked} acknowledged, {torn_drops} torn tails dropped",
        started.elapsed(),
        rep.records
    );
}
