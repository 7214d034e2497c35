"""The probes of a served store, as real processes, each run many times and counted.

Every scenario returns a ``Row``: attempts, acknowledged writes checked, and what went wrong
among them: lost (an acknowledged message, or after the heal its vector, missing),
duplicated, corrupted (a text changed, an integrity check failing, a reader seeing
uncommitted rows), breaches (a hostile request that was served: data read or written),
unclear errors (a refusal without a clear message: a 500, a raw exception text, a busy
error where none is due, a non-zero exit that is not the expected one) and crashes (exit 134
or another signal, a traceback, no reply within the deadline). Expected: 0 in every column
but attempts and acknowledged.

The probes are the ones of ``tests/reliability`` (their stores, helpers, request lists and
hostile values), run here at more attempts; ``counts`` sets how many per scenario.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from reliability.disk import queued, stored_messages
from reliability.harness import ROOT
from reliability.served import Served, WriteLock, cli, cli_env, cli_json

from memory.db import Database
from memory.manager import MemoryManager
from memory.vectors.embeddings import HashEmbedder

__all__ = ["FULL", "QUICK", "SCENARIOS", "Row"]


@dataclass
class Row:
    scenario: str
    attempts: int = 0
    acked: int = 0
    lost: int = 0
    duplicated: int = 0
    corrupted: int = 0
    breaches: int = 0
    unclear: int = 0
    crashes: int = 0
    seconds: float = 0.0
    note: str = ""
    examples: list[str] | None = None

    def bad(self, column: str, what: str, n: int = 1) -> None:
        setattr(self, column, getattr(self, column) + n)
        self.examples = (self.examples or [])
        if len(self.examples) < 5:
            self.examples.append(f"{column}: {what[:300]}")


def crashed(status: int | None, err: str) -> bool:
    return status in (134, 139, -6, -11) or "Traceback" in err or "terminate called" in err


def _check_acked(row: Row, store: Path, acked: dict[int, str], *, count: bool = True) -> None:
    """Every acknowledged message with its text, each text stored as often as it was
    acknowledged (no more); the store's integrity check."""
    rows = stored_messages(store)
    row.acked += len(acked) if count else 0
    for i, text in acked.items():
        if i not in rows:
            row.bad("lost", f"message {i}")
        elif rows[i] != text:
            row.bad("corrupted", f"message {i}: {rows[i][:60]!r} != {text[:60]!r}")
    stored, told = Counter(rows.values()), Counter(acked.values())
    dups = sum(max(0, stored[t] - n) for t, n in told.items())
    if dups:
        row.bad("duplicated", f"{dups} repeated texts", dups)
    db = Database.open(store / "memory.db", read_only=True)
    try:
        if db.integrity_check() != "ok":
            row.bad("corrupted", "integrity check")
    finally:
        db.close()


def _fresh_store(work: Path, name: str, messages: Sequence[tuple[str, str, str]] = ()) -> Path:
    """``rlmem init`` and ``(agent, session, text)`` messages (embedding off)."""
    store = work / name
    assert cli("init", str(store)).returncode == 0
    if messages:
        with MemoryManager.open(store, embedder=HashEmbedder(), background_embed=False, embed_recall=False) as m:
            for agent, session, text in messages:
                m.recall.append(text, agent_id=agent, session_id=session)
    return store


# --- reindex: killed, and under a live server ---------------------------------------------


