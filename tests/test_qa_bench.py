"""bench/qa.py end to end, offline: real stores, real embedding model, scripted models.

The answering model reads the excerpts it is given (or, for the RLM, searches memory in the
REPL) and the judge compares with the gold answer, so a method that loses the evidence is
judged wrong: the pipeline, the per-type judging, the cache and the budget stop are what is
tested, through the same code a user runs with a real key.
"""

from __future__ import annotations

import gzip
import json
import re
import sys
from pathlib import Path

import pytest

from rlm_core.lm import FunctionLM, LMRequest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import qa
from qa_judge import judge_prompt, parse_verdict

LME = [
    {
        "question_id": "q1", "question_type": "single-session-user",
        "question": "Which city did I move to in March?", "answer": "Lisbon",
        "question_date": "2023/05/01 (Mon) 10:00",
        "haystack_session_ids": ["s_a", "answer_1"],
        "haystack_dates": ["2023/01/02 (Mon) 09:00", "2023/03/05 (Sun) 18:30"],
        "haystack_sessions": [
            [{"role": "user", "content": "My favourite tea is oolong."},
             {"role": "assistant", "content": "Noted."}],
            [{"role": "user", "content": "I finally moved to Lisbon this March.", "has_answer": True},
             {"role": "assistant", "content": "Congratulations on the move!"}],
        ],
        "answer_session_ids": ["answer_1"],
    },
    {
        "question_id": "q2_abs", "question_type": "single-session-user",
        "question": "What is the name of my dog?", "answer": "You never mentioned a dog.",
        "question_date": "2023/05/01 (Mon) 10:00",
        "haystack_session_ids": ["s_b"], "haystack_dates": ["2023/02/02 (Thu) 09:00"],
        "haystack_sessions": [[{"role": "user", "content": "I like hiking on weekends."}]],
        "answer_session_ids": [],
    },
]  # fmt: skip

LOCOMO = [{
    "sample_id": "conv-1",
    "conversation": {
        "speaker_a": "Caroline", "speaker_b": "Melanie",
        "session_1_date_time": "1:56 pm on 8 May, 2023",
        "session_1": [{"speaker": "Caroline", "dia_id": "D1:1", "text": "I went to a support group yesterday."},
                      {"speaker": "Melanie", "dia_id": "D1:2", "text": "That sounds brave. I painted a sunrise."}],
        "session_2_date_time": "3:00 pm on 20 May, 2023",
        "session_2": [{"speaker": "Caroline", "dia_id": "D2:1", "text": "I am researching adoption agencies."}],
    },
    "qa": [
        {"question": "What did Melanie paint?", "answer": "a sunrise", "evidence": ["D1:2"], "category": 1},
        {"question": "What is Caroline's favourite car?", "adversarial_answer": "not mentioned", "category": 5},
    ],
}]  # fmt: skip

FACTS = {"city": "Lisbon", "paint": "sunrise"}


def _answer(req: LMRequest) -> str:
    """Answers from whatever text it was shown, or says it does not know."""
    text = req.prompt
    for word, fact in FACTS.items():
        if word in text.split("Question:")[-1] and fact in text.split("Question:")[0]:
            return fact
    return "The information is not available."


def _rlm_root(req: LMRequest) -> str:
    """A root model that greps memory first, then answers from what the cell printed."""
    transcript = " ".join(str(m.get("content")) for m in req.messages)
    if "REPL output" not in transcript and "Output" not in transcript and len(req.messages) < 2:
        return "```repl\nprint(grep('Lisbon|sunrise'))\n```"
    for fact in FACTS.values():
        if fact in transcript:
            return f"FINAL({fact})"
    return "FINAL(The information is not available.)"


def _judge(req: LMRequest) -> str:
    p = req.prompt
    gold = re.search(r"(?:Correct answer|Explanation|Rubric): (.*)\n", p)
    resp = p.split("Model response: ", 1)[1].split("\n\nIs the model", 1)[0]
    if "unanswerable" in p:
        return "yes" if "not available" in resp else "no"
    return "yes" if gold and gold.group(1).split()[-1].lower() in resp.lower() else "no"


def _write(tmp: Path, name: str, records: list[dict]) -> Path:
    path = tmp / name
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        json.dump(records, fh)
    return path


@pytest.fixture(scope="module")
def embedder():  # type: ignore[no-untyped-def]
    from memory.vectors.embeddings import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder()


def test_judge_rubrics_and_verdicts() -> None:
    assert "off-by-one" in judge_prompt("How many days?", "18", "17", "temporal-reasoning", False)
    assert "updated answer" in judge_prompt("q", "a", "r", "knowledge-update", False)
    assert "Rubric:" in judge_prompt("q", "a", "r", "single-session-preference", False)
    assert "unanswerable" in judge_prompt("q", "a", "r", "multi-session", True)
    assert parse_verdict("Yes.") and not parse_verdict("No, it is wrong") and not parse_verdict("")
    assert not parse_verdict("Eyes open")  # a word containing "yes" is no verdict


