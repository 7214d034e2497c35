"""The ONNX MiniLM (same vectors as sentence-transformers, no torch in a cold process), exact
vector search from the SQL copies (same ranking as Chroma), the embed_device/embed_backend
settings, and the progress line."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from agents.cli.progress import ProgressLine, format_duration
from memory.config import MemoryConfig
from memory.errors import ConfigError
from memory.manager import MemoryManager
from memory.vectors.backends import make_embedder, resolve_device
from memory.vectors.embeddings import HashEmbedder, SentenceTransformerEmbedder
from memory.vectors.onnx import OnnxEmbedder

ROOT = Path(__file__).resolve().parent.parent

SAMPLE = [
    "I adopted a puppy last week",
    "We got a new dog",
    "Quarterly tax filing deadline is April 15th.",
    "",
    " ",
    "a",
    "ünïcødé テキスト 😀 — em dash, «quotes», 中文字符",
    "def f(x):\n    return x ** 2  # code with symbols {}[]()",
    "The deploy key lives in vault zebra. " * 60,  # beyond 256 word pieces: truncated alike
    "word " * 5000,
    *[f"message {i}: lunch with Marta on Friday, bring {i} cakes" for i in range(40)],
]


@pytest.fixture(scope="module")
def both() -> tuple[OnnxEmbedder, SentenceTransformerEmbedder]:
    return OnnxEmbedder(), SentenceTransformerEmbedder(threads=1)


def test_onnx_vectors_match_sentence_transformers(both: tuple[OnnxEmbedder, SentenceTransformerEmbedder]) -> None:
    onnx, st = both
    a = np.asarray(onnx.embed(SAMPLE))
    b = np.asarray(st.embed(SAMPLE))
    assert a.shape == b.shape == (len(SAMPLE), 384)
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-4)
    cos = (a * b).sum(1)
    assert float(cos.min()) >= 0.999, cos.min()
    assert onnx.name == st.name and onnx.dim == st.dim == 384  # one vector space: no re-embedding
    assert onnx._fallback is None and onnx.graph_path.is_file()  # the graph, not the torch fallback
    # Batching and length sorting do not change a vector: one text alone gives the same.
    alone = np.asarray(onnx.embed([SAMPLE[8]]))[0]
    assert float(alone @ a[8]) > 0.99999


def test_a_cold_process_embeds_without_torch(both: tuple[OnnxEmbedder, SentenceTransformerEmbedder]) -> None:
    code = (
        "import sys\n"
        "from memory.vectors.onnx import OnnxEmbedder\n"
        "v = OnnxEmbedder().embed(['hello there'])\n"
        "heavy = [m for m in ('torch', 'sentence_transformers', 'transformers', 'chromadb') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "print(len(v[0]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(ROOT)},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "384", out.stderr


def test_a_bad_export_is_refused_and_torch_is_used(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # A graph file that is not ONNX stands for a broken cache: a fresh export goes elsewhere,
    # but an explicit graph that cannot run is an error, not silently wrong vectors.
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a graph")
    with pytest.raises(Exception):  # noqa: B017 - onnxruntime's own error type
        OnnxEmbedder(graph=bad).embed(["x"])
    with pytest.raises(ConfigError, match=r"tokenizer\.json"):
        OnnxEmbedder(tmp_path)
    # An export that cannot be made falls back to the torch model, with a warning.
    emb = OnnxEmbedder(cache_dir=tmp_path / "cache")
    import memory.vectors.onnx as mod

    def broken(model_path: Path, out: Path) -> None:
        raise ConfigError("the ONNX export disagrees with the model (cosine 0.5)")

    real, mod.export_onnx = mod.export_onnx, broken
    try:
        with caplog.at_level(logging.WARNING):
            v = emb.embed(["hello"])
    finally:
        mod.export_onnx = real
    assert len(v[0]) == 384 and emb._fallback is not None and "torch instead" in caplog.text


def _filled(path: Path, exact_max: int) -> MemoryManager:
    mem = MemoryManager.open(path, embedder=HashEmbedder(), background_embed=False, exact_search_max=exact_max)
    words = ["deploy", "vault", "zebra", "lunch", "cake", "office", "dog", "beagle", "tuesday", "standup", "key", "river"]
    mem.recall.append_many([{"content": f"{words[i % 12]} {words[(i * 5) % 12]} note {i}. "
                                        f"Second sentence about {words[(i * 7) % 12]}."} for i in range(300)])
    mem.archival.insert_many([f"chunk {i} on {words[i % 12]} and {words[(i * 3) % 12]}" for i in range(200)])
    mem.embed_pending()
    mem.close()  # reopened: a fresh process, whose Chroma is not open yet
    # Candidates deeper than the store: the hash embedder's many ties cannot make the two
    # paths fuse different candidate sets.
    return MemoryManager.open(path, embedder=HashEmbedder(), background_embed=False, exact_search_max=exact_max,
                              fusion_depth=1000)


def test_exact_search_from_sql_copies_ranks_as_chroma_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import memory.vectors.index as index_mod

    monkeypatch.setattr(index_mod, "EXACT_BUDGET_S", 1e9)  # the budget is tested at the end
    exact = _filled(tmp_path / "a", 50_000)
    chroma = _filled(tmp_path / "b", 0)
    try:
        for q in ("zebra vault", "beagle on tuesday", "river cake"):
            for mode in ("vector", "hybrid"):
                # The hash embedder gives many texts the same similarity: compare the scores
                # rank by rank (ties may be ordered either way) and the untied items.
                got = exact.search(q, k=10, mode=mode)
                want = chroma.search(q, k=10, mode=mode)
                assert np.allclose([h.score for h in got], [h.score for h in want], atol=1e-4), (q, mode)
                scores = [round(h.score, 4) for h in want]
                assert [(h.tier, h.id) for h in got if scores.count(round(h.score, 4)) == 1] == [
                    (h.tier, h.id) for h in want if scores.count(round(h.score, 4)) == 1]
        for mem, answered_exactly in ((exact, True), (chroma, False)):
            for index in (mem.archival.index, mem.recall_search.index):
                assert index is not None and (index._collection is None) is answered_exactly
                assert (index.exact_spent_s > 0) is answered_exactly
        qv = exact.embedder.embed(["zebra vault"])[0]
        a = exact.queue.nearest("recall", qv, 5)
        b = chroma.recall_search.index.query(qv, 5)  # type: ignore[union-attr]
        assert a is not None and len(a) == len(b) == 5
        assert np.allclose([s for _, s in a], [s for _, s in b], atol=1e-4)
        # An item queued again (its text changed) is answered from Chroma's side of the rule:
        # not from a stale copy.
        exact.archival.update(1, text="completely different words now")
        assert all(i != 1 for i, _ in exact.queue.nearest("archival", qv, 200) or [])
        # More items than the limit: Chroma answers.
        exact.queue.exact_max = 10
        assert exact.queue.nearest("recall", qv, 5) is None
        assert [h.id for h in exact.search("zebra vault", k=5, mode="vector")]
        # A long-lived process moves to Chroma once exact queries cost what opening it does.
        exact.queue.exact_max = 50_000
        index = exact.recall_search.index
        assert index is not None
        index._collection = None
        monkeypatch.setattr(index_mod, "EXACT_BUDGET_S", 1.5)
        index.exact_spent_s = 10.0
        exact.search_recall("zebra vault", k=3, mode="vector")
        assert index._collection is not None
    finally:
        exact.close()
        chroma.close()


def test_embed_device_setting_and_cpu_fallback(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    assert resolve_device("auto", visible=False) == "cpu"
    assert resolve_device("auto", visible=True) == "cuda"
    assert resolve_device("cuda:1", visible=True) == "cuda:1"
    with caplog.at_level(logging.WARNING):
        assert resolve_device("cuda", visible=False) == "cpu"
    assert "no CUDA GPU is visible: embedding on the CPU" in caplog.text
    with pytest.raises(ConfigError, match="RLMEM_EMBED_DEVICE"):
        resolve_device("tpu")
    cfg = MemoryConfig.load("/tmp/x", env={"RLMEM_EMBED_DEVICE": "cuda", "RLMEM_EMBED_BACKEND": "torch"})
    assert cfg.embed_device == "cuda" and cfg.embed_backend == "torch"
    with pytest.raises(ConfigError, match="RLMEM_EMBED_DEVICE"):
        MemoryConfig.load("/tmp/x", env={"RLMEM_EMBED_DEVICE": "gpu0"})
    with pytest.raises(ConfigError, match="RLMEM_EMBED_BACKEND"):
        MemoryConfig.load("/tmp/x", env={"RLMEM_EMBED_BACKEND": "tensorflow"})
    # The store's embedder follows the settings; on this CPU-only machine cuda falls back.
    import memory.vectors.backends as backends

    monkeypatch.setattr(backends, "cuda_visible", lambda: False)
    emb = make_embedder(MemoryConfig.load("/tmp/x", env={"RLMEM_EMBED_DEVICE": "cuda", "RLMEM_EMBED_BACKEND": "torch"}))
    assert isinstance(emb, SentenceTransformerEmbedder) and emb.device == "cpu"
    assert isinstance(make_embedder(MemoryConfig.load("/tmp/x", env={})), OnnxEmbedder)
    # A visible GPU: torch gets cuda (onnxruntime here has no CUDA provider).
    monkeypatch.setattr(backends, "cuda_visible", lambda: True)
    emb = make_embedder(MemoryConfig.load("/tmp/x", env={}))
    assert isinstance(emb, SentenceTransformerEmbedder) and emb.device == "cuda"


def test_progress_line_counts_items_with_rate_and_time_left() -> None:
    err = io.StringIO()
    bar = ProgressLine(err, "embedding", "chunks", enabled=True, min_interval_s=0)
    bar._t0 -= 10.0  # ten seconds in
    bar(500, 2000)
    assert "embedding: 500/2,000 chunks  50.0/s  30s left" in err.getvalue()
    bar(2000, 2000)
    bar.close()
    assert err.getvalue().endswith("embedding: 2,000/2,000 chunks in 10s\n")
    quiet = io.StringIO()
    off = ProgressLine(quiet, "embedding", "chunks", enabled=False)
    off(1, 2)
    off.close()
    assert quiet.getvalue() == ""
    assert format_duration(3725) == "1h02m" and format_duration(65) == "1m05s"


class _Variant(HashEmbedder):
    """Another encoder of the same model (as int8 is): other vectors, a ``+variant`` name."""

    @property
    def name(self) -> str:
        return f"hash:{self.dim}+int8"

    def embed(self, texts: list[str]) -> list[list[float]]:  # type: ignore[override]
        return [[-x for x in v] for v in super().embed(texts)]


def test_a_change_of_encoder_re_embeds_into_collections_of_its_own(tmp_path: Path) -> None:
    path = tmp_path / "m"
    with MemoryManager.open(path, embedder=HashEmbedder(), background_embed=False) as mem:
        mem.recall.append_many([{"content": f"note {i} about the vault"} for i in range(50)])
        mem.archival.insert_many([f"chunk {i} on zebras" for i in range(30)])
        mem.embed_pending()
        assert mem.queue.stale("recall") == mem.queue.stale("archival") == 0
        old = mem.archival.index.collection.count()  # type: ignore[union-attr]
    with MemoryManager.open(path, embedder=_Variant(), background_embed=False) as mem:
        index = mem.archival.index
        assert index is not None and index.name == "rlmem_archival.int8"
        assert mem.queue.stale("recall") == 50 and mem.queue.stale("archival") == 30
        seen: list[tuple[int, int]] = []
        assert mem.embed_pending(progress=lambda d, t: seen.append((d, t))) == 80
        assert seen[-1][0] == seen[-1][1] and mem.queue.stale("recall") == mem.queue.stale("archival") == 0
        assert index.count() == 30 and mem.search("zebras", k=3, mode="vector")
        old_coll = mem.archival.index.client.get_collection("rlmem_archival")  # type: ignore[union-attr]
        assert old_coll.count() == old  # the old encoder's vectors were left apart, untouched


@pytest.mark.skipif(not __import__("importlib").util.find_spec("onnx"), reason="needs the onnx package (int8 extra)")
def test_int8_encoder_is_close_and_named_apart(tmp_path: Path) -> None:
    fp32, q = OnnxEmbedder(), OnnxEmbedder(quantize=True)
    a, b = np.asarray(fp32.embed(SAMPLE)), np.asarray(q.embed(SAMPLE))
    assert q.name == fp32.name + "+int8" and float((a * b).sum(1).min()) > 0.95


def test_int8_without_the_onnx_package_says_what_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import shutil

    monkeypatch.setitem(sys.modules, "onnxruntime.quantization", None)  # as if onnx were missing
    fp32 = OnnxEmbedder()
    fp32.load()
    q = OnnxEmbedder(quantize=True, cache_dir=tmp_path)
    q.graph_path.parent.mkdir(parents=True)
    shutil.copy(fp32.graph_path, q.graph_path.with_name("model.onnx"))  # no export needed
    with pytest.raises(ConfigError, match=r"rlm-memory\[int8\]"):
        q.embed(["x"])
    assert not q.graph_path.exists() and q._fallback is None  # never fp32 vectors under the int8 name


def test_filtered_exact_search_matches_chroma_and_odd_filters_go_to_chroma(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from memory.vectors.copies import where_sql

    def filled(p: Path, exact_max: int) -> MemoryManager:
        with MemoryManager.open(p, embedder=HashEmbedder(), background_embed=False) as mem:
            mem.recall.append_many([{"content": f"vault note {i} zebra", "role": ("user", "assistant", "tool")[i % 3],
                                     "session_id": f"s{i % 4}", "agent_id": ("a", "b")[i % 2]} for i in range(120)])
            mem.embed_pending()
        return MemoryManager.open(p, embedder=HashEmbedder(), background_embed=False,
                                  exact_search_max=exact_max, fusion_depth=1000)

    exact, chroma = filled(tmp_path / "a", 50_000), filled(tmp_path / "b", 0)
    try:
        since = datetime.now(UTC) - timedelta(days=1)
        for kw in ({}, {"role": "assistant"}, {"agent_id": "b", "session_id": "s1"}, {"since": since}):
            got = exact.search_recall("zebra vault", k=200, mode="vector", **kw)
            want = chroma.search_recall("zebra vault", k=200, mode="vector", **kw)
            # Exact finds everything Chroma's approximate filtered search finds (and at times
            # one it misses).
            assert {h.id for h in want} <= {h.id for h in got} and got, kw
            assert all(all(getattr(h, f) == v for f, v in kw.items() if f != "since") for h in got)
            assert all(h.role != "tool" for h in got) or kw.get("role") == "tool"
        assert exact.recall_search.index._collection is None  # type: ignore[union-attr]
    finally:
        exact.close()
        chroma.close()
    cols = {"role": "role", "ts": "created_us / 1e6"}
    assert where_sql({"$and": [{"role": {"$ne": "tool"}}, {"ts": {"$gte": 1.5}}]}, cols) == (
        "(role <> :w0 AND created_us / 1e6 >= :w1)", {"w0": "tool", "w1": 1.5})
    assert where_sql({"tag:x": True}, cols) is None  # not a column: Chroma answers
    assert where_sql({"role": {"$in": ["a", "b"]}}, cols) is None
    assert where_sql({"$or": []}, cols) is None


def test_a_cold_hybrid_search_imports_neither_torch_nor_chromadb(tmp_path: Path) -> None:
    store = tmp_path / "s"
    with MemoryManager.open(store, background_embed=False) as mem:
        mem.recall.append_many([{"content": "the deploy key lives in vault zebra"}, {"content": "lunch on Friday"}])
        mem.archival.insert("our office dog is a beagle named Pixel")
        mem.embed_pending()
    code = (
        "import sys, json, io\n"
        "from agents.cli.main import main\n"
        "out = io.StringIO()\n"
        f"rc = main(['--store', {str(store)!r}, '--json', 'search', 'where is the deploy key?'], stdout=out)\n"
        "hits = json.loads(out.getvalue())['results']\n"
        "heavy = [m for m in ('torch', 'chromadb', 'sentence_transformers') if m in sys.modules]\n"
        "print(rc, hits[0]['text'], heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(ROOT)},
                         capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "0 the deploy key lives in vault zebra []", out.stderr


def test_the_optimised_graph_is_saved_once_checked_and_remade_when_its_source_changes(
    both: tuple[OnnxEmbedder, SentenceTransformerEmbedder], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import shutil

    from memory.vectors.onnx_graphs import optimized_graph

    onnx, _ = both
    onnx.load()
    emb = OnnxEmbedder(cache_dir=tmp_path, fused=False)  # the plain graph's optimised form
    emb.graph_path.parent.mkdir(parents=True)
    shutil.copy(onnx.graph_path, emb.graph_path)  # no export needed
    small, many = SAMPLE[:2], SAMPLE[:12]
    a = np.asarray(emb.embed(small))
    assert emb._quick is not None and emb._session is None  # a query: the quick session only
    b = np.asarray(emb.embed(many))
    assert emb._session is not None and emb._quick is None  # batches: the prepacked one from then on
    opt = optimized_graph(emb.graph_path)
    assert emb._run == (opt, True) and opt.with_name("model.onnx.data").is_file()
    want = np.asarray(onnx.embed(many))  # the graph loaded the ordinary way (not this cache)
    assert float((b * want).sum(1).min()) > 0.99999 and float((a * want[:2]).sum(1).min()) > 0.99999
    made = opt.stat().st_mtime_ns
    assert optimized_graph(emb.graph_path) == opt and opt.stat().st_mtime_ns == made  # made once
    assert not [p for p in opt.parent.parent.iterdir() if p.name.startswith(".opt-")]  # no leftovers
    os.utime(emb.graph_path, ns=(made + 10**9, made + 10**9))  # the source changed: made again
    assert optimized_graph(emb.graph_path) != opt
    # A damaged saved graph is not used: the plain graph is, with a warning.
    again = OnnxEmbedder(cache_dir=tmp_path, fused=False)
    data = optimized_graph(again.graph_path).with_name("model.onnx.data")
    data.write_bytes(data.read_bytes()[:1000])
    with caplog.at_level(logging.WARNING):
        c = np.asarray(again.embed(small))
    assert "does not load" in caplog.text and again._run == (again.graph_path, False)
    assert float((c * want[:2]).sum(1).min()) > 0.99999
