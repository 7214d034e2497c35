"""Archival tier: chunks in SQLite, vectors in real Chroma (embedded here; a server in
test_chroma_server.py, which reruns these tests through HttpClient)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from memory.archival.store import ArchivalStore
from memory.db import Database
from memory.errors import NotFoundError, QueryError, ValidationError
from memory.vectors.chroma import make_chroma_client
from memory.vectors.embeddings import HashEmbedder
from memory.vectors.index import VectorIndex
from memory.vectors.queue import EmbeddingQueue

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture()
def chroma_factory(tmp_path: Path) -> Callable[[], Any]:
    """A function returning the Chroma client the store under test uses."""
    clients: dict[str, Any] = {}

    def make() -> Any:
        if "c" not in clients:
            clients["c"] = make_chroma_client(path=tmp_path / "chroma")
        return clients["c"]

    return make


@pytest.fixture()
def store(tmp_path: Path, chroma_factory: Callable[[], Any]) -> Iterator[ArchivalStore]:
    db = Database.open(tmp_path / "memory.db")
    name = f"arch_{os.getpid()}_{time.monotonic_ns()}"
    idx = VectorIndex(chroma_factory(), name, HashEmbedder(64), lock_path=tmp_path / "lock")
    yield ArchivalStore(db, idx, EmbeddingQueue(db))
    db.close()


def test_insert_get_count_and_vectors_after_drain(store: ArchivalStore) -> None:
    a = store.insert("the cat sat on the mat", tags=["pets"], metadata={"lang": "en"}, source="doc.md", position=0)
    b = store.insert("quarks and gluons", tags=("physics",))
    assert (a, b) == (1, 2)
    c = store.get(a)
    assert (c.text, c.tags, c.metadata, c.source, c.position) == ("the cat sat on the mat", ("pets",), {"lang": "en"}, "doc.md", 0)
    assert store.count() == 2 and store.pending() == 2
    assert store.embed_pending() == 2 and store.pending() == 0
    assert store.index is not None and store.index.count() == 2
    assert store.sources() == [("doc.md", 1)]


def test_pending_chunks_are_found_by_text_and_hybrid(store: ArchivalStore) -> None:
    store.insert("zebra crossing at the station")
    assert store.pending() == 1
    assert [h.id for h in store.search("zebra", mode="text")] == [1]
    assert [h.id for h in store.search("zebra", mode="hybrid")] == [1]
    assert store.search("zebra", mode="vector") == []
    store.embed_pending()
    assert [h.id for h in store.search("zebra", mode="vector")] == [1]


def test_search_modes_filters_and_pagination(store: ArchivalStore) -> None:
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    items: list[str | dict[str, Any]] = [
        {"text": f"note {i} about apples and pears" + " really" * i, "tags": ["fruit"] + (["red"] if i % 2 else []),
         "metadata": {"n": i, "kind": "odd" if i % 2 else "even"}, "created_at": t0 + timedelta(days=i)}
        for i in range(10)
    ]
    items.append({"text": "engine oil and gearbox", "tags": ["car"]})
    ids = store.insert_many(items)
    store.embed_pending()
    for mode in ("text", "vector", "hybrid"):
        hits = store.search("apples pears", k=5, mode=mode)
        assert len({round(h.score, 9) for h in hits}) == 5, mode
        assert len(hits) == 5 and all(h.tier == "archival" and "apples" in h.text for h in hits)
        page2 = store.search("apples pears", k=5, offset=5, mode=mode)
        assert not {h.id for h in hits} & {h.id for h in page2}
        assert {h.id for h in store.search("apples", k=20, mode=mode, tags=["red"])} == {ids[i] for i in (1, 3, 5, 7, 9)}
        assert {h.id for h in store.search("apples", k=20, mode=mode, tags=["red", "car"], tags_mode="any")} <= set(ids)
        assert store.search("apples", k=20, mode=mode, tags=["red", "car"], tags_mode="all") == []
        assert {h.id for h in store.search("apples", k=20, mode=mode, metadata={"kind": "even"})} == {ids[i] for i in (0, 2, 4, 6, 8)}
        assert {h.id for h in store.search("apples", k=20, mode=mode, metadata={"n": 3})} == {ids[3]}
        ranged = store.search("apples", k=20, mode=mode, since=t0 + timedelta(days=2), until=t0 + timedelta(days=4))
        assert {h.id for h in ranged} == {ids[2], ids[3], ids[4]}


def test_update_and_delete(store: ArchivalStore) -> None:
    i = store.insert("old text about rivers", tags=["a"])
    store.embed_pending()
    c = store.update(i, text="new text about mountains", tags=["b"], metadata={"v": 2})
    assert (c.text, c.tags, c.metadata) == ("new text about mountains", ("b",), {"v": 2})
    assert store.search("rivers", mode="text") == []
    assert store.pending() == 1
    store.embed_pending()
    assert [h.id for h in store.search("mountains", mode="vector", tags=["b"])] == [i]
    store.delete(i)
    assert store.count() == 0 and store.search("mountains") == []
    with pytest.raises(NotFoundError):
        store.get(i)
    with pytest.raises(NotFoundError):
        store.delete(i)
    with pytest.raises(NotFoundError):
        store.update(999, text="x")


def test_bad_input_is_refused_and_changes_nothing(store: ArchivalStore) -> None:
    store.insert("keep me")
    for bad in (b"bytes", "", "   ", "\ud800", "nul\x00"):
        with pytest.raises(ValidationError):
            store.insert(bad)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        store.insert_many(["fine", {"text": "x", "bogus": 1}])
    with pytest.raises(ValidationError):
        store.insert("x", metadata={"f": object()})
    with pytest.raises(ValidationError):
        store.search("x", mode="fuzzy")
    with pytest.raises(ValidationError):
        store.search("x", metadata={"bad key!": 1})
    with pytest.raises(QueryError):
        store.grep("(unclosed")
    assert store.count() == 1
    # Operator characters are plain words for full text search.
    assert store.search('AND OR NOT * "( ) ^ -x: NEAR', mode="hybrid") == []
    store.embed_pending()
    assert isinstance(store.search("\"keep\" me*", mode="hybrid"), list)


def test_grep(store: ArchivalStore) -> None:
    store.insert("Error 42 in module", source="a.log")
    store.insert("all fine here", source="b.log")
    hits = store.grep(r"error \d+", ignore_case=True)
    assert [(h.id, h.match, h.source) for h in hits] == [(1, "Error 42", "a.log")]
    assert store.grep("fine", source="a.log") == []
    assert [h.id for h in store.grep("a.l", literal=True)] == []


def test_ingest_files_chunks_dedupes_and_skips(store: ArchivalStore, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    long_md = "\n\n".join(f"Paragraph {i}. " + "word " * 60 for i in range(12))
    (docs / "guide.md").write_text("# Guide\n\n" + long_md)
    (docs / "sub" / "code.py").write_text("def f(x):\n    return x * 2\n")
    (docs / "data.json").write_text(json.dumps({"k": "value"}))
    (docs / "copy.txt").write_text("def f(x):\n    return x * 2\n")  # same chunk as code.py
    (docs / "blob.bin").write_bytes(b"\x00\x01binary")
    (docs / "image.txt").write_bytes(b"\x89PNG\x00\x00")
    (docs / ".hidden.md").write_text("secret")
    s = store.ingest(docs, chunk_tokens=64, overlap=8, progress=False)
    assert (s.files, s.skipped, s.duplicates) == (4, 2, 1)
    assert s.chunks == store.count() > 5 and s.seconds > 0
    assert store.pending() == 0  # ingest embeds as it goes
    again = store.ingest([docs], chunk_tokens=64, overlap=8, progress=False)
    assert again.chunks == 0 and again.duplicates == s.chunks + 1
    md = [c for c in store.iter_chunks() if c.source and c.source.endswith("guide.md")]
    assert [c.position for c in md] == list(range(len(md)))
    assert all(len(c.text.split()) <= 80 for c in md)
    with pytest.raises(ValidationError):
        store.ingest(tmp_path / "missing", progress=False)


def test_reindex_rebuilds_vectors_from_sql(store: ArchivalStore) -> None:
    store.insert_many([f"chunk number {i}" for i in range(30)])
    store.embed_pending()
    assert store.index is not None
    store.index.reset()
    assert store.index.count() == 0
    assert store.reindex() == 30
    assert store.index.count() == 30 and store.pending() == 0



class CountingEmbedder(HashEmbedder):
    """The test embedder, counting the texts it embeds; ``during`` runs inside each call."""

    def __init__(self) -> None:
        super().__init__(64)
        self.texts = 0
        self.during: Callable[[], None] | None = None

    def embed(self, texts: Any) -> list[list[float]]:
        self.texts += len(texts)
        if self.during is not None:
            self.during()
        return super().embed(texts)


def _copies(store: ArchivalStore) -> dict[int, str]:
    with store.db.read() as conn:
        rows = conn.exec_driver_sql("SELECT item_id, model FROM rlmem_vectors WHERE tier = 'archival'")
        return {int(i): m for i, m in rows}


def test_vectors_are_copied_to_sql_and_a_refill_does_not_embed_again(
    tmp_path: Path, chroma_factory: Callable[[], Any]
) -> None:
    db = Database.open(tmp_path / "memory.db")
    emb = CountingEmbedder()
    store = ArchivalStore(db, VectorIndex(chroma_factory(), "refill", emb), EmbeddingQueue(db))
    assert store.index is not None
    ids = store.insert_many([f"chunk number {i} of the refill test" for i in range(40)])
    store.embed_pending()
    assert _copies(store) == {i: "hash:64" for i in ids} and emb.texts == 40
    # Hybrid search reads text-only candidates' similarities from SQL, never from Chroma.
    store.index.similarities = lambda *a: pytest.fail("Chroma get for similarities")  # type: ignore[method-assign]
    assert store.search("chunk number 7 of the refill test", k=3)[0].id == ids[7]

    store.update(ids[0], text="an edited chunk")  # an edit drops the old copy...
    store.delete(ids[1])  # ...and so does a delete
    assert ids[0] not in _copies(store) and ids[1] not in _copies(store)
    store.embed_pending()
    assert emb.texts == 42 and len(_copies(store)) == 39  # 40 + the query + the edit

    store.index.reset()  # a lost collection is refilled from the copies, nothing embedded
    store.queue.enqueue_all("archival", "archival_chunks")
    assert store.embed_pending() == 39 and emb.texts == 42 and store.index.count() == 39
    assert store.search("an edited chunk", k=1, mode="vector")[0].id == ids[0]

    assert store.reindex() == 39 and emb.texts == 43  # from the copies
    assert store.reindex(reembed=True) == 39 and emb.texts == 43 + 39
    db.close()


def test_a_new_model_ignores_the_old_copies(tmp_path: Path) -> None:
    db = Database.open(tmp_path / "memory.db")
    client = make_chroma_client(path=tmp_path / "chroma")
    old = ArchivalStore(db, VectorIndex(client, "model1", HashEmbedder(64)), EmbeddingQueue(db))
    ids = old.insert_many([f"chunk {i}" for i in range(5)])
    old.embed_pending()
    emb = CountingEmbedder()
    emb._dim = 32  # another model: its copies differ in name and size
    new = ArchivalStore(db, VectorIndex(client, "model2", emb), EmbeddingQueue(db))
    assert new.reindex() == 5 and emb.texts == 5
    assert set(_copies(new).values()) == {"hash:32"} and set(_copies(new)) == set(ids)
    assert new.search("chunk 3", k=1)[0].id == ids[3]
    db.close()

def test_no_copy_is_kept_for_an_item_deleted_while_it_was_embedded(
    tmp_path: Path, chroma_factory: Callable[[], Any]
) -> None:
    db = Database.open(tmp_path / "memory.db")
    emb = CountingEmbedder()
    store = ArchivalStore(db, VectorIndex(chroma_factory(), "race", emb), EmbeddingQueue(db))
    ids = store.insert_many(["doomed chunk", "kept chunk", "edited chunk"])

    def meanwhile() -> None:
        emb.during = None
        store.delete(ids[0])
        store.update(ids[2], text="the edit won")

    emb.during = meanwhile
    store.embed_pending()
    assert set(_copies(store)) == {ids[1], ids[2]}
    assert store.pending() == 0 and store.search("the edit won", k=1, mode="vector")[0].id == ids[2]
    db.close()

_CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from memory.archival.store import ArchivalStore
    from memory.db import Database
    from memory.vectors.embeddings import HashEmbedder
    from memory.vectors.chroma import make_chroma_client
    from memory.vectors.index import VectorIndex
    from memory.vectors.queue import EmbeddingQueue

    class SlowEmbedder(HashEmbedder):
        def embed(self, texts):
            time.sleep(0.05)
            return super().embed(texts)

    d = Path(sys.argv[1])
    db = Database.open(d / "memory.db")
    idx = VectorIndex(make_chroma_client(path=d / "chroma"), "arch", SlowEmbedder(64), lock_path=d / "lock")
    store = ArchivalStore(db, idx, EmbeddingQueue(db), embed_batch=8)
    i = 0
    while True:
        ids = store.insert_many([f"document {i + j} about topic {(i + j) % 7}" for j in range(8)])
        print(ids[-1], flush=True)  # acknowledged
        store.embed_pending(batch=8)
        i += 8
    """
)


