//! Replays a grid of synthetic `openb`-shaped traces with several scorers and counts, per scorer,
//! the mixes where it beats both baselines (Best-fit and First-fit) on pods failed (strictly
//! fewer) and on the GPU share allocated at the end (strictly larger).
//!
//! Usage: `cargo run --release -p atom-fabric --example replay_grid -- [--scorers default,fgd]
//! [--seeds 1,2] [--nodes 300] [--grid coarse|offset|corners] [--threads 2] [--verbose]`.
//!
//! `coarse` is the 3^5 grid load {1.1, 1.3, 1.5} × cpu_only {0, 0.3, 0.6} × sharing {0.2, 0.55,
//! 0.9} × multi_gpu {0, 0.2, 0.4} × gpu_spec {0, 0.4, 0.8}; `offset` is the 2^5 grid between
//! those points (load {1.2, 1.4}, cpu_only {0.15, 0.45}, sharing {0.35, 0.75}, multi_gpu {0.1,
//! 0.3}, gpu_spec {0.2, 0.6}); `corners` the extremes of each axis alone.

use atom_fabric::ScorerSet;
use atom_fabric::trace::{ReplayReport, TraceMix, replay, synthesize};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The baselines every scorer is compared with.
const BASELINES: [&str; 2] = ["best-fit", "first-fit"];

struct Args {
    scorers: Vec<String>,
    seeds: Vec<u64>,
    nodes: usize,
    grid: String,
    threads: usize,
    verbose: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        scorers: vec!["default".into()],
        seeds: vec![1],
        nodes: 300,
        grid: "coarse".into(),
        threads: 2,
        verbose: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--verbose" {
            a.verbose = true;
            continue;
        }
        let v = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--scorers" => a.scorers = v.split(';').map(str::to_string).collect(),
            "--seeds" => {
                a.seeds = v
                    .split(',')
                    .map(|s| s.parse().map_err(|_| format!("bad seed {s:?}")))
                    .collect::<Result<_, _>>()?
            }
            "--nodes" => a.nodes = v.parse().map_err(|_| format!("bad --nodes {v:?}"))?,
            "--grid" => a.grid = v,
            "--threads" => a.threads = v.parse().map_err(|_| format!("bad --threads {v:?}"))?,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    for s in &a.scorers {
        if ScorerSet::by_name(s).is_none() {
            return Err(format!("unknown scorer {s:?}"));
        }
    }
    Ok(a)
}

fn grid(name: &str, nodes: usize, seeds: &[u64]) -> Result<Vec<TraceMix>, String> {
    let axes: [Vec<f64>; 5] = match name {
        "coarse" => [
            vec![1.1, 1.3, 1.5],
            vec![0.0, 0.3, 0.6],
            vec![0.2, 0.55, 0.9],
            vec![0.0, 0.2, 0.4],
            vec![0.0, 0.4, 0.8],
        ],
        "offset" => [
            vec![1.2, 1.4],
            vec![0.15, 0.45],
            vec![0.35, 0.75],
            vec![0.1, 0.3],
            vec![0.2, 0.6],
        ],
        "corners" => {
            let base = [1.3, 0.13, 0.6, 0.01, 0.0];
            let ends = [[1.1, 1.5], [0.0, 0.6], [0.2, 0.9], [0.0, 0.4], [0.0, 0.8]];
            let mut out = Vec::new();
            for &seed in seeds {
                out.push(mix_of(nodes, seed, base));
                for (axis, e) in ends.iter().enumerate() {
                    for &v in e {
                        let mut p = base;
                        p[axis] = v;
                        out.push(mix_of(nodes, seed, p));
                    }
                }
            }
            return Ok(out);
        }
        _ => return Err(format!("unknown grid {name:?}")),
    };
    let mut out = Vec::new();
    for &seed in seeds {
        for &l in &axes[0] {
            for &c in &axes[1] {
                for &s in &axes[2] {
                    for &m in &axes[3] {
                        for &g in &axes[4] {
                            out.push(mix_of(nodes, seed, [l, c, s, m, g]));
                        }
                    }
                }
            }
        }
    }
    Ok(out)
}

fn mix_of(nodes: usize, seed: u64, p: [f64; 5]) -> TraceMix {
    TraceMix::grid(nodes, seed, p)
}

fn run(mix: &TraceMix, name: &str) -> Result<ReplayReport, String> {
    let (nodes, pods) = synthesize(mix);
    let set = ScorerSet::by_name(name).ok_or_else(|| format!("unknown scorer {name}"))?;
    replay(&nodes, &pods, &set).map_err(|e| e.to_string())
}

