"""onnxruntime's BERT fusions of the ONNX MiniLM: made once, cached under a key of the
onnxruntime version and the source graph, the same vectors as the torch model (so the same
encoder name), a damaged cached file never used; the int8 copy quantised from it."""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from memory.vectors.embeddings import SentenceTransformerEmbedder
from memory.vectors.onnx import OnnxEmbedder
from memory.vectors.onnx_graphs import fused_path

TEXTS = [
    "I adopted a puppy last week",
    "x",
    "ünïcødé テキスト 😀 — em dash, «quotes», 中文字符",
    "The deploy key lives in vault zebra. " * 60,  # beyond 256 word pieces: truncated alike
    *[f"message {i}: lunch with Marta on Friday, bring {i} cakes" for i in range(12)],
]
needs_onnx = pytest.mark.skipif(importlib.util.find_spec("onnx") is None, reason="needs the onnx package (int8 extra)")


@pytest.fixture(scope="module")
def export() -> Path:
    plain = OnnxEmbedder(fused=False)
    plain.load()
    return plain.graph_path


@pytest.fixture(scope="module")
def torch_vectors() -> np.ndarray:
    return np.asarray(SentenceTransformerEmbedder(threads=1).embed(TEXTS))


def _cache(tmp_path: Path, export: Path, **kw: object) -> OnnxEmbedder:
    emb = OnnxEmbedder(cache_dir=tmp_path, **{"fused": True, **kw})  # type: ignore[arg-type]
    emb.graph_path.parent.mkdir(parents=True, exist_ok=True)
    if not emb.graph_path.with_name("model.onnx").is_file():
        shutil.copy2(export, emb.graph_path.with_name("model.onnx"))  # no export needed
    return emb


def _ops(graph: Path) -> set[str]:
    import onnx

    return {n.op_type for n in onnx.load(str(graph), load_external_data=False).graph.node}


def test_the_fused_graph_writes_the_torch_vectors_is_made_once_and_keyed(
    tmp_path: Path, export: Path, torch_vectors: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    emb = _cache(tmp_path, export)
    got = np.asarray(emb.embed(TEXTS))
    fused = fused_path(emb.graph_path)
    assert fused.is_file() and emb._run is not None and emb._run[0].parent.parent == fused.parent
    assert emb._run[0] != emb.graph_path and emb._run[1]  # the fused graph's optimised form runs
    if importlib.util.find_spec("onnx") is not None:
        assert {"Attention", "SkipLayerNormalization", "EmbedLayerNormalization"} <= _ops(fused)
    assert float((got * torch_vectors).sum(1).min()) >= 0.9999  # the same vectors ...
    assert emb.name == SentenceTransformerEmbedder(threads=1).name  # ... so the same name
    made = fused.stat().st_mtime_ns
    again = _cache(tmp_path, export)
    assert np.allclose(np.asarray(again.embed(TEXTS)), got, atol=1e-5)
    assert fused.stat().st_mtime_ns == made  # made once, then reused
    assert not [p for p in fused.parent.iterdir() if p.name.startswith(".bert-")]  # no leftovers
    # Re-made when the source graph or onnxruntime changes: another file name.
    os.utime(emb.graph_path, ns=(made + 10**9, made + 10**9))
    assert fused_path(emb.graph_path) != fused
    import onnxruntime

    monkeypatch.setattr(onnxruntime, "__version__", "0.0.1")
    assert "0.0.1" in fused_path(emb.graph_path).name


def test_a_damaged_fused_graph_is_not_used(
    tmp_path: Path, export: Path, torch_vectors: np.ndarray, caplog: pytest.LogCaptureFixture
) -> None:
    emb = _cache(tmp_path, export)
    fused = fused_path(emb.graph_path)
    fused.write_bytes(b"not a graph")  # a damaged cache file
    with caplog.at_level(logging.WARNING):
        got = np.asarray(emb.embed(TEXTS))
    assert "does not load" in caplog.text and emb._run == (emb.graph_path, False)  # the plain export
    assert float((got * torch_vectors).sum(1).min()) >= 0.9999


@needs_onnx
def test_the_int8_copy_is_quantised_from_the_fused_graph_and_remade_when_damaged(
    tmp_path: Path, export: Path, torch_vectors: np.ndarray, caplog: pytest.LogCaptureFixture
) -> None:
    q = _cache(tmp_path, export, quantize=True)
    got = np.asarray(q.embed(TEXTS))
    int8 = fused_path(q.graph_path.with_name("model.onnx"), int8=True)
    assert int8.is_file() and "QAttention" in _ops(int8)
    assert q.name.endswith("+int8-fused") and float((got * torch_vectors).sum(1).min()) > 0.95
    int8.write_bytes(int8.read_bytes()[:5000])  # damaged: made again, never another graph's vectors
    again = OnnxEmbedder(cache_dir=tmp_path, quantize=True, fused=True)
    assert not OnnxEmbedder(cache_dir=tmp_path).fused and not OnnxEmbedder(cache_dir=tmp_path, quantize=True).fused
    with caplog.at_level(logging.WARNING):
        redo = np.asarray(again.embed(TEXTS))
    assert "making it again" in caplog.text and "QAttention" in _ops(int8)
    assert np.allclose(redo, got, atol=1e-5)
    plain = _cache(tmp_path, export, quantize=True, fused=False)  # the plain graph's copy: its own name
    assert plain.name.endswith("+int8") and plain.name != q.name
