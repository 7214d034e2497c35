"""Synthetic conversation logs for the memory-REPL tests and benchmark.

Rules this module keeps:

* Deterministic: the same arguments give the same messages (seeded generator).
* Fast: messages are built from a fixed vocabulary with ``random.choices`` and written with
  ``RecallLog.append_many`` in large batches, with recall embeddings off, so a 10M-token log
  (about 40M characters) builds in well under a minute on SQLite.
* ``big_store`` builds a store once per process and hands back the same one afterwards, so
  several test modules share one build.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

__all__ = ["NEEDLE", "NEEDLE_ANSWER", "BigStore", "big_store", "fill_recall", "open_store"]

NEEDLE = "The vault combination for project Heliotrope is 7391-alpha-22."
NEEDLE_ANSWER = "7391-alpha-22"

_VOCABULARY = (
    "the a we you it they this that plan meeting budget launch review design team customer "
    "report deadline draft code test deploy server database query index cache latency memory "
    "session agent model prompt token search result answer question idea note task ticket bug "
    "fix release version branch merge issue feature user admin config setting value option "
    "monday tuesday friday morning afternoon week month quarter goal metric chart slide "
    "should could would will can maybe probably definitely agreed decided postponed moved "
    "about with from into over under after before during because although while since "
    "good bad fast slow large small new old first last next previous important minor major"
)
_WORDS = _VOCABULARY.split()


def open_store(path: Path, **overrides: Any) -> Any:
    """A store with the hashing embedder, recall embeddings and background embedding off."""
    from memory.manager import MemoryManager
    from memory.vectors.embeddings import HashEmbedder

    opts: dict[str, Any] = {"embed_recall": False, "background_embed": False}
    opts.update(overrides)
    return MemoryManager.open(path, embedder=HashEmbedder(), **opts)


def fill_recall(
    mem: Any,
    *,
    tokens: int,
    message_chars: int = 400,
    session_size: int = 100,
    batch: int = 20_000,
    needle_at: float | None = None,
    seed: int = 7,
    start: datetime = datetime(2024, 1, 1, 9, 0, tzinfo=UTC),
) -> dict[str, Any]:
    """Append about ``tokens`` tokens of messages; plant ``NEEDLE`` at fraction ``needle_at``.

    Returns where the needle went (``needle_id``, ``needle_session``) and the counts.
    """
    rng = random.Random(seed)
    words_per_msg = max(1, message_chars // 6)
    total = max(1, tokens * 4 // message_chars)
    needle_index = int(total * needle_at) if needle_at is not None else -1
    needle_id: int | None = None
    needle_session = ""
    done = 0
    while done < total:
        n = min(batch, total - done)
        words = rng.choices(_WORDS, k=n * words_per_msg)
        rows = []
        for j in range(n):
            i = done + j
            content = " ".join(words[j * words_per_msg : (j + 1) * words_per_msg])
            if i == needle_index:
                content = (
                    f"{content[: message_chars // 2]} {NEEDLE} {content[message_chars // 2 :]}"
                )
            rows.append(
                {
                    "content": content,
                    "role": "user" if i % 2 == 0 else "assistant",
                    "session_id": f"s{i // session_size:06d}",
                    "created_at": start + timedelta(minutes=i),
                }
            )
        stored = mem.recall.append_many(rows)
        if done <= needle_index < done + n:
            needle_id = stored[needle_index - done].id
            needle_session = stored[needle_index - done].session_id
        done += n
    return {"messages": total, "needle_id": needle_id, "needle_session": needle_session}


@dataclass
class BigStore:
    path: Path
    messages: int
    needle_id: int
    needle_session: str
    build_s: float


_BUILT: dict[int, BigStore] = {}


def big_store(root: Path, tokens: int = 10_000_000) -> BigStore:
    """A store holding ``tokens`` tokens of recall with the needle at 61%, built once."""
    if tokens in _BUILT:
        return _BUILT[tokens]
    path = root / f"big-{tokens}"
    t0 = time.perf_counter()
    mem = open_store(path)
    try:
        info = fill_recall(mem, tokens=tokens, needle_at=0.61)
    finally:
        mem.close()
    built = BigStore(
        path,
        info["messages"],
        int(info["needle_id"]),
        info["needle_session"],
        time.perf_counter() - t0,
    )
    _BUILT[tokens] = built
    return built