/// `replay_grid --files NODES.csv PODS.csv SCORER...`: one trace, every scorer named.
fn files(rest: &[String]) -> Result<(), String> {
    let [nodes, pods, names @ ..] = rest else {
        return Err("usage: --files NODES.csv PODS.csv SCORER...".into());
    };
    let read = |p: &str| std::fs::read_to_string(p).map_err(|e| format!("{p}: {e}"));
    let nodes = atom_fabric::trace::parse_nodes(&read(nodes)?, nodes).map_err(|e| e.to_string())?;
    let pods = atom_fabric::trace::parse_pods(&read(pods)?, pods).map_err(|e| e.to_string())?;
    for name in names {
        let set = ScorerSet::by_name(name).ok_or_else(|| format!("unknown scorer {name}"))?;
        let r = replay(&nodes, &pods, &set).map_err(|e| e.to_string())?;
        println!(
            "{:<12} failed {:>5} / {} first {} end {:.4} {:>8.0}/s",
            name,
            r.pods_failed,
            r.pods_total,
            r.share_at_first_failure
                .map_or("-".to_string(), |s| format!("{s:.4}")),
            r.share_at_end,
            r.decisions_per_s
        );
    }
    Ok(())
}

fn main() -> Result<(), String> {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    if raw.first().map(String::as_str) == Some("--files") {
        return files(&raw[1..]);
    }
    let args = parse_args()?;
    let mixes = grid(&args.grid, args.nodes, &args.seeds)?;
    let names: Vec<String> = BASELINES
        .iter()
        .map(|s| s.to_string())
        .chain(args.scorers.iter().cloned())
        .collect();
    let results: Mutex<Vec<Option<Vec<ReplayReport>>>> = Mutex::new(vec![None; mixes.len()]);
    let next = AtomicUsize::new(0);
    let start = std::time::Instant::now();
    std::thread::scope(|scope| -> Result<(), String> {
        let workers: Vec<_> = (0..args.threads.max(1))
            .map(|_| {
                scope.spawn(|| -> Result<(), String> {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(mix) = mixes.get(i) else {
                            return Ok(());
                        };
                        let rs = names
                            .iter()
                            .map(|n| run(mix, n))
                            .collect::<Result<Vec<_>, _>>()?;
                        results.lock().map_err(|e| e.to_string())?[i] = Some(rs);
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().map_err(|_| "worker panicked".to_string())??;
        }
        Ok(())
    })?;
    let results = results.into_inner().map_err(|e| e.to_string())?;
    let mut summary =
        vec![(0usize, 0usize, 0usize, 0i64, 0.0f64, String::new()); args.scorers.len()];
    let mut sums = vec![(0i64, 0.0f64, 0i64, 0.0f64); args.scorers.len()];
    for (mix, rs) in mixes.iter().zip(&results) {
        let Some(rs) = rs else { continue };
        let (bf, ff) = (&rs[0], &rs[1]);
        let best_failed = bf.pods_failed.min(ff.pods_failed) as i64;
        let best_share = bf.share_at_end.max(ff.share_at_end);
        let mut line = format!(
            "load {:.2} cpu {:.2} share {:.2} multi {:.2} spec {:.2} seed {:>3} | bf {:>4} {:.4} | ff {:>4} {:.4}",
            mix.load,
            mix.cpu_only,
            mix.sharing,
            mix.multi_gpu,
            mix.gpu_spec,
            mix.seed,
            bf.pods_failed,
            bf.share_at_end,
            ff.pods_failed,
            ff.share_at_end
        );
        for (k, r) in rs[2..].iter().enumerate() {
            let dfail = best_failed - r.pods_failed as i64;
            let dshare = r.share_at_end - best_share;
            let win_fail = dfail > 0;
            let win_share = dshare > 0.0;
            let t = &mut sums[k];
            t.0 += dfail;
            t.1 += dshare;
            t.2 += bf.pods_failed as i64 - r.pods_failed as i64 + ff.pods_failed as i64
                - r.pods_failed as i64;
            t.3 += 2.0 * r.share_at_end - bf.share_at_end - ff.share_at_end;
            let s = &mut summary[k];
            s.0 += usize::from(win_fail && win_share);
            s.1 += usize::from(win_fail);
            s.2 += usize::from(win_share);
            if s.5.is_empty() || dfail < s.3 {
                s.3 = dfail;
            }
            if s.5.is_empty() || dshare < s.4 {
                s.4 = dshare;
            }
            s.5 = "x".into();
            line.push_str(&format!(
                " | {} {:>4} {:.4} {}{}",
                k,
                r.pods_failed,
                r.share_at_end,
                if win_fail { '+' } else { '-' },
                if win_share { '+' } else { '-' }
            ));
        }
        if args.verbose {
            println!("{line}");
        }
    }
    println!(
        "{} mixes, grid {}, seeds {:?}, {} nodes, {:.1} s",
        mixes.len(),
        args.grid,
        args.seeds,
        args.nodes,
        start.elapsed().as_secs_f64()
    );
    for (k, name) in args.scorers.iter().enumerate() {
        let s = &summary[k];
        println!(
            "{k} {name}: wins both {}/{}, fewer failed {}, larger share {}, worst failed margin {}, worst share margin {:.4}, mean margins {:.2} {:.5} (vs mean of both {:.2} {:.5})",
            s.0,
            mixes.len(),
            s.1,
            s.2,
            s.3,
            s.4,
            sums[k].0 as f64 / mixes.len() as f64,
            sums[k].1 / mixes.len() as f64,
            sums[k].2 as f64 / 2.0 / mixes.len() as f64,
            sums[k].3 / 2.0 / mixes.len() as f64
        );
    }
    Ok(())
}
