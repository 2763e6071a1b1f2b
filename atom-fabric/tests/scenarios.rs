//! Scenario tests with known answers: quotas, borrowing and reclaim, gang placement,
//! priorities, DRF shares (the DRF paper's example), node loss, isolation, policies.
#![allow(clippy::unwrap_used)]

use atom_fabric::quota::{Quota, ResourceVector};
use atom_fabric::{
    Command, Constraints, DeployApproval, EventKind, EvictReason, FabricError, LatencyTable,
    NodeSpec, Outcome, Phase, QueueReason, RequestId, Resources, ScheduleRequest, Scheduler,
    SchedulerConfig,
};
use atom_policy::policy::{Decision, PolicyId};

fn gpu(n: u32) -> Resources {
    Resources {
        gpu: n,
        cpu: 1000,
        mem: 1024,
        ..Default::default()
    }
}

fn node(id: &str, gpus: usize) -> Command {
    Command::RegisterNode {
        spec: NodeSpec::new(id, 64_000, 262_144).with_gpus("A100", gpus, 40_960),
    }
}

fn sched(s: &mut Scheduler, req: ScheduleRequest, t: u64) -> Outcome {
    let out = s.apply(Command::Schedule { request: req }, t).unwrap();
    s.check_invariants().unwrap();
    out
}

fn placed_id(o: &Outcome) -> RequestId {
    match o {
        Outcome::Placed { request_id, .. } => *request_id,
        other => panic!("expected placed, got {other:?}"),
    }
}

fn queued(o: &Outcome) -> (RequestId, QueueReason) {
    match o {
        Outcome::Queued {
            request_id, reason, ..
        } => (*request_id, *reason),
        other => panic!("expected queued, got {other:?}"),
    }
}

#[test]
fn default_quota_is_two_gpus_and_queued_work_is_placed_when_capacity_frees() {
    let mut s = Scheduler::new(SchedulerConfig::default());
    s.apply(node("n1", 8), 0).unwrap();
    let a = placed_id(&sched(
        &mut s,
        ScheduleRequest::new("t", "m", "v1", gpu(1)),
        1,
    ));
    placed_id(&sched(
        &mut s,
        ScheduleRequest::new("t", "m", "v1", gpu(1)),
        2,
    ));
    let (c, why) = queued(&sched(
        &mut s,
        ScheduleRequest::new("t", "m", "v1", gpu(1)),
        3,
    ));
    assert_eq!(why, QueueReason::Quota);
    assert_eq!(
        s.status("t", c).unwrap().queue_reason,
        Some(QueueReason::Quota)
    );
    // Asking for more than the quota could ever allow is refused up front (P5).
    let err = s
        .apply(
            Command::Schedule {
                request: ScheduleRequest::new("t", "m", "v1", gpu(3)),
            },
            4,
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            FabricError::PolicyDenied {
                policy: PolicyId::P5,
                ..
            }
        ),
        "{err}"
    );
    // Releasing one places the queued request in the same command.
    s.apply(
        Command::Release {
            tenant_id: "t".into(),
            request: a,
        },
        10,
    )
    .unwrap();
    s.check_invariants().unwrap();
    let st = s.status("t", c).unwrap();
    assert_eq!(st.phase, Phase::Placed);
    assert_eq!((st.submitted_ms, st.placed_ms), (3, Some(10)));
    assert_eq!(s.status("t", a).unwrap().phase, Phase::Completed);
    assert_eq!(s.status("t", a).unwrap().finished_ms, Some(10));
    // Fractional GPUs count in milli: four 500-milli shares fit a 2-GPU quota.
    let mut s = Scheduler::new(SchedulerConfig::default());
    s.apply(node("n1", 8), 0).unwrap();
    let half = Resources {
        gpu: 1,
        gpu_milli: 500,
        ..Default::default()
    };
    for i in 0..4 {
        placed_id(&sched(
            &mut s,
            ScheduleRequest::new("t", "m", "v1", half),
            i,
        ));
    }
    assert_eq!(
        queued(&sched(
            &mut s,
            ScheduleRequest::new("t", "m", "v1", half),
            9
        ))
        .1,
        QueueReason::Quota
    );
    // The four shares pack onto two devices (bin-packing of fractional GPUs).
    assert_eq!(s.node("n1").unwrap().gpu_free_total(), 6000);
}

