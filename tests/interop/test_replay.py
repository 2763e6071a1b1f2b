"""`atom replay` against an independent Python replay of the same trace.

The reference below implements the trace measure from its description (pods in creation order,
never released, a pod that fits nowhere fails) with First-fit placement, independently of the Rust
code; the CLI's `first-fit` figures must equal it exactly, and every scorer must report the same
pod count and sane shares.
"""

from __future__ import annotations

import csv
import json
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]
DATA = ROOT / "atom-fabric" / "tests" / "data"
NODES = DATA / "synthetic_nodes.csv"
PODS = DATA / "synthetic_pods.csv"


def first_fit_reference(nodes_csv: pathlib.Path, pods_csv: pathlib.Path) -> dict:
    nodes = []
    for row in csv.DictReader(nodes_csv.open()):
        g = int(row["gpu"] or 0)
        nodes.append(
            {
                "cpu": int(row["cpu_milli"]),
                "mem": int(row["memory_mib"]),
                "model": row["model"],
                "free": [1000] * g,
            }
        )
    capacity = sum(len(n["free"]) for n in nodes) * 1000
    pods = list(csv.DictReader(pods_csv.open()))
    if pods and "creation_time" in pods[0]:
        pods.sort(key=lambda p: int(p["creation_time"] or 0))  # stable, like the CLI
    allocated = 0
    failed = 0
    first = None
    for p in pods:
        cpu, mem = int(p["cpu_milli"]), int(p["memory_mib"])
        g, milli = int(p["num_gpu"]), int(p["gpu_milli"] or 0)
        if g > 0 and milli == 0:
            milli = 1000
        spec = set(filter(None, (p.get("gpu_spec") or "").split("|")))
        placed = False
        for n in nodes:
            if n["cpu"] < cpu or n["mem"] < mem:
                continue
            ok_model = not spec or n["model"] in spec
            if g == 0:
                devices = []
            elif not ok_model:
                continue
            elif milli >= 1000:
                devices = [i for i, f in enumerate(n["free"]) if f == 1000][:g]
            else:
                devices = [i for i, f in enumerate(n["free"]) if f >= milli][:g]
            if len(devices) < g:
                continue
            n["cpu"] -= cpu
            n["mem"] -= mem
            for i in devices:
                n["free"][i] -= milli
            allocated += g * milli
            placed = True
            break
        if not placed:
            failed += 1
            if first is None:
                first = allocated / capacity
    return {
        "share_at_first_failure": first,
        "share_at_end": allocated / capacity,
        "pods_failed": failed,
        "pods_total": len(pods),
    }


def test_first_fit_matches_an_independent_replay(run_atom):
    res = run_atom("replay", "--nodes", NODES, "--pods", PODS, "--scorer", "first-fit", "--format", "json")
    assert res.returncode == 0, res.stderr.decode()
    (ours,) = json.loads(res.stdout)
    ref = first_fit_reference(NODES, PODS)
    assert ours["scorer"] == "first-fit"
    for key in ("pods_failed", "pods_total", "share_at_first_failure", "share_at_end"):
        assert ours[key] == ref[key] or abs(ours[key] - ref[key]) < 1e-12, (key, ours[key], ref[key])


def test_all_scorers_default_first_with_the_documented_keys(run_atom):
    res = run_atom("replay", "--nodes", NODES, "--pods", PODS, "--format", "json")
    assert res.returncode == 0, res.stderr.decode()
    reports = json.loads(res.stdout)
    assert reports[0]["scorer"] == "default"
    names = [r["scorer"] for r in reports]
    assert "best-fit" in names and "first-fit" in names
    pods_total = sum(1 for _ in csv.DictReader(PODS.open()))
    for r in reports:
        assert set(r) == {"scorer", "share_at_first_failure", "share_at_end", "pods_failed", "pods_total", "decisions_per_s"}
        assert r["pods_total"] == pods_total
        assert 0.0 <= r["share_at_end"] <= 1.0 and r["decisions_per_s"] > 0


def test_bad_input_exits_2(run_atom, tmp_path):
    bad = tmp_path / "pods.csv"
    bad.write_text("name,cpu_milli,memory_mib,num_gpu,gpu_milli\nx,1,1,1,1500\n")
    res = run_atom("replay", "--nodes", NODES, "--pods", bad)
    assert res.returncode == 2
    assert "line 2" in res.stderr.decode()
