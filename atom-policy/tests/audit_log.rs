//! The on-disk audit log: proofs against the in-memory RFC 9162 functions, group commit,
//! recovery, checkpoints, and tampering (every byte flip, truncation, reordering) located.
#![allow(clippy::unwrap_used, missing_docs)]

use std::fs;
use std::path::{Path, PathBuf};

use atom_policy::audit::{
    AuditEntry, AuditError, AuditLog, LogConfig, OpenOptions, RecordFault, SyncPolicy, verify_log,
};
use atom_policy::merkle::{self, Hash};
use atom_policy::note::{CheckpointMode, NoteError, NoteSigner};

const ORIGIN: &str = "atom.example/audit-test";

fn ed() -> NoteSigner {
    NoteSigner::ed25519_from_seed(ORIGIN, [5u8; 32]).unwrap()
}

fn entry_json(i: u64) -> String {
    let e = format!(
        r#"{{"action":"job.dispatch","actor":{{"tenant":"acme"}},"decision":{{"outcome":"allow","policies":["P2","P5"]}},"subject":{{"id":"hmac-sha256:{:064x}","kind":"job"}},"time":{},"v":1}}"#,
        i * 7919,
        1_700_000_000_000u64 + i
    );
    AuditEntry::from_json(&e)
        .unwrap()
        .to_canonical_json()
        .unwrap()
}

fn new_log(dir: &Path, mode: CheckpointMode, signers: &[&NoteSigner]) -> PathBuf {
    let p = dir.join("log");
    let vs: Vec<_> = signers.iter().map(|s| s.verifier()).collect();
    AuditLog::create(&p, &LogConfig::new(ORIGIN, mode, &vs)).unwrap();
    p
}

fn manual() -> OpenOptions {
    OpenOptions {
        sync: SyncPolicy::Manual,
        ..OpenOptions::default()
    }
}

#[test]
fn proofs_from_disk_match_the_in_memory_reference() {
    let dir = tempfile::tempdir().unwrap();
    let p = new_log(dir.path(), CheckpointMode::Classical, &[&ed()]);
    // A tiny proof cache: upper levels are cached and dropped as the log grows.
    let (mut log, _) = AuditLog::open(
        &p,
        OpenOptions {
            proof_cache: 4,
            ..manual()
        },
    )
    .unwrap();
    let n = 1000u64;
    let mut leaves: Vec<Hash> = Vec::new();
    for i in 0..n {
        let e = entry_json(i);
        leaves.push(merkle::leaf_hash(e.as_bytes()));
        log.append(e.as_bytes(), 0).unwrap();
        if i % 97 == 0 {
            log.sync().unwrap();
        }
    }
    assert_eq!(log.root(), merkle::root(&leaves));
    for size in [1u64, 2, 3, 7, 8, 9, 100, 511, 512, 513, 999, 1000] {
        let r = merkle::root(&leaves[..size as usize]);
        assert_eq!(log.root_at(size).unwrap(), r, "root at {size}");
        for index in [0, size / 3, size / 2, size - 1] {
            let proof = log.inclusion_proof(index, size).unwrap();
            assert_eq!(
                proof,
                merkle::inclusion_proof(&leaves[..size as usize], index).unwrap()
            );
            merkle::verify_inclusion(&leaves[index as usize], index, size, &proof, &r).unwrap();
        }
        for old in [1, size / 2, size] {
            if old == 0 {
                continue;
            }
            let proof = log.consistency_proof(old, size).unwrap();
            assert_eq!(
                proof,
                merkle::consistency_proof(&leaves[..size as usize], old).unwrap()
            );
        }
    }
    assert_eq!(log.read_record(123).unwrap(), entry_json(123).as_bytes());
    log.close().unwrap();
    // After reopening, the same answers come from the files.
    let (log, rec) = AuditLog::open(&p, manual()).unwrap();
    assert_eq!(rec.reindexed, 0);
    assert_eq!(log.size(), n);
    assert_eq!(log.root(), merkle::root(&leaves));
    let proof = log.inclusion_proof(777, 900).unwrap();
    // With a tiny proof cache every lower level comes from the files.
    let (small, _) = AuditLog::open(
        &p,
        OpenOptions {
            proof_cache: 2,
            ..manual()
        },
    )
    .unwrap();
    for (index, size) in [
        (0u64, 1000u64),
        (777, 900),
        (999, 1000),
        (500, 513),
        (64, 65),
    ] {
        assert_eq!(
            small.inclusion_proof(index, size).unwrap(),
            merkle::inclusion_proof(&leaves[..size as usize], index).unwrap()
        );
        assert_eq!(
            small.consistency_proof(index + 1, size).unwrap(),
            merkle::consistency_proof(&leaves[..size as usize], index + 1).unwrap()
        );
        assert_eq!(small.leaf_hash(index).unwrap(), leaves[index as usize]);
    }
    drop(small);
    merkle::verify_inclusion(
        &leaves[777],
        777,
        900,
        &proof,
        &merkle::root(&leaves[..900]),
    )
    .unwrap();
    assert_eq!(log.read_record(999).unwrap(), entry_json(999).as_bytes());
    let report = verify_log(&p, None, None).unwrap();
    assert_eq!(report.records, n);
}