#[test]
fn borrowing_then_reclaim_by_preemption() {
    let mut s = Scheduler::new(SchedulerConfig::default());
    s.apply(node("n1", 4), 0).unwrap();
    let two = ResourceVector {
        gpu_milli: 2000,
        ..ResourceVector::ZERO
    };
    let qa = Quota::gpus(2).with_cohort("c").with_borrow_limit(two);
    s.apply(
        Command::SetQuota {
            tenant_id: "a".into(),
            quota: qa,
        },
        0,
    )
    .unwrap();
    s.apply(
        Command::SetQuota {
            tenant_id: "b".into(),
            quota: Quota::gpus(2).with_cohort("c"),
        },
        0,
    )
    .unwrap();
    let ids: Vec<RequestId> = (0..4)
        .map(|i| {
            placed_id(&sched(
                &mut s,
                ScheduleRequest::new("a", "m", "v1", gpu(1)),
                10 + i,
            ))
        })
        .collect();
    // The third and fourth are admitted by borrowing b's idle quota.
    let borrowed: Vec<bool> = ids
        .iter()
        .map(|&id| s.status("a", id).unwrap().placement.unwrap().borrowed)
        .collect();
    assert_eq!(borrowed, [false, false, true, true]);
    // A fifth exceeds a's borrow limit (2 + 2).
    assert_eq!(
        queued(&sched(
            &mut s,
            ScheduleRequest::new("a", "m", "v1", gpu(1)),
            20
        ))
        .1,
        QueueReason::Quota
    );
    s.take_events();
    // b wants its nominal quota back: the newest borrowed request of a is evicted and re-queued.
    let b1 = placed_id(&sched(
        &mut s,
        ScheduleRequest::new("b", "m", "v1", gpu(1)),
        30,
    ));
    assert_eq!(s.status("a", ids[3]).unwrap().phase, Phase::Queued);
    assert_eq!(s.status("a", ids[3]).unwrap().evictions, 1);
    assert_eq!(s.status("a", ids[2]).unwrap().phase, Phase::Placed);
    let ev = s.take_events();
    assert!(ev.iter().any(|e| e.request_id == Some(ids[3])
        && e.kind
            == EventKind::Evicted {
                reason: EvictReason::Reclaim { by: b1 },
                requeued: true
            }));
    // b's second GPU reclaims the other borrowed one; a keeps exactly its nominal 2 GPUs.
    placed_id(&sched(
        &mut s,
        ScheduleRequest::new("b", "m", "v1", gpu(1)),
        31,
    ));
    assert_eq!(s.tenant_usage("a").unwrap().1.gpu_milli, 2000);
    assert_eq!(s.tenant_usage("b").unwrap().1.gpu_milli, 2000);
    assert_eq!(s.status("a", ids[2]).unwrap().phase, Phase::Queued);
}

