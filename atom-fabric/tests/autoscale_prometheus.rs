//! The autoscaler reads its inputs from a Prometheus query API on loopback (a small fake that
//! speaks the real `/api/v1/query` response format) and turns them into a dry-run decision.
#![allow(clippy::unwrap_used)]

use atom_fabric::autoscale::prometheus::{PromClient, PromError};
use atom_fabric::autoscale::{Autoscaler, AutoscalerConfig};
use axum::extract::Query;
use axum::response::IntoResponse;
use std::collections::HashMap;
use std::time::Duration;

async fn query(Query(q): Query<HashMap<String, String>>) -> impl IntoResponse {
    let query = q.get("query").cloned().unwrap_or_default();
    let body = match query.as_str() {
        // Two replicas' in-flight + queued requests, as an instant vector.
        r#"sum by (replica) (nf_inflight_requests{tenant="t1",model="m1"})"# => serde_json::json!({
            "status": "success",
            "data": {"resultType": "vector", "result": [
                {"metric": {"replica": "a"}, "value": [1700000000.0, "9"]},
                {"metric": {"replica": "b"}, "value": [1700000000.0, "11"]}
            ]}
        }),
        "histogram_quantile(0.95, rate(nf_request_seconds_bucket[1m]))" => serde_json::json!({
            "status": "success",
            "data": {"resultType": "vector", "result": [
                {"metric": {}, "value": [1700000000.0, "1.25"]}
            ]}
        }),
        // The controller's own queries for set t1/m1 over the node agents' metrics.
        r#"sum(nf_replica_queue_depth{tenant="t1",model="m1"})"# => serde_json::json!({
            "status": "success",
            "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1700000000.0, "14"]}]}
        }),
        r#"histogram_quantile(0.95, sum by (le) (rate(nf_replica_latency_seconds_bucket{tenant="t1",model="m1"}[1m])))"# =>
        {
            serde_json::json!({
                "status": "success",
                "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1700000000.0, "0.3"]}]}
            })
        }
        "empty" => {
            serde_json::json!({"status": "success", "data": {"resultType": "vector", "result": []}})
        }
        "scalar(1)" => {
            serde_json::json!({"status": "success", "data": {"resultType": "scalar", "result": [1700000000.0, "1"]}})
        }
        _ => {
            return (
                axum::http::StatusCode::BAD_REQUEST,
                axum::Json(serde_json::json!({"status": "error", "errorType": "bad_data", "error": "parse error at char 1"})),
            )
                .into_response();
        }
    };
    axum::Json(body).into_response()
}

fn server() -> (String, tokio::runtime::Runtime) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().route("/api/v1/query", axum::routing::get(query));
    rt.spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), rt)
}

#[test]
fn observations_come_from_the_query_api() {
    let (url, _rt) = server();
    let c = PromClient::new(&url, Duration::from_secs(5));
    let conc = r#"sum by (replica) (nf_inflight_requests{tenant="t1",model="m1"})"#;
    let p95 = "histogram_quantile(0.95, rate(nf_request_seconds_bucket[1m]))";
    let obs = c.observe(60.0, conc, Some(p95)).unwrap();
    assert_eq!(obs.concurrency, 20.0);
    assert_eq!(obs.p95_latency_ms, Some(1250.0));
    assert_eq!(c.query_sum("empty").unwrap(), None);
    assert_eq!(c.query_sum("scalar(1)").unwrap(), Some(1.0));
    match c.query_sum("rate(") {
        Err(PromError::Query { reason, .. }) => assert!(reason.contains("bad_data"), "{reason}"),
        other => panic!("{other:?}"),
    }

    // 20 in flight, target 4 per replica, p95 1.25 s against a 1 s budget.
    let mut a = Autoscaler::new(AutoscalerConfig {
        target_per_replica: 4.0,
        latency_budget_ms: Some(1_000.0),
        ..Default::default()
    });
    a.observe(obs);
    let d = a.decide(60.0, 4, Some(10));
    assert_eq!(
        (d.desired, d.action.as_str(), d.dry_run),
        (5, "scale_up", true)
    );
}

#[test]
fn unreachable_prometheus_is_a_transport_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let c = PromClient::new(&format!("http://127.0.0.1:{port}"), Duration::from_secs(2));
    assert!(matches!(
        c.query_sum("up"),
        Err(PromError::Transport { .. })
    ));
}

#[test]
fn the_controller_plans_from_prometheus_and_reports_failed_sets() {
    use atom_fabric::autoscale::controller::{Controller, ReplicaSetSpec, prometheus_queries};
    use atom_fabric::{Resources, Scheduler, SchedulerConfig};
    let (url, _rt) = server();
    let client = PromClient::new(&url, Duration::from_secs(5));
    let mut c = Controller::new(30_000);
    let set = |model: &str| ReplicaSetSpec {
        tenant_id: "t1".into(),
        model_id: model.into(),
        model_version: "v1".into(),
        resources: Resources {
            cpu: 500,
            mem: 512,
            ..Default::default()
        },
        config: AutoscalerConfig {
            target_per_replica: 4.0,
            max_replicas: 50,
            ..Default::default()
        },
    };
    c.add_set(set("m1")).unwrap();
    c.add_set(set("m2")).unwrap(); // the fake does not know its queries: a failed set
    let failed = c.observe_prometheus(&client, 60_000);
    assert_eq!(failed.len(), 1);
    assert_eq!((failed[0].0.as_str(), failed[0].1.as_str()), ("t1", "m2"));
    let s = Scheduler::new(SchedulerConfig::default());
    let plan = c.plan(&s, 60_000);
    // 14 in flight at 4 per replica: 4 replicas for m1; nothing observed for m2.
    assert_eq!(
        plan[0].decision.desired, 4,
        "{:?}",
        plan[0].decision.reasons
    );
    assert_eq!(plan[1].decision.desired, 1); // min_replicas
    // Label values are escaped as PromQL strings.
    let (q, _) = prometheus_queries("a\"b", "m");
    assert_eq!(q, r#"sum(nf_replica_queue_depth{tenant="a\"b",model="m"})"#);
}
