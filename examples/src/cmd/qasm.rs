//! `atom qasm`: parse, export and simulate OpenQASM 2.0 circuits with atom-quantum.

use super::CliError;
use atom_quantum::{Circuit, Kernels, Precision, SimOptions, simulate};
use std::io::Write;
use std::path::PathBuf;

/// `atom qasm` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum QasmCommand {
    /// Simulate an OpenQASM 2.0 file on the local statevector simulator.
    Run(RunArgs),
    /// Parse a file and write it back as OpenQASM 2.0 (custom gates expanded).
    Export(ExportArgs),
}

/// Amplitude precision on the command line.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum PrecisionArg {
    /// complex f64
    Double,
    /// complex f32
    Single,
}

/// Kernel family on the command line.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum KernelsArg {
    /// The widest vector unit this CPU has.
    Auto,
    /// Auto-vectorised kernels (any CPU).
    Portable,
    /// AVX2 and FMA.
    Avx2,
    /// AVX-512.
    Avx512,
}

/// Output format.
#[derive(Debug, Clone, Copy, clap::ValueEnum, PartialEq, Eq)]
pub enum Format {
    /// A readable summary.
    Text,
    /// One JSON object with the fields asked for.
    Json,
}

/// Arguments of `atom qasm run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The OpenQASM 2.0 file.
    pub file: PathBuf,
    /// Measurement shots (counts need `measure` in the circuit).
    #[arg(long, default_value_t = 0)]
    pub shots: u64,
    /// Seed for sampling and mid-circuit measurement.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Amplitude precision.
    #[arg(long, value_enum, default_value_t = PrecisionArg::Double)]
    pub precision: PrecisionArg,
    /// Include the 2^n basis-state probabilities (qubit 0 = least significant bit).
    #[arg(long)]
    pub probabilities: bool,
    /// Include the 2^n amplitudes as [re, im] pairs.
    #[arg(long)]
    pub statevector: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Largest fused gate block, in qubits (0 turns fusion off).
    #[arg(long)]
    pub fusion_max_qubits: Option<usize>,
    /// Memory limit for the state in bytes (default: MemAvailable).
    #[arg(long)]
    pub memory_limit: Option<u64>,
    /// Kernel family (a family this CPU lacks is an error).
    #[arg(long, value_enum, default_value_t = KernelsArg::Auto)]
    pub kernels: KernelsArg,
}

/// Arguments of `atom qasm export`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The OpenQASM 2.0 file.
    pub file: PathBuf,
}

/// Run an `atom qasm` subcommand.
pub fn run(cmd: QasmCommand) -> Result<(), CliError> {
    match cmd {
        QasmCommand::Run(a) => run_file(a),
        QasmCommand::Export(a) => {
            let c = load(&a.file)?;
            let text = c.to_qasm().map_err(|e| CliError::failed(e.to_string()))?;
            print!("{text}");
            Ok(())
        }
    }
}

fn load(path: &PathBuf) -> Result<Circuit, CliError> {
    let src = std::fs::read_to_string(path)
        .map_err(|e| CliError::input(format!("cannot read {}: {e}", path.display())))?;
    Circuit::from_qasm(&src).map_err(|e| CliError::input(format!("{}:{e}", path.display())))
}

fn run_file(a: RunArgs) -> Result<(), CliError> {
    let circuit = load(&a.file)?;
    let mut opts = SimOptions {
        shots: a.shots,
        seed: a.seed,
        precision: match a.precision {
            PrecisionArg::Double => Precision::Double,
            PrecisionArg::Single => Precision::Single,
        },
        memory_limit: a.memory_limit,
        kernels: match a.kernels {
            KernelsArg::Auto => Kernels::Auto,
            KernelsArg::Portable => Kernels::Portable,
            KernelsArg::Avx2 => Kernels::Avx2,
            KernelsArg::Avx512 => Kernels::Avx512,
        },
        ..SimOptions::default()
    };
    if let Some(k) = a.fusion_max_qubits {
        opts.fusion = k > 0;
        opts.max_fused_qubits = k.max(1);
    }
    let result = simulate(&circuit, &opts).map_err(|e| CliError::failed(e.to_string()))?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let io = |e: std::io::Error| CliError::failed(format!("cannot write output: {e}"));
    if a.format == Format::Json {
        let mut obj = serde_json::Map::new();
        if a.probabilities {
            obj.insert(
                "probabilities".into(),
                serde_json::to_value(result.probabilities())
                    .map_err(|e| CliError::failed(e.to_string()))?,
            );
        }
        if a.statevector {
            let sv: Vec<[f64; 2]> = (0..result.statevector().len())
                .filter_map(|i| result.statevector().get(i))
                .map(|z| [z.re, z.im])
                .collect();
            obj.insert(
                "statevector".into(),
                serde_json::to_value(sv).map_err(|e| CliError::failed(e.to_string()))?,
            );
        }
        if a.shots > 0 {
            obj.insert(
                "counts".into(),
                serde_json::to_value(result.counts())
                    .map_err(|e| CliError::failed(e.to_string()))?,
            );
            obj.insert("shots".into(), a.shots.into());
        }
        obj.insert("seconds".into(), result.seconds().into());
        serde_json::to_writer(&mut out, &serde_json::Value::Object(obj))
            .map_err(|e| CliError::failed(e.to_string()))?;
        writeln!(out).map_err(io)?;
        return Ok(());
    }
    writeln!(
        out,
        "{}: {} qubits, {} clbits, {} instructions, depth {}",
        a.file.display(),
        circuit.num_qubits(),
        circuit.num_clbits(),
        circuit.instructions().len(),
        circuit.depth()
    )
    .map_err(io)?;
    writeln!(
        out,
        "simulated in {:.6} s ({} kernel ops after fusion)",
        result.seconds(),
        result.fused_ops()
    )
    .map_err(io)?;
    if a.shots > 0 {
        let mut counts: Vec<(&String, &u64)> = result.counts().iter().collect();
        counts.sort_by(|x, y| y.1.cmp(x.1).then(x.0.cmp(y.0)));
        writeln!(out, "counts ({} shots):", a.shots).map_err(io)?;
        for (k, v) in counts.iter().take(32) {
            writeln!(out, "  {k}: {v}").map_err(io)?;
        }
        if counts.len() > 32 {
            writeln!(out, "  ... {} more outcomes", counts.len() - 32).map_err(io)?;
        }
    }
    let n = circuit.num_qubits();
    if a.probabilities || a.statevector || a.shots == 0 {
        let probs = result.probabilities();
        let mut idx: Vec<usize> = (0..probs.len()).filter(|&i| probs[i] > 1e-12).collect();
        idx.sort_by(|&x, &y| probs[y].total_cmp(&probs[x]).then(x.cmp(&y)));
        writeln!(out, "largest basis states (qubit 0 rightmost):").map_err(io)?;
        for &i in idx.iter().take(16) {
            let z = result.statevector().get(i).unwrap_or_default();
            writeln!(
                out,
                "  |{:0width$b}>  p={:.6}  amp={:+.6}{:+.6}i",
                i,
                probs[i],
                z.re,
                z.im,
                width = n.max(1)
            )
            .map_err(io)?;
        }
        if idx.len() > 16 {
            writeln!(out, "  ... {} more nonzero states", idx.len() - 16).map_err(io)?;
        }
    }
    Ok(())
}