#[test]
fn gang_places_all_replicas_or_none() {
    let mut s = Scheduler::new(SchedulerConfig::default());
    s.apply(node("n1", 2), 0).unwrap();
    s.apply(node("n2", 2), 0).unwrap();
    s.apply(
        Command::SetQuota {
            tenant_id: "t".into(),
            quota: Quota::gpus(8),
        },
        0,
    )
    .unwrap();
    placed_id(&sched(
        &mut s,
        ScheduleRequest::new("t", "m", "v1", gpu(1)),
        1,
    ));
    // 3 free GPUs: a gang of 4 one-GPU replicas waits and takes nothing.
    let (g4, why) = queued(&sched(
        &mut s,
        ScheduleRequest::new("t", "m", "v1", gpu(1)).with_replicas(4),
        2,
    ));
    assert_eq!(why, QueueReason::Capacity);
    let free: u64 = ["n1", "n2"]
        .iter()
        .map(|n| s.node(n).unwrap().gpu_free_total())
        .sum();
    assert_eq!(free, 3000);
    // A gang of 3 fits exactly, on both nodes.
    let g3 = sched(
        &mut s,
        ScheduleRequest::new("t", "m", "v1", gpu(1)).with_replicas(3),
        3,
    );
    let Outcome::Placed { placement, .. } = g3 else {
        panic!("{g3:?}")
    };
    assert_eq!(placement.replicas.len(), 3);
    let mut nodes: Vec<&str> = placement.replicas.iter().map(|r| r.node.as_str()).collect();
    nodes.sort();
    assert_eq!(nodes, ["n1", "n2", "n2"]);
    assert_eq!(s.status("t", g4).unwrap().phase, Phase::Queued);
    // A replica needing 3 GPUs on one node can never fit a 2-GPU node: constraint.
    let (_, why) = queued(&sched(
        &mut s,
        ScheduleRequest::new("t", "m", "v1", gpu(3)),
        4,
    ));
    assert_eq!(why, QueueReason::Constraint);
}

#[test]
fn priorities_order_the_queue_and_preempt_within_the_tenant() {
    let mut s = Scheduler::new(SchedulerConfig::default());
    s.apply(node("n1", 8), 0).unwrap();
    let req = |p| ScheduleRequest::new("t", "m", "v1", gpu(1)).with_priority(p);
    let low1 = placed_id(&sched(&mut s, req(0), 1));
    let low2 = placed_id(&sched(&mut s, req(0), 2));
    // Quota is full: a higher-priority request preempts the newest lower-priority one.
    let high = placed_id(&sched(&mut s, req(5), 3));
    assert_eq!(s.status("t", low2).unwrap().phase, Phase::Queued);
    assert_eq!(s.status("t", low1).unwrap().phase, Phase::Placed);
    // Equal priority does not preempt.
    let (mid, why) = queued(&sched(&mut s, req(0), 4));
    assert_eq!(why, QueueReason::Quota);
    let top = placed_id(&sched(&mut s, req(3), 5));
    assert_eq!(s.status("t", low1).unwrap().phase, Phase::Queued);
    // Nothing below priority 2 is placed now (5 and 3 are): it waits.
    let (p2, _) = queued(&sched(&mut s, req(2), 6));
    // When capacity frees, the highest priority waiting request goes first, even though newest.
    s.apply(
        Command::Release {
            tenant_id: "t".into(),
            request: top,
        },
        7,
    )
    .unwrap();
    assert_eq!(s.status("t", p2).unwrap().phase, Phase::Placed);
    // Then equal priorities in submission order: low1 (first submitted) before low2 and mid.
    s.apply(
        Command::Release {
            tenant_id: "t".into(),
            request: high,
        },
        8,
    )
    .unwrap();
    assert_eq!(s.status("t", low1).unwrap().phase, Phase::Placed);
    assert_eq!(s.status("t", low2).unwrap().phase, Phase::Queued);
    assert_eq!(s.status("t", mid).unwrap().phase, Phase::Queued);
    s.check_invariants().unwrap();
}