#[test]
fn group_commit_acknowledges_by_count_and_by_injected_time() {
    let dir = tempfile::tempdir().unwrap();
    let p = new_log(dir.path(), CheckpointMode::Classical, &[&ed()]);
    let opts = OpenOptions {
        sync: SyncPolicy::GroupCommit {
            max_entries: 4,
            max_delay_ms: 10,
        },
        ..OpenOptions::default()
    };
    let (mut log, _) = AuditLog::open(&p, opts).unwrap();
    let e = entry_json(0);
    assert_eq!(log.append(e.as_bytes(), 100).unwrap().durable_size, 0);
    assert_eq!(log.append(e.as_bytes(), 101).unwrap().durable_size, 0);
    assert_eq!(log.append(e.as_bytes(), 102).unwrap().durable_size, 0);
    // Fourth pending append: count limit reached.
    assert_eq!(log.append(e.as_bytes(), 103).unwrap().durable_size, 4);
    assert_eq!(log.append(e.as_bytes(), 200).unwrap().durable_size, 4);
    assert_eq!(log.tick(209).unwrap(), 4);
    // 10 ms after the oldest pending append.
    assert_eq!(log.tick(210).unwrap(), 5);
    log.append(e.as_bytes(), 300).unwrap();
    assert_eq!(log.append(e.as_bytes(), 310).unwrap().durable_size, 7);
    // Every-append policy acknowledges at once.
    drop(log);
    let (mut log, _) = AuditLog::open(&p, OpenOptions::default()).unwrap();
    assert_eq!(log.append(e.as_bytes(), 0).unwrap().durable_size, 8);
}

#[test]
fn hybrid_checkpoint_is_checked_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let ml = NoteSigner::generate_mldsa44(ORIGIN).unwrap();
    let ed = ed();
    let p = new_log(dir.path(), CheckpointMode::Hybrid, &[&ed, &ml]);
    let (mut log, _) = AuditLog::open(&p, manual()).unwrap();
    for i in 0..10 {
        log.append(entry_json(i).as_bytes(), 0).unwrap();
    }
    let text = log.checkpoint(&[&ed, &ml], 1_700_000_000).unwrap();
    assert!(text.starts_with(&format!("{ORIGIN}\n10\n")));
    // Hybrid mode refuses a checkpoint signed with Ed25519 only.
    let err = log.checkpoint(&[&ed], 1).unwrap_err();
    assert!(
        matches!(
            err,
            AuditError::Checkpoint(NoteError::MissingSignature { key_type: 6, .. })
        ),
        "{err}"
    );
    log.append(entry_json(10).as_bytes(), 0).unwrap();
    log.close().unwrap();
    let (log, rec) = AuditLog::open(&p, manual()).unwrap();
    assert_eq!(rec.checkpoint_size, Some(10));
    assert_eq!(log.last_checkpoint().unwrap().size, 10);

    // A checkpoint whose ML-DSA signature is damaged is rejected on open.
    let cp_path = p.join("checkpoint");
    let good = fs::read_to_string(&cp_path).unwrap();
    let lines: Vec<&str> = good.lines().collect();
    let last = lines.last().unwrap();
    let damaged_sig = {
        let (head, b64) = last.rsplit_once(' ').unwrap();
        let mut chars: Vec<char> = b64.chars().collect();
        chars[40] = if chars[40] == 'A' { 'B' } else { 'A' };
        format!("{head} {}", chars.into_iter().collect::<String>())
    };
    fs::write(&cp_path, good.replace(last, &damaged_sig)).unwrap();
    let err = AuditLog::open(&p, manual()).unwrap_err();
    assert!(
        matches!(
            err,
            AuditError::Checkpoint(NoteError::BadSignature { key_type: 6, .. })
        ),
        "{err}"
    );
    fs::write(&cp_path, &good).unwrap();
    verify_log(&p, None, None).unwrap();
}

