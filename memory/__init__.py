"""rlm-memory's memory tiers: working memory (blocks), the recall log, the archival store,
and the ``MemoryManager`` that opens all three.

Names are exported lazily (PEP 562 ``__getattr__``): ``import memory`` or
``import memory.errors`` loads neither SQLAlchemy nor chromadb nor torch; each name's module
is imported on first access.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from memory.lazy import lazy_exports

__all__ = [
    "ArchivalStore",
    "Block",
    "CachedEmbedder",
    "Chunk",
    "CompiledContext",
    "Database",
    "Embedder",
    "FusionConfig",
    "GrepHit",
    "HashEmbedder",
    "IngestSummary",
    "MemoryConfig",
    "MemoryManager",
    "Message",
    "OnnxEmbedder",
    "RecallLog",
    "SearchHit",
    "SentenceTransformerEmbedder",
    "SessionHit",
    "SessionInfo",
    "WorkingMemory",
]

_WHERE = {
    "ArchivalStore": "memory.archival.store",
    "Chunk": "memory.archival.store",
    "IngestSummary": "memory.archival.store",
    "Block": "memory.blocks",
    "WorkingMemory": "memory.blocks",
    "CachedEmbedder": "memory.vectors.embeddings",
    "Embedder": "memory.vectors.embeddings",
    "HashEmbedder": "memory.vectors.embeddings",
    "SentenceTransformerEmbedder": "memory.vectors.embeddings",
    "OnnxEmbedder": "memory.vectors.onnx",
    "CompiledContext": "memory.manager",
    "MemoryManager": "memory.manager",
    "MemoryConfig": "memory.config",
    "Database": "memory.db",
    "FusionConfig": "memory.fusion",
    "RecallLog": "memory.recall.log",
    "GrepHit": "memory.types",
    "Message": "memory.types",
    "SearchHit": "memory.types",
    "SessionHit": "memory.types",
    "SessionInfo": "memory.types",
}

if TYPE_CHECKING:
    from memory.archival.store import ArchivalStore, Chunk, IngestSummary
    from memory.blocks import Block, WorkingMemory
    from memory.config import MemoryConfig
    from memory.db import Database
    from memory.fusion import FusionConfig
    from memory.manager import CompiledContext, MemoryManager
    from memory.recall.log import RecallLog
    from memory.types import GrepHit, Message, SearchHit, SessionHit, SessionInfo
    from memory.vectors.embeddings import (
        CachedEmbedder,
        Embedder,
        HashEmbedder,
        SentenceTransformerEmbedder,
    )
    from memory.vectors.onnx import OnnxEmbedder

__getattr__, __dir__ = lazy_exports(__name__, _WHERE, __all__)
