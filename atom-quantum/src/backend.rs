//! Quantum backends behind one trait, and a registry of providers chosen by `QUANTUM_PROVIDER`.

use crate::circuit::Circuit;
use crate::error::{Error, Result};
use crate::sim::{Precision, SimOptions, Simulator};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock, RwLock};

/// Options of one run on any backend.
#[derive(Debug, Clone, PartialEq)]
pub struct RunOptions {
    /// Number of shots.
    pub shots: u64,
    /// Seed for deterministic sampling, if the backend supports it.
    pub seed: Option<u64>,
    /// Amplitude precision for simulators.
    pub precision: Precision,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            shots: 1024,
            seed: None,
            precision: Precision::Double,
        }
    }
}

/// What a backend returns.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BackendResult {
    /// Name of the backend that ran the circuit.
    pub backend: String,
    /// Counts keyed as Qiskit does (clbit 0 rightmost, registers separated by spaces).
    pub counts: BTreeMap<String, u64>,
    /// Shots taken.
    pub shots: u64,
    /// Seconds the backend spent.
    pub seconds: f64,
    /// Backend-specific facts (qubits, depth, precision, ...).
    pub metadata: BTreeMap<String, serde_json::Value>,
}

/// Anything that runs circuits: the local simulator, or a provider registered at run time.
pub trait QuantumBackend: Send + Sync {
    /// Backend name.
    fn name(&self) -> &str;
    /// Run a circuit.
    fn run(&self, circuit: &Circuit, options: &RunOptions) -> Result<BackendResult>;
}

/// The built-in statevector simulator as a backend (`local`, also registered as `mock`).
///
/// ```
/// use atom_quantum::{Circuit, LocalSimulator, QuantumBackend, RunOptions};
/// let mut c = Circuit::new(1, 1);
/// c.x(0).measure(0, 0);
/// let r = LocalSimulator::default().run(&c, &RunOptions { shots: 10, seed: Some(3), ..RunOptions::default() }).unwrap();
/// assert_eq!(r.counts["1"], 10);
/// ```
#[derive(Debug, Clone, Default)]
pub struct LocalSimulator {
    /// Name reported in results.
    pub label: Option<String>,
}

impl QuantumBackend for LocalSimulator {
    fn name(&self) -> &str {
        self.label.as_deref().unwrap_or("local")
    }

    fn run(&self, circuit: &Circuit, options: &RunOptions) -> Result<BackendResult> {
        let sim = Simulator::new(SimOptions {
            shots: options.shots,
            seed: options.seed,
            precision: options.precision,
            ..SimOptions::default()
        });
        let r = sim.run(circuit)?;
        let mut metadata = BTreeMap::new();
        metadata.insert("num_qubits".into(), circuit.num_qubits().into());
        metadata.insert("num_clbits".into(), circuit.num_clbits().into());
        metadata.insert("depth".into(), circuit.depth().into());
        metadata.insert("fused_ops".into(), r.fused_ops().into());
        metadata.insert(
            "precision".into(),
            match options.precision {
                Precision::Double => "double",
                Precision::Single => "single",
            }
            .into(),
        );
        metadata.insert(
            "seed".into(),
            options.seed.map_or(serde_json::Value::Null, Into::into),
        );
        metadata.insert("method".into(), "statevector".into());
        Ok(BackendResult {
            backend: self.name().to_string(),
            counts: r.counts().clone(),
            shots: r.shots(),
            seconds: r.seconds(),
            metadata,
        })
    }
}

/// Makes a backend on demand.
pub type BackendFactory = Arc<dyn Fn() -> Result<Box<dyn QuantumBackend>> + Send + Sync>;

/// Providers by name. `local` and `mock` (both the local simulator) are built in.
///
/// ```
/// use atom_quantum::{LocalSimulator, ProviderRegistry, QuantumBackend};
/// use std::sync::Arc;
/// let mut reg = ProviderRegistry::new();
/// reg.register("my-qpu", Arc::new(|| Ok(Box::new(LocalSimulator { label: Some("my-qpu".into()) }) as Box<dyn QuantumBackend>)));
/// assert_eq!(reg.get("my-qpu").unwrap().name(), "my-qpu");
/// assert!(reg.get("nope").is_err());
/// ```
#[derive(Clone)]
pub struct ProviderRegistry {
    factories: BTreeMap<String, BackendFactory>,
}

impl std::fmt::Debug for ProviderRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderRegistry")
            .field("providers", &self.names())
            .finish()
    }
}

impl Default for ProviderRegistry {
    fn default() -> Self {
        Self::new()
    }
}

/// Environment variable that selects the provider.
pub const PROVIDER_ENV: &str = "QUANTUM_PROVIDER";

impl ProviderRegistry {
    /// A registry with the built-in providers.
    pub fn new() -> ProviderRegistry {
        let mut r = ProviderRegistry {
            factories: BTreeMap::new(),
        };
        for name in ["local", "mock"] {
            r.register(
                name,
                Arc::new(move || {
                    Ok(Box::new(LocalSimulator {
                        label: Some(name.to_string()),
                    }) as Box<dyn QuantumBackend>)
                }),
            );
        }
        r
    }

    /// The process-wide registry (for bindings that register providers at run time).
    pub fn global() -> &'static RwLock<ProviderRegistry> {
        static GLOBAL: OnceLock<RwLock<ProviderRegistry>> = OnceLock::new();
        GLOBAL.get_or_init(|| RwLock::new(ProviderRegistry::new()))
    }

    /// Add or replace a provider.
    pub fn register(&mut self, name: &str, factory: BackendFactory) {
        self.factories.insert(name.to_string(), factory);
    }

    /// Registered names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.factories.keys().cloned().collect()
    }

    /// Make the backend registered under `name`.
    pub fn get(&self, name: &str) -> Result<Box<dyn QuantumBackend>> {
        match self.factories.get(name) {
            Some(f) => f(),
            None => Err(Error::Backend(format!(
                "unknown quantum provider `{name}` (registered: {})",
                self.names().join(", ")
            ))),
        }
    }

    /// The backend named by `QUANTUM_PROVIDER` (given as `value`), `local` when unset or empty.
    pub fn select(&self, value: Option<&str>) -> Result<Box<dyn QuantumBackend>> {
        match value.map(str::trim) {
            None | Some("") => self.get("local"),
            Some(v) => self.get(&v.to_ascii_lowercase()),
        }
    }

    /// The backend named by the `QUANTUM_PROVIDER` environment variable.
    pub fn from_env(&self) -> Result<Box<dyn QuantumBackend>> {
        self.select(std::env::var(PROVIDER_ENV).ok().as_deref())
    }
}
