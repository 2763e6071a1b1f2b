//! Policies P1–P7: typed checks that return [`Decision`]s, and the policy matrix.

use serde::{Deserialize, Serialize};
use std::fmt;

/// One of the seven policies every decision of the fabric is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PolicyId {
    /// P1 privacy: no PII or raw inputs in telemetry or logs.
    P1,
    /// P2 signing: deploys, upgrades and job dispatch need a valid signed manifest.
    P2,
    /// P3 execution safety: approvals for promotion and key rotation, risky actions dry-run.
    P3,
    /// P4 observability: every host exposes `/health` and `/metrics`.
    P4,
    /// P5 tenant isolation: JWT-validated tenant, per-tenant queues and quotas.
    P5,
    /// P6 performance budget: latency and memory budgets per model and job.
    P6,
    /// P7 resilience: snapshots verified on deploy and rollback, failover.
    P7,
}

impl PolicyId {
    /// All policies in order.
    pub const ALL: [PolicyId; 7] = [
        PolicyId::P1,
        PolicyId::P2,
        PolicyId::P3,
        PolicyId::P4,
        PolicyId::P5,
        PolicyId::P6,
        PolicyId::P7,
    ];

    /// Short name, e.g. `"P5"`.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyId::P1 => "P1",
            PolicyId::P2 => "P2",
            PolicyId::P3 => "P3",
            PolicyId::P4 => "P4",
            PolicyId::P5 => "P5",
            PolicyId::P6 => "P6",
            PolicyId::P7 => "P7",
        }
    }
}

impl fmt::Display for PolicyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The outcome of one policy check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Decision {
    /// The action satisfies the policy.
    Allow {
        /// The policy that was checked.
        policy: PolicyId,
    },
    /// The action is refused; `reason` says exactly why.
    Deny {
        /// The policy that refused.
        policy: PolicyId,
        /// Why it was refused.
        reason: String,
    },
    /// The action would be refused in production but is allowed because `SIMULATION_MODE=true`.
    AllowInSimulation {
        /// The policy that was relaxed.
        policy: PolicyId,
        /// What would have been refused in production.
        reason: String,
    },
}

impl Decision {
    /// The policy this decision belongs to.
    pub fn policy(&self) -> PolicyId {
        match self {
            Decision::Allow { policy }
            | Decision::Deny { policy, .. }
            | Decision::AllowInSimulation { policy, .. } => *policy,
        }
    }

    /// True unless the decision is a denial.
    pub fn is_allowed(&self) -> bool {
        !matches!(self, Decision::Deny { .. })
    }
}

mod checks;
mod matrix;

pub use checks::{
    Budgets, JobKind, PolicyEngine, ResourceEstimate, RiskyAction, statevector_bytes,
};
pub use matrix::{MatrixRow, PolicyMatrix};
