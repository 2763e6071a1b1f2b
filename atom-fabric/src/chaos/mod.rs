//! The resilience simulator (`atom chaos`, H.3.6, policy P7).
//!
//! Deterministic discrete-event runs over virtual time that drive the real [`crate::Scheduler`]:
//! node agents register, heartbeat and run placed work; the scheduler marks silent nodes
//! unhealthy and re-queues their work; quantum stages call providers with failover to the next
//! provider or a classical fallback. A [`Plan`] (YAML) gives the fleet, providers, workload
//! (seeded, the Azure LLM trace, or an explicit list) and faults (node crashes and restarts,
//! partitions, provider outages, latency spikes, slow nodes). The [`Report`] counts lost work,
//! duplicate executions, fenced runs, SLO attainment and failover times; the same plan and seed
//! give the same report (but for `wall_seconds`).
//!
//! Fencing: an agent stops its work when it could not renew its lease (a heartbeat
//! acknowledged) for `timing.lease`, shorter than the scheduler's heartbeat timeout, and every
//! result carries the placement epoch; the coordinator accepts only the current epoch of a job
//! that has not finished. With `fencing: false` both are off and duplicates show in the report.
//!
//! ```
//! use atom_fabric::chaos::{Plan, RunOptions, run};
//! let plan = Plan::from_yaml(r#"
//! name: example
//! duration: 5m
//! fleet: [{name: gpu, count: 3, gpus: 2}]
//! providers: [{name: qpu-a, concurrency: 2, service: 400ms}]
//! workload: {source: seeded, rate_per_s: 2, mix: {neural: 0.8, quantum: 0.1, hybrid: 0.1}}
//! faults:
//!   - {kind: partition, node: gpu-1, at: 60s, duration: 30s}
//!   - {kind: provider_outage, provider: qpu-a, at: 2m, duration: 20s}
//! quantum: {fallback: 900ms}
//! "#).unwrap().validate().unwrap();
//! let a = run(&plan, 1, &RunOptions::default()).unwrap();
//! let b = run(&plan, 1, &RunOptions::default()).unwrap();
//! assert_eq!(a.deterministic_json(), b.deterministic_json());
//! assert_eq!((a.lost_work, a.duplicate_executions), (0, 0));
//! ```

pub mod plan;
pub mod report;
pub mod sim;
pub mod workload;

pub use plan::{FaultKind, JobKind, Plan, ValidPlan};
pub use report::Report;
pub use sim::{RunOptions, run, run_plan};
