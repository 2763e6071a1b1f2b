//! Property tests: random command sequences keep every invariant after every step, tenants
//! never see each other's requests, and replaying the journal (with restarts from snapshots
//! along the way) gives exactly the same state.
#![allow(clippy::unwrap_used)]

use atom_fabric::quota::{Quota, ResourceVector};
use atom_fabric::store::{Fabric, ManualClock, MemoryStore};
use atom_fabric::{
    Command, Constraints, FabricError, NodeSpec, RequestId, Resources, ScheduleRequest, Scheduler,
    SchedulerConfig,
};
use proptest::prelude::*;

const TENANTS: [&str; 3] = ["t0", "t1", "t2"];

#[derive(Debug, Clone)]
enum Op {
    Register(u8, u8, bool),
    Heartbeat(u8),
    Advance(u16),
    Drain(u8),
    Uncordon(u8),
    Schedule {
        tenant: u8,
        gpu: u8,
        milli: u16,
        cpu: u8,
        replicas: u8,
        priority: u8,
        model: bool,
    },
    Release(u8, u16),
    Complete(u8, u16),
    Running(u8, u16),
    Quota {
        tenant: u8,
        gpus: u8,
        borrow: u8,
        cohort: u8,
    },
    Snapshot,
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0u8..6, 0u8..5, any::<bool>()).prop_map(|(n, g, t4)| Op::Register(n, g, t4)),
        2 => (0u8..6).prop_map(Op::Heartbeat),
        1 => (0u16..2500).prop_map(Op::Advance),
        1 => (0u8..6).prop_map(Op::Drain),
        1 => (0u8..6).prop_map(Op::Uncordon),
        6 => (0u8..3, 0u8..3, 0u16..1001, 0u8..9, 1u8..4, 0u8..3, any::<bool>()).prop_map(
            |(tenant, gpu, milli, cpu, replicas, priority, model)| Op::Schedule { tenant, gpu, milli, cpu, replicas, priority, model }
        ),
        3 => (0u8..3, 0u16..40).prop_map(|(t, r)| Op::Release(t, r)),
        1 => (0u8..3, 0u16..40).prop_map(|(t, r)| Op::Complete(t, r)),
        1 => (0u8..3, 0u16..40).prop_map(|(t, r)| Op::Running(t, r)),
        1 => (0u8..3, 0u8..6, 0u8..4, 0u8..2).prop_map(|(tenant, gpus, borrow, cohort)| Op::Quota { tenant, gpus, borrow, cohort }),
        1 => Just(Op::Snapshot),
        1 => Just(Op::Restart),
    ]
}

fn command(op: &Op) -> Option<Command> {
    Some(match *op {
        Op::Register(n, g, t4) => Command::RegisterNode {
            spec: NodeSpec::new(format!("n{n}"), 16_000, 65_536).with_gpus(
                if t4 { "T4" } else { "A100" },
                g as usize,
                16_384,
            ),
        },
        Op::Heartbeat(n) => Command::Heartbeat {
            node: format!("n{n}"),
            cached_models: None,
        },
        Op::Drain(n) => Command::DrainNode {
            node: format!("n{n}"),
        },
        Op::Uncordon(n) => Command::UncordonNode {
            node: format!("n{n}"),
        },
        Op::Schedule {
            tenant,
            gpu,
            milli,
            cpu,
            replicas,
            priority,
            model,
        } => {
            let resources = Resources {
                gpu: u32::from(gpu),
                gpu_milli: if gpu == 0 { 0 } else { u32::from(milli) },
                cpu: u64::from(cpu) * 1000,
                mem: 1024,
                ..Default::default()
            };
            let constraints = Constraints {
                gpu_model: (model && gpu > 0).then(|| "T4".to_string()),
                ..Default::default()
            };
            Command::Schedule {
                request: ScheduleRequest::new(TENANTS[tenant as usize], "m", "v", resources)
                    .with_replicas(u32::from(replicas))
                    .with_priority(i32::from(priority))
                    .with_constraints(constraints),
            }
        }
        Op::Release(t, r) => Command::Release {
            tenant_id: TENANTS[t as usize].into(),
            request: RequestId(u64::from(r)),
        },
        Op::Complete(t, r) => Command::Complete {
            tenant_id: TENANTS[t as usize].into(),
            request: RequestId(u64::from(r)),
        },
        Op::Running(t, r) => Command::MarkRunning {
            tenant_id: TENANTS[t as usize].into(),
            request: RequestId(u64::from(r)),
        },
        Op::Quota {
            tenant,
            gpus,
            borrow,
            cohort,
        } => Command::SetQuota {
            tenant_id: TENANTS[tenant as usize].into(),
            quota: Quota::gpus(u64::from(gpus))
                .with_borrow_limit(ResourceVector {
                    gpu_milli: u64::from(borrow) * 1000,
                    ..ResourceVector::ZERO
                })
                .with_cohort(if cohort == 0 { "default" } else { "c1" }),
        },
        Op::Advance(_) | Op::Snapshot | Op::Restart => return None,
    })
}

fn check_isolation(s: &Scheduler) -> Result<(), TestCaseError> {
    for t in TENANTS {
        for r in s.requests_of(t) {
            prop_assert_eq!(&r.tenant_id, t);
            for other in TENANTS.iter().filter(|o| **o != t) {
                prop_assert!(matches!(
                    s.status(other, r.id),
                    Err(FabricError::RequestNotFound(_))
                ));
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn invariants_hold_and_replay_reproduces_the_state(ops in proptest::collection::vec(op(), 1..120)) {
        let config = SchedulerConfig { heartbeat_timeout_ms: 2000, ..Default::default() };
        let clock = ManualClock::new(0);
        let mut fabric = Fabric::open(config.clone(), MemoryStore::default(), Box::new(clock.clone())).unwrap().with_snapshot_every(0);
        let mut journal: Vec<(Command, u64)> = Vec::new();
        let mut now = 0u64;
        for op in &ops {
            match op {
                Op::Advance(ms) => {
                    now += u64::from(*ms);
                    clock.set(now);
                    if let Some(_out) = fabric.tick().unwrap() {
                        journal.push((Command::CheckHeartbeats, now));
                    }
                }
                Op::Snapshot => fabric.snapshot().unwrap(),
                Op::Restart => {
                    let before = fabric.scheduler().state_digest().unwrap();
                    let store = fabric.into_store();
                    fabric = Fabric::open(config.clone(), store, Box::new(clock.clone())).unwrap().with_snapshot_every(0);
                    prop_assert_eq!(before, fabric.scheduler().state_digest().unwrap());
                }
                other => {
                    let cmd = command(other).unwrap();
                    journal.push((cmd.clone(), now));
                    let _ = fabric.execute(cmd);
                }
            }
            if let Err(e) = fabric.scheduler().check_invariants() {
                return Err(TestCaseError::fail(format!("after {op:?}: {e}")));
            }
            check_isolation(fabric.scheduler())?;
        }
        // An independent replay of the raw command list from an empty scheduler.
        let mut replayed = Scheduler::new(config);
        for (cmd, at) in journal {
            let _ = replayed.apply(cmd, at);
        }
        prop_assert_eq!(replayed.state_digest().unwrap(), fabric.scheduler().state_digest().unwrap());
    }
}
