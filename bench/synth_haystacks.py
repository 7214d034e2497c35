"""Build LongMemEval-format haystacks from the oracle file, for tuning on questions that are
not the ones a result is reported on.

The oracle file holds every question with only its evidence sessions. For each question not
in ``--exclude`` (a LongMemEval-format file, e.g. dev100), this adds ``--distractors``
sessions drawn at random from the other questions' evidence sessions, and writes the result
in the same format, so ``bench/retrieval.py`` runs on it unchanged. A distractor keeps the date
it has in the oracle file unless ``--redate DAYS``: then it is dated at random between DAYS
before the question's first evidence session and the question's date, as in one user's
history, where other talk happens around the evidence (a relative date in the question then
has neighbours to tell apart). ``--strict`` also leaves the excluded questions' sessions
out of the distractor pool::

    .venv/bin/python bench/synth_haystacks.py ../shared/data/longmemeval_oracle.json.gz \\
        --exclude ../shared/data/longmemeval_s_dev100.json.gz --out /tmp/synth.json.gz
    .venv/bin/python bench/retrieval.py /tmp/synth.json.gz
    .venv/bin/python bench/synth_haystacks.py ../shared/data/longmemeval_oracle.json.gz \\
        --exclude ../shared/data/longmemeval_s_dev100.json.gz --strict --redate 60 \\
        --distractors 60 --seed 2 --out /tmp/synth2.json.gz
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import sys
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from retrieval import load, parse_date


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("oracle")
    ap.add_argument("--exclude", help="a LongMemEval-format file whose questions are left out")
    ap.add_argument("--distractors", type=int, default=40)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--redate", type=int, metavar="DAYS", help="date distractors around the evidence")
    ap.add_argument("--strict", action="store_true", help="no distractors from excluded questions")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    records = load(args.oracle)
    skip = {r["question_id"] for r in load(args.exclude)} if args.exclude else set()
    pool: dict[str, tuple[str, list[dict[str, object]]]] = {}
    for r in records:
        if args.strict and r["question_id"] in skip:
            continue
        for sid, date, sess in zip(r["haystack_session_ids"], r["haystack_dates"], r["haystack_sessions"], strict=True):
            pool.setdefault(str(sid), (date, sess))
    ids = sorted(pool)
    rng = random.Random(args.seed)
    out = []
    for r in records:
        if r["question_id"] in skip:
            continue
        own = {str(s) for s in r["haystack_session_ids"]}
        extra = rng.sample([s for s in ids if s not in own], args.distractors)
        rec = dict(r)
        rec["haystack_session_ids"] = [*map(str, r["haystack_session_ids"]), *extra]
        dates = [pool[s][0] for s in extra]
        if args.redate is not None:
            lo = min(map(parse_date, r["haystack_dates"])) - timedelta(days=args.redate)
            span = max(0.0, (parse_date(r["question_date"]) - lo).total_seconds())
            dates = [(lo + timedelta(seconds=rng.uniform(0, span))).strftime("%Y/%m/%d (%a) %H:%M") for _ in extra]
        rec["haystack_dates"] = [*r["haystack_dates"], *dates]
        rec["haystack_sessions"] = [*r["haystack_sessions"], *(pool[s][1] for s in extra)]
        out.append(rec)
    with gzip.open(args.out, "wt", encoding="utf-8") as fh:
        json.dump(out, fh)
    print(f"{len(out)} questions, {args.distractors} distractor sessions each (pool {len(ids)}) -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