#[test]
fn torn_tail_is_dropped_and_derived_files_are_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let p = new_log(dir.path(), CheckpointMode::Classical, &[&ed()]);
    let (mut log, _) = AuditLog::open(&p, manual()).unwrap();
    for i in 0..50 {
        log.append(entry_json(i).as_bytes(), 0).unwrap();
    }
    log.checkpoint(&[&ed()], 0).unwrap();
    let root = log.root();
    log.close().unwrap();
    // A half-written record at the end (header and part of the payload).
    let mut rec = Vec::new();
    let payload = entry_json(50);
    rec.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    rec.extend_from_slice(
        &atom_policy::audit::crc32c(&(payload.len() as u32).to_le_bytes()).to_le_bytes(),
    );
    rec.extend_from_slice(&atom_policy::audit::crc32c(payload.as_bytes()).to_le_bytes());
    rec.extend_from_slice(&payload.as_bytes()[..20]);
    let ep = p.join("entries.dat");
    let before = fs::metadata(&ep).unwrap().len();
    let mut data = fs::read(&ep).unwrap();
    data.extend_from_slice(&rec);
    fs::write(&ep, &data).unwrap();
    // verify (read-only) reports the torn tail but accepts the log.
    let rep = verify_log(&p, None, None).unwrap();
    assert_eq!(rep.torn_tail_offset, Some(before));
    let (log, recovery) = AuditLog::open(&p, manual()).unwrap();
    assert_eq!(recovery.dropped_tail_bytes, rec.len() as u64);
    assert_eq!(log.size(), 50);
    assert_eq!(fs::metadata(&ep).unwrap().len(), before);
    drop(log);
    // Derived files lost: rebuilt from the records and checked against the checkpoint.
    fs::remove_dir_all(p.join("tree")).unwrap();
    fs::create_dir(p.join("tree")).unwrap();
    fs::remove_file(p.join("offsets.dat")).unwrap();
    let (log, recovery) = AuditLog::open(&p, manual()).unwrap();
    assert!(recovery.rebuilt_from_scratch);
    assert_eq!(recovery.reindexed, 50);
    assert_eq!(log.root(), root);
}

/// A closed, checkpointed log of `n` records; returns its path and the record start offsets.
fn tamper_fixture(dir: &Path, n: u64) -> (PathBuf, Vec<u64>) {
    fixture(dir, n, true)
}

fn fixture(dir: &Path, n: u64, with_checkpoint: bool) -> (PathBuf, Vec<u64>) {
    let p = new_log(dir, CheckpointMode::Classical, &[&ed()]);
    let (mut log, _) = AuditLog::open(&p, manual()).unwrap();
    let mut starts = Vec::new();
    let mut pos = 16u64;
    for i in 0..n {
        let e = entry_json(i);
        starts.push(pos);
        pos += 12 + e.len() as u64;
        log.append(e.as_bytes(), 0).unwrap();
    }
    starts.push(pos);
    if with_checkpoint {
        log.checkpoint(&[&ed()], 0).unwrap();
    }
    log.close().unwrap();
    (p, starts)
}

fn copy_log(from: &Path, to: &Path) {
    fs::create_dir_all(to.join("tree")).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
    for e in fs::read_dir(from.join("tree")).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), to.join("tree").join(e.file_name())).unwrap();
    }
}

fn record_of(starts: &[u64], offset: u64) -> u64 {
    (starts.partition_point(|s| *s <= offset) - 1) as u64
}

/// The index an error names, if it names a record.
fn located(err: &AuditError) -> Option<u64> {
    match err {
        AuditError::CorruptRecord { index, .. }
        | AuditError::LeafMismatch { index }
        | AuditError::OffsetMismatch { index, .. }
        | AuditError::Truncated { index, .. } => Some(*index),
        _ => None,
    }
}

