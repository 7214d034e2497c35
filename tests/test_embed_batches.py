"""How the queue embeds a batch: texts shortest first in slices sized by the measured speed, a
batch (one transaction) of several slices, and a stop between slices that writes only whole
items and leaves the rest queued."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from memory.manager import MemoryManager
from memory.text.chunking import passages
from memory.vectors import copies as vc
from memory.vectors.embeddings import HashEmbedder


class Recording(HashEmbedder):
    """The hash embedder at a model's pace (100,000 characters a second), recording each
    call's texts; ``on_call(n)`` runs after call ``n``."""

    def __init__(self) -> None:
        super().__init__(64)
        self.calls: list[list[str]] = []
        self.on_call = lambda n: None

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        out = super().embed(texts)
        time.sleep(sum(map(len, texts)) / 100_000)
        self.calls.append(list(texts))
        self.on_call(len(self.calls))
        return out


def _store(path: Path, emb: Recording) -> MemoryManager:
    return MemoryManager.open(path, embedder=emb, background_embed=False)


def test_a_batch_embeds_its_passages_shortest_first_in_slices(tmp_path: Path) -> None:
    emb = Recording()
    with _store(tmp_path / "s", emb) as mem:
        words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa"]
        rows = [{"content": ". ".join(" ".join(words[: 3 + (i * j) % 8]) + f" n{i}" for j in range(1 + i % 4)) + "."}
                for i in range(300)]
        mem.recall.append_many(rows)
        # Slices of about 0.02 s: some 2,000 characters.
        assert mem.queue.drain_batch("recall", 300, slice_s=0.02) == 300
        assert len(emb.calls) > 3  # the batch went in several model calls ...
        lengths = [len(t) for call in emb.calls for t in call]
        assert lengths == sorted(lengths)  # ... each of similar lengths: shortest first overall
        assert mem.queue.pending("recall") == 0
        # Nothing was lost or mixed up in the reordering: each message's copy holds its own
        # passages' vectors, in order. (Checked on the copies, not through Chroma's HNSW
        # index, whose approximate search can miss a top-1 among hash vectors.)
        with mem.db.read() as conn:
            got = vc.read(conn, "recall", mem.queue.sources["recall"].model, list(range(1, 301)))
        assert len(got) == 300
        for i, row in enumerate(rows, 1):
            want = np.asarray(HashEmbedder(64).embed(passages(row["content"])), dtype=np.float32).ravel()
            assert np.allclose(got[i], want, atol=1e-3), i


def test_a_stop_between_slices_writes_whole_items_and_the_rest_resumes(tmp_path: Path) -> None:
    emb = Recording()
    stop = threading.Event()
    with _store(tmp_path / "s", emb) as mem:
        mem.recall.append_many([{"content": f"Message {i} about the vault. It has a second sentence here. "
                                            f"And a third one, number {i}."} for i in range(200)])
        emb.on_call = lambda n: stop.set() if n == 2 else None
        done = mem.queue.drain_batch("recall", 200, stop=stop, slice_s=0.02)
        assert len(emb.calls) == 2 and 0 <= done < 200  # stopped after the slice in hand
        assert mem.queue.pending("recall") == 200 - done
        model = mem.queue.sources["recall"].model
        with mem.db.read() as conn:
            copies = vc.read(conn, "recall", model, list(range(1, 201)))
        assert len(copies) == done and all(v.size == 3 * 64 for v in copies.values())  # whole items only
        stop.clear()
        emb.on_call = lambda n: None
        assert mem.embed_pending() == 200 - done and mem.queue.pending() == 0
        with mem.db.read() as conn:
            assert len(vc.read(conn, "recall", model, list(range(1, 201)))) == 200


def test_a_batch_spans_several_slices(tmp_path: Path) -> None:
    emb = Recording()
    sizes: list[int] = []
    with _store(tmp_path / "s", emb) as mem:
        mem.archival.insert_many([f"chunk {i} " + "word " * (20 + i % 50) for i in range(2000)])
        real = mem.queue.drain_batch

        def counted(tier: str, batch: int, **kw: object) -> int:
            sizes.append(batch)
            return real(tier, batch, **kw)  # type: ignore[arg-type]

        mem.queue.drain_batch = counted  # type: ignore[method-assign]
        assert mem.embed_pending() == 2000
    # A fast encoder: after the first small batch, batches are as large as allowed (256),
    # not one model call's worth.
    assert sizes[0] == 16 and max(sizes) == 256 and len(sizes) <= 12


class Other(HashEmbedder):
    """Other vectors under another name: a change of encoder."""

    @property
    def name(self) -> str:
        return "hash:other"


def test_ingest_after_a_change_of_encoder_re_embeds_the_old_chunks_with_progress(tmp_path: Path) -> None:
    with MemoryManager.open(tmp_path / "s", embedder=HashEmbedder(64), background_embed=False) as mem:
        mem.archival.insert_many([f"old chunk {i} about zebras" for i in range(40)])
        mem.embed_pending()
    doc = tmp_path / "new.md"
    doc.write_text("A new note about the vault and its key.\n", encoding="utf-8")
    seen: list[tuple[int, int]] = []
    with MemoryManager.open(tmp_path / "s", embedder=Other(64), background_embed=False) as mem:
        assert mem.queue.stale("archival") == 40
        mem.archival.ingest(doc, progress=lambda d, t: seen.append((d, t)))
        assert mem.queue.stale("archival") == 0 and mem.queue.pending("archival") == 0
        assert seen[-1] == (41, 41)  # the progress counts the old chunks too
        assert mem.search_archival("zebras", k=3, mode="vector")


def test_a_drain_opens_chroma_while_its_first_batch_is_embedded(tmp_path: Path) -> None:
    emb = Recording()
    seen: list[bool] = []
    with _store(tmp_path / "s", emb) as mem:
        mem.recall.append_many([{"content": f"Message {i} about the vault, number {i}."} for i in range(50)])
        index = mem.queue.sources["recall"].index
        assert index._collection is None  # a fresh store: Chroma not opened yet
        # After the model's first call, before the batch's first write: opening or open.
        emb.on_call = lambda n: seen.append(
            index._collection is not None or any(t.name == "rlmem-chroma-open" for t in threading.enumerate())
        ) if n == 1 else None
        assert mem.embed_pending(tiers=["recall"]) == 50
        assert seen == [True]
        assert index._collection is not None
        assert not [t for t in threading.enumerate() if t.name == "rlmem-chroma-open"]  # joined
        assert index.open_soon() is None  # already open: nothing started
        hit = mem.search_recall("Message 17 about the vault, number 17.", k=1, mode="vector")
        assert hit and hit[0].id == 18
