//! Persistence: restart from a data directory gives the same state, torn journal tails are
//! dropped, and nothing acknowledged is lost when a writer process is SIGKILLed.
#![allow(clippy::unwrap_used)]

use atom_fabric::store::{DirStore, Fabric, ManualClock};
use atom_fabric::{Command, NodeSpec, Outcome, Phase, Resources, ScheduleRequest, SchedulerConfig};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command as Process, Stdio};

fn open(dir: &std::path::Path, clock: &ManualClock) -> Fabric<DirStore> {
    Fabric::open(
        SchedulerConfig::default(),
        DirStore::open(dir).unwrap(),
        Box::new(clock.clone()),
    )
    .unwrap()
}

fn req(i: u64) -> Command {
    let r = Resources {
        gpu: 1,
        gpu_milli: 100 + (i % 9) as u32 * 100,
        cpu: 500,
        mem: 256,
        ..Default::default()
    };
    Command::Schedule {
        request: ScheduleRequest::new(["a", "b"][(i % 2) as usize], "m", "v", r)
            .with_idempotency_key(&format!("k{i}")),
    }
}

#[test]
fn restart_with_and_without_snapshot_gives_the_same_state() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(100);
    let mut f = open(dir.path(), &clock).with_snapshot_every(0);
    f.execute(Command::RegisterNode {
        spec: NodeSpec::new("n1", 64_000, 65_536).with_gpus("T4", 4, 16_384),
    })
    .unwrap();
    for i in 0..20 {
        clock.advance(7);
        let _ = f.execute(req(i));
    }
    let digest = f.scheduler().state_digest().unwrap();
    drop(f);
    let mut f = open(dir.path(), &clock).with_snapshot_every(0);
    assert_eq!(f.scheduler().state_digest().unwrap(), digest);
    f.snapshot().unwrap();
    assert_eq!(
        std::fs::metadata(dir.path().join("journal.log"))
            .unwrap()
            .len(),
        0
    );
    for i in 20..30 {
        clock.advance(7);
        let _ = f.execute(req(i));
    }
    let digest = f.scheduler().state_digest().unwrap();
    let seq = f.seq();
    drop(f);
    let f = open(dir.path(), &clock);
    assert_eq!(f.seq(), seq);
    assert_eq!(f.scheduler().state_digest().unwrap(), digest);
}

#[test]
fn torn_tail_is_dropped_and_appends_continue() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(0);
    let mut f = open(dir.path(), &clock);
    f.execute(Command::RegisterNode {
        spec: NodeSpec::new("n1", 8000, 8192).with_gpus("T4", 2, 16_384),
    })
    .unwrap();
    let digest = f.scheduler().state_digest().unwrap();
    drop(f);
    // A crash mid-append leaves a partial record.
    let path = dir.path().join("journal.log");
    let good = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(&[40, 0, 0, 0, 1, 2, 3, 4, 5])
        .unwrap();
    let mut f = open(dir.path(), &clock);
    assert_eq!(f.scheduler().state_digest().unwrap(), digest);
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        good,
        "torn tail cut off on open"
    );
    let out = f.execute(req(1)).unwrap();
    assert!(matches!(out, Outcome::Placed { .. }), "{out:?}");
    drop(f);
    let f = open(dir.path(), &clock);
    assert_eq!(f.scheduler().requests_of("b").len(), 1);
}

/// The child half of the SIGKILL test: applies commands forever, printing each acknowledged seq.
fn writer(dir: &str) -> ! {
    let clock = ManualClock::new(0);
    let mut f = Fabric::open(
        SchedulerConfig::default(),
        DirStore::open(dir).unwrap(),
        Box::new(clock.clone()),
    )
    .unwrap()
    .with_snapshot_every(50);
    f.execute(Command::RegisterNode {
        spec: NodeSpec::new("n1", 1_000_000, 1_000_000).with_gpus("T4", 64, 16_384),
    })
    .unwrap();
    let mut out = std::io::stdout().lock();
    for i in 0.. {
        clock.advance(1);
        let r = Resources {
            cpu: 1,
            mem: 1,
            ..Default::default()
        };
        let cmd = Command::Schedule {
            request: ScheduleRequest::new("t", "m", "v", r).with_idempotency_key(&format!("k{i}")),
        };
        if let Ok(Outcome::Placed { request_id, .. }) = f.execute(cmd) {
            writeln!(out, "ack {} {}", i, request_id.0).unwrap();
            out.flush().unwrap();
        }
    }
    unreachable!()
}

#[test]
fn nothing_acknowledged_is_lost_after_sigkill() {
    if let Ok(dir) = std::env::var("ATOM_FABRIC_WRITER_DIR") {
        writer(&dir);
    }
    let dir = tempfile::tempdir().unwrap();
    let mut child = Process::new(std::env::current_exe().unwrap())
        .args([
            "nothing_acknowledged_is_lost_after_sigkill",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("ATOM_FABRIC_WRITER_DIR", dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut acked: Vec<(u64, u64)> = Vec::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while acked.len() < 300 {
        let line = lines.next().unwrap().unwrap();
        if let Some(rest) = line.strip_prefix("ack ") {
            let mut it = rest.split(' ').map(|x| x.parse::<u64>().unwrap());
            acked.push((it.next().unwrap(), it.next().unwrap()));
        }
    }
    // SIGKILL: no destructor, no flush, possibly mid-append.
    child.kill().unwrap();
    child.wait().unwrap();
    let clock = ManualClock::new(0);
    let f = open(dir.path(), &clock);
    f.scheduler().check_invariants().unwrap();
    for &(_, id) in &acked {
        let st = f
            .scheduler()
            .status("t", atom_fabric::RequestId(id))
            .unwrap();
        assert_eq!(st.phase, Phase::Placed);
    }
    assert!(f.scheduler().requests_of("t").len() >= acked.len());
}