def kill_reindex(work: Path, attempts: int, seed: int) -> Row:
    """SIGKILL ``rlmem reindex`` (plain and ``--reembed``) at seeded moments from start-up
    through the queueing, the collection reset and the rebuild; after each kill a fresh
    process embeds what is queued, and every message must have its vector (one each)."""
    from reliability.test_reindex_live import _CHECK, N, _env, _filled

    row = Row("kill `rlmem reindex`")
    env = {**_env(), "RLMEM_RECALL_PASSAGES": "false"}
    store = _filled(work / "kill-reindex", env)
    want = stored_messages(store)
    rng = random.Random(seed)
    at_reset = 0
    for a in range(attempts):
        # spread over 0.2 .. 4 s (imports, queueing, reset, rebuild); every third attempt is
        # killed instead once the queue holds every row, which is when the reset starts
        delay = 0.2 + 3.8 * (a + rng.random()) / attempts
        cmd = [sys.executable, "-m", "agents.cli.main", "--store", str(store), "reindex", "-q", "--tier", "recall",
               *(["--reembed"] if a % 2 == 0 else [])]
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if a % 3 == 2:
            deadline = time.monotonic() + 60
            while proc.poll() is None and time.monotonic() < deadline and queued(store) < N:
                time.sleep(0.002)
            time.sleep(rng.uniform(0.0, 0.05))
            at_reset += 1
        else:
            time.sleep(delay)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=60)
        row.attempts += 1
        if proc.returncode not in (0, -9):
            row.bad("crashes" if crashed(proc.returncode, err) else "unclear", f"exit {proc.returncode}: {err}")
        out = subprocess.run([sys.executable, "-c", _CHECK, str(store)], env=env, cwd=ROOT, capture_output=True,
                             text=True, timeout=600)
        if out.returncode != 0:
            row.bad("crashes" if crashed(out.returncode, out.stderr) else "unclear", f"next open: {out.stderr}")
            continue
        pending, count = map(int, out.stdout.split())
        row.acked += N
        if count < N or pending:
            row.bad("lost", f"after kill {a} at {delay:.2f} s: {N - count} vectors missing, {pending} pending",
                    max(N - count, pending))
        if count > N:
            row.bad("duplicated", f"after kill {a}: {count - N} extra vectors", count - N)
    _check_acked(row, store, want, count=False)
    row.note = (f"{N} messages: every one's vector checked after each kill (alternately plain and --reembed; "
                f"{at_reset} kills as the collection reset starts), texts at the end")
    return row


