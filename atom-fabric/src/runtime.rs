//! Runtime hooks (H.2.E2): detect the frameworks available, load a model with one, run inferences.
//!
//! ONNX runs in-process with tract. Other runtimes (PyTorch, ONNX Runtime, TensorFlow from the
//! Python bindings, or anything else) plug in through [`RuntimeRegistry::register`]. The `mock`
//! runtime (the identity function) is used only when asked for by name, or by `auto` when no real
//! runtime can load the model, and it is always reported as such. Every successful load counts in
//! `nf_runtime_loaded_total{framework}`.
//!
//! ```
//! use atom_fabric::runtime::{RuntimeRegistry, Tensor};
//! let registry = RuntimeRegistry::with_builtins();
//! assert!(registry.detect().iter().any(|f| f.name == "onnx" && f.available));
//! let mock = registry.load_model("mock", std::path::Path::new("unused")).unwrap();
//! let out = mock.model.run(&[Tensor::new(vec![2], vec![1.0, 2.0]).unwrap()]).unwrap();
//! assert_eq!(out[0].data, vec![1.0, 2.0]);
//! assert!(mock.is_mock());
//! ```

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Instant;

/// A dense f32 tensor in row-major order.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// Dimensions.
    pub shape: Vec<usize>,
    /// Values, `shape.iter().product()` of them.
    pub data: Vec<f32>,
}

impl Tensor {
    /// A tensor; fails when the data length does not match the shape.
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Result<Self, RuntimeError> {
        let n: usize = shape.iter().product();
        if n != data.len() {
            return Err(RuntimeError::BadInput(format!(
                "shape {shape:?} holds {n} values, got {}",
                data.len()
            )));
        }
        Ok(Self { shape, data })
    }
}

/// Exactly what failed in a runtime.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// No runtime of that name is registered.
    #[error("unknown framework {name:?} (available: {available})")]
    UnknownFramework {
        /// The name asked for.
        name: String,
        /// The registered names.
        available: String,
    },
    /// The runtime could not load the model.
    #[error("{framework} could not load {model}: {reason}")]
    Load {
        /// The runtime.
        framework: String,
        /// The model path or id.
        model: String,
        /// Why.
        reason: String,
    },
    /// Inputs do not fit the model.
    #[error("bad input: {0}")]
    BadInput(String),
    /// Running the model failed.
    #[error("{framework} inference failed: {reason}")]
    Run {
        /// The runtime.
        framework: String,
        /// Why.
        reason: String,
    },
}

/// A loaded model that serves inferences (thread-safe).
pub trait LoadedModel: Send + Sync {
    /// Runs one inference.
    fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, RuntimeError>;
}

/// A framework that loads models.
pub trait Runtime: Send + Sync {
    /// Whether the framework can be used here (e.g. its library is installed).
    fn available(&self) -> bool {
        true
    }
    /// A version string, if known.
    fn version(&self) -> Option<String> {
        None
    }
    /// Loads a model from a file or directory.
    fn load(&self, model: &Path) -> Result<Arc<dyn LoadedModel>, RuntimeError>;
}

/// One framework as [`RuntimeRegistry::detect`] reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FrameworkInfo {
    /// Registered name.
    pub name: String,
    /// Usable here.
    pub available: bool,
    /// Version, if known.
    pub version: Option<String>,
    /// True for the built-in mock.
    pub mock: bool,
}

/// A model loaded through the registry.
#[derive(Clone)]
pub struct Loaded {
    /// The framework that loaded it.
    pub framework: String,
    /// The runnable model.
    pub model: Arc<dyn LoadedModel>,
    /// Load time in milliseconds.
    pub load_ms: f64,
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded")
            .field("framework", &self.framework)
            .field("load_ms", &self.load_ms)
            .finish_non_exhaustive()
    }
}

impl Loaded {
    /// True when the mock runtime served this load.
    pub fn is_mock(&self) -> bool {
        self.framework == MOCK
    }
}

const MOCK: &str = "mock";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FrameworkLabel {
    framework: String,
}

/// The registry of runtimes.
#[derive(Clone)]
pub struct RuntimeRegistry {
    runtimes: Arc<RwLock<BTreeMap<String, Arc<dyn Runtime>>>>,
    loaded: Family<FrameworkLabel, Counter>,
}

impl std::fmt::Debug for RuntimeRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeRegistry")
            .field("frameworks", &self.names())
            .finish()
    }
}

impl RuntimeRegistry {
    /// A registry with the built-in `onnx` (tract) and `mock` runtimes.
    pub fn with_builtins() -> Self {
        let r = Self {
            runtimes: Arc::default(),
            loaded: Family::default(),
        };
        r.register("onnx", Arc::new(TractOnnx));
        r.register(MOCK, Arc::new(MockRuntime));
        r
    }

    /// Registers (or replaces) a runtime under `name`.
    pub fn register(&self, name: &str, runtime: Arc<dyn Runtime>) {
        if let Ok(mut m) = self.runtimes.write() {
            m.insert(name.to_owned(), runtime);
        }
    }

