"""Build long two-person conversations in the LoCoMo format from the LongMemEval oracle file, for
tuning on data that is neither dev100 nor a reported set.

A LoCoMo store is one long conversation between two named people (every turn indexed, as
``"<speaker>: <text>"``), and some two hundred questions are asked of it in the third person
("When did Caroline go to ..."). This builds stores of that shape from the oracle's questions
that are not in ``--exclude``: the questions are shuffled and taken ``--questions`` at a time;
the evidence sessions of one group, in date order, are one conversation, in which the user is
one named person and the assistant another (names drawn from fixed lists), so each question's
sessions are the other questions' distractors. Each question is rewritten in the third person
("my" -> "Maya's", "you" -> the other speaker's name), and its gold turns are the turns the
oracle marks ``has_answer``. Temporal-reasoning questions are left out (their relative dates
count from a question date the conversation does not keep), so are abstention questions and
questions with no marked turn. The category of a question is its LongMemEval type.

    .venv/bin/python bench/synth_conversations.py ../shared/data/longmemeval_oracle.json.gz \\
        --exclude ../shared/data/longmemeval_s_dev100.json.gz --out /tmp/convs.json
    .venv/bin/python bench/retrieval.py /tmp/convs.json
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from retrieval import load, parse_date

USERS = ["Maya", "Daniel", "Priya", "Tomas", "Aisha", "Jonah", "Elena", "Marcus", "Noor", "Felix",
         "Ingrid", "Kofi", "Lucia", "Ravi", "Sofia", "Mateo", "Hana", "Oskar", "Leila", "Theo"]  # fmt: skip
OTHERS = ["Robin", "Sasha", "Casey", "Jordan", "Morgan", "Avery", "Quinn", "Rowan", "Emery", "Reese"]


def third_person(question: str, a: str, b: str) -> str:
    """``question`` with the asker's first person made ``a`` and the second person ``b``."""
    subs = [
        (r"\bI'm\b", f"{a} is"), (r"\bI've\b", f"{a} has"), (r"\bI'd\b", f"{a} would"),
        (r"\bI'll\b", f"{a} will"), (r"\bI\b", a), (r"\bmy\b", f"{a}'s"), (r"\bmine\b", f"{a}'s"),
        (r"\bmyself\b", a), (r"\bme\b", a), (r"\byou're\b", f"{b} is"), (r"\byou've\b", f"{b} has"),
        (r"\byour\b", f"{b}'s"), (r"\byourself\b", b), (r"\byou\b", b),
        (r"\bwe\b", f"{a} and {b}"), (r"\bour\b", f"{a} and {b}'s"), (r"\bus\b", f"{a} and {b}"),
    ]  # fmt: skip
    for pattern, repl in subs:
        question = re.sub(pattern, repl, question, flags=re.IGNORECASE)
    return question


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("oracle")
    ap.add_argument("--exclude", help="a LongMemEval-format file whose questions and sessions are left out")
    ap.add_argument("--questions", type=int, default=20, help="questions per conversation")
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    records = load(args.oracle)
    skip = {r["question_id"] for r in load(args.exclude)} if args.exclude else set()
    banned = {str(s) for r in records if r["question_id"] in skip for s in r["haystack_session_ids"]}
    keep = [
        r for r in records
        if r["question_id"] not in skip and not str(r["question_id"]).endswith("_abs")
        and r["question_type"] != "temporal-reasoning"
        and not banned & {str(s) for s in r["haystack_session_ids"]}
        and any(t.get("has_answer") for s in r["haystack_sessions"] for t in s)
    ]  # fmt: skip
    rng = random.Random(args.seed)
    rng.shuffle(keep)
    out = []
    for g in range(0, len(keep) - args.questions + 1, args.questions):
        group = keep[g : g + args.questions]
        a, b = USERS[(g // args.questions) % len(USERS)], OTHERS[(g // args.questions) % len(OTHERS)]
        sessions: dict[str, tuple[str, list[dict[str, Any]]]] = {}
        for r in group:
            triples = zip(r["haystack_session_ids"], r["haystack_dates"], r["haystack_sessions"], strict=True)
            for sid, date, sess in triples:
                sessions.setdefault(str(sid), (date, sess))
        order = sorted(sessions, key=lambda s: (parse_date(sessions[s][0]), s))
        conv: dict[str, Any] = {"speaker_a": a, "speaker_b": b}
        dia: dict[tuple[str, int], str] = {}
        for n, sid in enumerate(order, 1):
            date, sess = sessions[sid]
            conv[f"session_{n}_date_time"] = parse_date(date).strftime("%I:%M %p on %d %B, %Y")
            conv[f"session_{n}"] = []
            for t, turn in enumerate(sess, 1):
                dia[(sid, t - 1)] = f"D{n}:{t}"
                speaker = a if turn["role"] == "user" else b
                conv[f"session_{n}"].append({"speaker": speaker, "dia_id": f"D{n}:{t}", "text": turn["content"]})
        qa = []
        for r in group:
            pairs = zip(r["haystack_session_ids"], r["haystack_sessions"], strict=True)
            gold = [dia[(str(sid), t)] for sid, sess in pairs for t, turn in enumerate(sess) if turn.get("has_answer")]
            qa.append({"question": third_person(r["question"], a, b), "answer": str(r["answer"]), "evidence": gold,
                       "category": r["question_type"], "source": r["question_id"]})  # fmt: skip
        out.append({"sample_id": f"synth-{g // args.questions}", "conversation": conv, "qa": qa})
    Path(args.out).write_text(json.dumps(out), encoding="utf-8")
    turns = sum(len(v) for c in out for v in c["conversation"].values() if isinstance(v, list))
    print(f"{len(out)} conversations, {sum(len(c['qa']) for c in out)} questions, {turns} turns -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