def test_methods_judged_cached_and_resumed(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    data = _write(tmp_path, "lme.json.gz", LME)
    answer, judge = FunctionLM(_answer, name="answerer"), FunctionLM(_judge, name="judge")
    kw = dict(cache_path=tmp_path / "cache.sqlite", stores_dir=tmp_path / "stores", embedder=embedder,
              methods=["retrieval", "full", "agent"], full_max_tokens=10_000)  # fmt: skip
    report = qa.run_benchmark(data, lm=answer, judge=judge, **kw)
    s = report["summary"]
    assert s["retrieval"]["accuracy"] == 1.0 and s["full"]["accuracy"] == 1.0, s
    assert s["agent"]["judged"] == 2 and s["agent"]["errors"] == 0
    assert all(r["tokens"] > 0 for r in report["records"])
    calls = answer.calls + judge.calls
    again = qa.run_benchmark(data, lm=answer, judge=judge, **kw)
    assert answer.calls + judge.calls == calls, "a rerun must be answered from the cache"
    assert again["summary"] == s
    assert "|" in qa.table(again) and "single-session-user" in qa.table(again)


def test_rlm_method_explores_memory(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    data = _write(tmp_path, "lme.json.gz", LME[:1])
    root, judge = FunctionLM(_rlm_root, name="root"), FunctionLM(_judge, name="judge")
    report = qa.run_benchmark(data, lm=root, judge=judge, methods=["rlm"], cache_path=tmp_path / "c.sqlite",
                              stores_dir=tmp_path / "stores", embedder=embedder)  # fmt: skip
    rec = report["records"][0]
    assert rec["error"] == "", rec
    assert rec["answer"] == "Lisbon" and rec["correct"] is True
    assert root.calls >= 2  # it searched before it answered


def test_full_context_that_does_not_fit_is_skipped(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    data = _write(tmp_path, "lme.json.gz", LME[:1])
    lm = FunctionLM(_answer, name="a")
    report = qa.run_benchmark(data, lm=lm, judge=lm, methods=["full"], full_max_tokens=5,
                              cache_path=tmp_path / "c.sqlite", stores_dir=tmp_path / "s", embedder=embedder)  # fmt: skip
    assert report["records"][0]["skipped"] == "does not fit"
    assert report["summary"]["full"]["judged"] == 0 and lm.calls == 0


def test_locomo_and_budget_stop(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    data = _write(tmp_path, "locomo.json.gz", LOCOMO)
    loaded = qa.load(data)
    assert [q.abstention for q in loaded.questions] == [False, True]
    assert loaded.haystacks["locomo:conv-1"][0].turns[1] == ("assistant", "Melanie: That sounds brave. I painted a sunrise.")
    answer = FunctionLM(_answer, name="a", cost_per_call_usd=0.01)
    judge = FunctionLM(_judge, name="j", cost_per_call_usd=0.01)
    kw = dict(methods=["retrieval"], cache_path=tmp_path / "c.sqlite", stores_dir=tmp_path / "s", embedder=embedder)
    report = qa.run_benchmark(data, lm=answer, judge=judge, budget_usd=0.015, **kw)  # type: ignore[arg-type]
    assert "budget" in report["stopped"] and answer.calls + judge.calls == 2
    full = qa.run_benchmark(data, lm=answer, judge=judge, **kw)  # type: ignore[arg-type]
    assert full["summary"]["retrieval"]["accuracy"] == 1.0, full["records"]
    assert answer.calls + judge.calls == 4  # the first question's answer and verdict came from the cache


def test_wrong_format_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text(json.dumps([{"foo": 1}]))
    with pytest.raises(SystemExit, match="neither LongMemEval"):
        qa.load(path)


def test_a_failed_method_is_wrong_without_asking_the_judge(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    data = _write(tmp_path, "lme.json.gz", LME[:1])

    def broken(req: LMRequest) -> str:
        raise RuntimeError("context length exceeded")

    judge = FunctionLM(lambda r: "yes", name="judge")
    report = qa.run_benchmark(data, lm=FunctionLM(broken, name="b"), judge=judge, methods=["retrieval"],
                              cache_path=tmp_path / "c.sqlite", stores_dir=tmp_path / "s", embedder=embedder)  # fmt: skip
    rec = report["records"][0]
    assert "context length" in rec["error"] and rec["correct"] is False and judge.calls == 0
    assert report["summary"]["retrieval"]["errors"] == 1
