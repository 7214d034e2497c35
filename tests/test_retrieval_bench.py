"""bench/retrieval.py on both formats it reads: LongMemEval records and a LoCoMo-format file
(the layout of ``locomo10.json``), with the real store and embedding model."""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import retrieval

LOCOMO = [{
    "sample_id": "conv-7",
    "conversation": {
        "speaker_a": "Caroline", "speaker_b": "Melanie",
        "session_1_date_time": "1:56 pm on 8 May, 2023",
        "session_1": [
            {"speaker": "Caroline", "dia_id": "D1:1", "text": "I went to a support group yesterday."},
            {"speaker": "Melanie", "dia_id": "D1:2", "text": "That sounds brave. I painted a sunrise over the lake.",
             "img_url": ["http://example.invalid/x.jpg"], "blip_caption": "a painting of a sunrise"},
            {"speaker": "Caroline", "dia_id": "D1:3", "text": "Lovely! I want to be a counselor one day."},
        ],
        "session_2_date_time": "10:37 am on 27 June, 2023",
        "session_2": [
            {"speaker": "Caroline", "dia_id": "D2:1", "text": "I am researching adoption agencies now."},
            {"speaker": "Melanie", "dia_id": "D2:2", "text": "My kids loved the camping trip."},
        ],
    },
    "qa": [
        {"question": "Who painted a sunrise?", "answer": "Melanie", "evidence": ["D1:2"], "category": 4},
        {"question": "What career and family plans does Caroline have?", "answer": "counseling, adoption",
         "evidence": ["D1:3; D2:1"], "category": 1},
        {"question": "What is Caroline's favourite car?", "adversarial_answer": "not mentioned", "category": 5,
         "evidence": []},
    ],
}]  # fmt: skip


def test_locomo_file_is_read_as_one_haystack_per_conversation(tmp_path: Path) -> None:
    path = tmp_path / "locomo.json.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        json.dump(LOCOMO, fh)
    [h] = retrieval.haystacks(retrieval.load(str(path)))
    assert [s[0] for s in h.sessions] == ["conv-7:session_1", "conv-7:session_2"]
    assert h.sessions[1][1].isoformat() == "2023-06-27T10:37:00+00:00"
    turn = h.sessions[0][2][1]
    assert turn.content == "Melanie: That sounds brave. I painted a sunrise over the lake. [shares a photo: a painting of a sunrise]"
    assert (turn.role, turn.unit, turn.indexed) == ("assistant", ("conv-7:session_1", "D1:2"), True)
    # The question without evidence is skipped; "D1:3; D2:1" is two evidence turns.
    assert [p.qtype for p in h.probes] == ["locomo-4", "locomo-1"]
    assert h.probes[1].gold_turns == {("conv-7:session_1", "D1:3"), ("conv-7:session_2", "D2:1")}
    assert h.probes[1].gold_sessions == {"conv-7:session_1", "conv-7:session_2"}
    assert h.probes[0].now == h.sessions[1][1]


@pytest.fixture(scope="module")
def embedder():  # type: ignore[no-untyped-def]
    from memory.vectors.embeddings import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder()


@pytest.mark.parametrize("fmt", ["locomo", "longmemeval"])
def test_run_haystack_scores_every_mode(tmp_path: Path, fmt: str, embedder) -> None:  # type: ignore[no-untyped-def]
    if fmt == "locomo":
        h = retrieval.haystacks(LOCOMO)[0]
    else:
        [h] = retrieval.haystacks([{
            "question_id": "q1", "question_type": "single-session-user",
            "question": "Which city did I move to?", "question_date": "2023/05/01 (Mon) 10:00",
            "haystack_session_ids": ["s_a", "answer_1"],
            "haystack_dates": ["2023/03/05 (Sun) 18:30", "2023/01/02 (Mon) 09:00"],
            "haystack_sessions": [
                [{"role": "user", "content": "My favourite tea is oolong."}],
                [{"role": "user", "content": "Hi there, quick question first."},
                 {"role": "assistant", "content": "Sure."},
                 {"role": "user", "content": "I finally moved to Lisbon this March.", "has_answer": True}],
            ],
            "answer_session_ids": ["answer_1"],
        }])  # fmt: skip
        assert [s[0] for s in h.sessions] == ["answer_1", "s_a"]  # date order
        assert h.probes[0].gold_turns == {("answer_1", 2)}
    rows = retrieval.run_haystack(h, embedder, tmp_path)
    assert len(rows) == len(h.probes)
    for row in rows:
        for level in ("turn", "session"):
            assert set(row[level]) == set(retrieval.MODES)
            assert row[level]["hybrid"]["recall_any@10"] == 1.0  # a handful of turns: all found
    assert rows[0]["turn"]["text"]["mrr"] == 1.0  # its rare words name the turn
    table = retrieval.summarise([(r["qtype"], r) for r in rows])
    assert table["turn"]["overall"]["n"] == len(h.probes)