def reindex_live(work: Path, attempts: int, seed: int) -> Row:
    """``rlmem reindex`` (alternately ``--reembed``) while ``rlmem serve`` answers vector and
    hybrid searches and takes writes: no search error, every write kept, and after the last
    rebuild full answers and every message's vector."""
    from reliability.test_reindex_live import _CHECK, N, _env, _filled

    row = Row("reindex under a live `rlmem serve`")
    env = {**_env(), "RLMEM_RECALL_PASSAGES": "false"}
    store = _filled(work / "reindex-live", env)
    acked = stored_messages(store)
    token = cli_json("token", "show", "--store", str(store))["token"]
    searches = partial = 0
    with Served(store, env=env) as server, httpx.Client(base_url=server.url, timeout=60, trust_env=False,
                                                        headers={"Authorization": f"Bearer {token}"}) as c:

        def ask(strict: bool) -> None:
            nonlocal searches, partial
            for mode in ("vector", "hybrid"):
                searches += 1
                try:
                    r = c.post("/search", json={"query": "blue vault note 7", "mode": mode, "k": 5, "tier": "recall"})
                except httpx.TransportError as exc:
                    row.bad("crashes", f"/search {mode}: no reply ({exc})")
                    continue
                if r.status_code != 200:
                    row.bad("unclear", f"/search {mode}: {r.status_code} {r.text}")
                elif len(r.json()["results"]) < 5:
                    partial += 1
                    if strict:
                        row.bad("lost", f"/search {mode}: {len(r.json()['results'])} of 5 results")

        for a in range(attempts):
            reembed = a % 2 == 1
            proc = subprocess.Popen([sys.executable, "-m", "agents.cli.main", "--store", str(store), "reindex", "-q",
                                     "--tier", "recall", *(["--reembed"] if reembed else [])],
                                    env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            j = 0
            while proc.poll() is None:
                ask(strict=not reembed)  # a --reembed drops the SQL copies: answers meanwhile may be partial
                j += 1
                text = f"live write {a}.{j}"
                r = c.post("/messages", json={"content": text})
                if r.status_code == 201:
                    acked[int(r.json()["id"])] = text
                else:
                    row.bad("unclear", f"POST /messages: {r.status_code} {r.text}")
            err = proc.stderr.read() if proc.stderr else ""
            row.attempts += 1
            if proc.returncode != 0:
                row.bad("crashes" if crashed(proc.returncode, err) else "unclear", f"reindex exit {proc.returncode}: {err}")
            ask(strict=True)
    _check_acked(row, store, acked)
    out = subprocess.run([sys.executable, "-c", _CHECK, str(store)], env=env, cwd=ROOT, capture_output=True,
                         text=True, timeout=600)
    pending, count = map(int, out.stdout.split()) if out.returncode == 0 else (-1, -1)
    if (pending, count) != (0, len(acked)):
        row.bad("lost", f"after the last reindex: {pending} pending, {count} vectors for {len(acked)} messages")
    row.note = f"{searches} searches during and after ({partial} partial, all while a --reembed ran); {N} messages + live writes"
    return row


# --- imports racing ------------------------------------------------------------------------


def import_race(work: Path, attempts: int, seed: int) -> Row:
    """Two ``rlmem import`` of one transcript file started together (alternately with and
    without record ids): every record stored exactly once."""
    row = Row("two imports of one file racing")
    store = _fresh_store(work, "import-race")
    per = 200
    for a in range(attempts):
        path = work / f"race-{a}.jsonl"
        lines = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"race {a} line {i} teal",
                  "session_id": f"race{a}", **({"id": f"r{a}-{i}"} if a % 2 else {})} for i in range(per)]
        path.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
        cmd = [sys.executable, "-m", "agents.cli.main", "import", str(path), "--no-embed", "--store", str(store)]
        procs = [subprocess.Popen(cmd, env=cli_env(), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  text=True) for _ in range(2)]
        for p in procs:
            _, err = p.communicate(timeout=300)
            if p.returncode != 0:
                row.bad("crashes" if crashed(p.returncode, err) else "unclear", f"import exit {p.returncode}: {err}")
        row.attempts += 1
        rows = [t for t in stored_messages(store).values() if t.startswith(f"race {a} line ")]
        row.acked += per
        lost = per - len(set(rows))
        if lost:
            row.bad("lost", f"race {a}: {lost} records missing", lost)
        if len(rows) > len(set(rows)):
            row.bad("duplicated", f"race {a}: {len(rows) - len(set(rows))} records twice", len(rows) - len(set(rows)))
    _check_acked(row, store, {})
    row.note = f"{per} records per file; odd races with record ids, even ones keyed by content hash"
    return row


# --- readers against a held write lock -----------------------------------------------------

READ_COMMANDS = [["stats", "--json"], ["grep", "deploy key"], ["search", "deploy key", "--mode", "text"],
                 ["sessions"], ["blocks", "list"], ["trajectory", "list"], ["agents"]]


def readers(work: Path, attempts: int, seed: int) -> Row:
    """Read commands as real processes (busy timeout 30 s) while another process holds a
    write transaction with uncommitted rows: each answers, quickly, with committed data only."""
    row = Row("readers against a held write lock")
    committed = 50
    store = _fresh_store(work, "readers", [("default", f"s{i % 3}", f"committed message {i} about the deploy key")
                                           for i in range(committed)])
    acked = stored_messages(store)
    env = cli_env(RLMEM_BUSY_TIMEOUT_S="30")
    worst = 0.0
    with WriteLock(store, work) as lock:
        for a in range(attempts):
            cmd = READ_COMMANDS[a % len(READ_COMMANDS)]
            t0 = time.monotonic()
            p = cli(*cmd, "--store", str(store), env=env, timeout=120)
            took = time.monotonic() - t0
            worst = max(worst, took)
            row.attempts += 1
            if crashed(p.returncode, p.stderr):
                row.bad("crashes", f"{cmd}: exit {p.returncode}: {p.stderr}")
            elif p.returncode != 0 or "busy" in p.stderr or took > 20:
                row.bad("unclear", f"{cmd}: exit {p.returncode} after {took:.1f} s: {p.stderr}")
            if "uncommitted" in p.stdout:
                row.bad("corrupted", f"{cmd} showed uncommitted rows")
            if cmd[0] == "stats" and p.returncode == 0 and json.loads(p.stdout)["messages"] != committed:
                row.bad("corrupted", f"stats counted {json.loads(p.stdout)['messages']} messages")
        if not lock.holding:
            row.bad("unclear", "the writer lost its lock")
    _check_acked(row, store, acked)
    row.note = f"{len(READ_COMMANDS)} read commands in turn; slowest {worst:.1f} s (a reader that waited would take 30 s)"
    return row


