"""Chroma itself: the client, the embedding-function adapter, collection names and ids, and
the errors that mean damage or a replaced collection (used by ``memory.vectors.index``).

Rules this module keeps:

* Chroma always gets our embedding function (``ChromaEF``, or our precomputed vectors): its
  default embedding function, which downloads a model, never runs. Telemetry is off, and an
  embedded directory is created owner-only (0700): vectors are as private as the text.
* Vectors of different encoders never share a collection (``collection_name``).
* An item embedded as several passages has the Chroma ids ``part_id(item, n)``; ``item_of``
  maps them back.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from memory.errors import ConfigError, IndexError_
from memory.vectors.embeddings import Embedder

__all__ = ["ChromaEF", "collection_name", "is_damaged", "is_replaced", "item_of", "make_chroma_client", "part_id"]


def is_damaged(exc: BaseException) -> bool:
    """Whether a Chroma error says the collection's HNSW segment cannot be loaded or written
    (what a kill -9 in the middle of Chroma persisting it leaves behind)."""
    msg = str(exc).lower()
    return "hnsw" in msg and ("segment" in msg or "index" in msg)


def is_replaced(exc: BaseException) -> bool:
    """Whether a Chroma error says the collection this handle points to no longer exists: it
    was dropped and made again under the same name (``reindex`` in another process), so the
    handle's collection id is stale."""
    msg = str(exc).lower()
    return type(exc).__name__ == "NotFoundError" or ("collection" in msg and "does not exist" in msg)


def make_chroma_client(
    *, path: str | Path | None = None, host: str | None = None, port: int = 8000, ssl: bool = False
) -> Any:
    """An embedded ``PersistentClient`` at ``path`` or an ``HttpClient`` for ``host:port``."""
    import chromadb
    from chromadb.config import Settings

    settings = Settings(anonymized_telemetry=False, allow_reset=False)
    try:
        if host:
            return chromadb.HttpClient(host=host, port=port, ssl=ssl, settings=settings)
        if path is None:
            raise ConfigError("a Chroma client needs a directory (path) or a server (host)")
        Path(path).mkdir(mode=0o700, parents=True, exist_ok=True)  # vectors are as private as the text
        return chromadb.PersistentClient(path=str(path), settings=settings)
    except ConfigError:
        raise
    except Exception as exc:
        where = f"server {host}:{port}" if host else f"directory {path}"
        raise IndexError_(f"cannot open the Chroma {where}: {exc}") from exc


class _NoEmbedder:
    def __init__(self, name: str) -> None:
        self.name = name
        self.dim = 0

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        raise IndexError_("this collection is embedded by rlm-memory: open it through MemoryManager")


class ChromaEF:
    """Adapter giving Chroma our embedder, so it never falls back to its own model."""

    def __init__(self, embedder: Embedder) -> None:
        self._embedder = embedder

    def __call__(self, input: Sequence[str]) -> list[Any]:
        import numpy as np
        return [np.asarray(v, dtype=np.float32) for v in self._embedder.embed(list(input))]

    def embed_query(self, input: Sequence[str]) -> list[Any]:
        return self(input)

    @staticmethod
    def name() -> str:
        return "rlmem"

    def is_legacy(self) -> bool:
        return False

    def default_space(self) -> str:
        return "cosine"

    def supported_spaces(self) -> list[str]:
        return ["cosine"]

    def get_config(self) -> dict[str, Any]:
        return {"embedder": self._embedder.name}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> Any:
        # Chroma rebuilds the function when it reads a collection's configuration; we always
        # pass vectors ourselves, so this stand-in only has to exist, and refuses to embed.
        return ChromaEF(_NoEmbedder(str(config.get("embedder", "?"))))

    @staticmethod
    def validate_config(config: dict[str, Any]) -> None:
        return None

    def validate_config_update(self, old: dict[str, Any], new: dict[str, Any]) -> None:
        return None


def collection_name(base: str, embedder: Embedder) -> str:
    """``base`` for the default model's own vectors; ``base.<model>`` for another named model
    (``all-mpnet-base-v2``: vectors of another dimension), and ``.<variant>`` after either for
    an encoder whose name carries a ``+variant`` (int8): vectors of different encoders never
    share a collection."""
    from memory.vectors.models import own_collection

    name = embedder.name
    parts = [base]
    model = own_collection(name)
    if model is not None:
        parts.append(re.sub(r"[^A-Za-z0-9]+", "-", model).strip("-"))
    if "+" in name:
        parts.append(re.sub(r"[^A-Za-z0-9]+", "-", name.split("+", 1)[1]).strip("-") or "variant")
    return ".".join(parts)


def part_id(item: int, n: int) -> str:
    """The Chroma id of an item's ``n``-th passage: ``"<id>"`` for the first, ``"<id>.<n>"``."""
    return str(item) if n == 0 else f"{item}.{n}"


def item_of(chroma_id: str) -> int:
    """The item id of a Chroma id made by ``part_id``."""
    return int(chroma_id.split(".", 1)[0])
