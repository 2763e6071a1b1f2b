"""Checks of the deployment files: the Dockerfile, the Helm chart, the Grafana dashboard, the
configuration reference and the operations docs, against the code they deploy.

Run: .venv/bin/python -m pytest -q tests/infra
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import dockerfile
import pytest
import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))

import gotemplate  # noqa: E402

CHART = ROOT / "infra" / "helm" / "neural-fabric"
DASHBOARD = ROOT / "infra" / "grafana" / "neural-fabric.json"
DOCKERFILE = ROOT / "infra" / "docker" / "Dockerfile"
AGENT_PORT = 8700


# ---------------------------------------------------------------------------------------------
# What the code says: variables, defaults, metrics.


def code_variables() -> list[str]:
    """The variables the fabric reads: `atom_policy::precheck::VARIABLES`."""
    src = (ROOT / "atom-policy" / "src" / "precheck.rs").read_text()
    m = re.search(r"pub const VARIABLES: \[&str; (\d+)\] = \[(.*?)\];", src, re.S)
    assert m, "VARIABLES not found in precheck.rs"
    names = re.findall(r'"([A-Za-z_]+)"', m.group(2))
    assert len(names) == int(m.group(1))
    return names


def env_default() -> dict[str, str]:
    out = {}
    for line in (ROOT / ".env.default").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        k, _, v = line.removeprefix("export ").partition("=")
        out[k.strip()] = v.strip().strip('"').strip("'")
    return out


def rust_sources() -> list[Path]:
    out = []
    for crate in ("atom-policy", "atom-quantum", "atom-fabric", "examples", "bindings-python", "bindings-c"):
        d = ROOT / crate / "src"
        if d.is_dir():
            out.extend(sorted(d.rglob("*.rs")))
    return out


_REGISTER = re.compile(
    r'\.register\(\s*"([a-zA-Z_:][a-zA-Z0-9_:]*)"\s*,\s*"(?:[^"\\]|\\.)*"\s*,\s*([A-Za-z_][\w.]*)\.clone\(\)',
    re.S,
)


def _type_of(src: str, ident: str) -> str | None:
    """The declared type of a field or `let` binding, with `type Alias<L> = ...;` expanded."""
    aliases = re.findall(r"type\s+(\w+)<(\w+)>\s*=\s*([^;]+);", src)
    for pat in (rf"\b{ident}\s*:\s*([^\n]+)",
                rf"let\s+(?:mut\s+)?{ident}\s*=\s*([^;]+);"):
        for m in re.finditer(pat, src):
            t = m.group(1)
            for alias, param, body in aliases:
                a = re.match(rf"\s*{alias}\s*<\s*(\w+)\s*>", t)
                if a:
                    t = re.sub(rf"\b{param}\b", a.group(1), body)
            if re.search(r"\b(Counter|Histogram|Gauge)\b", t):
                return t
    return None


def _struct_fields(sources: dict[Path, str], name: str, first: Path) -> set[str]:
    """The fields of label struct `name`, looked up in `first` (where it is used), then anywhere."""
    for src in [sources[first], *sources.values()]:
        m = re.search(rf"struct\s+{name}\s*\{{(.*?)\}}", src, re.S)
        if m:
            return set(re.findall(r"^\s*(?:pub\s+)?([a-z_][a-z0-9_]*)\s*:", m.group(1), re.M))
    raise AssertionError(f"label struct {name} not found")


def registered_metrics() -> dict[str, dict]:
    """Every metric registered with prometheus-client in the Rust sources: name → kind, labels.

    The kind comes from the declared type of the registered field (Counter, Gauge, Histogram);
    the labels from the fields of the Family's label-set struct.
    """
    sources = {p: p.read_text() for p in rust_sources()}
    out: dict[str, dict] = {}
    for path, src in sources.items():
        for m in _REGISTER.finditer(src):
            name, expr = m.group(1), m.group(2)
            ident = expr.split(".")[-1]
            t = _type_of(src, ident)
            assert t, f"{path.name}: cannot tell the type of {ident} registered as {name}"
            kind = next(k for k in ("Histogram", "Counter", "Gauge") if re.search(rf"\b{k}\b", t))
            fam = re.search(r"Family\s*(?:::)?\s*<\s*(\w+)\s*,", t)
            labels = _struct_fields(sources, fam.group(1), path) if fam else set()
            assert name not in out, f"metric {name} registered twice"
            out[name] = {"kind": kind, "labels": labels, "file": path.relative_to(ROOT).as_posix()}
    return out


def exposed_series(metrics: dict[str, dict]) -> dict[str, set[str]]:
    """Series names in the Prometheus text exposition → their labels."""
    out: dict[str, set[str]] = {}
    for name, info in metrics.items():
        labels = set(info["labels"])
        if info["kind"] == "Counter":
            out[f"{name}_total"] = labels
        elif info["kind"] == "Histogram":
            out[f"{name}_bucket"] = labels | {"le"}
            out[f"{name}_sum"] = labels
            out[f"{name}_count"] = labels
        else:
            out[name] = labels
    return out


def test_metric_scanner_finds_the_known_metrics():
    m = registered_metrics()
    assert m["nf_sched_requests"] == {**m["nf_sched_requests"], "kind": "Counter", "labels": {"phase", "tenant"}}
    assert m["nf_sched_decision_latency_seconds"]["kind"] == "Histogram"
    assert m["nf_sched_queue_depth"]["kind"] == "Gauge"
    assert m["nf_runtime_loaded"]["labels"] == {"framework"}
    s = exposed_series(m)
    assert "nf_sched_requests_total" in s and "nf_sched_requests" not in s
    assert s["nf_sched_decision_latency_seconds_bucket"] == {"le"}


# ---------------------------------------------------------------------------------------------
# PromQL: which metric and label names an expression uses.

PROMQL_WORDS = {
    "sum", "avg", "min", "max", "count", "stddev", "stdvar", "topk", "bottomk", "quantile",
    "count_values", "group", "by", "without", "on", "ignoring", "group_left", "group_right",
    "rate", "irate", "increase", "delta", "idelta", "deriv", "histogram_quantile", "abs",
    "clamp_min", "clamp_max", "label_values", "label_replace", "vector", "scalar", "time",
    "avg_over_time", "max_over_time", "min_over_time", "sum_over_time", "and", "or", "unless",
    "offset", "bool", "inf", "nan", "absent", "ceil", "floor", "round", "sort", "sort_desc",
}


def promql_names(expr: str) -> tuple[set[str], set[str]]:
    """(metric names, label names) referenced by a PromQL expression (Grafana variables allowed)."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    e = re.sub(r"\[[^\]]*\]", "", e)  # range selectors
    e = re.sub(r"\$\w+|\$\{[^}]*\}", "0", e)  # Grafana variables outside strings
    labels: set[str] = set()
    # Grafana's label_values(selector, label).
    for m in re.finditer(r"label_values\(([^,]+),\s*(\w+)\s*\)", e):
        labels.add(m.group(2))
    e = re.sub(r"label_values\(([^,]+),\s*(\w+)\s*\)", r"\1", e)
    for m in re.finditer(r"\{([^}]*)\}", e):
        labels |= set(re.findall(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)", m.group(1)))
    e = re.sub(r"\{[^}]*\}", "", e)
    for m in re.finditer(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", e):
        labels |= {x.strip() for x in m.group(1).split(",") if x.strip()}
    e = re.sub(r"\b(?:by|without|on|ignoring)\s*\([^)]*\)", "", e)
    names = set()
    for tok in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", e):
        if tok in PROMQL_WORDS or re.fullmatch(r"\d+(e\d+)?", tok):
            continue
        names.add(tok)
    return names, labels


def check_expr(expr: str, series: dict[str, set[str]]) -> list[str]:
    """Problems of one expression: unknown metrics, labels no metric in it has."""
    names, labels = promql_names(expr)
    problems = []
    if not names:
        problems.append(f"{expr!r} names no metric")
    for n in sorted(names - set(series)):
        problems.append(f"{expr!r}: {n} is not a metric the code registers")
    have = set().union(*(series[n] for n in names if n in series)) if names else set()
    for lab in sorted(labels - have):
        problems.append(f"{expr!r}: label {lab!r} is on none of {sorted(names)}")
    return problems


def test_promql_checker_rejects_unknown_metrics_and_labels():
    series = exposed_series(registered_metrics())
    assert check_expr('sum by (tenant) (rate(nf_sched_requests_total{phase="placed"}[5m]))', series) == []
    assert check_expr("histogram_quantile(0.95, sum by (le) (rate(nf_sched_decision_latency_seconds_bucket[5m])))", series) == []
    assert check_expr("rate(nf_quantum_qubits_total[5m])", series)  # not registered
    assert check_expr("rate(nf_sched_requests[5m])", series)  # a counter is exposed as _total
    assert check_expr("sum by (gpu_model) (nf_sched_queue_depth)", series)  # no such label
    assert check_expr("vector(1)", series)  # no metric at all
    assert check_expr("label_values(nf_sched_requests_total, tenant)", series) == []
    assert check_expr("label_values(nf_sched_requests_total, model)", series)


# ---------------------------------------------------------------------------------------------
# Grafana dashboard.


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def all_panels(d: dict) -> list[dict]:
    out = []
    for p in d["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))
    return out


def test_dashboard_is_what_the_generator_writes():
    spec = __import__("importlib.util").util.spec_from_file_location("gen", ROOT / "infra/grafana/gen_dashboard.py")
    gen = __import__("importlib.util").util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    assert DASHBOARD.read_text() == gen.render(), "run python3 infra/grafana/gen_dashboard.py"


def test_dashboard_structure():
    d = dashboard()
    assert d["schemaVersion"] >= 36
    assert d["uid"] and d["title"]
    panels = all_panels(d)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    cells = set()
    for p in panels:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"panel {p['title']!r} overlaps another"
                cells.add((x, y))
        if p["type"] == "row":
            continue
        assert p["targets"], p["title"]
        assert p["datasource"]["uid"] == "${datasource}"
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)), p["title"]
    names = {v["name"] for v in d["templating"]["list"]}
    assert {"datasource", "tenant"} <= names


def test_dashboard_queries_name_registered_metrics_and_labels():
    series = exposed_series(registered_metrics())
    d = dashboard()
    exprs = [t["expr"] for p in all_panels(d) for t in p.get("targets", [])]
    exprs += [v["definition"] for v in d["templating"]["list"] if v.get("definition")]
    problems = [p for e in exprs for p in check_expr(e, series)]
    assert problems == []
    used = set().union(*(promql_names(e)[0] for e in exprs))
    # The brief's panels: requests, decision latency, queue depth, GPU allocation, deploys,
    # runtime loads, inference latency, replicas.
    for must in ("nf_sched_requests_total", "nf_sched_decision_latency_seconds_bucket",
                 "nf_sched_queue_depth", "nf_sched_allocated", "nf_sched_allocatable",
                 "nf_model_deploys_total", "nf_runtime_loaded_total",
                 "nf_replica_latency_seconds_bucket", "nf_replica_queue_depth",
                 "nf_hybrid_jobs_total", "nf_hybrid_stage_latency_seconds_bucket",
                 "nf_quantum_shots_total", "nf_quantum_circuit_width_sum", "nf_quantum_tvd_bucket"):
        assert must in used, f"no panel charts {must}"


# ---------------------------------------------------------------------------------------------
# Helm chart.


def values() -> dict:
    return yaml.safe_load((CHART / "values.yaml").read_text())


def render(overrides: dict | None = None) -> dict[str, list[dict]]:
    """kind → rendered objects; every rendered file must parse as YAML."""
    files = gotemplate.render_chart(CHART, overrides, release="atom", namespace="fabric")
    out: dict[str, list[dict]] = {}
    for name, text in files.items():
        if name == "NOTES.txt":
            continue
        for doc in yaml.safe_load_all(text):
            if doc is None:
                continue
            for key in ("apiVersion", "kind", "metadata"):
                assert key in doc, f"{name}: no {key}"
            assert re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", doc["metadata"]["name"]), name
            out.setdefault(doc["kind"], []).append(doc)
    return out


def one(objs: dict[str, list[dict]], kind: str) -> dict:
    assert len(objs.get(kind, [])) == 1, f"expected one {kind}, got {len(objs.get(kind, []))}"
    return objs[kind][0]


FULL = {
    "serviceMonitor": {"enabled": True},
    "tls": {"enabled": True, "secretName": "atom-tls"},
    "secrets": {"postgresDsn": {"secretName": "atom-pg"}, "signingKeys": {"secretName": "atom-keys"}},
    "config": {"VAULT_ADDR": "https://vault.internal:8200", "GPU_NODES": "gpu-1,gpu-2",
               "MODEL_STORE_URL": "file:///models", "PROM_URL": "http://prometheus:9090",
               "QPU_REGION": "eu-west-1", "REDIS_URL": "redis://redis:6379/0"},
    "extraEnv": [{"name": "RUST_LOG", "value": "info"}],
}


def test_chart_files_parse():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2" and chart["name"] == "neural-fabric"
    assert re.fullmatch(r"\d+\.\d+\.\d+", chart["version"])
    ws = tomllib.loads((ROOT / "Cargo.toml").read_text())
    assert chart["appVersion"] == ws["workspace"]["package"]["version"]
    assert isinstance(values(), dict)
    for t in (CHART / "templates").iterdir():
        assert t.suffix in (".yaml", ".tpl", ".txt"), t.name


def test_templates_reference_only_values_that_exist():
    v = values()
    for t in (CHART / "templates").iterdir():
        for path in re.findall(r"\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)", t.read_text()):
            node = v
            for k in path[1:].split("."):
                assert isinstance(node, dict) and k in node, f"{t.name}: .Values{path} not in values.yaml"
                node = node[k]


def test_default_render():
    objs = render()
    v = values()
    assert set(objs) == {"ConfigMap", "Service", "Deployment", "ServiceAccount", "PersistentVolumeClaim"}
    assert "Secret" not in objs  # secrets by reference only
    dep, svc, cm = one(objs, "Deployment"), one(objs, "Service"), one(objs, "ConfigMap")

    # Ports: values → container, service, configmap, args.
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    cports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert cports == {"scheduler": v["ports"]["scheduler"], "agent": v["ports"]["agent"]}
    assert cports == {"scheduler": int(env_default()["SCHEDULER_PORT"]), "agent": AGENT_PORT}
    sports = {p["name"]: (p["port"], p["targetPort"]) for p in svc["spec"]["ports"]}
    assert sports == {"scheduler": (v["service"]["schedulerPort"], "scheduler"),
                      "agent": (v["service"]["agentPort"], "agent")}
    assert cm["data"]["SCHEDULER_PORT"] == str(v["ports"]["scheduler"])
    args = c["args"]
    assert args[args.index("--scheduler-port") + 1] == str(v["ports"]["scheduler"])
    assert args[args.index("--agent-port") + 1] == str(v["ports"]["agent"])
    assert args[args.index("--data-dir") + 1] == v["dataDir"]
    assert "--tls-cert" not in args

    # Selectors select the pods.
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert dep["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert svc["spec"]["selector"].items() <= labels.items()

    # Probes: /health on named container ports (P4).
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        h = c[probe]["httpGet"]
        assert h["path"] == "/health" and h["port"] in cports and h["scheme"] == "HTTP", probe

    # Non-root, read-only root filesystem, a writable data volume.
    psc, csc = pod["securityContext"], c["securityContext"]
    assert psc["runAsNonRoot"] is True and psc["runAsUser"] != 0
    assert csc["readOnlyRootFilesystem"] is True and csc["allowPrivilegeEscalation"] is False
    assert csc["capabilities"]["drop"] == ["ALL"]
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    vols = {x["name"]: x for x in pod["volumes"]}
    assert mounts[v["dataDir"]] == "data" and "persistentVolumeClaim" in vols["data"]
    assert vols["data"]["persistentVolumeClaim"]["claimName"] == one(objs, "PersistentVolumeClaim")["metadata"]["name"]
    assert "/tmp" in mounts and "emptyDir" in vols[mounts["/tmp"]]
    assert set(mounts.values()) <= set(vols)

    # Environment from the ConfigMap; safe defaults as in .env.default.
    assert c["envFrom"] == [{"configMapRef": {"name": cm["metadata"]["name"]}}]
    assert "env" not in c
    for k, val in env_default().items():
        assert cm["data"].get(k) == val, f"ConfigMap {k}={cm['data'].get(k)!r}, .env.default says {val!r}"
    assert all(isinstance(x, str) for x in cm["data"].values())

    # The config checksum is the rendered ConfigMap's.
    files = gotemplate.render_chart(CHART, None, release="atom", namespace="fabric")
    ann = dep["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    assert ann == hashlib.sha256(files["configmap.yaml"].encode()).hexdigest()


def test_full_render_secrets_tls_servicemonitor():
    objs = render(FULL)
    v = gotemplate.deep_merge(values(), FULL)
    dep, cm, sm = one(objs, "Deployment"), one(objs, "ConfigMap"), one(objs, "ServiceMonitor")
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    env = {e["name"]: e for e in c["env"]}

    # Every variable the code reads reaches the container: ConfigMap or a Secret reference.
    # (KUBECONFIG is not used in-cluster; OPENAI_KEY is an example secret the fabric never needs.)
    provided = set(cm["data"]) | set(env)
    missing = set(code_variables()) - provided - {"KUBECONFIG", "OPENAI_KEY"}
    assert missing == set()
    assert env["POSTGRES_DSN"]["valueFrom"]["secretKeyRef"] == {"name": "atom-pg", "key": "dsn"}
    assert "POSTGRES_DSN" not in cm["data"]
    for k in cm["data"]:
        assert not re.search(r"KEY$|SECRET|TOKEN|PASSWORD|DSN", k), f"secret-like {k} in a ConfigMap"

    # Keys mounted read-only; the key paths point into the mount.
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    keys = mounts["signing-keys"]
    assert keys["readOnly"] is True
    assert cm["data"]["VAULT_PQC_KEY_PATH"].startswith(keys["mountPath"] + "/")
    assert cm["data"]["COSIGN_KEY_PATH"].startswith(keys["mountPath"] + "/")
    vols = {x["name"]: x for x in pod["volumes"]}
    assert vols["signing-keys"]["secret"]["secretName"] == "atom-keys"
    # Readable by the pod's group (fsGroup), by nobody else.
    assert vols["signing-keys"]["secret"]["defaultMode"] == 0o440

    # TLS: the certificate reaches `atom serve`, probes and scrapes use HTTPS.
    args = c["args"]
    tls_dir = mounts["tls"]["mountPath"]
    assert args[args.index("--tls-cert") + 1] == f"{tls_dir}/tls.crt"
    assert args[args.index("--tls-key") + 1] == f"{tls_dir}/tls.key"
    assert vols["tls"]["secret"]["secretName"] == "atom-tls"
    assert c["livenessProbe"]["httpGet"]["scheme"] == "HTTPS"
    assert c["env"][-1] == {"name": "RUST_LOG", "value": "info"}

    # ServiceMonitor: both Service ports, /metrics, selecting the Service.
    svc = one(objs, "Service")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    eps = sm["spec"]["endpoints"]
    assert {e["port"] for e in eps} == {p["name"] for p in svc["spec"]["ports"]}
    assert all(e["path"] == "/metrics" and e["scheme"] == "https" for e in eps)
    assert all(e["interval"] == v["serviceMonitor"]["interval"] for e in eps)
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert sm["spec"]["namespaceSelector"]["matchNames"] == ["fabric"]


def test_render_variants():
    # TLS without a certificate secret is refused, as `helm template` would with `required`.
    with pytest.raises(gotemplate.TemplateError, match="tls.secretName"):
        render({"tls": {"enabled": True}})
    # No persistence: an emptyDir data volume and no claim; an existing claim is used as is.
    objs = render({"persistence": {"enabled": False}})
    assert "PersistentVolumeClaim" not in objs
    vols = {x["name"]: x for x in one(objs, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    assert vols["data"] == {"name": "data", "emptyDir": {}}
    objs = render({"persistence": {"existingClaim": "mine"}})
    assert "PersistentVolumeClaim" not in objs
    vols = {x["name"]: x for x in one(objs, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    assert vols["data"]["persistentVolumeClaim"]["claimName"] == "mine"
    # Ports and names follow the values.
    objs = render({"ports": {"scheduler": 9600}, "fullnameOverride": "nf"})
    dep = one(objs, "Deployment")
    assert dep["metadata"]["name"] == "nf"
    assert one(objs, "ConfigMap")["data"]["SCHEDULER_PORT"] == "9600"
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    assert {p["name"]: p["containerPort"] for p in c["ports"]}["scheduler"] == 9600
    # A production configuration is rendered as given.
    objs = render({"config": {"SIMULATION_MODE": "false", "NEURAL_FABRIC_MODE": "production"}})
    assert one(objs, "ConfigMap")["data"]["SIMULATION_MODE"] == "false"
    notes = gotemplate.render_chart(CHART, {"config": {"SIMULATION_MODE": "false"}})["NOTES.txt"]
    assert "SIMULATION_MODE is" not in notes
    assert "SIMULATION_MODE is" in gotemplate.render_chart(CHART)["NOTES.txt"]


@pytest.mark.skipif(shutil.which("helm") is None, reason="helm is not installed")
def test_helm_lint_and_template_agree():
    subprocess.run(["helm", "lint", str(CHART)], check=True)
    for overrides in (None, FULL):
        args = ["helm", "template", "atom", str(CHART), "--namespace", "fabric"]
        if overrides:
            args += ["-f", "-"]
        out = subprocess.run(args, input=json.dumps(overrides or {}), capture_output=True, text=True, check=True).stdout
        theirs = {}
        for doc in yaml.safe_load_all(out):
            if doc:
                theirs.setdefault(doc["kind"], []).append(doc)
        assert theirs == render(overrides)


# The renderer itself, on cases whose output text/template and Sprig define.


def _run(src: str, dot: dict) -> str:
    e = gotemplate.Engine()
    e.add("t", src)
    return e.render("t", dot)


def test_renderer_semantics():
    assert _run("a {{- 1 -}} b", {}) == "a1b"
    assert _run("{{ range $k, $v := .m }}{{ $k }}={{ $v }};{{ end }}", {"m": {"b": 2, "a": 1.0}}) == "a=1;b=2;"
    assert _run("{{ if .x }}y{{ else if .z }}z{{ else }}n{{ end }}", {"x": [], "z": 0}) == "n"
    assert _run("{{ with .x }}{{ . }}{{ else }}none{{ end }}", {"x": ""}) == "none"
    assert _run('{{ default "d" .missing }} {{ .s | quote }}', {"s": 'a"b'}) == 'd "a\\"b"'
    assert _run("{{ toYaml .m | nindent 2 }}", {"m": {"b": [1], "a": "x"}}) == "\n  a: x\n  b:\n  - 1"
    assert _run('{{ printf "%s-%s" "a" "b" | trunc 2 }}', {}) == "a-"
    assert _run('{{ define "x" }}[{{ . }}]{{ end }}{{ include "x" 3 }}', {}) == "[3]"
    with pytest.raises(gotemplate.TemplateError):
        _run("{{ .a.b }}", {})  # nil pointer, as Helm
    with pytest.raises(gotemplate.TemplateError):
        _run("{{ nosuchfunc 1 }}", {})
    with pytest.raises(gotemplate.TemplateError):
        _run("{{ if .a }}x", {"a": 1})


# ---------------------------------------------------------------------------------------------
# Dockerfile.


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, its flags and arguments as one string), parsed by Docker's own parser
    (BuildKit's Go parser, through the `dockerfile` package); exec-form arguments as JSON."""
    out = []
    for c in dockerfile.parse_file(str(DOCKERFILE)):
        args = json.dumps(list(c.value)) if c.json else " ".join(c.value)
        if c.cmd.upper() == "HEALTHCHECK" and c.value and c.value[0] == "CMD":
            args = "CMD " + (json.dumps(list(c.value[1:])) if c.json else " ".join(c.value[1:]))
        out.append((c.cmd.upper(), " ".join([*c.flags, args]).strip()))
    return out


def test_hadolint():
    """hadolint (the Dockerfile linter) finds nothing, ignores stated in the file."""
    exe = Path(sys.executable).with_name("hadolint")
    assert exe.exists(), "hadolint missing: pip install -r requirements-test.txt"
    r = subprocess.run([str(exe), "--no-color", str(DOCKERFILE)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def dockerignore_patterns() -> list[str]:
    return [l.strip() for l in (ROOT / ".dockerignore").read_text().splitlines()
            if l.strip() and not l.strip().startswith("#")]


def docker_ignored(path: str) -> bool:
    """Docker's rule: the last matching pattern decides; `!` re-includes."""
    ignored = False
    for pat in dockerignore_patterns():
        neg = pat.startswith("!")
        p = pat[1:] if neg else pat
        p = p.rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(x, p) or fnmatch.fnmatch(x, p.replace("**/", "")) and "**/" in p for x in prefixes):
            ignored = not neg
    return ignored


def test_dockerfile():
    ins = dockerfile_instructions()
    froms = [rest for w, rest in ins if w == "FROM"]
    assert len(froms) >= 2, "multi-stage build"
    args = dict(re.match(r"(\w+)=?(.*)", rest).groups() for w, rest in ins if w == "ARG")
    stages = [re.search(r"\bAS\s+(\S+)", f, re.I).group(1) for f in froms]
    assert froms[0].startswith("rust:")
    assert re.match(r"debian:\S*-slim\b", froms[-1].replace("${DEBIAN_RELEASE}", args["DEBIAN_RELEASE"]))

    # The toolchain is at least the workspace's rust-version.
    ws = tomllib.loads((ROOT / "Cargo.toml").read_text())
    need = tuple(int(x) for x in ws["workspace"]["package"]["rust-version"].split("."))
    have = tuple(int(x) for x in args["RUST_VERSION"].split("."))
    assert have >= need[: len(have)]

    # The cargo command builds a real package's real binary.
    runs = " ".join(rest for w, rest in ins if w == "RUN")
    m = re.search(r"cargo build --release\b.*?-p (\S+) --bin (\S+)", runs)
    assert m, "cargo build --release -p PKG --bin BIN"
    pkg, binary = m.groups()
    members = ws["workspace"]["members"]
    found = False
    for member in members:
        ct = ROOT / member / "Cargo.toml"
        if ct.exists():
            man = tomllib.loads(ct.read_text())
            if man["package"]["name"] == pkg:
                assert binary in [b["name"] for b in man.get("bin", [])]
                found = True
    assert found, f"no workspace package {pkg}"
    assert (pkg, binary) == ("atom-examples", "atom")

    # The final stage: COPY --from an earlier stage, non-root user, ports, health check, entrypoint.
    last = max(i for i, (w, _) in enumerate(ins) if w == "FROM")
    final = ins[last:]
    for w, rest in final:
        if w == "COPY" and "--from=" in rest:
            assert re.search(r"--from=(\S+)", rest).group(1) in stages[:-1]
    users = [rest for w, rest in final if w == "USER"]
    assert users, "the runtime stage sets USER"
    user = users[-1].split(":")[0]
    assert user not in ("0", "root") and user.isdigit(), "numeric non-root user (runAsNonRoot can verify it)"
    assert int(user) == values()["podSecurityContext"]["runAsUser"]
    exposed = {int(p.split("/")[0]) for w, rest in final if w == "EXPOSE" for p in rest.split()}
    assert exposed == {int(env_default()["SCHEDULER_PORT"]), AGENT_PORT}
    assert exposed == set(values()["ports"].values())
    hc = [rest for w, rest in final if w == "HEALTHCHECK"]
    assert len(hc) == 1 and "/health" in hc[0] and "CMD" in hc[0]
    assert "curl" in hc[0] and re.search(r"apt-get install[^&]*\bcurl\b", runs)
    env_names = [c.value[::2] for c in dockerfile.parse_file(str(DOCKERFILE)) if c.cmd.upper() == "ENV"]
    env_pairs = {k: v for c in dockerfile.parse_file(str(DOCKERFILE)) if c.cmd.upper() == "ENV"
                 for k, v in zip(c.value[::2], c.value[1::2])}
    assert env_pairs.get("SCHEDULER_PORT") == env_default()["SCHEDULER_PORT"]
    assert env_names and not any(re.search(r"KEY|SECRET|TOKEN|PASSWORD|DSN", k) for k in env_pairs)
    (ep,) = [json.loads(rest) for w, rest in final if w == "ENTRYPOINT"]
    assert Path(ep[0]).name == binary and ep[1:] == ["serve"]
    cmd = [json.loads(rest) for w, rest in final if w == "CMD"]
    if cmd:
        assert cmd[0][cmd[0].index("--data-dir") + 1] == values()["dataDir"]

    # Every COPY source from the build context exists and is not excluded by .dockerignore.
    for w, rest in ins:
        if w == "COPY" and "--from=" not in rest:
            *srcs, _dest = rest.split()
            for s in srcs:
                if s == ".":
                    continue
                assert (ROOT / s).exists(), s
                assert not docker_ignored(s), f"{s} is excluded by .dockerignore"


def test_dockerignore():
    for p in ("target", "target/debug/atom", ".venv", ".git", "reports", "atom-fabric/target",
              "bindings-python/python/atom_fabric/_native.so", "signing.key"):
        assert docker_ignored(p), p
    ws = tomllib.loads((ROOT / "Cargo.toml").read_text())
    needed = ["Cargo.toml", "Cargo.lock", ".env.default"]
    needed += [f"{m}/Cargo.toml" for m in ws["workspace"]["members"] if (ROOT / m).exists()]
    needed += [f"{m}/src/lib.rs" for m in ws["workspace"]["members"] if (ROOT / m / "src/lib.rs").exists()]
    for p in needed:
        assert not docker_ignored(p), f"{p} is needed by the build but excluded"


# ---------------------------------------------------------------------------------------------
# config.example.yaml, .env.default, docs.

POLICIES = {f"P{i}" for i in range(1, 8)}


def test_config_example_documents_every_variable():
    cfg = yaml.safe_load((ROOT / "config.example.yaml").read_text())
    variables = cfg["variables"]
    assert set(variables) == set(code_variables())
    defaults = env_default()
    for name, doc in variables.items():
        assert {"default", "description", "policies"} <= set(doc), name
        assert len(doc["description"]) > 20, name
        assert set(doc["policies"]) <= POLICIES, name
        if name in defaults:
            assert str(doc["default"]) == defaults[name], f"{name}: default differs from .env.default"
        if doc.get("secret"):
            assert doc["default"] in (None, ""), f"{name}: a secret has no default"
    # The chart's config block uses the same names.
    for name in values()["config"]:
        assert name in variables, name


def test_env_default_lists_safe_defaults():
    d = env_default()
    assert d["SIMULATION_MODE"] == "true" and d["PQC_MODE"] == "hybrid"
    assert d["NEURAL_FABRIC_MODE"] == "simulation" and d["GPU_DRIVER_MOCK"] == "true"
    assert set(d) <= set(code_variables())


def _cli_commands() -> set[str]:
    src = (ROOT / "examples" / "src" / "main.rs").read_text()
    body = re.search(r"enum Command \{(.*?)\n\}", src, re.S).group(1)
    variants = re.findall(r"^\s{4}([A-Z]\w*)\s*[({,]", body, re.M)
    return {re.sub(r"(?<!^)([A-Z])", r"-\1", v).lower() for v in variants}


def test_operations_doc_names_only_real_commands():
    text = (ROOT / "docs" / "operations.md").read_text()
    commands = _cli_commands() | {"serve"}  # `atom serve` is being built (issue #10)
    used = set(re.findall(r"(?:^|[`\s$])atom ([a-z][a-z-]*)", text, re.M))
    assert used, "the doc shows no atom command"
    assert used <= commands, f"not atom commands: {sorted(used - commands)}"
    binary = Path(os.environ.get("ATOM_BIN", ROOT / "target" / "debug" / "atom"))
    if binary.exists():
        for group in ("keys", "audit", "model", "runtime"):
            subs = set(re.findall(rf"atom {group} ([a-z][a-z-]*)", text))
            if not subs:
                continue
            help_text = subprocess.run([str(binary), group, "--help"], capture_output=True, text=True).stdout
            have = set(re.findall(r"^  ([a-z][a-z-]*)\s", help_text, re.M))
            assert subs <= have, f"atom {group}: {sorted(subs - have)} do not exist"