def test_fusion_replay_ranks_as_recall_search_does(tmp_path: Path) -> None:
    """bench/fusion_replay.py re-fuses dumped candidate lists; with recall search's own
    settings it ranks turns and sessions exactly as ``search_recall`` and ``search_sessions``
    do (a relative date in a question, and more messages than either leg returns, included),
    so its figures are bench/retrieval.py's hybrid figures; other settings change the ranking."""
    from dataclasses import replace

    import fusion_replay

    from memory.manager import MemoryManager
    from memory.vectors.embeddings import HashEmbedder

    words = ["garden", "tomatoes", "basil", "train", "Tokyo", "lemon", "cake", "party", "battery", "phone",
             "charger", "podcasts", "commute", "hotel", "rooftop", "pool", "bake", "trip", "tips", "colleagues"]
    sessions = []
    for n in range(8):  # 8 sessions of 30 turns: 240 messages, more than either leg's 200
        turns = [{"role": "user", "content": f"I {w} and {words[(j * 7 + n) % len(words)]} with {words[(j + n) % len(words)]} today."}
                 for j, w in enumerate((words * 2)[n : n + 30])]
        sessions.append((f"s{n}", f"2023/04/{1 + 3 * n:02d} (Sat) 10:00", turns))
    sessions[4][2][3]["has_answer"] = True
    records = [{
        "question_id": f"q{q}", "question_type": "single-session-preference", "question": question,
        "question_date": "2023/05/01 (Mon) 10:00",
        "haystack_session_ids": [s[0] for s in sessions], "haystack_dates": [s[1] for s in sessions],
        "haystack_sessions": [s[2] for s in sessions], "answer_session_ids": ["s4"],
    } for q, question in enumerate(["What cake did I bake two weeks ago for the party?",
                                    "Any tips for my commute and my phone battery?"])]  # fmt: skip
    embedder = HashEmbedder(64)
    cfg = fusion_replay.default_fusion()
    for h in retrieval.haystacks(records):
        [q] = json.loads(json.dumps(fusion_replay.dump_haystack(h, embedder, tmp_path / "replay")))
        msgs, units = retrieval.messages_of(h)
        assert len(msgs) == 240
        with MemoryManager.open(tmp_path / h.key, embedder=embedder, background_embed=False) as mem:
            unit_of = {m.id: u for m, u in zip(mem.recall.append_many(msgs), units, strict=True)}
            mem.embed_pending()
            p = h.probes[0]
            turns = [unit_of[x.id] for x in mem.search_recall(p.question, k=retrieval.DEPTH, now=p.now)]
            found = [s.session_id for s in mem.search_sessions(p.question, k=retrieval.DEPTH, now=p.now)]
        assert fusion_replay.ranked(q, cfg, "turn") == turns
        assert fusion_replay.ranked(q, cfg, "session") == found
        assert fusion_replay.ranked(q, replace(cfg, text_weight=0.9), "turn") != turns
        assert fusion_replay.ranked(q, replace(cfg, session_text_weight=0.9), "session") != found
        assert fusion_replay.ranked(q, replace(cfg, session_temperature=0.05), "session") != found
        # Only the first question names a relative date.
        no_time = fusion_replay.ranked(q, replace(cfg, time_weight=0.0), "turn")
        assert (no_time != turns) == (h.key == "q0")
        got = fusion_replay.score([q], cfg)["turn"]["overall"]["hybrid"]
        [row] = retrieval.run_haystack(h, embedder, tmp_path / "bench")
        assert got == row["turn"]["hybrid"]