# --- the served store: DNS rebinding, CSRF, scoped tokens ----------------------------------


def _served_store(work: Path, name: str) -> tuple[Path, dict[str, str]]:
    from reliability.test_served_store import fill_served_store

    store = work / name
    fill_served_store(store)
    tokens = {"admin": cli_json("token", "show", "--store", str(store))["token"]}
    tokens["alice"] = cli_json("token", "create", "--agent", "alice", "--store", str(store))["token"]
    tokens["alice_ro"] = cli_json("token", "create", "--agent", "alice", "--read-only", "--store", str(store))["token"]
    tokens["bob"] = cli_json("token", "create", "--agent", "bob", "--store", str(store))["token"]
    return store, tokens


def _request(row: Row, c: httpx.Client, method: str, path: str, **kw: Any) -> httpx.Response | None:
    row.attempts += 1
    try:
        r = c.request(method, path, **kw)
    except httpx.TransportError as exc:
        row.bad("crashes", f"{method} {path}: no reply ({exc})")
        return None
    if r.status_code >= 500 and r.status_code not in (503, 507):
        row.bad("unclear", f"{method} {path}: {r.status_code} {r.text}")
    elif r.status_code >= 400:
        try:
            if not str(r.json()["error"]["message"]).strip():
                row.bad("unclear", f"{method} {path}: {r.status_code} with no message")
        except (ValueError, KeyError, TypeError):
            row.bad("unclear", f"{method} {path}: {r.status_code} not a JSON error: {r.text[:100]}")
    return r


def rebinding_csrf(work: Path, attempts: int, seed: int) -> Row:
    """Requests a web page could make: foreign ``Host`` names (DNS rebinding), with the token
    too, and cross-site writes (``text/plain``, forms, ``Origin: evil``/``null``,
    ``Sec-Fetch-Site: cross-site``), with and without the token. ``attempts`` rounds of all."""
    from reliability.test_served_store import BOB_SECRET

    row = Row("DNS rebinding and CSRF requests")
    store, tokens = _served_store(work, "rebinding")
    acked = stored_messages(store)
    hosts = ["evil.example", "evil.example:{port}", "localhost.evil.example", "127.0.0.1.nip.io:{port}",
             "LOCALHOST.attacker.test"]
    reads = [("POST", "/grep", {"pattern": "deploy key"}), ("POST", "/search", {"query": "deploy key", "mode": "text"}),
             ("GET", "/messages/2", None), ("GET", "/stats", None), ("GET", "/blocks", None)]
    bodies = [("text/plain", b'{"content": "csrf"}'), ("application/x-www-form-urlencoded", b"content=csrf"),
              ("multipart/form-data; boundary=x",
               b'--x\r\nContent-Disposition: form-data; name="content"\r\n\r\ncsrf\r\n--x--\r\n')]
    with Served(store) as server:
        fronts = [{"Origin": "http://evil.example"}, {"Sec-Fetch-Site": "cross-site"}, {"Origin": "null"}]
        for _ in range(attempts):
            for host in hosts:
                with httpx.Client(base_url=server.url, timeout=30, trust_env=False,
                                  headers={"Authorization": f"Bearer {tokens['admin']}",
                                           "Host": host.format(port=server.port)}) as c:
                    for method, path, data in reads:
                        r = _request(row, c, method, path, json=data)
                        if r is not None and (r.status_code != 421 or BOB_SECRET in r.text):
                            row.bad("breaches", f"Host {host}: {method} {path} -> {r.status_code}")
            for token in (None, tokens["admin"]):
                auth = {"Authorization": f"Bearer {token}"} if token else {}
                with httpx.Client(base_url=server.url, timeout=30, trust_env=False, headers=auth) as c:
                    for ctype, raw in bodies:
                        for path in ("/messages", "/archival"):
                            for front in fronts:
                                r = _request(row, c, "POST", path, content=raw, headers={"Content-Type": ctype, **front})
                                if r is not None and r.status_code < 400:
                                    row.bad("breaches", f"cross-site {ctype} {path} {front} -> {r.status_code}")
                    r = _request(row, c, "PUT", "/blocks/notes", content=b'{"value": "csrf"}',
                                 headers={"Content-Type": "text/plain", "Origin": "http://evil.example"})
                    if r is not None and r.status_code < 400:
                        row.bad("breaches", f"cross-site PUT /blocks/notes -> {r.status_code}")
    rows = stored_messages(store)
    if any("csrf" in t for t in rows.values()):
        row.bad("breaches", "a cross-site write was stored")
    _check_acked(row, store, acked)
    row.note = f"{len(hosts)} host names x {len(reads)} routes; {len(bodies)} content types x 2 routes x 3 origins, with and without the token"
    return row


