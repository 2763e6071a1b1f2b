//! Hybrid quantum-AI agents (H.3): the job coordinator, the router, quantum telemetry, and a
//! worked variational quantum classifier.
//!
//! A job `{tenant, mode, payload, manifest}` is checked before anything runs: the tenant is the
//! caller's (P5), the DSSE job manifest binds tenant, mode and payload digest and verifies against
//! the trusted key ring (P2; unsigned only in simulation), and the pipeline is validated
//! statically. Jobs wait in per-tenant queues served round robin. Each stage is routed: neural
//! stages to a GPU or CPU engine of a healthy node, quantum stages to the local simulator or a
//! registered provider, with the P6 memory and time budgets checked up front. A failing target
//! fails over to the next one, then to the stage's declared fallback. Submission, routing,
//! failover, each stage result and the end of the job are audit entries (hashes only, P1), whose
//! indices are in the job's status so an auditor can prove them with inclusion proofs.

mod coordinator;
mod job;
pub mod onnx;
mod router;
mod telemetry;
pub mod vqc;

pub use coordinator::{
    AuditSink, CatalogModel, Coordinator, CoordinatorConfig, FailoverRecord, JobState, JobStatus,
    ManifestCheck, MemoryAudit, QuantumFacts, StageReport, label_from_expectation, tvd,
};
pub use job::{
    ClassicalOp, Fallback, JOB_STATEMENT_TYPE, JobMode, JobStatement, JobSubmission, MAX_STAGES,
    Observable, Pipeline, Stage, StageOp, Value, ValueRef, canonical_json, payload_digest,
};
pub use router::{
    CircuitProfile, EngineKind, NeuralPlan, NeuralTarget, QuantumEngine, QuantumPlan,
    QuantumTarget, Rejection, Router, RouterConfig,
};
pub use telemetry::QuantumTelemetry;

use atom_policy::policy::PolicyId;

/// Exactly what went wrong with a job.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HybridError {
    /// A field of the job is invalid (the field path and why). HTTP 422.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// Field path, e.g. `payload.stages[1].bind`.
        field: String,
        /// Why.
        reason: String,
    },
    /// No bearer token outside simulation (P5). HTTP 401.
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// The token's tenant is not the job's (P5). HTTP 403.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// No manifest outside simulation (P2). HTTP 403.
    #[error("P2: a signed job manifest is required outside simulation")]
    Unsigned,
    /// The manifest does not verify (P2). HTTP 403.
    #[error("P2: job manifest: {0}")]
    Manifest(#[source] atom_policy::Error),
    /// The manifest verifies but is for another job (P2). HTTP 403.
    #[error("P2: job manifest does not match the job: {0}")]
    ManifestMismatch(String),
    /// The tenant's queue is full (P5). HTTP 429.
    #[error("tenant {tenant}'s queue is full ({limit} jobs)")]
    QueueFull {
        /// Tenant.
        tenant: String,
        /// Queue limit.
        limit: usize,
    },
    /// No job with this id is visible to the caller. HTTP 404.
    #[error("job {0} not found")]
    NotFound(String),
    /// The router refused a stage (P6 budgets, or nothing available).
    #[error("{policy} refused the stage ({code}): {reason}")]
    Rejected {
        /// The policy.
        policy: PolicyId,
        /// Reason code.
        code: String,
        /// What does not fit.
        reason: String,
    },
    /// Every target of a stage failed.
    #[error("no target could run the stage: {0}")]
    Unavailable(String),
    /// A stage failed on its inputs.
    #[error("{0}")]
    Stage(String),
    /// The audit log refused an entry (the job is not accepted).
    #[error("audit log: {0}")]
    Audit(#[source] atom_policy::audit::AuditError),
}

impl HybridError {
    /// True when the failure is about availability (a fallback may stand in), not the input.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            HybridError::Unavailable(_) | HybridError::Rejected { .. }
        )
    }
}
