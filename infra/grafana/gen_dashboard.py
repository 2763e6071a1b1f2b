#!/usr/bin/env python3
"""Writes infra/grafana/neural-fabric.json, the Grafana dashboard of the atom-fabric hosts.

Run it after changing a panel: `python3 infra/grafana/gen_dashboard.py`. tests/infra checks that
the JSON file is what this script writes and that every query names a metric the Rust code
registers (with a label it has), so a renamed metric fails the tests instead of a blank panel.

Only metrics that exist are charted. Not charted yet, because the code registers no such metric:
autoscaler decisions (desired replicas; the "replicas" panel counts the replicas the node agents
serve).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

OUT = Path(__file__).with_name("neural-fabric.json")
DS = {"type": "prometheus", "uid": "${datasource}"}
TENANT = 'tenant=~"$tenant"'


def target(expr: str, legend: str, ref: str) -> dict:
    return {"datasource": DS, "expr": expr, "legendFormat": legend, "refId": ref, "range": True}


def panel(pid: int, title: str, desc: str, targets: list[dict], x: int, y: int, unit: str,
          w: int = 12, h: int = 8, kind: str = "timeseries", stack: bool = False) -> dict:
    refs = "ABCDEFGH"
    custom: dict = {"lineWidth": 1, "fillOpacity": 10, "showPoints": "never"}
    if stack:
        custom["stacking"] = {"mode": "normal", "group": "A"}
    p = {
        "id": pid,
        "type": kind,
        "title": title,
        "description": desc,
        "datasource": DS,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "targets": [dict(t, refId=refs[i]) for i, t in enumerate(targets)],
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                    "tooltip": {"mode": "multi", "sort": "desc"}},
    }
    if kind == "timeseries":
        p["fieldConfig"]["defaults"]["custom"] = custom
    return p


def row(pid: int, title: str, y: int) -> dict:
    return {"id": pid, "type": "row", "title": title, "collapsed": False,
            "gridPos": {"x": 0, "y": y, "w": 24, "h": 1}, "panels": []}


def quantiles(metric: str, by: str, legend_prefix: str) -> list[dict]:
    return [
        target(
            f"histogram_quantile({q}, sum by (le{by}) (rate({metric}_bucket[$__rate_interval])))",
            f"{legend_prefix}p{int(q * 100)}", "A")
        for q in (0.5, 0.95, 0.99)
    ]


def dashboard() -> dict:
    panels = [
        row(1, "Scheduler (H.2.1, H.2.7)", 0),
        panel(2, "Scheduling requests by phase",
              "nf_sched_requests_total: request transitions (queued, placed, running, completed, "
              "failed, evicted) per second.",
              [target(f"sum by (phase) (rate(nf_sched_requests_total{{{TENANT}}}[$__rate_interval]))",
                      "{{phase}}", "A")], 0, 1, "reqps", stack=True),
        panel(3, "Scheduling requests by tenant",
              "nf_sched_requests_total per tenant, all phases.",
              [target(f"sum by (tenant) (rate(nf_sched_requests_total{{{TENANT}}}[$__rate_interval]))",
                      "{{tenant}}", "A")], 12, 1, "reqps"),
        panel(4, "Decision latency",
              "nf_sched_decision_latency_seconds: time to decide one scheduling command "
              "(p50 / p95 / p99).",
              quantiles("nf_sched_decision_latency_seconds", "", ""), 0, 9, "s"),
        panel(5, "Queue depth per tenant",
              "nf_sched_queue_depth: requests waiting in each tenant's queue (P5 per-tenant queues).",
              [target(f"sum by (tenant) (nf_sched_queue_depth{{{TENANT}}})", "{{tenant}}", "A")],
              12, 9, "short"),
        row(6, "Resources (H.2.2)", 17),
        panel(7, "GPU allocation",
              "nf_sched_allocated / nf_sched_allocatable for resource=gpu on healthy nodes "
              "(milli-GPUs).",
              [target('sum(nf_sched_allocated{resource="gpu"}) / 1000', "allocated GPUs", "A"),
               target('sum(nf_sched_allocatable{resource="gpu"}) / 1000', "allocatable GPUs", "B")],
              0, 18, "short"),
        panel(8, "Utilisation by resource",
              "Allocated over allocatable, per resource (gpu, cpu, mem, tpu).",
              [target("sum by (resource) (nf_sched_allocated) / "
                      "sum by (resource) (nf_sched_allocatable > 0)", "{{resource}}", "A")],
              12, 18, "percentunit"),
        row(9, "Models and runtimes (H.2.3, H.2.E2)", 26),
        panel(10, "Model deploys",
              "nf_model_deploys_total: model replicas placed, per tenant and model.",
              [target(f"sum by (tenant, model) (increase(nf_model_deploys_total{{{TENANT}}}"
                      "[$__rate_interval]))", "{{tenant}}/{{model}}", "A")],
              0, 27, "short", stack=True),
        panel(11, "Models loaded by framework",
              "nf_runtime_loaded_total: models loaded by the runtime hooks, per framework.",
              [target("sum by (framework) (increase(nf_runtime_loaded_total[$__rate_interval]))",
                      "{{framework}}", "A")], 12, 27, "short", stack=True),
        row(12, "Inference on node agents (H.2.4, H.2.6)", 35),
        panel(13, "Inference latency",
              "nf_replica_latency_seconds: inference latency per tenant/model, all replicas "
              "(P6 budget: 1 s neural).",
              [target("histogram_quantile(0.95, sum by (le, tenant, model) "
                      f"(rate(nf_replica_latency_seconds_bucket{{{TENANT}}}[$__rate_interval])))",
                      "p95 {{tenant}}/{{model}}", "A"),
               target("histogram_quantile(0.5, sum by (le, tenant, model) "
                      f"(rate(nf_replica_latency_seconds_bucket{{{TENANT}}}[$__rate_interval])))",
                      "p50 {{tenant}}/{{model}}", "B")], 0, 36, "s"),
        panel(14, "Inference throughput",
              "nf_replica_requests_total: inferences served per second, per tenant/model.",
              [target(f"sum by (tenant, model) (rate(nf_replica_requests_total{{{TENANT}}}"
                      "[$__rate_interval]))", "{{tenant}}/{{model}}", "A")], 12, 36, "reqps"),
        panel(15, "Replicas per tenant/model",
              "Replicas the node agents serve (series of nf_replica_queue_depth), the autoscaler's "
              "actual count.",
              [target(f"count by (tenant, model) (nf_replica_queue_depth{{{TENANT}}})",
                      "{{tenant}}/{{model}}", "A")], 0, 44, "short"),
        panel(16, "In-flight inferences",
              "nf_replica_queue_depth: inferences in flight, per tenant/model (autoscaler input).",
              [target(f"sum by (tenant, model) (nf_replica_queue_depth{{{TENANT}}})",
                      "{{tenant}}/{{model}}", "A")], 12, 44, "short"),
        row(17, "Quantum-AI hybrid agents (H.3.1, H.3.3, H.3.4)", 52),
        panel(18, "Hybrid jobs by mode and status",
              "nf_hybrid_jobs_total: hybrid agent jobs finished, per mode (neural, quantum, hybrid) "
              "and status.",
              [target(f"sum by (mode, status) (rate(nf_hybrid_jobs_total{{{TENANT}}}[$__rate_interval]))",
                      "{{mode}} {{status}}", "A")], 0, 53, "reqps", stack=True),
        panel(19, "Stage latency p95 (P6: 1 s neural, 2 s quantum)",
              "nf_hybrid_stage_latency_seconds: stage execution time by stage kind and target.",
              [target("histogram_quantile(0.95, sum by (le, kind, target) "
                      "(rate(nf_hybrid_stage_latency_seconds_bucket[$__rate_interval])))",
                      "{{kind}} on {{target}}", "A")], 12, 53, "s"),
        panel(20, "Queue wait p95 per tenant",
              "nf_hybrid_queue_wait_seconds: time jobs waited in their tenant's queue (P5).",
              [target("histogram_quantile(0.95, sum by (le, tenant) "
                      f"(rate(nf_hybrid_queue_wait_seconds_bucket{{{TENANT}}}[$__rate_interval])))",
                      "{{tenant}}", "A")], 0, 61, "s"),
        panel(21, "Quantum shots per target",
              "nf_quantum_shots_total: measurement shots taken, per quantum target.",
              [target("sum by (target) (rate(nf_quantum_shots_total[$__rate_interval]))",
                      "{{target}}", "A")], 12, 61, "short"),
        panel(22, "Circuit width and depth (mean)",
              "nf_quantum_circuit_width / nf_quantum_circuit_depth: qubits and depth of executed "
              "circuits (P6: a statevector needs 2^n x 16 bytes).",
              [target("sum(rate(nf_quantum_circuit_width_sum[$__rate_interval])) / "
                      "sum(rate(nf_quantum_circuit_width_count[$__rate_interval]))", "width (qubits)", "A"),
               target("sum(rate(nf_quantum_circuit_depth_sum[$__rate_interval])) / "
                      "sum(rate(nf_quantum_circuit_depth_count[$__rate_interval]))", "depth", "B"),
               target("sum(rate(nf_quantum_fused_gates_sum[$__rate_interval])) / "
                      "sum(rate(nf_quantum_fused_gates_count[$__rate_interval]))", "fused ops", "C")],
              0, 69, "short"),
        panel(23, "Sampling accuracy (TVD p95)",
              "nf_quantum_tvd: total variation distance between sampled counts and exact "
              "probabilities; lower is better.",
              [target("histogram_quantile(0.95, sum by (le) (rate(nf_quantum_tvd_bucket[$__rate_interval])))",
                      "p95 TVD", "A")], 12, 69, "short"),
        panel(24, "Failovers and rejections (P6, P7)",
              "nf_hybrid_failovers_total (P7) and nf_hybrid_rejections_total (P6 budgets, no "
              "target), by stage kind and reason code.",
              [target("sum by (kind, code) (increase(nf_hybrid_failovers_total[$__rate_interval]))",
                      "failover {{kind}} {{code}}", "A"),
               target("sum by (kind, code) (increase(nf_hybrid_rejections_total[$__rate_interval]))",
                      "rejected {{kind}} {{code}}", "B")], 0, 77, "short", w=24),
    ]
    return {
        "__inputs": [],
        "annotations": {"list": []},
        "description": "atom-fabric neural fabric scheduler and hybrid agent hosts (P4 observability)",
        "editable": True,
        "graphTooltip": 1,
        "id": None,
        "links": [],
        "panels": panels,
        "refresh": "30s",
        "schemaVersion": 39,
        "tags": ["atom-fabric", "neural-fabric"],
        "templating": {"list": [
            {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Data source",
             "current": {}, "hide": 0, "refresh": 1, "options": []},
            {"name": "tenant", "type": "query", "label": "Tenant", "datasource": DS,
             "query": {"query": "label_values(nf_sched_requests_total, tenant)", "refId": "tenant"},
             "definition": "label_values(nf_sched_requests_total, tenant)",
             "includeAll": True, "multi": True, "allValue": ".*", "current": {}, "refresh": 2,
             "sort": 1, "hide": 0, "options": []},
        ]},
        "time": {"from": "now-1h", "to": "now"},
        "timepicker": {},
        "timezone": "",
        "title": "atom-fabric: neural fabric",
        "uid": "atom-neural-fabric",
        "version": 1,
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2) + "\n"


if __name__ == "__main__":
    OUT.write_text(render())
    print(f"wrote {OUT}", file=sys.stderr)
