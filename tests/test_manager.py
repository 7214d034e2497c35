"""MemoryManager and its configuration: one directory, three tiers, semantic recall search."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from memory.config import MemoryConfig
from memory.errors import ConfigError, ValidationError
from memory.manager import MemoryManager
from memory.vectors.embeddings import HashEmbedder

ROOT = Path(__file__).resolve().parent.parent


def open_mem(path: Path, **kw: object) -> MemoryManager:
    kw.setdefault("background_embed", False)
    return MemoryManager.open(path, embedder=HashEmbedder(64), **kw)  # type: ignore[arg-type]


# --- configuration -------------------------------------------------------------------------


def test_config_precedence_arguments_env_toml(tmp_path: Path) -> None:
    (tmp_path / "rlmem.toml").write_text("embed_threads = 3\nembed_batch_size = 16\n[memory]\nembed_recall = false\n")
    cfg = MemoryConfig.load(tmp_path, env={})
    assert (cfg.embed_threads, cfg.embed_batch_size, cfg.embed_recall, cfg.dir) == (3, 16, False, tmp_path)
    env = {"RLMEM_EMBED_THREADS": "2", "RLMEM_EMBED_RECALL": "yes", "RLMEM_CHROMA_PORT": "9000"}
    cfg = MemoryConfig.load(tmp_path, env=env)
    assert (cfg.embed_threads, cfg.embed_recall, cfg.chroma_port, cfg.embed_batch_size) == (2, True, 9000, 16)
    cfg = MemoryConfig.load(tmp_path, env=env, embed_threads=4)
    assert cfg.embed_threads == 4
    assert MemoryConfig.load(env={"RLMEM_DIR": str(tmp_path)}).dir == tmp_path
    assert MemoryConfig.load(cfg, embed_device="cuda").embed_threads == 4


def test_text_weight_unset_keeps_each_tiers_own(tmp_path: Path) -> None:
    from memory.fusion import RECALL_TEXT_WEIGHT

    with MemoryManager.open(tmp_path / "w", embed_backend="hash", background_embed=False) as mem:
        assert mem.recall_search.fusion.text_weight == RECALL_TEXT_WEIGHT
        assert mem.archival.fusion.text_weight == 0.5
    with MemoryManager.open(tmp_path / "w", embed_backend="hash", background_embed=False, text_weight=0.7) as mem:
        assert mem.recall_search.fusion.text_weight == mem.archival.fusion.text_weight == 0.7


def test_config_errors_name_their_origin(tmp_path: Path) -> None:
    (tmp_path / "rlmem.toml").write_text("embed_threads = 2\nbad line here\n")
    with pytest.raises(ConfigError, match=r"rlmem\.toml, line 2"):
        MemoryConfig.load(tmp_path, env={})
    (tmp_path / "rlmem.toml").write_text("colour = 'blue'\n")
    with pytest.raises(ConfigError, match="unknown option 'colour'"):
        MemoryConfig.load(tmp_path, env={})
    (tmp_path / "rlmem.toml").unlink()
    with pytest.raises(ConfigError, match="RLMEM_EMBED_THREADS"):
        MemoryConfig.load(tmp_path, env={"RLMEM_EMBED_THREADS": "many"})
    with pytest.raises(ConfigError, match="text_weight"):
        MemoryConfig.load(tmp_path, env={}, text_weight=2.0)
    with pytest.raises(ConfigError, match="unknown configuration option"):
        MemoryConfig.load(tmp_path, env={}, colour="blue")
    with pytest.raises(ConfigError, match="RLMEM_FUSION_DEPTH"):
        MemoryConfig.load(tmp_path, env={"RLMEM_FUSION_DEPTH": "-1"})


def test_fusion_depth_per_tier_and_configured(tmp_path: Path) -> None:
    with open_mem(tmp_path / "a") as mem:
        assert (mem.recall_search.fusion.depth, mem.archival.fusion.depth) == (200, 100)
    with open_mem(tmp_path / "b", fusion_depth=50) as mem:
        assert (mem.recall_search.fusion.depth, mem.archival.fusion.depth) == (50, 50)


# --- the manager ---------------------------------------------------------------------------


def test_one_directory_holds_all_tiers(tmp_path: Path) -> None:
    with open_mem(tmp_path / "m") as mem:
        mem.working.create("persona", "I am a helpful assistant")
        mem.recall.append("hello there", session_id="s1")
        mem.archival.insert("a fact about otters")
        mem.embed_pending()
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["chroma", "memory.db"]
    with open_mem(tmp_path / "m") as mem:
        assert mem.working.get("persona").value == "I am a helpful assistant"
        assert mem.recall.count() == 1 and mem.archival.count() == 1 and mem.pending() == 0


def test_semantic_recall_search_with_filters(tmp_path: Path) -> None:
    t0 = datetime(2024, 5, 1, tzinfo=UTC)
    with open_mem(tmp_path / "m") as mem:
        mem.recall.append_many(
            [
                {"content": "my sister adopted a grey kitten", "session_id": "a", "created_at": t0},
                {"content": "the kitten chases laser dots", "session_id": "a", "role": "assistant", "created_at": t0},
                {"content": "we booked flights to lisbon", "session_id": "b", "created_at": t0 + timedelta(days=3)},
                {"content": "", "session_id": "b", "role": "tool", "tool_name": "noop", "created_at": t0 + timedelta(days=3)},
            ]
        )
        assert mem.pending() == 3  # the empty tool message is not embedded
        assert mem.search_recall("kitten", mode="vector") == []  # not embedded yet
        assert {h.id for h in mem.search_recall("kitten", mode="text")} == {1, 2}
        mem.embed_pending()
        for mode in ("vector", "hybrid", "text"):
            hits = mem.search_recall("kitten", mode=mode)
            assert {h.id for h in hits[:2]} == {1, 2} and hits[0].tier == "recall"
            assert [h.id for h in mem.search_recall("kitten", mode=mode, role="assistant")] == [2]
            assert 3 not in [h.id for h in mem.search_recall("flights lisbon kitten", mode=mode, session_id="a")]
            late = mem.search_recall("flights lisbon kitten", mode=mode, since=t0 + timedelta(days=1))
            assert [h.id for h in late] == [3]
        hit = mem.search_recall("lisbon flights", k=1)[0]
        assert (hit.session_id, hit.role, hit.created_at) == ("b", "user", t0 + timedelta(days=3))


def test_cross_tier_search_grep_and_forget(tmp_path: Path) -> None:
    with open_mem(tmp_path / "m") as mem:
        mem.recall.append("the deployment failed on tuesday", session_id="s")
        mem.recall.append("unrelated chatter about lunch", session_id="s")
        mem.archival.insert("deployment runbook: roll back first", tags=["ops"])
        mem.embed_pending()
        hits = mem.search("deployment", k=5)
        assert {h.tier for h in hits[:2]} == {"recall", "archival"}
        assert {h.tier for h in mem.search("deployment", tiers=("archival",), tags=["ops"])} == {"archival"}
        assert [h.tier for h in mem.grep("deploy", tier="all")] == ["recall", "archival"]
        with pytest.raises(ValidationError):
            mem.search("x", tiers=("nowhere",))
        with pytest.raises(ValidationError):
            mem.search("x", colour="red")
        gone = mem.forget(ids=[1], reason="test")
        assert gone == [1]
        assert mem.recall_search.index is not None and mem.recall_search.index.count() == 1
        assert all(h.id != 1 for h in mem.search_recall("deployment tuesday", mode="vector"))


def test_embed_recall_off(tmp_path: Path) -> None:
    with open_mem(tmp_path / "m", embed_recall=False) as mem:
        mem.recall.append("nothing to embed here")
        assert mem.pending() == 0
        assert [h.id for h in mem.search_recall("embed", mode="hybrid")] == [1]
        assert mem.search_recall("embed", mode="vector") == []


def test_background_embedding_and_pending_embedded_on_next_open(tmp_path: Path) -> None:
    with open_mem(tmp_path / "m") as mem:
        mem.recall.append_many([{"content": f"message number {i}"} for i in range(20)])
        assert mem.pending() == 20
    with open_mem(tmp_path / "m", background_embed=True) as mem:
        assert mem.wait_embedded(30)
        assert mem.pending() == 0
        mem.recall.append("one more message")  # the append does not wait for the worker
        assert mem.wait_embedded(30) and mem.pending() == 0
        assert mem.recall_search.index is not None and mem.recall_search.index.count() == 21


def test_compile_context_budget_and_stats(tmp_path: Path) -> None:
    with open_mem(tmp_path / "m") as mem:
        mem.working.create("human", "Name: Ada")
        for i in range(50):
            mem.recall.append(f"message {i} " + "x" * 200, session_id="s", role="user" if i % 2 else "assistant")
        mem.archival.insert("a chunk")
        st = mem.stats()
        assert (st["messages"], st["sessions"], st["chunks"], st["blocks"]) == (50, 1, 1, ["human"])
        ctx = mem.compile_context(system_prompt="You are kind.", budget_tokens=1000)
        assert ctx.system.startswith("You are kind.") and "Name: Ada" in ctx.system
        assert "50 messages" in ctx.system and "1 chunks" in ctx.system
        assert ctx.tokens <= 1000 and 0 < len(ctx.messages) < 50 and ctx.dropped == 50 - len(ctx.messages)
        assert ctx.messages[-1]["content"].startswith("message 49")
        ids = [m["id"] for m in ctx.messages]
        assert ids == sorted(ids)
        with pytest.raises(ValidationError):
            mem.compile_context(budget_tokens=0)


def test_reindex_rebuilds_both_collections(tmp_path: Path) -> None:
    with open_mem(tmp_path / "m") as mem:
        mem.recall.append_many([{"content": f"m {i}"} for i in range(5)])
        mem.archival.insert_many([f"c {i}" for i in range(3)])
        mem.embed_pending()
        assert mem.reindex() == {"recall": 5, "archival": 3}


_WRITER = textwrap.dedent(
    """
    import sys
    from memory.vectors.embeddings import HashEmbedder
    from memory.manager import MemoryManager
    with MemoryManager.open(sys.argv[1], embedder=HashEmbedder(64), background_embed=False) as mem:
        for i in range(40):
            mem.recall.append(f"{sys.argv[2]} says hello {i}", session_id=sys.argv[2])
            mem.archival.insert(f"{sys.argv[2]} chunk {i}")
            if i % 10 == 9:
                mem.embed_pending()
        mem.embed_pending()
    """
)


def test_two_processes_share_one_directory(tmp_path: Path) -> None:
    store = tmp_path / "shared"
    open_mem(store).close()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(store), name], env=env, stderr=subprocess.PIPE)
        for name in ("alpha", "beta")
    ]
    for p in procs:
        _, err = p.communicate(timeout=240)
        assert p.returncode == 0, err.decode()[-2000:]
    with open_mem(store) as mem:
        assert mem.db.integrity_check() == "ok"
        assert mem.recall.count() == 80 and mem.archival.count() == 80 and mem.pending() == 0
        assert mem.recall_search.index is not None and mem.archival.index is not None
        assert mem.recall_search.index.count() == 80 and mem.archival.index.count() == 80
        assert {h.session_id for h in mem.search_recall("beta", k=5, mode="text")} == {"beta"}
        assert len(mem.search_recall("beta says hello", k=50, mode="vector")) == 50


@pytest.mark.postgres
def test_postgres_database_url(pg_url: str, tmp_path: Path) -> None:
    with open_mem(tmp_path / "m", database_url=pg_url) as mem:
        mem.recall.append("postgres stores the recall log", session_id="p")
        mem.archival.insert("postgres chunk about full text", tags=["db"], metadata={"v": 1})
        mem.embed_pending()
        assert not (tmp_path / "m" / "memory.db").exists()
        for mode in ("text", "vector", "hybrid"):
            assert sorted(h.tier for h in mem.search("postgres", k=5, mode=mode)) == ["archival", "recall"]
            assert [h.id for h in mem.search_archival("full text", mode=mode, tags=["db"], metadata={"v": 1})] == [1]


# --- a damaged vector index heals itself from SQL ------------------------------------------


_FILL = textwrap.dedent(
    """
    import sys
    from memory.vectors.embeddings import HashEmbedder
    from memory.manager import MemoryManager
    # Enough rows that Chroma persists HNSW files for both tiers.
    with MemoryManager.open(sys.argv[1], embedder=HashEmbedder(64), background_embed=False) as mem:
        mem.recall.append_many([{"content": f"message {i} about topic {i % 13}"} for i in range(1200)])
        mem.archival.insert_many([f"chunk {i} about subject {i % 17}" for i in range(1200)])
        mem.embed_pending()
    """
)


def _damaged_store(path: Path) -> Path:
    """A store written by another process, then its HNSW headers overwritten with garbage, as
    a kill -9 while Chroma persisted them can leave them. (Another process, because Chroma
    keeps a loaded index in memory for the life of the process that wrote it.)"""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-c", _FILL, str(path)], env=env, check=True, timeout=300)
    headers = list((path / "chroma").glob("*/header.bin"))
    assert len(headers) == 2
    for h in headers:
        with open(h, "r+b") as fh:
            fh.write(random.Random(7).randbytes(64))
    return path


def test_damaged_hnsw_files_are_rebuilt_from_sql_on_the_first_write(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from test_archival import CountingEmbedder

    counting = CountingEmbedder()
    store = _damaged_store(tmp_path / "m")
    with MemoryManager.open(store, embedder=counting, background_embed=False) as mem:
        mem.archival.insert("a new chunk about subject 3")
        mem.recall.append("a new message about topic 5")
        mem.embed_pending()  # the first write meets the damage, rebuilds, and refills everything
        assert mem.pending() == 0
        # Refilled from the SQL vector copies: only the 2 new rows are embedded (twice: the
        # batch that met the damage is queued again by the rebuild), not the 2400 old ones.
        assert counting.texts == 4
        assert "rebuilding it from SQL" in caplog.text
        assert mem.archival.index.count() == 1201 and mem.recall_search.index.count() == 1201
        # Vectors are back: an exact text comes first with similarity 1 (the 64-dimension test
        # embedder gives texts that differ only in a number the same vector, hence no id check).
        top = mem.archival.search("chunk 42 about subject 8", k=1, mode="vector")[0]
        assert top.score > 0.999 and top.text.endswith("about subject 8")
        top = mem.search_recall("message 7 about topic 7", k=1, mode="vector")[0]
        assert top.score > 0.999 and top.text.endswith("about topic 7")


def test_a_search_on_damaged_files_answers_and_queues_the_rebuild(tmp_path: Path) -> None:
    # A small store answers unfiltered vector queries from the SQL copies, without Chroma:
    # its search does not even see the damage.
    with open_mem(_damaged_store(tmp_path / "x")) as mem:
        top = mem.archival.search("chunk 42 about subject 8", k=1, mode="vector")[0]
        assert top.score > 0.999 and mem.archival.pending() == 0
    with open_mem(_damaged_store(tmp_path / "m"), exact_search_max=0) as mem:  # Chroma answers
        hits = mem.archival.search("chunk 42 about subject 8", k=3)  # hybrid: text still finds it
        assert hits[0].text == "chunk 42 about subject 8"
        assert mem.archival.pending() == 1200
        mem.embed_pending()
        assert mem.archival.search("chunk 42 about subject 8", k=1, mode="vector")[0].score > 0.999


class _BrokenCollection:
    def __init__(self, message: str) -> None:
        self.message = message

    def upsert(self, **kw: object) -> None:
        raise RuntimeError(self.message)


class _Client:
    def __init__(self, message: str) -> None:
        self.message = message
        self.created = 0

    def get_or_create_collection(self, name: str, **kw: object) -> _BrokenCollection:
        self.created += 1
        return _BrokenCollection(self.message)

    def delete_collection(self, name: str) -> None:
        pass


def test_an_index_is_rebuilt_once_and_other_errors_never_rebuild() -> None:
    from memory.errors import IndexError_
    from memory.vectors.index import VectorIndex

    calls: list[int] = []
    damaged = VectorIndex(_Client("Error in compaction: Failed to apply logs to the hnsw segment writer"),
                          "t", HashEmbedder(8))  # fmt: skip
    damaged.rebuild = lambda: calls.append(1)
    with pytest.raises(IndexError_, match="after rebuilding it from SQL"):
        damaged.upsert([1], [[0.0] * 8], [{}])
    with pytest.raises(IndexError_, match="hnsw"):  # no second rebuild in this process
        damaged.upsert([1], [[0.0] * 8], [{}])
    assert calls == [1]

    mismatch = VectorIndex(_Client("Collection expecting embedding with dimension of 64, got 8"),
                           "t", HashEmbedder(8))  # fmt: skip
    mismatch.rebuild = lambda: calls.append(2)
    with pytest.raises(IndexError_, match="reindex"):
        mismatch.upsert([1], [[0.0] * 8], [{}])
    assert calls == [1]


def _modes(root: Path) -> dict[str, int]:
    out = {".": root.stat().st_mode & 0o777}
    for p in root.rglob("*"):
        out[str(p.relative_to(root))] = p.stat().st_mode & 0o777
    return out


def test_a_new_store_is_private(tmp_path: Path) -> None:
    old = os.umask(0o022)  # a common umask: the store must not depend on it
    try:
        with open_mem(tmp_path / "lib") as m:
            m.recall.append("private words")
            m.archival.insert("private passage")
            m.embed_pending()
            modes = _modes(tmp_path / "lib")
    finally:
        os.umask(old)
    assert modes["."] == 0o700 and modes["chroma"] == 0o700
    for name in ("memory.db", "memory.db-wal", "memory.db-shm"):
        assert modes[name] == 0o600, (name, oct(modes[name]))


def test_the_cli_makes_every_file_owner_only(tmp_path: Path) -> None:
    store = tmp_path / "cli"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]), RLMEM_EMBED_RECALL="false")
    code = (f"import os; os.umask(0o022)\nfrom agents.cli.main import main\n"
            f"for argv in (['init', {str(store)!r}, '--database-url', 'sqlite:///' + {str(store / 'memory.db')!r}],"
            f" ['log', 'hello', '--store', {str(store)!r}], ['ingest', {str(tmp_path / 'doc.md')!r}, '--store', {str(store)!r}, '--no-progress'],"
            " ['token', 'create', '--agent', 'a', '--store', " + repr(str(store)) + "]):\n"
            "    assert main(argv) == 0, argv\n"
            "assert os.umask(0o022) == 0o022  # main gave the umask back\n")
    (tmp_path / "doc.md").write_text("A document about private things.\n" * 20)
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    modes = _modes(store)
    assert {"memory.db", "rlmem.toml", "token", "chroma"} <= set(modes)
    loose = {name: oct(mode) for name, mode in modes.items() if mode & 0o077}
    assert loose == {}, loose


def test_a_read_only_store_cannot_write(tmp_path: Path) -> None:
    with open_mem(tmp_path / "s") as m:
        m.recall.append("kept")
    from memory.errors import StoreError

    with MemoryManager.open(tmp_path / "s", embedder=HashEmbedder(), read_only=True) as ro:
        with pytest.raises(StoreError):
            ro.recall.append("refused")
        assert [x.content for x in ro.recall.page()] == ["kept"]
