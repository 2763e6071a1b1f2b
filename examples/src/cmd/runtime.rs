//! `atom runtime detect|run`: the runtime hooks on the command line.

use super::CliError;
use atom_fabric::runtime::{RuntimeRegistry, Tensor};
use clap::Subcommand;
use std::path::PathBuf;

/// `atom runtime ...`
#[derive(Debug, Subcommand)]
pub enum RuntimeCommand {
    /// List the frameworks this build can load models with.
    Detect,
    /// Load a model and run one inference on JSON input; prints JSON output.
    Run {
        /// onnx | mock | auto | any registered framework.
        #[arg(long, default_value = "auto")]
        framework: String,
        /// The model file (or directory holding model.onnx).
        model: PathBuf,
        /// Input as JSON: `{"shape": [..], "data": [..]}` or a list of such objects.
        #[arg(long)]
        input: String,
    },
}

fn tensor(v: &serde_json::Value) -> Result<Tensor, CliError> {
    let shape = v["shape"]
        .as_array()
        .ok_or_else(|| CliError::input("input needs a \"shape\" array"))?
        .iter()
        .map(|d| {
            d.as_u64()
                .map(|d| d as usize)
                .ok_or_else(|| CliError::input("shape entries must be non-negative integers"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let data = v["data"]
        .as_array()
        .ok_or_else(|| CliError::input("input needs a \"data\" array"))?
        .iter()
        .map(|x| {
            x.as_f64()
                .map(|x| x as f32)
                .ok_or_else(|| CliError::input("data entries must be numbers"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Tensor::new(shape, data).map_err(|e| CliError::input(e.to_string()))
}

/// Runs `atom runtime`.
pub fn run(cmd: RuntimeCommand) -> Result<(), CliError> {
    let registry = RuntimeRegistry::with_builtins();
    match cmd {
        RuntimeCommand::Detect => {
            let json = serde_json::to_string_pretty(&registry.detect())
                .map_err(|e| CliError::failed(e.to_string()))?;
            println!("{json}");
            Ok(())
        }
        RuntimeCommand::Run {
            framework,
            model,
            input,
        } => {
            let parsed: serde_json::Value = serde_json::from_str(&input)
                .map_err(|e| CliError::input(format!("--input is not JSON: {e}")))?;
            let inputs = match &parsed {
                serde_json::Value::Array(items) => {
                    items.iter().map(tensor).collect::<Result<Vec<_>, _>>()?
                }
                one => vec![tensor(one)?],
            };
            let loaded = registry
                .load_model(&framework, &model)
                .map_err(|e| CliError::failed(e.to_string()))?;
            let outputs = loaded
                .model
                .run(&inputs)
                .map_err(|e| CliError::failed(e.to_string()))?;
            let out = serde_json::json!({
                "framework": loaded.framework,
                "mock": loaded.is_mock(),
                "load_ms": loaded.load_ms,
                "outputs": outputs.iter().map(|t| serde_json::json!({"shape": t.shape, "data": t.data})).collect::<Vec<_>>(),
            });
            println!("{out}");
            Ok(())
        }
    }
}