def test_kill_9_during_ingestion_loses_nothing_acknowledged(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ANONYMIZED_TELEMETRY": "False"}
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(tmp_path)], stdout=subprocess.PIPE, env=env, text=True
    )
    acked = 0
    assert proc.stdout is not None
    try:
        deadline = time.monotonic() + 60
        while acked < 120 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            acked = int(line)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    assert acked >= 120
    db = Database.open(tmp_path / "memory.db")
    assert db.integrity_check() == "ok"
    idx = VectorIndex(make_chroma_client(path=tmp_path / "chroma"), "arch", HashEmbedder(64), lock_path=tmp_path / "lock")
    store = ArchivalStore(db, idx, EmbeddingQueue(db))
    assert store.count() >= acked
    assert {c.id for c in store.iter_chunks()} >= set(range(1, acked + 1))
    store.embed_pending()
    assert store.pending() == 0 and idx.count() == store.count()
    hits = store.search("document 5 about topic 5", k=3, mode="vector")
    assert hits and hits[0].id == 6
    db.close()


def test_words_in_half_the_chunks_or_more_do_not_slow_full_text(store: ArchivalStore) -> None:
    store.insert_many([f"the common word number {i}" for i in range(10)] + ["the common word and a rare one"])
    hits = store.search("common rare", mode="text")
    assert [h.id for h in hits] == [11]  # 'common' (IDF 0) is dropped from the match
    assert len(store.search("common word", mode="text", k=20)) == 11  # all common: keep the rarest


