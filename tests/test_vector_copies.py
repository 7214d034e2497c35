"""The SQL copies of vectors: stored float16, old float32 rows still read, search unchanged."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import text
from transcript_gen import write_chat

from agents.integrations.transcripts import import_transcript
from memory.config import MemoryConfig
from memory.db import Database
from memory.manager import MemoryManager
from memory.vectors import copies as vc
from memory.vectors import queue as vq
from memory.vectors.backends import make_embedder
from memory.vectors.embeddings import CachedEmbedder, Embedder, HashEmbedder
from memory.vectors.schema import MIGRATIONS

QUERIES = [
    "planning a trip and the hotel budget", "marathon training plan for the week", "a birthday gift for my sister",
    "the landlord and the apartment repair", "camera lens for wedding photos", "guitar lesson in the evening",
    "doctor appointment and vitamins", "car rental for the beach weekend", "coffee in the morning before the office",
    "savings account and salary", "snow boots for a mountain hike", "python course after the interview",
]


@pytest.fixture(scope="module")
def real_model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Embedder]:
    """The store's own model; texts embedded once are read back exactly (float32) the second time."""
    emb = CachedEmbedder(make_embedder(MemoryConfig()), tmp_path_factory.mktemp("cache") / "emb.db")
    yield emb
    emb.close()


def _store(path: Path, emb: Embedder, chat: Path, monkeypatch: pytest.MonkeyPatch, dtype: str) -> MemoryManager:
    monkeypatch.setattr(vc, "COPY_DTYPE", dtype)
    mem = MemoryManager.open(path, embedder=emb, background_embed=False)
    import_transcript(mem, chat)
    mem.embed_pending()
    return mem


