"""Embedders: the packaged MiniLM (loaded from its path, lazily), the hash embedder, the cache."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from memory.errors import ConfigError, ValidationError
from memory.vectors.embeddings import (
    CachedEmbedder,
    Embedder,
    HashEmbedder,
    SentenceTransformerEmbedder,
)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def minilm() -> SentenceTransformerEmbedder:
    """The real model, loaded once per test session."""
    emb = SentenceTransformerEmbedder(threads=1)
    emb.embed(["warm up"])
    return emb


def _norm(v: list[float]) -> float:
    return math.sqrt(sum(x * x for x in v))


def _cos(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_minilm_from_package_path_normalised_and_semantic(minilm: SentenceTransformerEmbedder) -> None:
    assert isinstance(minilm, Embedder) and minilm.dim == 384
    a, b, c = minilm.embed(["I adopted a puppy", "We got a new dog", "Quarterly tax filing deadline"])
    assert all(abs(_norm(v) - 1) < 1e-4 for v in (a, b, c)) and len(a) == 384
    assert _cos(a, b) > _cos(a, c) + 0.2
    assert minilm.embed([]) == []
    # A huge text is cut before tokenising: the model reads 256 word pieces anyway.
    assert len(minilm.embed(["word " * 200_000])[0]) == 384


def test_torch_is_imported_lazily() -> None:
    code = (
        "import sys, memory, memory.errors, memory.vectors.embeddings\n"
        "from memory.vectors.embeddings import SentenceTransformerEmbedder\n"
        "e = SentenceTransformerEmbedder(); d = e.dim\n"
        "heavy = [m for m in ('torch', 'sentence_transformers', 'chromadb', 'sqlalchemy') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "print(d)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(ROOT)},
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "384"


def test_bad_configuration_and_input() -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        SentenceTransformerEmbedder("/nonexistent/model")
    with pytest.raises(ConfigError):
        SentenceTransformerEmbedder(batch_size=0)
    with pytest.raises(ConfigError):
        HashEmbedder(1)
    with pytest.raises(ValidationError, match="not one string"):
        HashEmbedder().embed("a string")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        HashEmbedder().embed([b"bytes"])  # type: ignore[list-item]


def test_hash_embedder_is_deterministic_and_normalised() -> None:
    e = HashEmbedder(128)
    a, b, c = e.embed(["the red fox", "the red fox", "completely different words"])
    assert a == b and len(a) == 128 and abs(_norm(a) - 1) < 1e-9
    assert _cos(a, e.embed(["red fox jumps"])[0]) > _cos(a, c)
    assert abs(_norm(e.embed([""])[0]) - 1) < 1e-9


def test_cached_embedder_hits_and_persists(tmp_path: Path) -> None:
    calls: list[int] = []

    class Counting(HashEmbedder):
        def embed(self, texts):  # type: ignore[no-untyped-def]
            calls.append(len(texts))
            return super().embed(texts)

    c = CachedEmbedder(Counting(32), tmp_path / "cache.sqlite")
    first = c.embed(["a", "b", "a"])
    assert calls == [2] and (c.hits, c.misses) == (1, 2)
    c.close()
    c2 = CachedEmbedder(Counting(32), tmp_path / "cache.sqlite")
    second = c2.embed(["b", "a"])
    assert calls == [2] and c2.hits == 2
    assert [round(x, 5) for x in second[1]] == [round(x, 5) for x in first[0]]
    assert c2.dim == 32 and c2.name == "hash:32"
