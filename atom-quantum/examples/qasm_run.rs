//! Minimal runner used by the benchmarks: `qasm_run FILE [--precision double|single]
//! [--fusion K] [--chunk-bits B] [--max-high H] [--repeat R]`; prints `{"seconds": S}` per run.
#![allow(clippy::unwrap_used)]

use atom_quantum::{Circuit, Precision, SimOptions, simulate};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(file) = args.first() else {
        eprintln!(
            "usage: qasm_run FILE [--precision double|single] [--fusion K] [--chunk-bits B] [--max-high H] [--repeat R]"
        );
        std::process::exit(2);
    };
    let src = std::fs::read_to_string(file).unwrap();
    let circuit = match Circuit::from_qasm(&src) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{file}:{e}");
            std::process::exit(2);
        }
    };
    let mut o = SimOptions {
        seed: Some(1),
        ..SimOptions::default()
    };
    let mut repeat = 1;
    let mut i = 1;
    while i + 1 < args.len() {
        let v = &args[i + 1];
        match args[i].as_str() {
            "--precision" => {
                o.precision = if v == "single" {
                    Precision::Single
                } else {
                    Precision::Double
                }
            }
            "--fusion" => {
                let k: usize = v.parse().unwrap();
                o.fusion = k > 0;
                o.max_fused_qubits = k.max(1);
            }
            "--chunk-bits" => o.chunk_bits = v.parse().unwrap(),
            "--max-high" => o.max_high_qubits = v.parse().unwrap(),
            "--repeat" => repeat = v.parse().unwrap(),
            other => {
                eprintln!("unknown option {other}");
                std::process::exit(2);
            }
        }
        i += 2;
    }
    for _ in 0..repeat {
        let r = simulate(&circuit, &o).unwrap();
        println!(
            "{{\"seconds\":{},\"ops\":{},\"passes\":{}}}",
            r.seconds(),
            r.fused_ops(),
            r.passes()
        );
    }
}
