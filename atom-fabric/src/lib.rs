//! atom-fabric: the neural fabric scheduler.
//!
//! The core is a synchronous, deterministic state machine ([`Scheduler`]) driven by
//! [`Command`]s stamped with an injected clock. Placement is filter-then-score with pluggable
//! [`Scorer`]s; tenants have quotas with cohort borrowing and reclaim, queues served by
//! dominant-resource fairness, and gang placement. [`Fabric`] adds persistence behind the
//! [`Store`] seam (a data directory with snapshot and checksummed journal by default).

pub mod agent;
pub mod autoscale;
pub mod chaos;
pub mod cluster;
pub mod error;
pub mod event;
pub mod hybrid;
pub mod metrics;
pub mod model;
pub mod model_store;
#[cfg(feature = "postgres")]
pub mod pg;
pub mod quota;
pub mod runtime;
pub mod scheduler;
pub mod scoring;
pub mod store;
pub mod trace;
pub mod workload;

pub use cluster::{Cluster, Node, NodeHealth};
pub use error::{FabricError, Result};
pub use event::{Event, EventKind, EvictReason};
pub use model::{
    Constraints, DeployApproval, GpuDevice, NodeSpec, Phase, Placement, QueueReason,
    ReplicaPlacement, RequestId, RequestStatus, Resources, ScheduleRequest, ScoreBreakdown,
    ScorePart,
};
pub use quota::{Quota, ResourceVector};
pub use scheduler::{Command, Outcome, Scheduler, SchedulerConfig};
pub use scoring::{LatencyTable, Scorer, ScorerSet};
pub use store::{DirStore, Fabric, MemoryStore, Store};
