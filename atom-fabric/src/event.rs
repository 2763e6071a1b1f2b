//! Decision events collected in an outbox for the audit log.

use atom_policy::policy::Decision;
use serde::{Deserialize, Serialize};

use crate::model::{Phase, Placement, QueueReason, RequestId};
use crate::quota::Quota;

/// Why replicas were taken off their nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cause", rename_all = "snake_case")]
pub enum EvictReason {
    /// A higher-priority request of the same tenant needed the quota.
    Priority {
        /// The preempting request.
        by: RequestId,
    },
    /// The lender tenant reclaimed quota this borrowed request used.
    Reclaim {
        /// The reclaiming request.
        by: RequestId,
    },
    /// The tenant's quota was lowered below its use.
    QuotaLowered,
    /// The node missed its heartbeats.
    NodeLost,
    /// The node is being drained.
    NodeDrained,
    /// An operator evicted it.
    Operator {
        /// The operator's reason.
        reason: String,
    },
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// A request was placed (with the score breakdown of each replica).
    Placed {
        /// The placement (shared with the command's [`Outcome`](crate::Outcome): one copy of
        /// the node ids and score breakdowns per decision, not two).
        placement: std::sync::Arc<Placement>,
        /// Time since submission (ms).
        wait_ms: u64,
    },
    /// A request waits.
    Queued {
        /// Why.
        reason: QueueReason,
        /// Detail (which resource or constraint).
        detail: String,
    },
    /// A request was refused.
    Rejected {
        /// Why.
        detail: String,
    },
    /// A request was taken off its nodes.
    Evicted {
        /// Why.
        reason: EvictReason,
        /// Back in its queue (false only for operator evictions).
        requeued: bool,
    },
    /// A request reported running.
    Running,
    /// A request reached a terminal phase.
    Finished {
        /// Completed or failed.
        phase: Phase,
    },
    /// A tenant's quota was set.
    QuotaSet {
        /// The new quota.
        quota: Quota,
    },
    /// A node registered (or re-registered).
    NodeRegistered {
        /// Node id.
        node: String,
    },
    /// A node's heartbeats timed out.
    NodeUnhealthy {
        /// Node id.
        node: String,
    },
    /// An unhealthy node sent a heartbeat again.
    NodeRecovered {
        /// Node id.
        node: String,
    },
    /// A node was drained.
    NodeDrained {
        /// Node id.
        node: String,
    },
    /// A drained node was opened again.
    NodeUncordoned {
        /// Node id.
        node: String,
    },
}

/// One decision of the scheduler, with the policy checks behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Position in the event stream (consumers deduplicate by it after a restart).
    pub seq: u64,
    /// Clock time (ms).
    pub at_ms: u64,
    /// The tenant concerned, if any.
    pub tenant_id: Option<String>,
    /// The request concerned, if any.
    pub request_id: Option<RequestId>,
    /// The request's model, if a request is concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_id: Option<String>,
    /// What happened.
    pub kind: EventKind,
    /// Policy decisions (P2, P3, P5, P6) behind it.
    pub decisions: Vec<Decision>,
}