def token_matrix(work: Path, attempts: int, seed: int) -> Row:
    """Agent A's tokens (read-write and read-only) against agent B's memory over every route
    and tool of ``tests/reliability/test_served_store.py`` (``X-Agent-Id`` and ``?agent_id=``
    naming B, or nothing), ``attempts`` rounds; then B's memory unchanged, A's writes kept."""
    from reliability.test_served_store import BOB_BLOCK, BOB_SECRET, READS, WRITES

    row = Row("scoped-token matrix (A's token vs B's memory)")
    store, tokens = _served_store(work, "tokens")
    acked = stored_messages(store)
    leaks = (BOB_SECRET, BOB_BLOCK, "second message")

    def client(server: Served, who: str, header: str | None) -> httpx.Client:
        h = {"Authorization": f"Bearer {tokens[who]}", **({"X-Agent-Id": header} if header else {})}
        return httpx.Client(base_url=server.url, timeout=60, trust_env=False, headers=h)

    def bob(server: Served) -> tuple[Any, ...]:
        with client(server, "bob", None) as c:
            return c.get("/blocks/notes").json()["value"], c.post("/grep", json={"pattern": "second|deploy"}).text

    with Served(store) as server:
        bob_before = bob(server)
        for _ in range(attempts):
            for who in ("alice", "alice_ro"):
                for header in (None, "bob", "alice,bob", "Bob"):
                    with client(server, who, header) as c:
                        for method, path, body in READS:
                            for params in ({}, {"agent_id": "bob"}):
                                r = _request(row, c, method, path, json=body, params=params)
                                if r is None:
                                    continue
                                if any(x in r.text for x in leaks):
                                    row.bad("breaches", f"{who} {header} {method} {path} {params}: B's data")
                                elif (header or params) and r.status_code < 400:
                                    row.bad("breaches", f"{who} {header} {method} {path} {params}: {r.status_code}")
            for header in (None, "bob"):
                for method, path, body in WRITES:
                    with client(server, "alice_ro", header) as c:
                        r = _request(row, c, method, path, json=body)
                        if r is not None and r.status_code != 403:
                            row.bad("breaches", f"read-only {method} {path}: {r.status_code}")
                    with client(server, "alice", header) as c:
                        r = _request(row, c, method, path, json=body)
                        if r is None:
                            continue
                        if header == "bob" and r.status_code != 403:
                            row.bad("breaches", f"alice as bob {method} {path}: {r.status_code}")
                        if path == "/messages" and r.status_code == 201:
                            acked[int(r.json()["id"])] = str(body["content"])
        if bob(server) != bob_before:
            row.bad("breaches", "B's memory changed")
    _check_acked(row, store, acked)
    row.note = f"{len(READS)} reads x 2 ways x 4 headers x 2 tokens + {len(WRITES)} writes x 2 headers x 2 tokens per round"
    return row


