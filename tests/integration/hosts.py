"""Starts `atom serve` on free loopback ports in a temporary data directory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

ATOM = os.environ.get("ATOM_BIN", str(Path(__file__).resolve().parents[2] / "target/debug/atom"))


class Host:
    def __init__(self, proc: subprocess.Popen[bytes], data: Path, ports: dict[str, int]) -> None:
        self.proc = proc
        self.data = data
        self.scheduler = f"http://127.0.0.1:{ports['scheduler']}"
        self.agent = f"http://127.0.0.1:{ports['agent']}"

    def request(self, method: str, url: str, body: Any = None, raw: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, Any, dict[str, str]]:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                text = r.read().decode()
                status, hdrs = r.status, dict(r.headers)
        except urllib.error.HTTPError as e:
            text = e.read().decode()
            status, hdrs = e.code, dict(e.headers)
        ctype = hdrs.get("content-type", hdrs.get("Content-Type", ""))
        return status, (json.loads(text) if "json" in ctype else text), hdrs


def start(data: Path, env: dict[str, str]) -> Host:
    ports_file = data / "ports.json"
    if ports_file.exists():
        ports_file.unlink()
    proc = subprocess.Popen(
        [ATOM, "serve", "--scheduler-port", "0", "--agent-port", "0", "--data-dir", str(data / "state"),
         "--ports-file", str(ports_file), "--env-default", "/nonexistent"],
        env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=open(data / "serve.log", "ab"),
    )
    deadline = time.time() + 60
    while not ports_file.exists():
        if proc.poll() is not None:
            raise RuntimeError(f"atom serve exited with {proc.returncode}: {(data / 'serve.log').read_text()}")
        if time.time() > deadline:
            proc.kill()
            raise RuntimeError("atom serve did not start")
        time.sleep(0.05)
    return Host(proc, data, json.loads(ports_file.read_text()))


def stop(host: Host) -> int:
    host.proc.send_signal(signal.SIGTERM)
    return host.proc.wait(timeout=30)


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Host]:
    h = start(tmp_path, {"SIMULATION_MODE": "true", "PQC_MODE": "off", "MAX_TENANT_GPUs": "2"})
    yield h
    if h.proc.poll() is None:
        stop(h)