#[test]
fn every_byte_flip_of_every_record_is_detected_and_located() {
    let dir = tempfile::tempdir().unwrap();
    let n = 12;
    // No checkpoint here: an Ed25519 check per flip is slow in debug builds, and the stored
    // hashes and offsets alone must locate every flip.
    let (p, starts) = fixture(dir.path(), n, false);
    let ep = p.join("entries.dat");
    let pristine = fs::read(&ep).unwrap();
    assert_eq!(pristine.len() as u64, starts[n as usize]);
    let mut checked = 0;
    for offset in 16..pristine.len() {
        let mut data = pristine.clone();
        data[offset] ^= 0x01 << (offset % 8);
        fs::write(&ep, &data).unwrap();
        let err = verify_log(&p, None, None).unwrap_err();
        let want = record_of(&starts, offset as u64);
        assert_eq!(located(&err), Some(want), "flip at {offset}: {err}");
        // The corrupted record is a checksum failure (never a torn tail).
        assert!(
            matches!(
                err,
                AuditError::CorruptRecord { .. } | AuditError::Truncated { .. }
            ),
            "{err}"
        );
        checked += 1;
    }
    assert!(checked > 12 * 200);
    // A payload flip is named as a payload checksum failure.
    let mut data = pristine.clone();
    let mid = starts[5] as usize + 40;
    data[mid] ^= 0x20;
    fs::write(&ep, &data).unwrap();
    let err = verify_log(&p, None, None).unwrap_err();
    assert!(matches!(
        err,
        AuditError::CorruptRecord {
            index: 5,
            fault: RecordFault::PayloadChecksum,
            ..
        }
    ));
    fs::write(&ep, &pristine).unwrap();
    verify_log(&p, None, None).unwrap();
}

#[test]
fn flip_with_recomputed_checksum_is_caught_by_the_leaf_hash() {
    let dir = tempfile::tempdir().unwrap();
    let (p, starts) = tamper_fixture(dir.path(), 10);
    let ep = p.join("entries.dat");
    let mut data = fs::read(&ep).unwrap();
    let s = starts[7] as usize;
    let e = starts[8] as usize;
    data[s + 12 + 5] ^= 0x04;
    let crc = atom_policy::audit::crc32c(&data[s + 12..e]);
    data[s + 8..s + 12].copy_from_slice(&crc.to_le_bytes());
    fs::write(&ep, &data).unwrap();
    let err = verify_log(&p, None, None).unwrap_err();
    assert!(
        matches!(err, AuditError::LeafMismatch { index: 7 }),
        "{err}"
    );
}

#[test]
fn reordering_two_records_is_located_at_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let (p, starts) = tamper_fixture(dir.path(), 10);
    let ep = p.join("entries.dat");
    let data = fs::read(&ep).unwrap();
    for (a, b) in [(2usize, 6usize), (0, 9), (4, 5)] {
        let rec = |i: usize| data[starts[i] as usize..starts[i + 1] as usize].to_vec();
        let mut out = data[..16].to_vec();
        for i in 0..10 {
            let j = if i == a {
                b
            } else if i == b {
                a
            } else {
                i
            };
            out.extend(rec(j));
        }
        fs::write(&ep, &out).unwrap();
        let err = verify_log(&p, None, None).unwrap_err();
        // Same-length records keep offsets; the leaf hash check names the first swapped one.
        assert_eq!(located(&err), Some(a as u64), "swap {a},{b}: {err}");
    }
    fs::write(&ep, &data).unwrap();
    verify_log(&p, None, None).unwrap();
}

#[test]
fn truncation_in_the_middle_is_located() {
    let dir = tempfile::tempdir().unwrap();
    let (p, starts) = tamper_fixture(dir.path(), 10);
    let ep = p.join("entries.dat");
    let data = fs::read(&ep).unwrap();
    // Cut inside record 4, and exactly at the start of record 4.
    for cut in [starts[4] + 30, starts[4]] {
        fs::write(&ep, &data[..cut as usize]).unwrap();
        let err = verify_log(&p, None, None).unwrap_err();
        assert!(
            matches!(
                err,
                AuditError::Truncated {
                    index: 4,
                    expected: 10,
                    found: 4
                }
            ),
            "{err}"
        );
        let copy = dir.path().join(format!("copy-{cut}"));
        copy_log(&p, &copy);
        let err = AuditLog::open(&copy, manual()).unwrap_err();
        assert!(
            matches!(err, AuditError::Truncated { index: 4, .. }),
            "{err}"
        );
        // Nothing was cut further by the failed open.
        assert_eq!(fs::metadata(copy.join("entries.dat")).unwrap().len(), cut);
    }
    // Removing a middle record shifts everything after it: located at that record.
    let mut out = data[..starts[3] as usize].to_vec();
    out.extend_from_slice(&data[starts[4] as usize..]);
    fs::write(&ep, &out).unwrap();
    let err = verify_log(&p, None, None).unwrap_err();
    assert_eq!(located(&err), Some(3), "{err}");
}

