"""POST /schedule throughput and latency: `atom serve` beside the documents' FastAPI sketch.

The peer is the scheduler sketch of seeds/002 (FastAPI + uvicorn, one worker, as the documents
run it), extracted into a temporary directory outside the project tree. Both hosts get the same
load from wrk (Debian package) on loopback: 64 connections, the documents' request body. The
script prints requests/s, p50/p99 latency, the ratio, and atom's RSS at the start and the end.

Two more rows for atom alone: the steady state (each placed request released again, so the
state and the run directory stay bounded; the peer has no release endpoint), and the HTTP floor
(a 404 from the same host and router: what axum/hyper/wrk cost on this machine before any work).
`--rss-minutes N` runs the steady state for N minutes and reports RSS every minute.

    python3 benches/http/side_by_side.py [--seconds 10] [--connections 64] [--rss-minutes 0]
        [--json out.json]

Needs: wrk (apt-get install wrk), a bench venv with fastapi, uvicorn and prometheus_client
(created at .venv-bench-http if missing), and a release build of atom (built if missing).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT.parent / "shared" / "seeds" / "002_6e12df54424ddc4e.txt"
VENV = ROOT / ".venv-bench-http"
BODY = '{"tenant_id":"t1","model_id":"m1","model_version":"v1","resources":{}}'
# Schedule, then release each placed request (ids are kept per wrk thread).
CYCLE_LUA = """
local pending = {}
local body = '%s'
request = function()
  local id = table.remove(pending)
  if id then
    return wrk.format("POST", "/schedule/" .. id .. "/release", {["Content-Type"] = "application/json"}, '{"tenant_id":"t1"}')
  end
  return wrk.format("POST", "/schedule", {["Content-Type"] = "application/json"}, body)
end
response = function(status, headers, body)
  if status == 201 then
    local id = body:match('"request_id":"([^"]+)"')
    if id then table.insert(pending, id) end
  end
