"""`make bench`: run every benchmark of the project and write docs/benchmarks.md with its plots.

Each step runs one benchmark (a criterion bench, a one-shot bench binary, a side-by-side script
against a peer, or the CLI on a public trace), keeps what it printed, and turns it into a table
and, where a curve says more than a table, a PNG under docs/benchmarks/. A step that fails is
reported on the page with its error and makes the script exit 1; the other steps still run.

    python3 benches/report.py [--quick] [--only STEP ...] [--qubits 16 20 22 24]

--quick shortens everything (smaller circuits, fewer requests, shorter criterion runs) to check
the pipeline; the published page comes from a full run. The peers (Qiskit Aer, qulacs, qsim,
PRISM-Q, matplotlib) live in .venv-bench, created here when missing; the HTTP peer (FastAPI) in
.venv-bench-http, created by benches/http/side_by_side.py.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PLOTS = DOCS / "benchmarks"
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
VENV = ROOT / ".venv-bench"
VPY = VENV / "bin" / "python"
TRACES = ROOT.parent / "shared" / "traces"
BENCH_PEERS = ["qiskit==2.6.1", "qiskit-aer==0.18.2", "qulacs==0.6.14", "qsimcirq==0.22.1", "prism-q==0.35.0",
               "matplotlib>=3.8"]
QUANTUM_PEERS_PKGS = {"qiskit-aer": "qiskit_aer", "qulacs": "qulacs", "qsimcirq": "qsimcirq", "prism-q": "prism_q",
                      "qiskit": "qiskit"}


class StepError(RuntimeError):
    """A benchmark step that did not produce its figures."""


def run(cmd: list[str], env: dict[str, str] | None = None, timeout: float = 3600) -> str:
    """Runs a command from the repository root; returns stdout, raises StepError with its tail on failure."""
    print(f"$ {' '.join(cmd)}", flush=True)
    p = subprocess.run(cmd, cwd=ROOT, env={**os.environ, **(env or {})}, capture_output=True, text=True,
                       timeout=timeout)
    if p.returncode != 0:
        tail = "\n".join((p.stdout + p.stderr).strip().splitlines()[-15:])
        raise StepError(f"`{' '.join(cmd)}` exited {p.returncode}:\n{tail}")
    return p.stdout


def machine() -> dict[str, str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kib / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    return {"date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "cpu": cpu,
            "cores": str(os.cpu_count()), "memory": mem, "os": platform.platform(), "rustc": rustc,
            "commit": rev or "unknown", "python": platform.python_version()}


def ensure_venv() -> None:
    if not VPY.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    have = subprocess.run([str(VPY), "-c", "import matplotlib, qiskit, qiskit_aer, qulacs"], capture_output=True)
    if have.returncode != 0:
        subprocess.run([str(VPY), "-m", "pip", "install", "-q", "--disable-pip-version-check", "--progress-bar", "off",
                        *BENCH_PEERS], check=True)


def install_package_into_bench_venv() -> None:
    """atom_fabric (release build, sharing target/) into .venv-bench, for in-process timing."""
    maturin = ROOT / ".venv" / "bin" / "maturin"
    if not maturin.exists():
        subprocess.run([str(VPY), "-m", "pip", "install", "-q", "--disable-pip-version-check", "maturin==1.16.0"],
                       check=True)
        maturin = VENV / "bin" / "maturin"
    run([str(maturin), "develop", "--release", "-q", "-m", "bindings-python/Cargo.toml"],
        env={"VIRTUAL_ENV": str(VENV), "PATH": f"{VENV / 'bin'}:{os.environ.get('PATH', '')}"}, timeout=3600)


def peer_versions() -> dict[str, str]:
    code = ("import importlib.metadata as m, json\nout = {}\n"
            f"for d in {list(QUANTUM_PEERS_PKGS)!r}:\n"
            "    try: out[d] = m.version(d)\n"
            "    except m.PackageNotFoundError: out[d] = 'not installed'\n"
            "print(json.dumps(out))")
    p = subprocess.run([str(VPY), "-c", code], capture_output=True, text=True)
    return json.loads(p.stdout) if p.returncode == 0 else {}


def first_line(cmd: list[str]) -> str:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    out = (p.stdout or p.stderr).strip().splitlines()
    return out[0] if out else "unknown"


# --- criterion ------------------------------------------------------------------------------

def criterion_mtimes() -> dict[Path, float]:
    return {p: p.stat().st_mtime for p in (TARGET / "criterion").glob("**/new/estimates.json")}


def criterion_results(before: dict[Path, float]) -> dict[str, dict[str, float]]:
    """Criterion results written since the `before` listing: full id -> mean ns, and elements/s if set."""
    out: dict[str, dict[str, float]] = {}
    for est, mtime in criterion_mtimes().items():
        if before.get(est) == mtime:
            continue
        bj = est.with_name("benchmark.json")
        if not bj.exists():
            continue
        b = json.loads(bj.read_text())
        e = json.loads(est.read_text())
        mean = e["mean"]["point_estimate"]
        row = {"mean_ns": mean, "lo_ns": e["mean"]["confidence_interval"]["lower_bound"],
               "hi_ns": e["mean"]["confidence_interval"]["upper_bound"]}
        thr = b.get("throughput") or {}
        if "Elements" in thr and mean > 0:
            row["per_s"] = thr["Elements"] * 1e9 / mean
        out[b["full_id"]] = row
    return out


def cargo_bench(name: str, args: list[str], env: dict[str, str] | None = None) -> str:
    return run(["cargo", "bench", "-q", "-p", "atom-benches", "--bench", name, "--", *args], env=env)


def fmt_ns(ns: float) -> str:
    if ns >= 1e9:
        return f"{ns / 1e9:.2f} s"
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.1f} µs"
    return f"{ns:.0f} ns"


def table(header: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


class Report:
    def __init__(self, quick: bool, qubits: list[int]):
        self.quick = quick
        self.qubits = qubits
        self.crit_args = ["--warm-up-time", "1", "--measurement-time", "1" if quick else "3", "--noplot"]
        self.sections: list[tuple[str, str]] = []
        self.failed: list[str] = []
        self.raw: dict[str, object] = {}
        self.tmp = Path(tempfile.mkdtemp(prefix="atom-bench-"))

    # Plots are drawn by matplotlib inside the bench venv, from the JSON this script collected.
    def plot(self, name: str, spec: dict[str, object]) -> str:
        PLOTS.mkdir(parents=True, exist_ok=True)
        path = PLOTS / f"{name}.png"
        code = PLOT_CODE
        p = subprocess.run([str(VPY), "-c", code, json.dumps(spec), str(path)], capture_output=True, text=True)
        if p.returncode != 0:
            raise StepError(f"plot {name}: {p.stderr.strip()[-400:]}")
        return f"![{spec.get('title', name)}](benchmarks/{name}.png)"

    def step(self, title: str, fn: Callable[[], str]) -> None:
        print(f"== {title}", flush=True)
        t = time.time()
        try:
            body = fn()
        except (StepError, subprocess.TimeoutExpired, OSError, KeyError, ValueError, json.JSONDecodeError) as e:
            self.failed.append(title)
            body = f"**This step failed in this run**, so there is no figure for it:\n\n```\n{e}\n```"
        self.sections.append((title, body + f"\n\n<sub>step wall time {time.time() - t:.0f} s</sub>"))

    # --- steps --------------------------------------------------------------------------------

    def quantum(self) -> str:
        out = self.tmp / "quantum.json"
        install_package_into_bench_venv()
        n = [str(q) for q in self.qubits]
        text = run([str(VPY), "benches/quantum/side_by_side.py", "--n", *n, "--reps", "1" if self.quick else "3",
                    "--json", str(out)], env={"ATOM_BIN": str(TARGET / "release" / "atom")}, timeout=7200)
        rows = json.loads(out.read_text())
        self.raw["quantum"] = rows
        sims = ["atom_f64", "atom_f32", "aer", "qulacs", "qulacs_fused", "prism_q", "qsim_f2", "qsim_f4"]
        present = [s for s in sims if any(r.get(s) for r in rows)]
        t_rows = [[r["circuit"], r["n"], *[f"{r[s]:.4f}" if r.get(s) else "fail" for s in present],
                   f"{r['ratio_f64']:.2f}", f"{r['ratio_f32']:.2f}", f"{r['floor_s']:.4f}"] for r in rows]
        circuits = sorted({r["circuit"] for r in rows}, key=[r["circuit"] for r in rows].index)
        panels = []
        for c in circuits:
            series = {s: [[r["n"], r[s]] for r in rows if r["circuit"] == c and r.get(s)] for s in present}
            panels.append({"title": c, "series": series})
        img = self.plot("quantum", {"kind": "lines", "title": "statevector simulation time vs qubits",
                                    "xlabel": "qubits", "ylabel": "seconds (median)", "logy": True, "panels": panels})
        versions = peer_versions()
        vtext = ", ".join(f"{k} {v}" for k, v in versions.items())
        return (f"Same circuits, same run, 2 threads each (`OMP_NUM_THREADS=2`, `RAYON_NUM_THREADS=2`). Inputs: QFT, "
                f"GHZ, random u3+cx layers of depth 20 (seed 1) and quantum volume (depth n, transpiled to u+cx), "
                f"n = {', '.join(n)}. Each figure is the median of the simulation call alone, timed in-process from Python "
                f"for every simulator (atom through its `atom_fabric` package: `simulate(circuit, precision=...)` and "
                f"the statevector view; parsing outside the timing). atom ran via: {rows[0].get('atom_via', 'CLI')}. Peers: {vtext}. "
                f"`f64/best64` is atom double precision over the fastest double-precision peer (below 1: atom faster); "
                f"`f32/qsim` atom single over the best qsim (complex64). `floor` is one read and write of the "
                f"complex128 state at 57 GB/s.\n\n"
                + table(["circuit", "n", *present, "f64/best64", "f32/qsim", "floor s"], t_rows) + "\n\n" + img
                + "\n\nPrinted by the script:\n\n```\n" + text.strip() + "\n```")

    def scheduler(self) -> str:
        requests = "100000" if self.quick else "1000000"
        text = cargo_bench("scheduler", self.crit_args, env={"SCHED_BENCH_REQUESTS": requests})
        sweep = []
        sizes = [1000, 2500, 5000, 10000, 20000] if not self.quick else [1000, 5000]
        for nodes in sizes:
            t = cargo_bench("scheduler", [*self.crit_args, "no-criterion-bench-matches-this"],
                            env={"SCHED_BENCH_NODES": str(nodes),
                                 "SCHED_BENCH_REQUESTS": "50000" if self.quick else "300000"})
            m = re.search(r"schedule decisions/s \(schedule time only\): (\d+)", t)
            lat = re.search(r"p50 ([\d.]+) us, p99 ([\d.]+) us", t)
            mem = re.search(r"\(([\d.]+) B/node\).*\(([\d.]+) B/request\)", t)
            if not (m and lat and mem):
                raise StepError(f"scheduler bench output not understood:\n{t}")
            sweep.append({"nodes": nodes, "decisions_per_s": int(m.group(1)), "p50_us": float(lat.group(1)),
                          "p99_us": float(lat.group(2)), "b_per_node": float(mem.group(1)),
                          "b_per_request": float(mem.group(2))})
        self.raw["scheduler_sweep"] = sweep
        img = self.plot("scheduler_nodes", {"kind": "lines", "title": "scheduler decisions/s vs fleet size",
                                            "xlabel": "nodes (8 GPUs each)", "ylabel": "decisions/s", "logy": False,
                                            "panels": [{"title": "", "series": {"atom Scheduler": [
                                                [s["nodes"], s["decisions_per_s"]] for s in sweep]}}]})
        rows = [[s["nodes"], f"{s['decisions_per_s']:,}", s["p50_us"], s["p99_us"], f"{s['b_per_node']:.0f}",
                 f"{s['b_per_request']:.0f}"] for s in sweep]
        return ("`benches/benches/scheduler.rs`: a synthetic fleet (8 GPUs per node, 100 tenants; requests 60% "
                "fractional GPU shares, 30% whole GPUs, 10% CPU only; 10 requests held per node, up to 100,000, "
                "the oldest released as new ones arrive; 16 feasible candidates scored per decision). Decisions/s "
                "counts the schedule calls' own time. The kube-scheduler CI floor quoted in issue #5 is 680–810 "
                "pods/s at 5,000 nodes.\n\n"
                + table(["nodes", "decisions/s", "p50 µs", "p99 µs", "B/node", "B/held request"], rows) + "\n\n"
                + img + "\n\nThe full-size run (10,000 nodes, " + requests + " requests):\n\n```\n" + text.strip()
                + "\n```")

    def alibaba(self) -> str:
        d = TRACES / "alibaba-gpu-v2023"
        out = run([str(TARGET / "release" / "atom"), "replay", "--nodes", str(d / "openb_node_list_gpu_node.csv"),
                   "--pods", str(d / "openb_pod_list_default.csv"), "--format", "json"])
        reports = json.loads(out)
        self.raw["alibaba"] = reports
        rows = [[r["scorer"], f"{r['share_at_first_failure']:.4f}" if r["share_at_first_failure"] is not None else "-",
                 f"{r['share_at_end']:.4f}", r["pods_failed"], r["pods_total"], f"{r['decisions_per_s']:,.0f}"]
                for r in reports]
        img = self.plot("alibaba_scorers", {"kind": "bars", "title": "GPU allocation share, Alibaba openb trace",
                                            "ylabel": "share of GPU capacity allocated",
                                            "labels": [r["scorer"] for r in reports],
                                            "groups": {"at first failure": [r["share_at_first_failure"] or 0 for r in reports],
                                                       "at end": [r["share_at_end"] for r in reports]}})
        return ("`atom replay` on the Alibaba GPU-sharing trace of the FGD paper (`openb_node_list_gpu_node.csv`, "
                "`openb_pod_list_default.csv` from `../shared/traces/alibaba-gpu-v2023/`): pods in creation order, "
                "never released; a pod that fits nowhere fails. The share is allocated GPU capacity (milli-GPU) "
                "over the fleet's; higher at first failure means less fragmentation.\n\n"
                + table(["scorer", "share at first failure", "share at end", "pods failed", "pods", "decisions/s"], rows)
                + "\n\n" + img)

    def autoscale(self) -> str:
        text = cargo_bench("autoscale_replay", [])
        rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| trace")]
        parsed = []
        for line in rows:
            c = [x.strip() for x in line.strip("|").split("|")]
            if len(c) >= 7 and c[3]:
                parsed.append({"trace": c[0], "policy": c[1], "requests": int(c[2]), "slo": float(c[3]),
                               "replica_seconds": float(c[4]), "peak": int(c[5])})
        if not parsed:
            raise StepError(f"no rows in autoscale_replay output:\n{text}")
        self.raw["autoscale"] = parsed
        policies = list(dict.fromkeys(p["policy"] for p in parsed))
        traces = list(dict.fromkeys(p["trace"] for p in parsed))
        img = self.plot("autoscale_slo", {"kind": "bars", "title": "autoscaler on the Azure LLM traces",
                                          "ylabel": "SLO attainment", "labels": traces,
                                          "groups": {pol: [next((p["slo"] for p in parsed if p["trace"] == t and p["policy"] == pol), 0)
                                                           for t in traces] for pol in policies}})
        return ("`benches/benches/autoscale_replay.rs`: atom's autoscaler, a Ray Serve-style and a Knative KPA-style "
                "policy replaying the Azure LLM inference traces (2023, `conv` and `code`) against the same replica "
                "service-time model, seed 1.\n\n" + "\n".join(line for line in text.splitlines() if line.strip())
                + "\n\n" + img)

    def criterion_step(self, bench: str, intro: str, plot: Callable[[dict[str, dict[str, float]]], str] | None = None) -> Callable[[], str]:
        def go() -> str:
            before = criterion_mtimes()
            text = cargo_bench(bench, self.crit_args)
            res = criterion_results(before)
            if not res:
                raise StepError(f"criterion wrote no results for {bench}:\n{text[-800:]}")
            self.raw[f"criterion/{bench}"] = res
            rows = [[k, fmt_ns(v["mean_ns"]), f"{fmt_ns(v['lo_ns'])} – {fmt_ns(v['hi_ns'])}",
                     f"{v['per_s']:,.0f}" if "per_s" in v else f"{1e9 / v['mean_ns']:,.0f}"]
                    for k, v in sorted(res.items())]
            body = intro + "\n\n" + table(["benchmark", "mean", "95% CI", "per second"], rows)
            if plot is not None:
                body += "\n\n" + plot(res)
            return body
        return go

    def signatures_plot(self, res: dict[str, dict[str, float]]) -> str:
        algs = sorted({k.split("/")[0] for k in res if k.endswith("/sign") and "/" in k})
        return self.plot("signatures", {"kind": "bars", "title": "sign and verify (256-byte message)",
                                        "ylabel": "µs per operation", "logy": True, "labels": algs,
                                        "groups": {op: [res.get(f"{a}/{op}", {}).get("mean_ns", 0) / 1e3 for a in algs]
                                                   for op in ("sign", "verify")}})

    def plain(self, bench: str, intro: str, env: dict[str, str] | None = None) -> Callable[[], str]:
        def go() -> str:
            text = cargo_bench(bench, [], env=env)
            self.raw[bench] = text
            return intro + "\n\n```\n" + text.strip() + "\n```"
        return go

    def http(self) -> str:
        out = self.tmp / "http.json"
        secs = "5" if self.quick else "10"
        text = run([sys.executable, "benches/http/side_by_side.py", "--seconds", secs, "--connections", "64",
                    "--json", str(out)], timeout=1200)
        r = json.loads(out.read_text())
        self.raw["http"] = r
        rows = [[name, f"{r[k]['rps']:,.0f}", f"{r[k]['p50_ms']:.2f}", f"{r[k]['p99_ms']:.2f}", r[k]["non2xx"], r[k]["errors"]]
                for name, k in (("documents' FastAPI sketch (uvicorn, 1 worker)", "peer"), ("atom serve", "atom"),
                                ("atom serve, steady state (each placed request released)", "atom_steady"),
                                ("HTTP floor: a 404 from atom serve's router", "http_floor"))
                if k in r]
        img = self.plot("http", {"kind": "bars", "title": "POST /schedule, wrk 64 connections", "ylabel": "requests/s",
                                 "labels": ["FastAPI sketch", "atom serve"],
                                 "groups": {"requests/s": [r["peer"]["rps"], r["atom"]["rps"]]}})
        rss = r.get("atom_rss_kib", {})
        peer_v = first_line([str(ROOT / ".venv-bench-http" / "bin" / "python"), "-c",
                             "import fastapi, uvicorn; print('fastapi', fastapi.__version__ + ', uvicorn', uvicorn.__version__)"])
        wrk_v = first_line(["sh", "-c", "wrk -v 2>&1 | head -1"])
        return (f"`benches/http/side_by_side.py`: wrk (Debian) on loopback, {secs} s, 64 connections, the documents' "
                f"body `{json.dumps(r['body'])}`, against the scheduler sketch of seeds/002 run as the documents run it "
                f"and against `atom serve` (simulation mode, PQC off, one 8-GPU node). Peer: {peer_v}; "
                f"load: {wrk_v}.\n\n"
                + table(["host", "requests/s", "p50 ms", "p99 ms", "non-2xx", "errors"], rows)
                + f"\n\nRatio atom / peer: **{r['ratio_rps']:.1f}×**. atom's RSS: {rss.get('start', 0) / 1024:.0f} MiB at "
                  f"the start, {rss.get('end', 0) / 1024:.0f} MiB after the run (the documents' body places every "
                  "request and none is released, so the state grows with the run). The steady-state row releases "
                  "each placed request; the floor row is every response a 404 (its non-2xx count is the requests) "
                  "and bounds what any handler can reach here with wrk on the same two cores.\n\n" + img
                + "\n\n```\n" + text.strip() + "\n```")

    def postgres(self) -> str:
        text = run(["make", "-s", "bench-postgres"], timeout=3600)
        rows = re.findall(r"^(embedded [^\n]*?|postgres, \d replica\(s\)[^\n]*?)\s{2,}(\d+)\s+(\S+)\s*$", text, re.M)
        if not rows:
            raise StepError(f"bench-postgres output not understood:\n{text[-1500:]}")
        self.raw["postgres"] = rows
        img = self.plot("postgres", {"kind": "bars", "title": "decisions/s: embedded vs PostgreSQL replicas",
                                     "ylabel": "decisions/s", "labels": [r[0].replace(" x ", "\nx ") for r in rows],
                                     "groups": {"decisions/s": [int(r[1]) for r in rows]}})
        return ("`make bench-postgres` (`benches/benches/postgres_replicas.rs`): a throwaway PostgreSQL cluster on "
                "loopback (Debian's server package: "
                + first_line(["sh", "-c", "$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)/postgres --version"])
                + "), replicas as threads with their own connections.\n\n```\n"
                + text.strip() + "\n```\n\n" + img)

    def merge_previous(self, page: Path) -> None:
        """With --only: keep the sections of the last full page that were not re-run."""
        if not page.exists():
            return
        text = page.read_text()
        old = re.split(r"^## ", text, flags=re.M)[1:]
        rerun = {t for t, _ in self.sections}
        kept = []
        for chunk in old:
            title, _, body = chunk.partition("\n")
            if title.strip() in ("Contents",):
                continue
            if title.strip() in rerun:
                kept.append(next((t, b) for t, b in self.sections if t == title.strip()))
            else:
                kept.append((title.strip(), body.strip()))
        for t, b in self.sections:
            if t not in {k for k, _ in kept}:
                kept.append((t, b))
        self.partial = sorted(rerun)
        self.sections = kept
        m = re.search(r"^\| date \| (.+?) \|$", text, re.M)
        self.previous_date = m.group(1) if m else "unknown"
        self.previous_partials = re.findall(r"^Partial re-run on (.+?) of: (.+?)\. The other", text, re.M)

    def write(self, info: dict[str, str]) -> None:
        head = [
            "# Benchmarks",
            "",
            "Generated by `make bench` (`benches/report.py`); do not edit by hand. Every figure below was measured "
            "in the run described here, peers side by side in the same run.",
            "",
            table(["", ""], [["date", info["date"]], ["commit", info["commit"]], ["CPU", f"{info['cpu']} ({info['cores']} cores)"],
                             ["memory", info["memory"]], ["OS", info["os"]], ["compiler", info["rustc"]],
                             ["Python", info["python"]], ["mode", "quick (shortened)" if self.quick else "full"]]),
            "",
            "How to read these: 2 shared cores, so figures move by ±10% between runs; ratios taken in one run are "
            "steadier than absolute numbers. Raw results: [`benchmarks/results.json`](benchmarks/results.json).",
            "",
        ]
        if self.failed:
            head += [f"**Steps that failed in this run:** {', '.join(self.failed)}.", ""]
        if getattr(self, "partial", None):
            for when, what in getattr(self, "previous_partials", []):
                if what != "; ".join(self.partial):
                    head += [f"Partial re-run on {when} of: {what}. The other sections are from the run of "
                             f"{self.previous_date}.", ""]
            head += [f"Partial re-run on {info['date']} of: {'; '.join(self.partial)}. The other sections are from the "
                     f"run of {self.previous_date}.", ""]
            info = {**info, "date": self.previous_date}
            head[4] = table(["", ""], [["date", info["date"]], ["commit", info["commit"]],
                                       ["CPU", f"{info['cpu']} ({info['cores']} cores)"], ["memory", info["memory"]],
                                       ["OS", info["os"]], ["compiler", info["rustc"]], ["Python", info["python"]],
                                       ["mode", "quick (shortened)" if self.quick else "full"]])
        head.append("## Contents\n")
        head += [f"- [{t}](#{re.sub(r'[^a-z0-9 -]', '', t.lower()).replace(' ', '-')})" for t, _ in self.sections]
        body = [f"## {t}\n\n{b}\n" for t, b in self.sections]
        (DOCS / "benchmarks.md").write_text("\n".join(head) + "\n\n" + "\n".join(body))
        PLOTS.mkdir(parents=True, exist_ok=True)
        results = PLOTS / "results.json"
        raw = dict(self.raw)
        if getattr(self, "partial", None) and results.exists():
            raw = {**json.loads(results.read_text()).get("results", {}), **self.raw}
        results.write_text(json.dumps({"machine": info, "results": raw}, indent=1, default=str) + "\n")


PLOT_CODE = r"""
import json, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
spec = json.loads(sys.argv[1]); path = sys.argv[2]
if spec["kind"] == "lines":
    panels = spec["panels"]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
    for ax, p in zip(axes[0], panels):
        for name, pts in p["series"].items():
            if pts:
                xs, ys = zip(*pts)
                style = "-o" if name.startswith("atom") else "--."
                ax.plot(xs, ys, style, label=name, linewidth=2.2 if name.startswith("atom") else 1.2)
        if spec.get("logy"):
            ax.set_yscale("log")
        ax.set_title(p["title"]); ax.set_xlabel(spec["xlabel"]); ax.set_ylabel(spec["ylabel"]); ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
