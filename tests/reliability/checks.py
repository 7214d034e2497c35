"""Invariants the crash harness checks after every kill, and once more at the end.

Rules this module keeps:

* Every check returns a list of failures (readable sentences); an empty list means the
  store kept every promise. Checks never repair anything: they read, except the FTS5
  ``integrity-check`` command (a read-only check spelled as an INSERT).
* ``check_sql`` runs in the harness process after each kill (SQL only). ``check_vectors``
  opens Chroma and must run in a fresh process: an embedded Chroma client caches index
  state per process, so a long-lived checker would read its own stale copy.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

__all__ = ["check_sql", "check_vectors", "read_acks"]

HEAD = re.compile(r"^c(\d+) (?:n(\d+)|b(\d+) i(\d+)/(\d+))(?:\s|$)")


def read_acks(paths: list[Path]) -> list[dict[str, Any]]:
    """Every complete line of the acknowledgement files (a torn last line is ignored)."""
    out: list[dict[str, Any]] = []
    for p in paths:
        if not p.exists():
            continue
        raw = p.read_bytes()
        for line in raw.split(b"\n")[:-1]:  # the part after the last newline is torn
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return [a for a in out if "ready" not in a]


def _open(target: str) -> Any:
    from memory.db import Database

    return Database.open(target, busy_timeout_s=60)


def _integrity(db: Any, fts_tables: list[str]) -> list[str]:
    fails = []
    ic = db.integrity_check()
    if ic != "ok":
        fails.append(f"PRAGMA integrity_check: {ic}")
    if db.dialect == "sqlite":
        for t in fts_tables:
            try:
                with db.write() as conn:
                    conn.exec_driver_sql(
                        f"INSERT INTO {t}({t}, rank) VALUES ('integrity-check', 1)"
                    )
            except Exception as exc:
                fails.append(f"FTS index {t} disagrees with its table: {exc}")
    return fails


def _batches(texts: dict[int, str], what: str) -> list[str]:
    """Unique texts, only generated ones, complete batches, ids in insertion order."""
    fails = []
    dups = [t[:60] for t, n in Counter(texts.values()).items() if n > 1]
    if dups:
        fails.append(f"{len(dups)} {what} stored more than once, e.g. {dups[0]!r}")
    groups: dict[tuple[int, int], list[int]] = defaultdict(list)
    last: tuple[int, int, int] = (0, 0, 0)
    for i in sorted(texts):
        m = HEAD.match(texts[i])
        if m is None:
            fails.append(f"{what} {i} holds text nobody wrote: {texts[i][:60]!r}")
            continue
        a = int(m[1])
        if m[2] is not None:
            key = (a, int(m[2]), 0)
        else:
            key = (a, int(m[3]), int(m[4]))
            groups[(a, int(m[3]))].append(int(m[5]))
        if key <= last:
            fails.append(f"{what} ids are not in insertion order at id {i}")
        last = key
    for (a, b), sizes in groups.items():
        if len(sizes) != sizes[0]:
            fails.append(
                f"batch b{b} of attempt {a} is half-written: {len(sizes)} of {sizes[0]} {what}s"
            )
    return fails


def _acked(texts: dict[int, str], acks: list[dict[str, Any]], what: str) -> list[str]:
    fails = []
    for a in acks:
        for i, c in zip(a.get("ids", []), a.get("cs", []), strict=False):
            got = texts.get(i)
            if got != c:
                fails.append(
                    f"acknowledged {what} {i} is {'missing' if got is None else 'changed'}"
                )
    return fails


def _recall(db: Any, acks: list[dict[str, Any]]) -> list[str]:
    with db.read() as conn:
        texts = {
            int(r[0]): r[1] for r in conn.exec_driver_sql("SELECT id, content FROM recall_messages")
        }
    return _batches(texts, "message") + _acked(texts, acks, "message")


def _archival(db: Any, acks: list[dict[str, Any]]) -> list[str]:
    from memory.text.chunking import chunk_text

    fails = []
    with db.read() as conn:
        rows = conn.exec_driver_sql(
            "SELECT id, text, source, content_hash, tags FROM archival_chunks"
        ).all()
        tag_rows = conn.exec_driver_sql("SELECT chunk_id, tag FROM archival_tags").all()
    tags: dict[int, set[str]] = defaultdict(set)
    for cid, t in tag_rows:
        tags[int(cid)].add(t)
    inserted: dict[int, str] = {}
    by_source: dict[str, Counter[str]] = defaultdict(Counter)
    for cid, body, source, h, tag_json in rows:
        if hashlib.sha256(body.encode()).hexdigest() != h:
            fails.append(f"chunk {cid} text does not match its content hash (half-written)")
        if set(json.loads(tag_json)) != tags.get(int(cid), set()):
            fails.append(f"chunk {cid} tags column and tag rows disagree")
        if source is None:
            inserted[int(cid)] = body
        else:
            by_source[source][body] += 1
    fails += _batches(inserted, "chunk") + _acked(inserted, acks, "chunk")
    acked_files = {a["file"] for a in acks if "file" in a}
    for source, found in by_source.items():
        p = Path(source)
        expected = Counter(
            c.text for c in chunk_text(p.read_text(encoding="utf-8"), chunk_tokens=64, overlap=8)
        )
        if any(n > 1 for n in found.values()):
            fails.append(f"{p.name}: a chunk is stored twice")
        if not set(found) <= set(expected):
            fails.append(f"{p.name}: a stored chunk is not a chunk of the file")
        if source in acked_files and set(found) != set(expected):
            fails.append(
                f"{p.name}: ingest returned but {len(set(expected) - set(found))} chunks are missing"
            )
    for f in acked_files - set(by_source):
        fails.append(f"{Path(f).name}: ingest returned but no chunk of it is stored")
    return fails


def _agent(db: Any, acks: list[dict[str, Any]]) -> list[str]:
    from memory.blocks import WorkingMemory

    fails = []
    with db.read() as conn:
        msgs = conn.exec_driver_sql(
            "SELECT id, role, content FROM recall_messages WHERE agent_id = 'a' ORDER BY id"
        ).all()
        row = conn.exec_driver_sql(
            "SELECT buffer_start_id FROM rlm_agents WHERE agent_id = 'a'"
        ).first()
        facts = [
            r[0]
            for r in conn.exec_driver_sql(
                "SELECT text FROM archival_chunks WHERE text LIKE 'fact %'"
            )
        ]
    users = Counter(c for _, role, c in msgs if role == "user")
    if any(n > 1 for n in users.values()):
        fails.append("a user message is stored twice")
    if any(n > 1 for n in Counter(facts).values()):
        fails.append("a fact the agent stored is in archival twice")
    ids_of = {c: i for i, role, c in msgs if role == "user"}
    replies = {c: i for i, role, c in msgs if role == "assistant"}
    for a in acks:
        uid = ids_of.get(a["user"])
        rid = replies.get(a["reply"])
        if uid is None or rid is None or rid < uid:
            fails.append(f"step {a['step']} returned but its user message or reply is missing")
        missing = set(a["ids"]) - {i for i, _, _ in msgs}
        if missing:
            fails.append(f"step {a['step']}: messages {sorted(missing)} are missing")
    if acks and row is None:
        fails.append("the agent row is gone")
    elif row is not None and msgs and int(row[0]) > msgs[-1][0] + 1:
        fails.append(f"buffer_start_id {row[0]} points past the last message {msgs[-1][0]}")
    if row is not None:
        for b in WorkingMemory(db, "a").list():
            if b.limit is not None and len(b.value) > b.limit:
                fails.append(
                    f"block {b.label} holds {len(b.value)} characters over its limit {b.limit}"
                )
    return fails


def _queue(db: Any) -> list[str]:
    with db.read() as conn:
        orphans = conn.exec_driver_sql(
            "SELECT count(*) FROM rlmem_embed_queue q WHERE (q.tier = 'recall' AND NOT EXISTS"
            " (SELECT 1 FROM recall_messages m WHERE m.id = q.item_id)) OR (q.tier = 'archival'"
            " AND NOT EXISTS (SELECT 1 FROM archival_chunks c WHERE c.id = q.item_id))"
        ).scalar_one()
    return [f"{orphans} embedding-queue entries point at rows that do not exist"] if orphans else []


def check_sql(scenario: str, target: str, acks: list[dict[str, Any]]) -> list[str]:
    """The SQL-side invariants of ``scenario``'s store at ``target`` (path or URL)."""
    try:
        db = _open(target)
    except Exception as exc:
        return [f"the store does not open: {type(exc).__name__}: {exc}"]
    try:
        tables = _tables(db)
        fails = _integrity(db, [t for t in ("recall_fts", "archival_fts") if t in tables])
        if "recall_messages" not in tables:
            return fails + ([f"{len(acks)} acknowledged calls but no tables"] if acks else [])
        if scenario.startswith("recall"):
            fails += _recall(db, acks)
        elif scenario.startswith("archival"):
            fails += (
                _archival(db, acks) if "archival_chunks" in tables else ["archival tables missing"]
            )
        elif scenario == "agent_step" and "rlm_agents" in tables:
            fails += _agent(db, acks)
        if "rlmem_embed_queue" in tables and "archival_chunks" in tables:
            fails += _queue(db)
        return fails
    finally:
        db.close()