#[test]
fn record_past_the_checkpoint_with_damaged_checksum_is_reported_not_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let (p, starts) = tamper_fixture(dir.path(), 10);
    {
        let (mut log, _) = AuditLog::open(&p, manual()).unwrap();
        log.append(entry_json(10).as_bytes(), 0).unwrap();
        log.close().unwrap();
    }
    let ep = p.join("entries.dat");
    let mut data = fs::read(&ep).unwrap();
    let last = data.len() - 3;
    data[last] ^= 0x10;
    fs::write(&ep, &data).unwrap();
    let err = verify_log(&p, None, None).unwrap_err();
    assert!(
        matches!(err, AuditError::CorruptRecord { index: 10, .. }),
        "{err}"
    );
    assert_eq!(starts.len(), 11);
}

#[test]
fn damaged_stored_hashes_and_offsets_are_located() {
    let dir = tempfile::tempdir().unwrap();
    let (p, _) = fixture(dir.path(), 12, false);
    let flip = |file: &Path, at: usize| {
        let mut d = fs::read(file).unwrap();
        d[at] ^= 0x80;
        fs::write(file, &d).unwrap();
    };
    // Leaf hash of record 9 (level 0, bytes 9*32..10*32).
    let l0 = p.join("tree/level-00.dat");
    flip(&l0, 9 * 32 + 17);
    let err = verify_log(&p, None, None).unwrap_err();
    assert!(
        matches!(err, AuditError::LeafMismatch { index: 9 }),
        "{err}"
    );
    flip(&l0, 9 * 32 + 17);
    // End offset of record 4.
    let off = p.join("offsets.dat");
    flip(&off, 4 * 8);
    let err = verify_log(&p, None, None).unwrap_err();
    assert!(
        matches!(err, AuditError::OffsetMismatch { index: 4, .. }),
        "{err}"
    );
    flip(&off, 4 * 8);
    // Level-2 node 1 covers leaves 4..8.
    let l2 = p.join("tree/level-02.dat");
    flip(&l2, 32 + 3);
    let err = verify_log(&p, None, None).unwrap_err();
    assert!(
        matches!(
            err,
            AuditError::NodeMismatch {
                level: 2,
                index: 1,
                first: 4,
                end: 8
            }
        ),
        "{err}"
    );
    flip(&l2, 32 + 3);
    verify_log(&p, None, None).unwrap();
}

#[test]
fn checkpoint_that_does_not_match_the_records_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let (p, _) = tamper_fixture(dir.path(), 6);
    // A validly signed checkpoint whose root is not the records' root (e.g. a split view).
    let fake = atom_policy::note::Checkpoint::new(ORIGIN, 6, [0xAB; 32])
        .sign(&[&ed()], 0)
        .unwrap();
    fs::write(p.join("checkpoint"), fake).unwrap();
    let err = verify_log(&p, None, None).unwrap_err();
    assert!(
        matches!(err, AuditError::CheckpointMismatch { size: 6, .. }),
        "{err}"
    );
    let err = AuditLog::open(&p, manual()).unwrap_err();
    assert!(
        matches!(err, AuditError::CheckpointMismatch { size: 6, .. }),
        "{err}"
    );
    // One that claims more records than the log holds.
    let ahead = atom_policy::note::Checkpoint::new(ORIGIN, 7, [0xAB; 32])
        .sign(&[&ed()], 0)
        .unwrap();
    fs::write(p.join("checkpoint"), ahead).unwrap();
    let err = AuditLog::open(&p, manual()).unwrap_err();
    assert!(
        matches!(
            err,
            AuditError::CheckpointAhead {
                checkpoint_size: 7,
                log_size: 6
            }
        ),
        "{err}"
    );
    let err = verify_log(&p, None, None).unwrap_err();
    assert!(
        matches!(err, AuditError::Truncated { index: 6, .. }),
        "{err}"
    );
}