#[test]
fn drf_shares_match_the_drf_paper_example() {
    // Ghodsi et al., NSDI '11: 9 CPUs and 18 GB; A's tasks need <1 CPU, 4 GB>, B's <3 CPUs, 1 GB>.
    // DRF gives A three tasks and B two (both dominant shares 2/3).
    let mut s = Scheduler::new(SchedulerConfig::default());
    let a = Resources {
        cpu: 1000,
        mem: 4096,
        ..Default::default()
    };
    let b = Resources {
        cpu: 3000,
        mem: 1024,
        ..Default::default()
    };
    for i in 0..6 {
        s.apply(
            Command::Schedule {
                request: ScheduleRequest::new("A", "m", "v", a),
            },
            i,
        )
        .unwrap();
        s.apply(
            Command::Schedule {
                request: ScheduleRequest::new("B", "m", "v", b),
            },
            i,
        )
        .unwrap();
    }
    assert_eq!((s.queue_depth("A"), s.queue_depth("B")), (6, 6));
    s.apply(
        Command::RegisterNode {
            spec: NodeSpec::new("n", 9000, 18 * 1024),
        },
        10,
    )
    .unwrap();
    s.check_invariants().unwrap();
    let placed = |t: &str| {
        s.requests_of(t)
            .iter()
            .filter(|r| r.phase == Phase::Placed)
            .count()
    };
    assert_eq!((placed("A"), placed("B")), (3, 2));
    assert!((s.dominant_share_of("A") - 2.0 / 3.0).abs() < 1e-9);
    assert!((s.dominant_share_of("B") - 2.0 / 3.0).abs() < 1e-9);
}

#[test]
fn lost_node_requeues_its_work_which_moves_to_a_live_node() {
    let mut s = Scheduler::new(SchedulerConfig {
        heartbeat_timeout_ms: 1000,
        ..Default::default()
    });
    s.apply(node("n1", 1), 0).unwrap();
    let r = placed_id(&sched(
        &mut s,
        ScheduleRequest::new("t", "m", "v1", gpu(1)),
        1,
    ));
    s.apply(
        Command::MarkRunning {
            tenant_id: "t".into(),
            request: r,
        },
        2,
    )
    .unwrap();
    s.apply(node("n2", 1), 500).unwrap();
    s.apply(
        Command::Heartbeat {
            node: "n2".into(),
            cached_models: None,
        },
        1400,
    )
    .unwrap();
    assert!(!s.heartbeats_expired(1000));
    assert!(s.heartbeats_expired(1500));
    let out = s.apply(Command::CheckHeartbeats, 1500).unwrap();
    assert_eq!(
        out,
        Outcome::Expired {
            nodes: vec!["n1".into()]
        }
    );
    s.check_invariants().unwrap();
    let st = s.status("t", r).unwrap();
    assert_eq!(st.phase, Phase::Placed);
    assert_eq!(st.placement.unwrap().replicas[0].node, "n2");
    assert_eq!(st.evictions, 1);
    // n1 comes back; draining n2 moves the work back.
    s.apply(
        Command::Heartbeat {
            node: "n1".into(),
            cached_models: None,
        },
        1600,
    )
    .unwrap();
    s.apply(Command::DrainNode { node: "n2".into() }, 1700)
        .unwrap();
    s.check_invariants().unwrap();
    assert_eq!(
        s.status("t", r).unwrap().placement.unwrap().replicas[0].node,
        "n1"
    );
}

#[test]
fn tenants_never_see_each_others_requests() {
    let mut s = Scheduler::new(SchedulerConfig::default());
    s.apply(node("n1", 2), 0).unwrap();
    let r = placed_id(&sched(
        &mut s,
        ScheduleRequest::new("a", "m", "v1", gpu(1)),
        1,
    ));
    assert!(matches!(
        s.status("b", r),
        Err(FabricError::RequestNotFound(_))
    ));
    assert!(matches!(
        s.apply(
            Command::Release {
                tenant_id: "b".into(),
                request: r
            },
            2
        ),
        Err(FabricError::RequestNotFound(_))
    ));
    assert!(s.requests_of("b").is_empty());
    assert_eq!(s.status("a", r).unwrap().phase, Phase::Placed);
}

