//! The crate's error type.

use thiserror::Error;

/// Every error the fabric returns. Each variant says exactly what failed.
#[derive(Debug, Error)]
pub enum FabricError {
    /// A request or node description is malformed (the field and why).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// No request with this id is visible to this tenant (other tenants' ids look the same as missing ones).
    #[error("request {0} not found")]
    RequestNotFound(String),
    /// No node with this id is registered.
    #[error("node {0} is not registered")]
    NodeNotFound(String),
    /// The request is in a phase that does not allow the command.
    #[error("request {id} is {phase}; cannot {action}")]
    InvalidTransition {
        /// The request id.
        id: String,
        /// Its current phase.
        phase: String,
        /// The refused action.
        action: &'static str,
    },
    /// A policy refused the request (the policy and its reason).
    #[error("policy {policy} denied: {reason}")]
    PolicyDenied {
        /// The refusing policy, e.g. `P2`.
        policy: atom_policy::policy::PolicyId,
        /// Why.
        reason: String,
    },
    /// Re-registering a node with a spec its current allocations no longer fit.
    #[error("node {node}: new spec cannot hold its current allocations ({detail})")]
    NodeSpecConflict {
        /// The node id.
        node: String,
        /// What no longer fits.
        detail: String,
    },
    /// The persistent store failed (path and operation).
    #[error("store: {op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A snapshot or journal record could not be decoded.
    #[error("store: corrupt {what}: {detail}")]
    Corrupt {
        /// Which file or record.
        what: String,
        /// What is wrong with it.
        detail: String,
    },
    /// A trace CSV file is malformed (file, line and why).
    #[error("trace {file} line {line}: {detail}")]
    Trace {
        /// The file name.
        file: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        detail: String,
    },
    /// The metrics registry failed to encode.
    #[error("metrics encoding failed")]
    Metrics,
    /// The model store connector failed (which check, which file).
    #[error("model store: {0}")]
    ModelStore(#[from] crate::model_store::ModelStoreError),
    /// Reading autoscaler inputs from Prometheus failed.
    #[error("prometheus: {0}")]
    Prometheus(#[from] crate::autoscale::prometheus::PromError),
    /// The node agent failed.
    #[error("node agent: {0}")]
    Agent(#[from] crate::agent::AgentError),
    /// A runtime failed to load or run a model.
    #[error("runtime: {0}")]
    Runtime(#[from] crate::runtime::RuntimeError),
    /// A chaos plan is invalid (the field, e.g. `faults[2].duration`, and why).
    #[error("chaos plan: {field}: {detail}")]
    ChaosPlan {
        /// The field (or YAML location) at fault.
        field: String,
        /// What is wrong with it.
        detail: String,
    },
    /// The PostgreSQL state store failed (what was being done, why, and the driver's error).
    #[cfg(feature = "postgres")]
    #[error("postgres: {op}: {detail}")]
    Postgres {
        /// What was being done.
        op: String,
        /// Why it failed.
        detail: String,
        /// The driver's error, when there is one.
        #[source]
        source: Option<postgres::Error>,
    },
}

/// Shorthand for results of this crate.
pub type Result<T> = std::result::Result<T, FabricError>;