def _tables(db: Any) -> set[str]:
    from sqlalchemy import inspect

    return set(inspect(db.engine).get_table_names())


def check_vectors(store: Path, *, model: bool = False) -> tuple[list[str], dict[str, int]]:
    """Reopen the store with Chroma: pending embeddings complete, every SQL row has its own
    vector, and ``reindex`` rebuilds the same set. Returns (failures, counts)."""
    from memory.manager import MemoryManager
    from memory.vectors.embeddings import HashEmbedder

    fails: list[str] = []
    info: dict[str, int] = {}
    mem = MemoryManager.open(
        store, embedder=None if model else HashEmbedder(), background_embed=False
    )
    try:
        info["pending_at_open"] = mem.pending()
        info["embedded_at_open"] = mem.embed_pending()
        if mem.pending():
            fails.append(f"{mem.pending()} embeddings still pending after embed_pending()")
        for when in ("after reopen", "after reindex"):
            if when == "after reindex":
                info.update({f"reindexed_{k}": v for k, v in mem.reindex().items()})
            fails += [f"{when}: {f}" for f in _agree(mem, model)]
    finally:
        mem.close()
    return fails, info


def _agree(mem: Any, model: bool) -> list[str]:
    import numpy as np

    from memory.vectors.chroma import item_of, part_id

    fails = []
    with mem.db.read() as conn:
        sql = {
            "archival": dict(conn.exec_driver_sql("SELECT id, text FROM archival_chunks").all()),
            "recall": dict(conn.exec_driver_sql("SELECT id, content FROM recall_messages").all()),
        }
    indexes = {"archival": mem.archival.index, "recall": mem.recall_search.index}
    for tier, rows in sql.items():
        index = indexes[tier]
        got = index.collection.get(include=[])
        have = {item_of(i) for i in got["ids"]}
        missing, extra = set(rows) - have, have - set(rows)
        if missing or extra:
            fails.append(
                f"{tier}: Chroma lacks {len(missing)} and has {len(extra)} extra vectors of {len(rows)} rows"
            )
        sample = sorted(set(rows) & have)[-200:]
        if sample:
            # Every passage of a sampled row is the embedding of that passage of its text.
            source = mem.queue.sources[tier]
            keys = [(i, n, p) for i in sample for n, p in enumerate(source.pieces(rows[i]))]
            ids = [part_id(i, n) for i, n, _ in keys]
            res = index.collection.get(ids=ids, include=["embeddings"])
            stored = {k: np.asarray(v) for k, v in zip(res["ids"], res["embeddings"], strict=True)}
            fresh = mem.embedder.embed([p for _, _, p in keys])
            bad = [
                k
                for k, v in zip(ids, fresh, strict=True)
                if k not in stored or float(stored[k] @ np.asarray(v)) < 0.999
            ]
            if bad:
                fails.append(
                    f"{tier}: {len(bad)} vectors are not the embedding of their row's text (e.g. id {bad[0]})"
                )
            sampled, wanted = set(sample), set(ids)
            if any(item_of(k) in sampled and k not in wanted for k in got["ids"]):
                fails.append(f"{tier}: Chroma holds passages its rows no longer have")
    return fails
