"""Messages embedded as passages: the splitter, and a message scored by its best passage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from memory.manager import MemoryManager
from memory.text.chunking import MAX_PASSAGES, passages
from tests.test_archival import CountingEmbedder

LONG = (
    "We spent most of the weekend repainting the hallway and arguing about colours. "
    "My brother insisted on a shade of green that nobody else liked at all. "
    "By Sunday evening we had finished two coats and cleaned every brush in the house. "
    "Oh, and I finally bought a new air fryer ten days ago, which has been great. "
    "The neighbours came over for dinner afterwards and stayed far too late."
)


# --- the splitter ----------------------------------------------------------------------------


def test_one_sentence_is_embedded_whole_as_it_reads() -> None:
    for text in ("Thanks!", "  short one  ", "my sister adopted a grey kitten", "a\n"):
        assert passages(text) == [text]


def test_sentences_become_passages_and_short_ones_join_the_next() -> None:
    got = passages("Hi. I bought a new air fryer ten days ago! It works great.\nWhat recipes suit it?")
    assert got == ["Hi. I bought a new air fryer ten days ago!", "It works great. What recipes suit it?"]
    assert len(passages(LONG)) == 5


def test_a_speaker_label_is_kept_on_every_passage() -> None:
    """A message that opens with "Name: " (one to three capitalised words) is said by that
    speaker throughout: each passage carries the label. Other openings are not labels."""
    text = "Caroline: Hey Mel! Good to see you! How have you been? I went to a support group yesterday."
    assert passages(text) == ["Caroline: Hey Mel! Good to see you!",
                              "Caroline: How have you been? I went to a support group yesterday."]  # fmt: skip
    assert passages("Dr. Smith: Take two pills each morning with food. Come back next week if it hurts.") == [
        "Dr. Smith: Take two pills each morning with food.", "Dr. Smith: Come back next week if it hurts."]  # fmt: skip
    assert passages("Élodie: Je suis allée au marché hier. Puis nous avons mangé ensemble chez elle.")[1] == (
        "Élodie: Puis nous avons mangé ensemble chez elle.")  # fmt: skip
    # One passage: whole, as it reads. A lower-case word or four words: not a speaker.
    assert passages("Caroline: I went to a support group yesterday.") == ["Caroline: I went to a support group yesterday."]
    for text in ("Here's my list: eggs and milk for the cake. Then the shop for more bread.",
                 "One Two Three Four: the first thing to say here. And a second thing to say."):  # fmt: skip
        assert not passages(text)[1].startswith(text.split(":")[0])


def test_long_sentences_are_windowed_and_passages_are_capped() -> None:
    words = [f"w{i}" for i in range(300)]
    got = passages(" ".join(words), max_words=120)
    assert [len(p.split()) for p in got] == [120, 120, 60]
    assert " ".join(got).split() == words  # nothing lost, nothing repeated, in order
    many = passages("One two three four five six seven. " * 500)
    assert len(many) == MAX_PASSAGES and all(p == "One two three four five six seven." for p in many)
    assert passages("x. " * 10_000)  # short sentences only: joined, then capped
    huge = passages("word " * 2_000_000)  # 10 MB without a full stop: bounded work
    assert len(huge) == MAX_PASSAGES


# --- recall search by passages ---------------------------------------------------------------


def _mem(path: Path, emb: Any, **kw: Any) -> MemoryManager:
    return MemoryManager.open(path, embedder=emb, background_embed=False, **kw)


def _chroma_ids(mem: MemoryManager) -> list[str]:
    assert mem.recall_search.index is not None
    return sorted(mem.recall_search.index.collection.get(include=[])["ids"])


def _copy_rows(mem: MemoryManager) -> dict[int, tuple[str, int]]:
    with mem.db.read() as conn:
        rows = conn.exec_driver_sql("SELECT item_id, model, vec, dtype FROM rlmem_vectors WHERE tier = 'recall'")
        return {int(i): (m, len(bytes(v)) // np.dtype(d).itemsize // 64) for i, m, v, d in rows}


def test_a_fact_said_in_passing_is_found_by_its_passage(tmp_path: Path) -> None:
    fillers = [
        "We talked about the weather and the garden for a long while today.",
        "I am reading a long novel about sailors and their ships at sea.",
        "Could you suggest a few board games for a family evening at home?",
    ]
    query = "bought a new air fryer"
    whole = {}
    for passages_on in (True, False):
        with _mem(tmp_path / str(passages_on), CountingEmbedder(), recall_passages=passages_on) as mem:
            ids = [m.id for m in mem.recall.append_many([{"content": t} for t in [*fillers, LONG]])]
            mem.embed_pending()
            hits = mem.search_recall(query, mode="vector", k=4)
            whole[passages_on] = hits
            assert {h.id for h in hits} == set(ids)  # each message once, whatever its passages
    best = {h.id: h.score for h in whole[True]}
    plain = {h.id: h.score for h in whole[False]}
    assert whole[True][0].id == 4  # its passage about the air fryer is closest
    assert best[4] > plain[4] + 0.2  # one vector for the whole message blurs that sentence
    assert all(abs(best[i] - plain[i]) < 1e-6 for i in (1, 2, 3))  # one sentence: one vector


def test_passages_in_chroma_and_sql_and_their_removal(tmp_path: Path) -> None:
    emb = CountingEmbedder()
    with _mem(tmp_path / "m", emb) as mem:
        a = mem.recall.append(LONG, session_id="s").id
        b = mem.recall.append("just one sentence here", session_id="s").id
        mem.embed_pending()
        assert emb.texts == 6
        assert _chroma_ids(mem) == sorted([str(a), *(f"{a}.{n}" for n in range(1, 5)), str(b)])
        assert _copy_rows(mem) == {a: ("hash:64#passages", 5), b: ("hash:64#passages", 1)}
        got = mem.recall_search.index.collection.get(ids=[f"{a}.3"], include=["metadatas"])  # type: ignore[union-attr]
        assert got["metadatas"][0]["_item"] == a and got["metadatas"][0]["session_id"] == "s"

        # A text-only candidate's similarity is its best passage's, read from SQL (float16 copies).
        qv = np.asarray(emb.embed(["bought a new air fryer"])[0], dtype=np.float32)
        sims = mem.recall_search.queue.similarities("recall", qv.tolist(), [a])
        parts = np.asarray(emb.embed(passages(LONG)), dtype=np.float32) @ qv
        assert sims[a] == pytest.approx(float(parts.max()), abs=2e-3)

        # A refill from the copies embeds nothing, and brings every passage back.
        n = emb.texts
        assert mem.reindex()["recall"] == 2 and emb.texts == n and len(_chroma_ids(mem)) == 6

        mem.forget(ids=[a], reason="test")  # every passage goes, in Chroma and in SQL
        assert _chroma_ids(mem) == [str(b)] and set(_copy_rows(mem)) == {b}
        assert [h.id for h in mem.search_recall("air fryer", mode="vector")] == [b]


def test_fewer_passages_after_a_rewrite_leave_none_behind(tmp_path: Path) -> None:
    emb = CountingEmbedder()
    with _mem(tmp_path / "m", emb) as mem:
        index = mem.recall_search.index
        assert index is not None
        index.exact = None  # Chroma itself answers: these vectors have no SQL rows behind them
        vecs = np.asarray(emb.embed(passages(LONG)), dtype=np.float32)
        index.upsert([7], [vecs], [{"session_id": "s"}])
        assert len(index.collection.get(include=[])["ids"]) == 5
        index.upsert([7], [vecs[:2]], [{"session_id": "s"}])
        assert sorted(index.collection.get(include=[])["ids"]) == ["7", "7.1"]
        assert index.query(vecs[4], 5) == [(7, pytest.approx(max(float(v @ vecs[4]) for v in vecs[:2]), abs=1e-5))]


def test_a_store_embedded_whole_is_re_embedded_by_passages_on_reindex(tmp_path: Path) -> None:
    emb = CountingEmbedder()
    with _mem(tmp_path / "m", emb, recall_passages=False) as mem:
        a = mem.recall.append(LONG).id
        mem.embed_pending()
        assert _copy_rows(mem) == {a: ("hash:64", 1)} and _chroma_ids(mem) == [str(a)]
    with _mem(tmp_path / "m", emb) as mem:
        # Until reindexed the old whole-message vector serves searches (no copy under the
        # passages' name: its similarity comes from Chroma).
        assert mem.search_recall("air fryer", mode="hybrid")[0].id == a
        n = emb.texts
        assert mem.reindex()["recall"] == 1 and emb.texts == n + 5  # the old copy is not reused
        assert _copy_rows(mem)[a] == ("hash:64#passages", 5) and len(_chroma_ids(mem)) == 5


def test_many_passage_messages_still_fill_k_results(tmp_path: Path) -> None:
    with _mem(tmp_path / "m", CountingEmbedder()) as mem:
        mem.recall.append_many([{"content": LONG.replace("air fryer", f"gadget {i}")} for i in range(30)])
        mem.recall.append("one line about an air fryer")
        mem.embed_pending()
        hits = mem.search_recall("air fryer", mode="vector", k=31)
        assert len(hits) == 31 and len({h.id for h in hits}) == 31
