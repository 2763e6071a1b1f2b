//! Side by side: hashing a model directory with atom-policy's manifest hasher versus coreutils
//! `sha256sum` on the same files, in one run. Prints GB/s for each and the ratio.
//!
//! Size: `ATOM_BENCH_HASH_MIB` (default 1024 MiB), written as 16 files in a temp directory.

use atom_policy::manifest::{HashOptions, ModelManifest};
use std::io::Write as _;
use std::process::Command;
use std::time::Instant;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("manifest_hashing: bench");
        return;
    }
    let total_mib: u64 = std::env::var("ATOM_BENCH_HASH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let files = 16u64;
    let per_file = (total_mib << 20) / files;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut block = vec![0u8; 1 << 20];
    for (i, b) in block.iter_mut().enumerate() {
        *b = (i.wrapping_mul(2_654_435_761) >> 13) as u8;
    }
    let mut paths = Vec::new();
    for f in 0..files {
        let path = dir.path().join(format!("shard-{f:02}.bin"));
        let mut out = std::fs::File::create(&path).expect("create");
        let mut left = per_file;
        while left > 0 {
            let n = left.min(block.len() as u64) as usize;
            block[0] = f as u8;
            out.write_all(&block[..n]).expect("write");
            left -= n as u64;
        }
        paths.push(path);
    }
    let bytes = per_file * files;
    let gb = bytes as f64 / 1e9;
    // Warm the page cache so both sides read from memory.
    let _ = Command::new("cat")
        .args(&paths)
        .stdout(std::process::Stdio::null())
        .status();

    let t = Instant::now();
    let m = ModelManifest::hash_dir(dir.path(), &HashOptions::default()).expect("hash");
    let ours = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let out = Command::new("sha256sum")
        .args(&paths)
        .output()
        .expect("sha256sum");
    let serial = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let par = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ls {}/*.bin | xargs -P {} -n 1 sha256sum >/dev/null",
            dir.path().display(),
            rayon_threads()
        ))
        .status()
        .expect("xargs sha256sum");
    let parallel = t.elapsed().as_secs_f64();
    assert!(par.success());

    // Same digests as the peer.
    let theirs = String::from_utf8_lossy(&out.stdout);
    for f in &m.files {
        assert!(
            theirs.contains(&f.digest),
            "digest of {} differs from sha256sum",
            f.name
        );
    }
    println!(
        "manifest hashing of {} files, {:.2} GB ({} threads)",
        files,
        gb,
        rayon_threads()
    );
    println!(
        "  atom manifest hasher      {:.3} s  {:.2} GB/s",
        ours,
        gb / ours
    );
    println!(
        "  sha256sum (one process)   {:.3} s  {:.2} GB/s",
        serial,
        gb / serial
    );
    println!(
        "  sha256sum (xargs -P)      {:.3} s  {:.2} GB/s",
        parallel,
        gb / parallel
    );
    println!(
        "  ratio atom / sha256sum: {:.2}x (serial), {:.2}x (parallel) throughput",
        serial / ours,
        parallel / ours
    );
}

fn rayon_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
