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
