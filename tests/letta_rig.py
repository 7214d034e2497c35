"""Fixtures for tests against a real Letta 0.16.8 server (the rig in ``../shared/letta-rig``).

The tests run when ``RLMEM_TEST_LETTA=1`` and skip with the reason otherwise. The
session-scoped ``letta_rig`` fixture owns the server's life: it runs the rig's ``setup.sh``
(idempotent: 0.4 s once set up, minutes and PyPI access on a fresh machine), then ``start.sh``,
and at the end ``stop.sh``, which stops exactly the PIDs ``start.sh`` recorded. A rig that was
already running before the session is used as is and left running.

Settings: ``LETTA_RIG_DIR`` (the rig's scripts; default ``../shared/letta-rig`` beside the
repository), ``LETTA_RIG_HOME`` (its cache; default ``~/.cache/letta-rig``), and the rig's own
port variables (``LETTA_RIG_PORT``, ``LETTA_RIG_MOCK_PORT``, ``LETTA_RIG_PG_PORT``). Unless
``LETTA_RIG_PG_PORT`` is set, a rig started here gets a free Postgres port below the
ephemeral range (see ``_free_port_below_ephemeral``).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

__all__ = ["Rig", "letta_rig", "make_agent", "mock_script", "rig_dir"]

REPO = Path(__file__).resolve().parent.parent
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def rig_dir() -> Path:
    return Path(os.environ.get("LETTA_RIG_DIR") or REPO.parent / "shared" / "letta-rig")


@dataclass
class Rig:
    base_url: str
    mock_url: str
    client: Any

    def mock(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.mock_url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with _NO_PROXY.open(req, timeout=10) as resp:
            return json.load(resp)


def _home() -> Path:
    return Path(os.environ.get("LETTA_RIG_HOME") or Path.home() / ".cache" / "letta-rig")


def _letta_running() -> bool:
    pid_file = _home() / "run" / "letta.pid"
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, 0)
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, ValueError, IndexError):
        return False
    return state != "Z"


def _free_port_below_ephemeral(start: int = 25432) -> int:
    """A free loopback port under Linux's ephemeral range (32768+). The rig's default Postgres
    port, 55432, lies inside it, so any client connection of the test run can hold it as its
    local port and make the rig's Postgres fail to bind."""
    for port in range(start, 32768):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below 32768 for the letta rig's Postgres")


def _run(script: str, timeout: float, env: dict[str, str] | None = None) -> None:
    path = rig_dir() / script
    proc = subprocess.run(
        ["bash", str(path)], capture_output=True, text=True, timeout=timeout, env=env
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{path} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")


@pytest.fixture(scope="session")
def letta_rig() -> Iterator[Rig]:
    """A running Letta server with the scripted mock LLM, and a letta-client for it."""
    if os.environ.get("RLMEM_TEST_LETTA") != "1":
        pytest.skip("set RLMEM_TEST_LETTA=1 to run the tests against a real Letta server (letta rig)")
    if not (rig_dir() / "start.sh").is_file():
        pytest.fail(f"RLMEM_TEST_LETTA=1 but the letta rig is not at {rig_dir()} (set LETTA_RIG_DIR)")
    from letta_client import Letta

    started_here = not _letta_running()
    env = dict(os.environ)
    if started_here and "LETTA_RIG_PG_PORT" not in env:
        env["LETTA_RIG_PG_PORT"] = str(_free_port_below_ephemeral())
    _run("setup.sh", timeout=900, env=env)
    t0 = time.monotonic()
    _run("start.sh", timeout=300, env=env)
    urls = dict(
        line.split("=", 1) for line in (_home() / "run" / "env").read_text().splitlines() if "=" in line
    )
    rig = Rig(urls["LETTA_BASE_URL"], urls["LETTA_RIG_MOCK_URL"], Letta(base_url=urls["LETTA_BASE_URL"]))
    if started_here:
        print(f"letta rig started in {time.monotonic() - t0:.1f} s")
    try:
        yield rig
    finally:
        if started_here:
            _run("stop.sh", timeout=120, env=env)


@pytest.fixture()
def mock_script(letta_rig: Rig) -> Iterator[Any]:
    """``mock_script({...})`` sets the mock LLM's script; the default comes back afterwards."""

    def put(script: dict[str, Any]) -> None:
        letta_rig.mock("PUT", "/mock/script", script)

    try:
        yield put
    finally:
        letta_rig.mock("PUT", "/mock/script", {})


def make_agent(rig: Rig, name: str, **kwargs: Any) -> Any:
    """A fresh letta_v1_agent on the mock model, with human and persona blocks."""
    handle = next(m.handle for m in rig.client.models.list() if m.handle.endswith("/mock-gpt"))
    blocks = kwargs.pop("memory_blocks", [
        {"label": "human", "value": "Name: Ada", "limit": 2000},
        {"label": "persona", "value": "I am a helpful assistant.", "limit": 2000},
    ])
    return rig.client.agents.create(
        name=f"{name}-{time.time_ns()}", model=handle, embedding="openai/text-embedding-3-small",
        memory_blocks=blocks, **kwargs,
    )