else:
    labels = spec["labels"]; groups = spec["groups"]
    fig, ax = plt.subplots(figsize=(min(11, max(5, 1.1 * len(labels) * max(1, len(groups)) ** 0.5)), 3.8))
    w = 0.8 / len(groups)
    for i, (name, vals) in enumerate(groups.items()):
        bars = ax.bar([j + i * w for j in range(len(labels))], vals, w, label=name)
        ax.bar_label(bars, fmt=spec.get("fmt", "%.3g"), fontsize=6, padding=1)
    ax.set_xticks([j + w * (len(groups) - 1) / 2 for j in range(len(labels))], labels, fontsize=8, rotation=15)
    if spec.get("logy"):
        ax.set_yscale("log")
    ax.set_ylabel(spec["ylabel"]); ax.grid(axis="y", alpha=0.3)
    if len(groups) > 1:
        ax.legend(fontsize=8)
fig.suptitle(spec.get("title", ""))
fig.tight_layout()
fig.savefig(path, dpi=110)
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="shortened runs, to check the pipeline")
    ap.add_argument("--only", nargs="+", help="run only these steps (by key)")
    ap.add_argument("--qubits", type=int, nargs="+", help="qubit counts for the simulator side by side")
    args = ap.parse_args()
    qubits = args.qubits or ([10, 14, 18] if args.quick else [16, 20, 22, 24])
    ensure_venv()
    run(["cargo", "build", "-q", "--release", "-p", "atom-examples", "--bin", "atom"])
    r = Report(args.quick, qubits)
    steps: list[tuple[str, str, Callable[[], str]]] = [
        ("quantum", "Statevector simulator beside Qiskit Aer, qulacs, qsim and PRISM-Q", r.quantum),
        ("quantum-criterion", "Statevector simulator alone (criterion)", r.criterion_step(
            "quantum", "`benches/benches/quantum.rs`: the library alone on the side-by-side circuit families.")),
        ("scheduler", "Scheduler decisions/s vs fleet size", r.scheduler),
        ("alibaba", "GPU allocation share on the Alibaba trace, per scorer", r.alibaba),
        ("autoscale", "Autoscaler SLO attainment on the Azure LLM traces", r.autoscale),
        ("audit", "Audit log: appends, proofs, checkpoints", r.criterion_step(
            "audit", "`benches/benches/audit.rs`: appends (hashing only, and to a file-backed log with a 10 ms group "
                     "commit, fsync included), inclusion proofs on a large log, checkpoint signing and verification.")),
        ("signatures", "ML-DSA, ECDSA and Ed25519 sign and verify", r.criterion_step(
            "signatures", "`benches/benches/signatures.rs`: through atom-policy's public API (PQClean ML-DSA via "
                          "`pqcrypto-mldsa`, `p256`, `ed25519-dalek`), 256-byte message; hybrid DSSE over 1 KiB.",
            r.signatures_plot)),
        ("manifest", "Model manifest hashing beside sha256sum", r.plain(
            "manifest_hashing", "`benches/benches/manifest_hashing.rs`: hashing a model directory for a signed "
                                "manifest, beside coreutils `sha256sum` (same files, same run, digests compared); "
                                f"peer: {first_line(['sha256sum', '--version'])}.")),
        ("runtime", "ONNX runtime hooks (tract)", r.criterion_step(
            "runtime_load", "`benches/benches/runtime_load.rs`: loading the test ONNX models and one batched inference.")),
        ("chaos", "Resilience simulator: a day of faults", r.plain(
            "chaos_day", "`benches/benches/chaos_day.rs`: `examples/chaos/day.yaml` replayed in simulated time.")),
        ("http", "HTTP: POST /schedule beside the documents' FastAPI sketch", r.http),
        ("postgres", "PostgreSQL replicas beside the embedded store", r.postgres),
    ]
    for key, title, fn in steps:
        if args.only and key not in args.only:
            continue
        r.step(title, fn)
    if args.only:
        r.merge_previous(DOCS / "benchmarks.md")
    r.write(machine())
    print(f"wrote {DOCS / 'benchmarks.md'}" + (f"; failed: {', '.join(r.failed)}" if r.failed else ""))
    return 1 if r.failed else 0


if __name__ == "__main__":
    sys.exit(main())