@pytest.fixture(scope="module")
def chat(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("chat") / "chat.jsonl"
    write_chat(path, 120)
    return path


def _same_ranking(a: list[tuple[int, float]], b: list[tuple[int, float]], tol: float) -> None:
    """Same ids in the same order, but two items whose scores are within ``tol`` may swap."""
    assert len(a) == len(b)
    score_a, score_b = dict(a), dict(b)
    for (ia, sa), (ib, sb) in zip(a, b, strict=True):
        assert sa == pytest.approx(sb, abs=tol)
        if ia != ib:  # a near tie: each one's score in the other list is as close
            assert ia in score_b and ib in score_a
            assert abs(score_a[ia] - score_a[ib]) <= 2 * tol


def test_float16_copies_rank_and_score_as_float32_with_the_real_model(
    tmp_path: Path, chat: Path, real_model: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _store(tmp_path / "f32", real_model, chat, monkeypatch, "float32") as wide, \
         _store(tmp_path / "f16", real_model, chat, monkeypatch, "float16") as half:
        for mem, kind, size in ((wide, "float32", 4), (half, "float16", 2)):
            with mem.db.read() as conn:
                rows = conn.execute(text("SELECT dtype, length(vec) FROM rlmem_vectors")).all()
            assert rows and {r[0] for r in rows} == {kind}
            assert all(r[1] % (size * real_model.dim) == 0 for r in rows)
        bytes_wide = _vector_bytes(wide)
        assert _vector_bytes(half) == bytes_wide // 2
        q16 = half.recall_search.queue
        q32 = wide.recall_search.queue
        for query in QUERIES:
            qv = real_model.embed([query])[0]
            exact32 = q32.nearest("recall", qv, 10)
            exact16 = q16.nearest("recall", qv, 10)
            assert exact32 and exact16
            _same_ranking(exact32, exact16, 2e-3)
            for mode in ("vector", "hybrid"):
                a = [(h.id, h.score) for h in wide.search_recall(query, mode=mode, k=10)]
                b = [(h.id, h.score) for h in half.search_recall(query, mode=mode, k=10)]
                _same_ranking(a, b, 2e-3)
            ids = [i for i, _ in exact32]
            s32, s16 = q32.similarities("recall", qv, ids), q16.similarities("recall", qv, ids)
            assert max(abs(s32[i] - s16[i]) for i in ids) < 2e-3


def _vector_bytes(mem: MemoryManager) -> int:
    with mem.db.read() as conn:
        return int(conn.execute(text("SELECT SUM(length(vec)) FROM rlmem_vectors")).scalar() or 0)


@pytest.fixture()
def hashed(tmp_path: Path) -> Iterator[MemoryManager]:
    mem = MemoryManager.open(tmp_path / "m", embedder=HashEmbedder(64), background_embed=False)
    yield mem
    mem.close()


def test_rows_written_before_the_dtype_column_are_read_as_float32(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    db = Database.open(url)
    db.migrate("vectors", MIGRATIONS[:2])  # a store as it was before float16 copies
    old = np.linspace(-1, 1, 64, dtype=np.float32)
    with db.write() as conn:
        conn.execute(text("INSERT INTO rlmem_vectors (tier, item_id, model, vec) VALUES ('recall', 1, 'm', :v)"),
                     {"v": old.tobytes()})
    db.close()
    db = Database.open(url)
    vq.EmbeddingQueue(db)  # migrates to the current schema
    with db.read() as conn:
        assert conn.execute(text("SELECT dtype FROM rlmem_vectors")).scalar() == "float32"
        got = vc.read(conn, "recall", "m", [1])
    assert got[1].dtype == np.float32 and np.array_equal(got[1], old)
    db.close()


def test_old_float32_and_new_float16_rows_answer_together(hashed: MemoryManager) -> None:
    things = ["lamp", "bike", "piano", "desk", "kettle", "ladder", "mirror", "violin", "tent", "globe", "drill", "easel"]
    places = ["attic", "garage", "hall", "office", "cellar", "porch", "shed", "loft", "study", "barn", "den", "yard"]
    texts = [f"the {w} was moved to the {p}" for w, p in zip(things, places, strict=True)]
    ids = [m.id for m in hashed.recall.append_many([{"content": t} for t in texts])]
    hashed.embed_pending()
    emb = hashed.recall_search.index.embedder  # type: ignore[union-attr]
    # Half the rows as a store written before float16 copies holds them: float32 bytes.
    with hashed.db.write() as conn:
        for i, t in list(zip(ids, texts, strict=True))[::2]:
            v = np.asarray(emb.embed([t])[0], dtype=np.float32)
            conn.execute(text("UPDATE rlmem_vectors SET vec = :v, dtype = 'float32' WHERE item_id = :i"),
                         {"v": v.tobytes(), "i": i})
    with hashed.db.read() as conn:
        kinds: dict[str, int] = dict(conn.execute(text("SELECT dtype, COUNT(*) FROM rlmem_vectors GROUP BY dtype")).all())
    assert kinds == {"float32": 6, "float16": 6}
    queue = hashed.recall_search.queue
    for i, t in zip(ids, texts, strict=True):
        qv = emb.embed([t])[0]
        top = queue.nearest("recall", qv, 3)
        assert top is not None and top[0][0] == i and top[0][1] == pytest.approx(1.0, abs=2e-3)
        assert queue.similarities("recall", qv, [i])[i] == pytest.approx(1.0, abs=2e-3)
    # A refill from the copies (either kind) embeds nothing and loses nothing.
    assert hashed.reindex()["recall"] == len(ids)
    assert sorted(h.id for h in hashed.search_recall("lamp attic", mode="vector", k=20)) == sorted(ids)


def test_a_copy_of_an_unknown_kind_is_embedded_again_not_misread(hashed: MemoryManager) -> None:
    [m] = hashed.recall.append_many([{"content": "the spare key is under the blue pot"}])
    hashed.embed_pending()
    with hashed.db.write() as conn:
        conn.execute(text("UPDATE rlmem_vectors SET dtype = 'int4' WHERE item_id = :i"), {"i": m.id})
    queue = hashed.recall_search.queue
    with hashed.db.read() as conn:
        assert vc.read(conn, "recall", queue.sources["recall"].model, [m.id]) == {}
    assert hashed.reindex()["recall"] == 1  # embedded afresh, stored as float16
    with hashed.db.read() as conn:
        assert conn.execute(text("SELECT dtype FROM rlmem_vectors")).scalar() == "float16"


@pytest.mark.postgres
def test_float16_copies_on_postgres(pg_url: str, tmp_path: Path) -> None:
    with MemoryManager.open(tmp_path / "pg", embedder=HashEmbedder(64), background_embed=False,
                            database_url=pg_url) as mem:
        texts = ["the kettle is in the cellar", "the violin is in the loft", "the tent is in the shed"]
        ids = [m.id for m in mem.recall.append_many([{"content": t} for t in texts])]
        mem.embed_pending()
        with mem.db.read() as conn:
            rows = conn.execute(text("SELECT dtype, length(vec) FROM rlmem_vectors")).all()
        assert sorted(rows) == [("float16", 2 * 64)] * 3
        emb, queue = mem.recall_search.index.embedder, mem.recall_search.queue  # type: ignore[union-attr]
        for i, t in zip(ids, texts, strict=True):
            qv = emb.embed([t])[0]
            assert queue.similarities("recall", qv, [i])[i] == pytest.approx(1.0, abs=2e-3)
            assert queue.nearest("recall", qv, 1)[0][0] == i  # type: ignore[index]
        assert mem.reindex()["recall"] == 3