end
""" % BODY


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: server exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except (urllib.error.URLError, ConnectionError, OSError):
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def ensure_tools() -> Path:
    if shutil.which("wrk") is None:
        cmd = ["apt-get", "install", "-y", "-q", "wrk"]
        if os.geteuid() != 0:
            cmd = ["sudo", "-n", *cmd]
        subprocess.run(cmd, check=True, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
                       stdout=subprocess.DEVNULL)
    py = VENV / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        "--progress-bar", "off", "fastapi==0.121.3", "uvicorn==0.38.0", "prometheus_client==0.23.1"],
                       check=True)
    return py


def peer_source(workdir: Path) -> Path:
    text = SEED.read_text()
    start = text.index("from fastapi import FastAPI, Request")
    end = text.index("````", start)
    app = workdir / "peer_app.py"
    app.write_text(text[start:end])
    return app


DONE_LUA = (
        "done = function(summary, latency, requests)\n"
        '  io.write(string.format("JSON {\\"requests\\":%d,\\"seconds\\":%f,\\"p50_ms\\":%f,\\"p99_ms\\":%f,'
        '\\"non2xx\\":%d,\\"errors\\":%d}\\n", summary.requests, summary.duration/1e6, latency:percentile(50)/1e3,'
        " latency:percentile(99)/1e3, summary.errors.status, summary.errors.connect + summary.errors.read +"
        " summary.errors.write + summary.errors.timeout))\n"
        "end\n"
)


def wrk(url: str, seconds: int, connections: int, workdir: Path, mode: str = "post") -> dict[str, float]:
    lua = workdir / f"{mode}.lua"
    if mode == "post":
        script = ('wrk.method = "POST"\n'
                  f"wrk.body = '{BODY}'\n"
                  'wrk.headers["Content-Type"] = "application/json"\n')
    elif mode == "cycle":
        script = CYCLE_LUA
    else:
        script = ""
    lua.write_text(script + DONE_LUA)
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "-s", str(lua), url],
                         capture_output=True, text=True, check=True).stdout
    m = re.search(r"^JSON (.*)$", out, re.M)
    if not m:
        raise RuntimeError(out)
    r = json.loads(m.group(1))
    r["rps"] = r["requests"] / r["seconds"]
    return r


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--rss-minutes", type=int, default=0,
                    help="also run the steady state this many minutes, RSS every minute")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    py = ensure_tools()
    atom = ROOT / "target" / "release" / "atom"
    if not atom.exists():
        subprocess.run(["cargo", "build", "--release", "-p", "atom-examples", "--bin", "atom"], cwd=ROOT, check=True)
    results: dict[str, object] = {"seconds": args.seconds, "connections": args.connections, "body": json.loads(BODY)}
    with tempfile.TemporaryDirectory(prefix="atom-http-bench-") as tmp:
        work = Path(tmp)
        # The peer.
        app = peer_source(work)
        pport = free_port()
        peer = subprocess.Popen([str(py), "-m", "uvicorn", "peer_app:app", "--port", str(pport), "--log-level", "warning"],
                                cwd=work, env={**os.environ, "SIMULATION_MODE": "true"},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_up(f"http://127.0.0.1:{pport}/health", peer)
            results["peer"] = wrk(f"http://127.0.0.1:{pport}/schedule", args.seconds, args.connections, work)
        finally:
            peer.send_signal(signal.SIGTERM)
            peer.wait(timeout=30)
        for f in Path("/tmp").glob("neural_run_*.json"):
            f.unlink()
        # atom serve.
        ports_file = work / "ports.json"
        env = {**os.environ, "SIMULATION_MODE": "true", "PQC_MODE": "off", "RUST_LOG": "warn",
               "ATOM_MAX_QUEUE_PER_TENANT": "100000000"}
        srv = subprocess.Popen([str(atom), "serve", "--scheduler-port", "0", "--agent-port", "0", "--data-dir",
                                str(work / "data"), "--ports-file", str(ports_file), "--env-default", "/nonexistent"],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while not ports_file.exists():
                time.sleep(0.05)
            sport = json.loads(ports_file.read_text())["scheduler"]
            wait_up(f"http://127.0.0.1:{sport}/health", srv)
            req = urllib.request.Request(f"http://127.0.0.1:{sport}/node/register", method="POST",
                                         data=b'{"node_id":"node-sim-1","gpus":8}')
            urllib.request.urlopen(req).read()
            rss0 = rss_kib(srv.pid)
            base = f"http://127.0.0.1:{sport}"
            results["atom"] = wrk(f"{base}/schedule", args.seconds, args.connections, work)
            results["atom_rss_kib"] = {"start": rss0, "end": rss_kib(srv.pid)}
            results["atom_steady"] = wrk(f"{base}/schedule", args.seconds, args.connections, work, "cycle")
            results["http_floor"] = wrk(f"{base}/no/such/route", args.seconds, args.connections, work, "get")
            if args.rss_minutes:
                samples = [{"minute": 0, "rss_kib": rss_kib(srv.pid)}]
                total = 0
                for minute in range(1, args.rss_minutes + 1):
                    r = wrk(f"{base}/schedule", 60, args.connections, work, "cycle")
                    total += r["requests"]
                    samples.append({"minute": minute, "rss_kib": rss_kib(srv.pid), "rps": r["rps"],
                                    "non2xx": r["non2xx"], "errors": r["errors"]})
                    print(f"minute {minute}: {r['rps']:.0f} req/s, RSS {samples[-1]['rss_kib']} KiB", flush=True)
                results["steady_rss"] = {"samples": samples, "requests": total}
        finally:
            srv.send_signal(signal.SIGTERM)
            srv.wait(timeout=60)
    a, p = results["atom"], results["peer"]
    assert isinstance(a, dict) and isinstance(p, dict)
    results["ratio_rps"] = a["rps"] / p["rps"] if p["rps"] else None
    print(f"{'host':12} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8} {'errors':>7}")
    for name in ("peer", "atom", "atom_steady", "http_floor"):
        r = results[name]
        assert isinstance(r, dict)
        print(f"{name:12} {r['rps']:10.0f} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f} {r['non2xx']:8d} {r['errors']:7d}")
    print(f"ratio atom/peer: {results['ratio_rps']:.1f}x; atom RSS {results['atom_rss_kib']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