def test_text_leg_reads_locomo_and_scores_both_rankings(tmp_path: Path) -> None:
    """bench/text_leg.py (the text leg against plain BM25) reads the LoCoMo layout too: one
    store per conversation, every question of it scored at both levels by both rankings."""
    import text_leg

    path = tmp_path / "locomo.json"
    path.write_text(json.dumps(LOCOMO), encoding="utf-8")
    [h] = retrieval.haystacks(retrieval.load(str(path)))
    rows = text_leg.run(h, tmp_path / "stores")
    assert [r["qtype"] for r in rows] == ["locomo-4", "locomo-1"]
    for r in rows:
        assert set(r["turn"]) == set(r["session"]) == {"ours", "bm25"}
    # "Who painted a sunrise?": both find the one turn that says so, first.
    assert rows[0]["turn"]["ours"]["mrr"] == rows[0]["turn"]["bm25"]["mrr"] == 1.0


def test_synth_conversations_builds_locomo_layout_from_oracle_records(tmp_path: Path) -> None:
    """bench/synth_conversations.py: oracle questions grouped into two-person conversations in
    the LoCoMo layout, questions in the third person, gold turns the marked ones, temporal
    and abstention questions left out."""
    import subprocess

    def rec(qid: str, qtype: str, question: str, day: int) -> dict:  # type: ignore[type-arg]
        return {
            "question_id": qid, "question_type": qtype, "question": question, "answer": "x",
            "question_date": "2023/05/30 (Tue) 10:00", "answer_session_ids": [f"s-{qid}"],
            "haystack_session_ids": [f"s-{qid}"], "haystack_dates": [f"2023/05/{day:02d} (Mon) 09:00"],
            "haystack_sessions": [[
                {"role": "user", "content": f"I adopted a cat named {qid}.", "has_answer": True},
                {"role": "assistant", "content": "Congratulations! You should get a scratching post."},
            ]],
        }  # fmt: skip

    oracle = [rec("a", "single-session-user", "What is my cat's name?", 3),
              rec("b", "single-session-assistant", "What did you tell me to get for my cat?", 1),
              rec("c", "temporal-reasoning", "What did I adopt two weeks ago?", 2),
              rec("d_abs", "single-session-user", "What is my dog's name?", 4)]  # fmt: skip
    oracle[1]["haystack_sessions"][0][0]["has_answer"] = False
    oracle[1]["haystack_sessions"][0][1]["has_answer"] = True
    src, out = tmp_path / "oracle.json", tmp_path / "convs.json"
    src.write_text(json.dumps(oracle), encoding="utf-8")
    bench = Path(retrieval.__file__).parent
    subprocess.run([sys.executable, str(bench / "synth_conversations.py"), str(src), "--questions", "2",
                    "--out", str(out)], check=True, capture_output=True)  # fmt: skip
    [conv] = json.loads(out.read_text(encoding="utf-8"))
    a, b = conv["conversation"]["speaker_a"], conv["conversation"]["speaker_b"]
    [h] = retrieval.haystacks([conv])
    # Sessions in date order (b's on the 1st, a's on the 3rd); every turn indexed by speaker.
    assert [t.content for _, _, ts in h.sessions for t in ts][:2] == [
        f"{a}: I adopted a cat named b.", f"{b}: Congratulations! You should get a scratching post."]
    questions = sorted(p.question for p in h.probes)
    assert questions == sorted([f"What is {a}'s cat's name?", f"What did {b} tell {a} to get for {a}'s cat?"])
    gold = {p.question: p.gold_turns for p in h.probes}
    assert gold[f"What is {a}'s cat's name?"] == {(h.sessions[1][0], "D2:1")}
    assert gold[f"What did {b} tell {a} to get for {a}'s cat?"] == {(h.sessions[0][0], "D1:2")}
