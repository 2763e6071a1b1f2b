//! Writes the synthetic trace shipped for tests (same CSV shape as the Alibaba `openb` trace).
//!
//! Usage: `cargo run -p atom-fabric --example synth_trace -- OUT_DIR [nodes seed load cpu_only sharing multi_gpu gpu_spec]`.
//! Without the optional mix arguments it writes `TraceMix::shipped()`.

use atom_fabric::trace::{TraceMix, nodes_to_csv, pods_to_csv, synthesize};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let out = std::path::PathBuf::from(args.first().ok_or(
        "usage: synth_trace OUT_DIR [nodes seed load cpu_only sharing multi_gpu gpu_spec]",
    )?);
    let mut mix = TraceMix::shipped();
    if args.len() == 8 {
        mix = TraceMix {
            nodes: args[1].parse()?,
            seed: args[2].parse()?,
            load: args[3].parse()?,
            cpu_only: args[4].parse()?,
            sharing: args[5].parse()?,
            multi_gpu: args[6].parse()?,
            gpu_spec: args[7].parse()?,
        };
    }
    let (nodes, pods) = synthesize(&mix);
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("synthetic_nodes.csv"), nodes_to_csv(&nodes))?;
    std::fs::write(out.join("synthetic_pods.csv"), pods_to_csv(&pods))?;
    println!(
        "{} nodes, {} pods -> {}",
        nodes.len(),
        pods.len(),
        out.display()
    );
    Ok(())
}