#[test]
fn idempotency_key_returns_the_first_request() {
    let mut s = Scheduler::new(SchedulerConfig::default());
    s.apply(node("n1", 2), 0).unwrap();
    let req = ScheduleRequest::new("a", "m", "v1", gpu(1)).with_idempotency_key("k1");
    let r = placed_id(&sched(&mut s, req.clone(), 1));
    assert_eq!(
        sched(&mut s, req.clone(), 2),
        Outcome::Existing {
            request_id: r,
            phase: Phase::Placed
        }
    );
    // Keys are per tenant.
    let mut other = req;
    other.tenant_id = "b".into();
    assert_ne!(placed_id(&sched(&mut s, other, 3)), r);
}

#[test]
fn production_deploys_need_p2_and_p3_unless_simulating() {
    let prod = |verified, by: Option<&str>| {
        ScheduleRequest::new("a", "m", "v1", gpu(1)).with_deploy(DeployApproval {
            production: true,
            manifest_verified: verified,
            approved_by: by.map(str::to_string),
        })
    };
    let mut s = Scheduler::new(SchedulerConfig::default());
    s.apply(node("n1", 2), 0).unwrap();
    s.take_events();
    let e = s
        .apply(
            Command::Schedule {
                request: prod(false, Some("ops")),
            },
            1,
        )
        .unwrap_err();
    assert!(
        matches!(
            e,
            FabricError::PolicyDenied {
                policy: PolicyId::P2,
                ..
            }
        ),
        "{e}"
    );
    let e = s
        .apply(
            Command::Schedule {
                request: prod(true, None),
            },
            1,
        )
        .unwrap_err();
    assert!(
        matches!(
            e,
            FabricError::PolicyDenied {
                policy: PolicyId::P3,
                ..
            }
        ),
        "{e}"
    );
    let ev = s.take_events();
    assert!(
        ev.iter()
            .all(|e| matches!(e.kind, EventKind::Rejected { .. }))
            && ev.len() == 2
    );
    placed_id(&sched(&mut s, prod(true, Some("ops")), 2));
    let ev = s.take_events();
    let placed = ev
        .iter()
        .find(|e| matches!(e.kind, EventKind::Placed { .. }))
        .unwrap();
    assert!(placed.decisions.contains(&Decision::Allow {
        policy: PolicyId::P2
    }));
    assert!(placed.decisions.contains(&Decision::Allow {
        policy: PolicyId::P3
    }));
    let mut sim = Scheduler::new(SchedulerConfig {
        simulation_mode: true,
        ..Default::default()
    });
    sim.apply(node("n1", 2), 0).unwrap();
    placed_id(&sched(&mut sim, prod(false, None), 1));
    let ev = sim.take_events();
    let placed = ev
        .iter()
        .find(|e| matches!(e.kind, EventKind::Placed { .. }))
        .unwrap();
    assert!(placed.decisions.iter().any(|d| matches!(
        d,
        Decision::AllowInSimulation {
            policy: PolicyId::P2,
            ..
        }
    )));
}

#[test]
fn statevector_memory_budget_is_checked_up_front() {
    let mut s = Scheduler::new(SchedulerConfig::default());
    s.apply(
        Command::RegisterNode {
            spec: NodeSpec::new("q", 8000, 65_536).with_quantum_qubits(30),
        },
        0,
    )
    .unwrap();
    // 30 qubits: 2^30 amplitudes x 16 bytes = 16 GiB = 16384 MiB.
    let r = |mem| Resources {
        qubits: 30,
        mem,
        cpu: 1000,
        ..Default::default()
    };
    let e = s
        .apply(
            Command::Schedule {
                request: ScheduleRequest::new("a", "c", "v", r(16_383)),
            },
            1,
        )
        .unwrap_err();
    assert!(
        matches!(
            e,
            FabricError::PolicyDenied {
                policy: PolicyId::P6,
                ..
            }
        ),
        "{e}"
    );
    placed_id(&sched(
        &mut s,
        ScheduleRequest::new("a", "c", "v", r(16_384)),
        2,
    ));
    // 31 qubits exceed the node's quantum capacity: constraint.
    let r31 = Resources {
        qubits: 31,
        mem: 32_768,
        cpu: 1000,
        ..Default::default()
    };
    assert_eq!(
        queued(&sched(&mut s, ScheduleRequest::new("a", "c", "v", r31), 3)).1,
        QueueReason::Constraint
    );
}

