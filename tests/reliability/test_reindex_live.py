"""``rlmem reindex`` while ``rlmem serve`` runs on the same embedded store: the server's vector
and hybrid search keep answering, before, during and after the collection is dropped and
rebuilt by the other process, without a restart. Real processes; the hash embedder (the
vectors are not the point) and Chroma forced (``RLMEM_EXACT_SEARCH_MAX=0``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from reliability.harness import ROOT
from reliability.served import Served, cli, cli_env, cli_json

N = 3000


def _env() -> dict[str, str]:
    return cli_env(RLMEM_EMBED_RECALL="true", RLMEM_EMBED_BACKEND="hash", RLMEM_EXACT_SEARCH_MAX="0")


_FILL = f"""
import sys
from memory.manager import MemoryManager
mem = MemoryManager.open(sys.argv[1], background_embed=False)
mem.recall.append_many([{{'content': f'note {{i}} about the blue vault'}} for i in range({N})])
mem.embed_pending()
assert mem.pending() == 0
mem.close()
"""


def _filled(tmp_path: Path, env: dict[str, str]) -> Path:
    """A store of N recall messages, all embedded (in a child process with ``env``)."""
    store = tmp_path / "store"
    assert cli("init", str(store), env=env).returncode == 0
    subprocess.run([sys.executable, "-c", _FILL, str(store)], env=env, cwd=ROOT, check=True, timeout=300)
    return store


@pytest.mark.parametrize("reembed", [False, True])
def test_a_reindex_under_a_live_server_never_breaks_its_vector_search(tmp_path: Path, reembed: bool) -> None:
    env = _env()
    store = _filled(tmp_path, env)
    token = cli_json("token", "show", "--store", str(store))["token"]
    with Served(store, env=env) as server, httpx.Client(
        base_url=server.url, timeout=60, trust_env=False, headers={"Authorization": f"Bearer {token}"}
    ) as c:

        def ask(strict: bool = True) -> list[int]:
            codes = []
            for mode in ("vector", "hybrid"):
                r = c.post("/search", json={"query": "blue vault note 7", "mode": mode, "k": 5, "tier": "recall"})
                codes.append(r.status_code)
                if strict:
                    assert r.status_code == 200, r.text
                    assert len(r.json()["results"]) == 5, r.text
            return codes

        ask()
        reindex = subprocess.Popen([sys.executable, "-m", "agents.cli.main", "--store", str(store), "reindex",
                                    *(["--reembed"] if reembed else []), "--tier", "recall"], env=env, cwd=ROOT,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        during: list[int] = []
        while reindex.poll() is None:
            # From the SQL copies a plain reindex keeps, every answer is whole; a --reembed
            # drops them, so while it runs an answer may be partial (never a server error).
            during += ask(strict=not reembed)
        _, err = reindex.communicate()
        assert reindex.returncode == 0, err
        for _ in range(3):
            ask()
        r = c.post("/search", json={"query": "blue vault note 7", "mode": "vector", "k": 5, "tier": "recall"})
        assert len(r.json()["results"]) == 5, r.text
    assert during and set(during) == {200}, during


_CHECK = """
import sys
from memory.manager import MemoryManager
mem = MemoryManager.open(sys.argv[1], background_embed=False)
mem.embed_pending()
index = mem.queue.sources["recall"].index
print(mem.pending(), index.count(), flush=True)
mem.close()
"""


@pytest.mark.parametrize("delay_s", [0.3, 0.8, 1.5, 3.0])
def test_a_killed_reindex_is_finished_by_the_next_command(tmp_path: Path, delay_s: float) -> None:
    """SIGKILL ``rlmem reindex --reembed`` at several points (queueing, the collection reset,
    mid-embedding): every row stays in the collection or in the queue, so the next embedding
    command leaves every message with its vector. One vector per message here
    (``RLMEM_RECALL_PASSAGES=false``), so the collection's count is the number of messages."""
    import signal
    import time

    env = {**_env(), "RLMEM_RECALL_PASSAGES": "false"}
    store = _filled(tmp_path, env)
    proc = subprocess.Popen([sys.executable, "-m", "agents.cli.main", "--store", str(store), "reindex", "--reembed",
                             "--tier", "recall", "-q"], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay_s)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    out = subprocess.run([sys.executable, "-c", _CHECK, str(store)], env=env, cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    pending, count = map(int, out.stdout.split())
    assert (pending, count) == (0, N)