# --- large-store paths, exercised on a small store by lowering their thresholds --------------


def _bulk(store: ArchivalStore) -> dict[str, int]:
    """60 chunks: "common" in 40, "zephyr" in 3, tag "t" on every other chunk."""
    ids: dict[str, int] = {}
    rows: list[dict[str, Any]] = []
    for i in range(60):
        words = ["filler", f"w{i}", "common" if i < 40 else "other"]
        rows.append({"text": " ".join(words), "tags": ["t"] if i % 2 else ["u"]})
    ids_plain = store.insert_many(rows)
    for name, text in [("both", "zephyr common filler"), ("rare", "zephyr filler filler"),
                       ("both2", "zephyr common common")]:
        ids[name] = store.insert(text)
    ids["first_plain"] = ids_plain[0]
    store.embed_pending()
    return ids


def test_frequent_words_score_but_do_not_select_on_a_large_store(
    store: ArchivalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    import memory.archival.search as search

    monkeypatch.setattr(search, "SMALL_STORE", 0)  # take the large-store path
    monkeypatch.setattr(search, "COMMON_DOCS", 10)  # "common" (43 chunks) is frequent here
    monkeypatch.setattr(search, "MAX_CANDIDATES", 20)
    ids = _bulk(store)
    hits = store.search("zephyr common", k=10, mode="text")
    # the rare word picks the candidates; the frequent one still orders them
    assert [h.id for h in hits][:3] == [ids["both2"], ids["both"], ids["rare"]]
    assert {h.id for h in hits} == {ids["both2"], ids["both"], ids["rare"]}
    # a query of frequent words only ranks the newest matches, bounded
    only = store.search("common", k=5, mode="text")
    assert len(only) == 5 and all("common" in h.text for h in only)
    assert all("[common]" in h.snippet for h in only)


def test_tag_filter_overfetch_agrees_with_chromas_own_filter(
    store: ArchivalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    import memory.archival.search as search

    _bulk(store)
    over = store.search("filler w7", k=8, mode="vector", tags=["t"])
    monkeypatch.setattr(search, "OVERFETCH_MIN_SHARE", 2.0)  # never over-fetch: Chroma filters
    direct = store.search("filler w7", k=8, mode="vector", tags=["t"])
    # the same ranking; which of several equally similar chunks fill the last places may differ
    assert len(over) == 8
    assert [round(h.score, 5) for h in over] == [round(h.score, 5) for h in direct]
    assert over[0].id == direct[0].id
    assert all("t" in store.get(h.id).tags for h in over)