#[test]
fn region_latency_constraints_filter_and_score() {
    let table = LatencyTable::new(2)
        .with("eu", "us", 90)
        .with("eu", "ap", 250);
    let mut s = Scheduler::new(SchedulerConfig {
        latency: table,
        ..Default::default()
    });
    s.apply(
        Command::SetQuota {
            tenant_id: "a".into(),
            quota: Quota::gpus(4),
        },
        0,
    )
    .unwrap();
    for (id, region) in [("n-us", "us"), ("n-ap", "ap")] {
        let spec = NodeSpec::new(id, 8000, 8192)
            .with_gpus("T4", 4, 16_384)
            .with_label("region", region);
        s.apply(Command::RegisterNode { spec }, 0).unwrap();
    }
    let within = |ms| Constraints {
        latency_ms: Some(ms),
        region: Some("eu".into()),
        ..Default::default()
    };
    // 100 ms from eu: only us (90 ms) qualifies.
    let out = sched(
        &mut s,
        ScheduleRequest::new("a", "m", "v", gpu(1)).with_constraints(within(100)),
        1,
    );
    let Outcome::Placed { placement, .. } = out else {
        panic!("{out:?}")
    };
    assert_eq!(placement.replicas[0].node, "n-us");
    let score = placement.replicas[0].score.as_ref().unwrap();
    let lat = score
        .parts
        .iter()
        .find(|p| &*p.scorer == "latency")
        .unwrap();
    assert!(
        (lat.score - 10.0).abs() < 1e-9,
        "100 x (1 - 90/100) = 10, got {}",
        lat.score
    );
    // The breakdown's total is the weighted mean of its parts.
    let (sum, weights) = score.parts.iter().fold((0.0, 0.0), |(s, w), p| {
        (s + p.weight * p.score, w + p.weight)
    });
    assert!(score.parts.len() > 1);
    assert!(
        (score.total - sum / weights).abs() < 1e-9,
        "total {} vs weighted mean {}",
        score.total,
        sum / weights
    );
    // 50 ms: nothing qualifies; a hard region with no node: constraint too.
    assert_eq!(
        queued(&sched(
            &mut s,
            ScheduleRequest::new("a", "m", "v", gpu(1)).with_constraints(within(50)),
            2
        ))
        .1,
        QueueReason::Constraint
    );
    let hard = Constraints {
        region: Some("eu".into()),
        ..Default::default()
    };
    let (id, why) = queued(&sched(
        &mut s,
        ScheduleRequest::new("a", "m", "v", gpu(1)).with_constraints(hard),
        3,
    ));
    assert_eq!(why, QueueReason::Constraint);
    // A node in eu registers: the waiting request lands there.
    let spec = NodeSpec::new("n-eu", 8000, 8192)
        .with_gpus("T4", 2, 16_384)
        .with_label("region", "eu");
    s.apply(Command::RegisterNode { spec }, 4).unwrap();
    assert_eq!(
        s.status("a", id).unwrap().placement.unwrap().replicas[0].node,
        "n-eu"
    );
    // The 50 ms request waiting before it also fits there now (2 ms inside eu).
    assert_eq!(
        s.requests_of("a")
            .iter()
            .filter(|r| r.phase == Phase::Placed)
            .count(),
        3
    );
}

