"""A real ``rlmem`` on a real store: the CLI as a child process and ``rlmem serve`` on loopback.

Rules this module keeps:

* Every process is the installed code run as ``python -m agents.cli.main`` with the
  repository on ``PYTHONPATH``, offline, with recall embedding and the background embedder
  off (the tests here are about transport and locks, not vectors), so torch never loads.
* ``Served`` binds 127.0.0.1 on a free port, waits for ``/health``, and stops its own
  process by id (SIGTERM, then SIGKILL).
* ``WriteLock`` is a second process holding a real write transaction on a store (through
  ``Database.write()``, rows written but not committed) until it is stopped; it is run as
  ``python -m reliability.served hold STORE READY_FILE``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from reliability.harness import ROOT, _env

__all__ = ["Served", "WriteLock", "cli", "cli_env", "cli_json", "free_port", "rss_kib"]


def cli_env(**extra: str) -> dict[str, str]:
    env = _env()
    env.update({"RLMEM_EMBED_RECALL": "false", "RLMEM_BACKGROUND_EMBED": "false", **extra})
    env.pop("RLMEM_TOKEN", None)
    return env


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``rlmem ARGS`` as a child process; returns it finished (stdout, stderr, returncode)."""
    return subprocess.run([sys.executable, "-m", "agents.cli.main", *args], env=env or cli_env(), cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def cli_json(*args: str) -> Any:
    p = cli(*args, "--json")
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Served:
    """``rlmem serve --store STORE`` in a child process on 127.0.0.1."""

    def __init__(self, store: Path, *extra: str, env: dict[str, str] | None = None) -> None:
        self.store = store
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agents.cli.main", "serve", "--store", str(store), "--port", str(self.port), *extra],
            env=env or cli_env(), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"rlmem serve exited: {self.proc.stderr.read().decode() if self.proc.stderr else ''}")
            try:
                if httpx.get(self.url + "/health", timeout=1, trust_env=False).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("rlmem serve did not answer /health within 90 s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        if self.proc.stderr:
            self.proc.stderr.close()

    def __enter__(self) -> Served:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class WriteLock:
    """A child process inside a long write transaction on ``store`` (uncommitted rows)."""

    def __init__(self, store: Path | str, work: Path) -> None:
        self.ready = work / f"hold-{os.getpid()}-{time.monotonic_ns()}.ready"
        self.proc = subprocess.Popen([sys.executable, "-m", "reliability.served", "hold", str(store), str(self.ready)],
                                     env=cli_env(), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while not self.ready.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                self.stop()
                raise RuntimeError(f"the lock holder did not start: {err}")
            time.sleep(0.02)

    @property
    def holding(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)  # the transaction dies uncommitted
            self.proc.wait(10)
        if self.proc.stderr:
            self.proc.stderr.close()

    def __enter__(self) -> WriteLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _hold(store: str, ready: str) -> None:
    from memory.db import Database

    target = store if "://" in store else str(Path(store) / "memory.db")
    db = Database.open(target, busy_timeout_s=60)
    with db.write() as conn:
        conn.exec_driver_sql(
            "INSERT INTO recall_messages (agent_id, session_id, role, content, created_us, tokens, metadata)"
            " SELECT agent_id, session_id, role, 'uncommitted ' || content, created_us, tokens, metadata"
            " FROM recall_messages"
        )
        Path(ready).write_text("held")
        time.sleep(3600)


if __name__ == "__main__":
    if sys.argv[1:2] == ["hold"]:
        _hold(sys.argv[2], sys.argv[3])