    fn names(&self) -> Vec<String> {
        self.runtimes
            .read()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    fn get(&self, name: &str) -> Option<Arc<dyn Runtime>> {
        self.runtimes.read().ok()?.get(name).cloned()
    }

    /// Every registered framework and whether it is usable.
    pub fn detect(&self) -> Vec<FrameworkInfo> {
        let Ok(m) = self.runtimes.read() else {
            return Vec::new();
        };
        m.iter()
            .map(|(name, rt)| FrameworkInfo {
                name: name.clone(),
                available: rt.available(),
                version: rt.version(),
                mock: name == MOCK,
            })
            .collect()
    }

    /// Adds `nf_runtime_loaded_total{framework}` to a Prometheus registry.
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "nf_runtime_loaded",
            "Models loaded, by framework",
            self.loaded.clone(),
        );
    }

    /// How many models `framework` has loaded.
    pub fn loaded_count(&self, framework: &str) -> u64 {
        self.loaded
            .get_or_create(&FrameworkLabel {
                framework: framework.to_owned(),
            })
            .get()
    }

    /// Loads `model` with `framework`. `auto` picks by file extension (`.onnx` → onnx) and falls
    /// back to `mock` only when no available runtime can load it.
    pub fn load_model(&self, framework: &str, model: &Path) -> Result<Loaded, RuntimeError> {
        let order: Vec<String> = if framework == "auto" {
            let mut names: Vec<String> = self
                .detect()
                .into_iter()
                .filter(|f| f.available && !f.mock)
                .map(|f| f.name)
                .collect();
            // Prefer the runtime named by the extension.
            if model.extension().and_then(|e| e.to_str()) == Some("onnx") {
                names.sort_by_key(|n| n != "onnx");
            }
            names.push(MOCK.to_owned());
            names
        } else {
            vec![framework.to_owned()]
        };
        let mut last_err = None;
        for name in &order {
            let Some(rt) = self.get(name) else {
                return Err(RuntimeError::UnknownFramework {
                    name: name.clone(),
                    available: self.names().join(", "),
                });
            };
            if !rt.available() {
                last_err = Some(RuntimeError::Load {
                    framework: name.clone(),
                    model: model.display().to_string(),
                    reason: "framework not available on this machine".into(),
                });
                continue;
            }
            let started = Instant::now();
            match rt.load(model) {
                Ok(m) => {
                    self.loaded
                        .get_or_create(&FrameworkLabel {
                            framework: name.clone(),
                        })
                        .inc();
                    return Ok(Loaded {
                        framework: name.clone(),
                        model: m,
                        load_ms: started.elapsed().as_secs_f64() * 1e3,
                    });
                }
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| RuntimeError::UnknownFramework {
            name: framework.to_owned(),
            available: self.names().join(", "),
        }))
    }
}

/// The identity function: outputs equal inputs. For tests and simulation only; always reported.
#[derive(Debug)]
pub struct MockRuntime;

impl Runtime for MockRuntime {
    fn version(&self) -> Option<String> {
        Some("identity".into())
    }

    fn load(&self, _model: &Path) -> Result<Arc<dyn LoadedModel>, RuntimeError> {
        Ok(Arc::new(Identity))
    }
}

struct Identity;

impl LoadedModel for Identity {
    fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, RuntimeError> {
        Ok(inputs.to_vec())
    }
}

/// ONNX in-process with tract.
#[derive(Debug)]
pub struct TractOnnx;

struct TractModel {
    plan: Arc<tract_onnx::prelude::TypedSimplePlan>,
}

fn tract_err(
    framework: &str,
    model: &Path,
) -> impl Fn(tract_onnx::prelude::TractError) -> RuntimeError {
    let (framework, model) = (framework.to_owned(), model.display().to_string());
    move |e| RuntimeError::Load {
        framework: framework.clone(),
        model: model.clone(),
        reason: format!("{e:#}"),
    }
}

impl Runtime for TractOnnx {
    fn version(&self) -> Option<String> {
        Some("tract-onnx 0.23".into())
    }

    fn load(&self, model: &Path) -> Result<Arc<dyn LoadedModel>, RuntimeError> {
        use tract_onnx::prelude::*;
        let err = tract_err("onnx", model);
        let path = if model.is_dir() {
            model.join("model.onnx")
        } else {
            model.to_path_buf()
        };
        let plan = tract_onnx::onnx()
            .model_for_path(&path)
            .map_err(&err)?
            .into_optimized()
            .map_err(&err)?
            .into_runnable()
            .map_err(&err)?;
        Ok(Arc::new(TractModel { plan }))
    }
}

impl LoadedModel for TractModel {
    fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, RuntimeError> {
        use tract_onnx::prelude::*;
        let run_err = |e: TractError| RuntimeError::Run {
            framework: "onnx".into(),
            reason: format!("{e:#}"),
        };
        let mut values: TVec<TValue> = TVec::new();
        for t in inputs {
            let tensor = tract_onnx::prelude::Tensor::from_shape(&t.shape, &t.data)
                .map_err(|e| RuntimeError::BadInput(format!("{e:#}")))?;
            values.push(tensor.into_tvalue());
        }
        let outputs = self.plan.run(values).map_err(run_err)?;
        outputs
            .iter()
            .map(|o| {
                let view = o
                    .to_plain_array_view::<f32>()
                    .map_err(|e| RuntimeError::Run {
                        framework: "onnx".into(),
                        reason: format!("only f32 outputs are supported: {e:#}"),
                    })?;
                Ok(self::Tensor {
                    shape: view.shape().to_vec(),
                    data: view.iter().copied().collect(),
                })
            })
            .collect()
    }
}