#[test]
fn bin_pack_spread_cost_and_locality_pick_the_expected_nodes() {
    use atom_fabric::scoring::ScoreWeights;
    let only = |w: ScoreWeights| SchedulerConfig {
        weights: w,
        ..Default::default()
    };
    let zero = ScoreWeights {
        bin_pack: 0.0,
        spread: 0.0,
        fragmentation: 0.0,
        cost: 0.0,
        locality: 0.0,
        latency: 0.0,
        best_fit: 0.0,
    };
    let setup = |cfg: SchedulerConfig| {
        let mut s = Scheduler::new(cfg);
        s.apply(
            Command::RegisterNode {
                spec: NodeSpec::new("busy", 8000, 8192).with_label("price_per_device_hour", "3.0"),
            },
            0,
        )
        .unwrap();
        s.apply(
            Command::RegisterNode {
                spec: NodeSpec::new("idle", 8000, 8192)
                    .with_label("price_per_device_hour", "1.0")
                    .with_cached_model("llm"),
            },
            0,
        )
        .unwrap();
        s.apply(
            Command::SetQuota {
                tenant_id: "x".into(),
                quota: Quota::gpus(0),
            },
            0,
        )
        .unwrap();
        let big = Resources {
            cpu: 4000,
            mem: 4096,
            ..Default::default()
        };
        let r = ScheduleRequest::new("x", "other", "v", big).with_constraints(Constraints {
            labels: [("price_per_device_hour".to_string(), "3.0".to_string())].into(),
            ..Default::default()
        });
        placed_id(&sched(&mut s, r, 1));
        s
    };
    let small = || {
        ScheduleRequest::new(
            "x",
            "llm",
            "v",
            Resources {
                cpu: 1000,
                mem: 512,
                ..Default::default()
            },
        )
    };
    let node_of = |s: &mut Scheduler| match sched(s, small(), 2) {
        Outcome::Placed { placement, .. } => placement.replicas[0].node.clone(),
        o => panic!("{o:?}"),
    };
    assert_eq!(
        node_of(&mut setup(only(ScoreWeights {
            bin_pack: 1.0,
            ..zero.clone()
        }))),
        "busy"
    );
    assert_eq!(
        node_of(&mut setup(only(ScoreWeights {
            spread: 1.0,
            ..zero.clone()
        }))),
        "idle"
    );
    assert_eq!(
        node_of(&mut setup(only(ScoreWeights {
            cost: 1.0,
            bin_pack: 0.1,
            ..zero.clone()
        }))),
        "idle"
    );
    assert_eq!(
        node_of(&mut setup(only(ScoreWeights {
            locality: 1.0,
            bin_pack: 0.1,
            ..zero
        }))),
        "idle"
    );
}

#[test]
fn operator_eviction_and_lifecycle_transitions() {
    let mut s = Scheduler::new(SchedulerConfig::default());
    s.apply(node("n1", 2), 0).unwrap();
    let r = placed_id(&sched(
        &mut s,
        ScheduleRequest::new("a", "m", "v1", gpu(1)),
        1,
    ));
    let e = s
        .apply(
            Command::Complete {
                tenant_id: "a".into(),
                request: RequestId(999),
            },
            2,
        )
        .unwrap_err();
    assert!(matches!(e, FabricError::RequestNotFound(_)));
    s.apply(
        Command::MarkRunning {
            tenant_id: "a".into(),
            request: r,
        },
        3,
    )
    .unwrap();
    assert_eq!(s.status("a", r).unwrap().running_ms, Some(3));
    s.apply(
        Command::Evict {
            request: r,
            reason: "maintenance".into(),
        },
        4,
    )
    .unwrap();
    assert_eq!(s.status("a", r).unwrap().phase, Phase::Evicted);
    assert_eq!(s.node("n1").unwrap().gpu_free_total(), 2000);
    let e = s
        .apply(
            Command::MarkRunning {
                tenant_id: "a".into(),
                request: r,
            },
            5,
        )
        .unwrap_err();
    assert!(matches!(e, FabricError::InvalidTransition { .. }), "{e}");
    s.check_invariants().unwrap();
}
