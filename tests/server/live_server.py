"""A live `sglrs serve` subprocess for the end-to-end tests, and a small HTTP client for it.

The model is `$SGLRS_TEST_MODEL` when set, else sglrs's default model (SmolLM2-135M-Instruct,
fetched once). The server runs with an API key, metrics and the cache report on.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sglrs.ipc.ports import free_tcp_port

API_KEY = "test-key"
CONTEXT_LENGTH = 1024
STARTUP_TIMEOUT_S = 600.0  # includes fetching the default model on a cold cache
SHUTDOWN_TIMEOUT_S = 30.0


@dataclass
class Reply:
    status: int
    body: bytes
    headers: dict[str, str]

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class LiveServer:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        raw: bytes | None = None,
        key: str | None = API_KEY,
        timeout: float = 120.0,
    ) -> Reply:
        data = raw if raw is not None else None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return Reply(resp.status, resp.read(), dict(resp.headers))
        except urllib.error.HTTPError as e:
            return Reply(e.code, e.read(), dict(e.headers))

    def get(self, path: str, **kw: Any) -> Reply:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> Reply:
        return self.request("POST", path, body, **kw)

    def children(self) -> list[int]:
        return child_pids(self.process.pid)


def child_pids(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Field 4 (after the parenthesized command name) is the parent pid.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            found.append(int(entry.name))
    return found


def start_server(extra_args: list[str] | None = None) -> LiveServer:
    port = free_tcp_port()
    log = Path(tempfile.mkdtemp(prefix="sglrs-serve-")) / "server.log"
    cmd = [sys.executable, "-m", "sglrs.cli", "serve", "--port", str(port)]
    if model := os.environ.get("SGLRS_TEST_MODEL"):
        cmd += ["--model-path", model]
    cmd += ["--api-key", API_KEY, "--enable-metrics", "--enable-cache-report"]
    cmd += ["--context-length", str(CONTEXT_LENGTH), "--log-level", "warning"]
    cmd += extra_args or []
    with open(log, "wb") as out:
        process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    server = LiveServer(process, port, log)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"sglrs serve exited with {process.returncode}:\n{server.log()}")
        try:
            if server.get("/health", key=None, timeout=2).status == 200:
                return server
        except OSError:
            pass
        time.sleep(0.5)
    stop_server(server)
    raise RuntimeError(f"sglrs serve did not become healthy:\n{server.log()}")


def stop_server(server: LiveServer) -> int:
    """Ctrl-C the server; return its exit code (killing it if it does not stop in time)."""
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGINT)
        try:
            server.process.wait(SHUTDOWN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()
            return -9
    return server.process.returncode
