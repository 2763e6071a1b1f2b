//! The node agent in-process with a fabric: register, heartbeat, schedule, launch the placed
//! replica with a real ONNX model, serve inferences that match onnxruntime, report metrics.
#![allow(clippy::unwrap_used)]

use atom_fabric::agent::{AgentError, NodeAgent};
use atom_fabric::runtime::{RuntimeRegistry, Tensor};
use atom_fabric::store::ManualClock;
use atom_fabric::{
    Fabric, MemoryStore, NodeSpec, Outcome, Resources, ScheduleRequest, SchedulerConfig,
};
use std::path::PathBuf;

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/onnx")
        .join(name)
}

#[test]
fn launch_placed_replica_and_serve() {
    let runs = tempfile::tempdir().unwrap();
    let node = NodeSpec::new("node-sim-1", 16_000, 65_536).with_gpus("A100", 2, 40_960);
    let mut agent =
        NodeAgent::new(node, runs.path(), RuntimeRegistry::with_builtins(), true).unwrap();
    let clock = ManualClock::new(1_000);
    let mut fabric = Fabric::open(
        SchedulerConfig::default(),
        MemoryStore::default(),
        Box::new(clock.clone()),
    )
    .unwrap();
    fabric.execute(agent.registration()).unwrap();
    fabric.execute(agent.heartbeat()).unwrap();

    let req = ScheduleRequest::new(
        "t1",
        "mlp",
        "v1",
        Resources {
            gpu: 1,
            cpu: 1_000,
            mem: 1_024,
            ..Default::default()
        },
    );
    let Outcome::Placed {
        request_id,
        placement,
    } = fabric
        .execute(atom_fabric::Command::Schedule { request: req })
        .unwrap()
    else {
        panic!("expected a placement");
    };
    let template = atom_fabric::agent::LaunchSpec {
        request: request_id,
        replica: 0,
        tenant_id: "t1".into(),
        model_id: "mlp".into(),
        model_version: "v1".into(),
        framework: "onnx".into(),
        model_path: data("mlp.onnx"),
        devices: vec![],
    };
    let specs = agent.launches_for(&template, &placement);
    assert_eq!(specs.len(), 1);
    let launched = agent.launch(&specs[0], 2_000).unwrap();
    fabric.execute(launched.report.clone()).unwrap();
    let status = fabric.scheduler().status("t1", request_id).unwrap();
    assert_eq!(format!("{:?}", status.phase), "Running");

    // The run file is the documents' record of the launch.
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&launched.run_file).unwrap()).unwrap();
    assert_eq!(record["node"], "node-sim-1");
    assert_eq!(record["framework"], "onnx");
    assert_eq!(record["mock_runtime"], false);
    assert_eq!(record["execution"], "cpu-simulated");
    assert_eq!(record["started_at_ms"], 2_000);

    // Inference matches onnxruntime's output for the same input.
    let exp: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data("expected.json")).unwrap()).unwrap();
    let e = &exp["mlp"];
    let floats = |v: &serde_json::Value| {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect::<Vec<_>>()
    };
    let input = Tensor::new(vec![5, 4], floats(&e["input"])).unwrap();
    for _ in 0..3 {
        let out = agent
            .infer(&launched.id, std::slice::from_ref(&input))
            .unwrap();
        for (a, b) in out[0].data.iter().zip(floats(&e["output"])) {
            assert!((a - b).abs() <= 1e-5);
        }
    }
    assert_eq!(agent.requests_served(&launched.id), 3);

    // The agent reports the replica's counters back to the fabric: the controller's feed turns
    // them into the set's observation (3 requests in the interval, nothing in flight now).
    let reports = agent.report(5_000);
    assert_eq!(reports.len(), 1);
    let r = &reports[0];
    assert_eq!(
        (r.requests_total, r.in_flight, r.request_id),
        (3, 0, request_id)
    );
    assert_eq!(r.latency_buckets.last(), Some(&3));
    assert!(r.latency_sum_ms > 0.0);
    let mut controller = atom_fabric::autoscale::controller::Controller::new(60_000);
    controller
        .add_set(atom_fabric::autoscale::controller::ReplicaSetSpec {
            tenant_id: "t1".into(),
            model_id: "mlp".into(),
            model_version: "v1".into(),
            resources: Resources {
                gpu: 1,
                cpu: 1_000,
                mem: 1_024,
                ..Default::default()
            },
            config: Default::default(),
        })
        .unwrap();
    let mut earlier = r.clone();
    earlier.at_ms = 4_000;
    earlier.requests_total = 0;
    earlier.latency_sum_ms = 0.0;
    earlier.latency_buckets = vec![0; r.latency_buckets.len()];
    controller.ingest(earlier).unwrap();
    controller.ingest(r.clone()).unwrap();
    let plan = controller.plan(fabric.scheduler(), 5_000);
    assert_eq!(plan[0].decision.current, 1, "the placed replica counts");
    assert_eq!(
        plan[0].decision.action, "hold",
        "{:?}",
        plan[0].decision.reasons
    );
    let mut reg = prometheus_client::registry::Registry::default();
    agent.register_metrics(&mut reg);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
    assert!(
        text.contains("nf_replica_requests_total{node=\"node-sim-1\",tenant=\"t1\",model=\"mlp\""),
        "{text}"
    );
    assert!(text.contains("nf_replica_latency_seconds_count"), "{text}");

    // The heartbeat now reports the model as cached on the node (locality).
    match agent.heartbeat() {
        atom_fabric::Command::Heartbeat { cached_models, .. } => {
            assert!(cached_models.unwrap().contains("mlp"))
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        agent.launch(&specs[0], 3_000),
        Err(AgentError::AlreadyRunning(_))
    ));
    agent.stop(&launched.id).unwrap();
    assert!(matches!(
        agent.infer(&launched.id, &[input]),
        Err(AgentError::NotRunning(_))
    ));
}

#[test]
fn bad_launches_are_refused_with_the_reason() {
    let runs = tempfile::tempdir().unwrap();
    let node = NodeSpec::new("n", 1_000, 1_024).with_gpus("T4", 1, 16_384);
    let mut agent =
        NodeAgent::new(node, runs.path(), RuntimeRegistry::with_builtins(), true).unwrap();
    let mut spec = atom_fabric::agent::LaunchSpec {
        request: atom_fabric::RequestId(1),
        replica: 0,
        tenant_id: "t".into(),
        model_id: "m".into(),
        model_version: "v".into(),
        framework: "onnx".into(),
        model_path: data("mlp.onnx"),
        devices: vec![3],
    };
    assert!(matches!(
        agent.launch(&spec, 0),
        Err(AgentError::NoSuchDevice {
            device: 3,
            count: 1,
            ..
        })
    ));
    spec.devices = vec![0];
    spec.model_path = runs.path().join("missing.onnx");
    assert!(matches!(
        agent.launch(&spec, 0),
        Err(AgentError::Runtime(_))
    ));
    assert!(agent.running().is_empty());
}