# --- MCP -----------------------------------------------------------------------------------


def mcp_hostile(work: Path, attempts: int, seed: int) -> Row:
    """Hostile arguments for every tool of a real ``rlmem mcp`` stdio session (the values of
    ``tests/reliability/test_mcp_hostile.py``), each call under a deadline; ``attempts``
    calls at most (a seeded sample when fewer than all). Silence is a crash."""
    import anyio
    from mcp import ClientSession
    from mcp.shared.exceptions import MCPError
    from reliability.test_mcp_hostile import DEADLINE_S, _argument_sets, raw_stdio

    row = Row("MCP hostile arguments, deadline per call")
    store = _fresh_store(work, "mcp", [("default", "s1", "My favourite colour is teal.")])
    acked = stored_messages(store)
    argv = [sys.executable, "-m", "agents.cli.main", "mcp", "--store", str(store)]
    rng = random.Random(seed)
    errors = [0, 0]

    async def run() -> None:
        async with raw_stdio(argv) as (read, write), ClientSession(read, write) as s:
            with anyio.fail_after(DEADLINE_S):
                await s.initialize()
            calls = [(t.name, args) for t in (await s.list_tools()).tools for args in _argument_sets(t.input_schema)]
            if attempts < len(calls):
                calls = rng.sample(calls, attempts)
            for name, args in calls:
                row.attempts += 1
                try:
                    with anyio.fail_after(DEADLINE_S):
                        result = await s.call_tool(name, args)
                except TimeoutError:
                    row.bad("crashes", f"{name} {args!r:.80}: no reply in {DEADLINE_S} s")
                    continue
                except MCPError:
                    errors[1] += 1
                    continue
                if result.is_error:
                    errors[0] += 1
                    text = str(getattr(result.content[0], "text", "")) if result.content else ""
                    if not text.strip() or "Traceback" in text:
                        row.bad("unclear", f"{name} {args!r:.80}: {text[:200]!r}")
            with anyio.fail_after(DEADLINE_S):
                ok = await s.call_tool("memory_grep", {"pattern": "teal"})
            if ok.is_error:
                row.bad("crashes", "the session stopped answering")

    try:
        anyio.run(run)
    except Exception as exc:  # the session itself failed: the server died or stopped answering
        row.bad("crashes", f"session failed: {type(exc).__name__}: {exc}")
    _check_acked(row, store, acked)
    row.note = f"{errors[0]} error results, {errors[1]} protocol errors, the rest answered"
    return row


# --- a real full filesystem ----------------------------------------------------------------


def disk_full(work: Path, attempts: int, seed: int) -> Row:
    """On a 64 MB tmpfs: writes over HTTP and ``rlmem log`` on the full disk (507 / exit 1
    naming the disk, nothing stored), then space back; and ``rlmem reindex --reembed`` with the
    disk filled under it half-way (exit 1 naming the disk; the next open completes the
    vectors). ``attempts`` of each."""
    from reliability.disk import CannotMount, http_on_full_disk, reindex_while_filling, tmpfs

    row = Row("a real full filesystem (tmpfs)")
    try:
        for a in range(attempts):
            with tmpfs(work / f"disk-http-{a}") as disk:
                got = http_on_full_disk(disk)
                row.attempts += len(got.statuses) + 1
                store = str(disk / "store")
                for status, msg in zip([s for s in got.statuses if s != 201], got.messages, strict=False):
                    if status != 507 or store not in msg:
                        row.bad("unclear", f"HTTP {status}: {msg}")
                if 507 not in got.statuses:
                    row.bad("unclear", f"no write refused on a full disk: {got.statuses}")
                if crashed(got.cli_status, got.cli_error):
                    row.bad("crashes", f"rlmem log: exit {got.cli_status}: {got.cli_error}")
                elif got.cli_status != 1 or store not in got.cli_error:
                    row.bad("unclear", f"rlmem log: exit {got.cli_status}: {got.cli_error}")
                if got.after != 201:
                    row.bad("unclear", f"a write after space returned: {got.after}")
                row.acked += len(got.acked)
                for i, head in got.acked.items():
                    if not got.stored.get(i, "").startswith(head):
                        row.bad("lost", f"message {i}")
                if got.integrity != "ok":
                    row.bad("corrupted", "integrity check")
                if any("on a full disk" in v for k, v in got.stored.items() if k not in got.acked):
                    row.bad("corrupted", "a refused write was stored")
            with tmpfs(work / f"disk-reindex-{a}") as disk:
                r = reindex_while_filling(disk)
                row.attempts += 1
                if crashed(r.status, r.error) or r.status == -9:
                    row.bad("crashes", f"reindex: exit {r.status}: {r.error}")
                elif r.status != 1 or str(disk) not in r.error or len(r.error.strip().splitlines()) != 1:
                    row.bad("unclear", f"reindex (filled under it: {r.started}): exit {r.status}: {r.error}")
                row.acked += 2000
                if r.messages != 2000 or r.intact != 2000:
                    row.bad("lost", f"{2000 - r.intact} messages", 2000 - max(r.intact, 0))
                if r.pending != 0 or r.vectors != 2000:
                    row.bad("lost", f"after space returned: {r.pending} pending, {r.vectors} vectors of 2000")
                if r.integrity != "ok":
                    row.bad("corrupted", "integrity check")
    except CannotMount as exc:
        row.note = f"skipped: {exc}"
        return row
    row.note = "per attempt: 11 writes on the full disk + `rlmem log`, then a reindex filled half-way (2000 messages)"
    return row


Scenario = Callable[[Path, int, int], Row]
SCENARIOS: dict[str, Scenario] = {
    "kill_reindex": kill_reindex,
    "reindex_live": reindex_live,
    "import_race": import_race,
    "readers": readers,
    "rebinding_csrf": rebinding_csrf,
    "token_matrix": token_matrix,
    "mcp_hostile": mcp_hostile,
    "disk_full": disk_full,
}
QUICK = {"kill_reindex": 3, "reindex_live": 2, "import_race": 3, "readers": 7, "rebinding_csrf": 1,
         "token_matrix": 1, "mcp_hostile": 120, "disk_full": 1}
FULL = {"kill_reindex": 20, "reindex_live": 6, "import_race": 30, "readers": 35, "rebinding_csrf": 5,
        "token_matrix": 3, "mcp_hostile": 100_000, "disk_full": 3}


def run(names: list[str], counts: dict[str, int], seed: int, work: Path, log: bool = True) -> list[Row]:
    out = []
    for name in names:
        t0 = time.perf_counter()
        if log:
            print(f"{name}: {counts[name]} attempts", file=sys.stderr, flush=True)
        (work / name).mkdir(parents=True, exist_ok=True)
        try:
            row = SCENARIOS[name](work / name, counts[name], seed)
        except Exception as exc:  # a probe that could not run is reported, not hidden
            row = Row(name, note=f"the probe failed: {type(exc).__name__}: {exc}"[:300])
            row.bad("crashes", row.note)
        row.seconds = time.perf_counter() - t0
        if log:
            for e in row.examples or []:
                print(f"  {name}: {e}", file=sys.stderr, flush=True)
        out.append(row)
    return out


def table(rows: list[Row]) -> str:
    lines = ["| scenario | attempts | acknowledged writes checked | lost | duplicated | corrupted | breaches "
             "| unclear errors | crashes | time | notes |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.scenario} | {r.attempts} | {r.acked} | {r.lost} | {r.duplicated} | {r.corrupted} "
                     f"| {r.breaches} | {r.unclear} | {r.crashes} | {r.seconds:.0f} s | {r.note} |")
    return "\n".join(lines)
