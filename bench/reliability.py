"""The reliability campaign: many seeded SIGKILLs per scenario, then sustained multi-writer throughput.

Usage::

    .venv/bin/python bench/reliability.py                       # everything (about 20 min)
    .venv/bin/python bench/reliability.py --scenario recall_batch --kills 50 --seed 7
    .venv/bin/python bench/reliability.py --skip-crash          # throughput only
    .venv/bin/python bench/reliability.py --readers-only        # reads while a writer holds the lock
    .venv/bin/python bench/reliability.py --quick               # every scenario at small counts (minutes)
    .venv/bin/python bench/reliability.py --probes-only --probe import_race --attempts 50

The probes of a served store (``bench/reliability_scenarios.py``: kill ``rlmem reindex``,
reindex under ``rlmem serve``, two imports racing, readers against a held write lock, DNS
rebinding and CSRF, the scoped-token matrix, MCP hostile arguments, a real full filesystem)
print one table: per scenario attempts, acknowledged writes checked, lost, duplicated,
corrupted, breaches, unclear errors and crashes (all expected 0).

Prints the summary table of ``docs/reliability.md``: scenario, attempts, failures found
(expected 0), acknowledged writes checked, and the command that reproduces the row. The
Postgres scenario runs when ``RLMEM_TEST_POSTGRES_URL`` is set (a scratch database is created
next to it and dropped afterwards). Throughput: 4 writer processes appending single durable
messages to one SQLite store, against 1 writer measured in the same run. Readers: the latency
of read calls (grep, full-text search, stats, sessions) on a read-only store while another
process holds a long write transaction, against the same calls with no writer, same run.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [
    str(ROOT / "tests"),
    str(ROOT),
    str(ROOT / "bench"),
]  # tests/ first: its reliability package, not this file

from reliability.harness import SCENARIOS, Campaign, run_campaign  # noqa: E402
from reliability.procs import run_writers  # noqa: E402
from reliability.served import WriteLock  # noqa: E402
from reliability_scenarios import FULL, QUICK  # noqa: E402
from reliability_scenarios import SCENARIOS as PROBES  # noqa: E402
from reliability_scenarios import run as run_probes  # noqa: E402
from reliability_scenarios import table as probe_table  # noqa: E402

DEFAULT_KILLS = {"archival_model": 6}


def _pg_database(base: str) -> tuple[str, object]:
    from sqlalchemy import create_engine, text

    from memory.db import _normalise_url

    name = f"rlmem_rel_{uuid.uuid4().hex[:8]}"
    admin = create_engine(_normalise_url(base), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return f"{base.rsplit('/', 1)[0]}/{name}", drop


def crash(scenarios: list[str], kills: int | None, seed: int, work: Path) -> list[Campaign]:
    out = []
    for sc in scenarios:
        n = kills or DEFAULT_KILLS.get(sc, 50)
        pg, drop = "", None
        if sc == "recall_pg":
            base = os.environ.get("RLMEM_TEST_POSTGRES_URL", "")
            if not base:
                print(f"skipping {sc}: set RLMEM_TEST_POSTGRES_URL", file=sys.stderr)
                continue
            pg, drop = _pg_database(base)
        print(f"{sc}: {n} kills, seed {seed}", file=sys.stderr, flush=True)
        try:
            res = run_campaign(
                sc, work / sc, kills=n, seed=seed, pg_url=pg, vector_every=10, log=True
            )
        finally:
            if drop is not None:
                drop()  # type: ignore[operator]
        for f in res.failures:
            print(f"  FAILURE {sc}: {f}", file=sys.stderr)
        out.append(res)
    return out


def table(results: list[Campaign]) -> str:
    lines = [
        "| scenario | attempts (kills) | killed before ready | acknowledged writes checked | vector checks | failures found | time | reproduce |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        cmd = f"`.venv/bin/python bench/reliability.py --scenario {r.scenario} --kills {r.attempts} --seed {r.seed}`"
        lines.append(
            f"| {r.scenario} | {r.attempts} | {r.early_kills} | {r.acknowledged} | {r.vector_checks} "
            f"| {len(r.failures)} | {r.seconds:.0f} s | {cmd} |"
        )
    return "\n".join(lines)


def throughput(work: Path, seconds: float) -> str:
    rates = {}
    for writers in (1, 4):
        store = work / f"tp{writers}"
        run = run_writers(
            str(store),
            store.parent / f"tp{writers}-run",
            writers=writers,
            seconds=seconds,
            search=False,
        )
        errors = [r for r in run.reports if "error" in r]
        if errors:
            raise SystemExit(f"writer failed: {errors[0]}")
        n = sum(int(r["appended"]) for r in run.reports)
        per = [int(r["appended"]) / float(r["seconds"]) for r in run.reports]
        rates[writers] = (n / run.seconds, n, per)
    one, four = rates[1][0], rates[4][0]
    return "\n".join([
        "| writers | messages | aggregate appends/s | per writer appends/s | ratio vs 1 writer |",
        "|---|---|---|---|---|",
        f"| 1 | {rates[1][1]} | {one:.0f} | {rates[1][2][0]:.0f} | 1.00x |",
        f"| 4 | {rates[4][1]} | {four:.0f} | {min(rates[4][2]):.0f} - {max(rates[4][2]):.0f} | {four / one:.2f}x |",
    ])  # fmt: skip


def readers(work: Path, rounds: int, messages: int = 20_000) -> str:
    import statistics

    from memory.manager import MemoryManager
    from memory.vectors.embeddings import HashEmbedder

    store = work / "readers"
    with MemoryManager.open(store, embedder=HashEmbedder(), background_embed=False, embed_recall=False) as m:
        m.recall.append_many(
            {"content": f"message {i} about the deploy key and release {i % 97}", "session_id": f"s{i % 50}"}
            for i in range(messages)
        )
    calls = {
        "grep": lambda m: m.recall.grep("release 42", limit=50),
        "search --mode text": lambda m: m.search("deploy release", tiers=("recall",), k=10, mode="text"),
        "stats": lambda m: m.stats(),
        "sessions": lambda m: m.recall.sessions(),
    }

    def measure() -> dict[str, list[float]]:
        out: dict[str, list[float]] = {name: [] for name in calls}
        with MemoryManager.open(store, embedder=HashEmbedder(), read_only=True, busy_timeout_s=30) as m:
            for _ in range(rounds):
                for name, fn in calls.items():
                    t = time.perf_counter()
                    fn(m)
                    out[name].append(time.perf_counter() - t)
        return out

    base = measure()
    with WriteLock(store, work) as lock:
        held = measure()
        assert lock.holding
    lines = ["| read call | no writer, median ms | writer holding the lock, median ms | worst ms (held) | ratio |",
             "|---|---|---|---|---|"]
    for name in calls:
        b, h = statistics.median(base[name]) * 1e3, statistics.median(held[name]) * 1e3
        lines.append(f"| {name} | {b:.2f} | {h:.2f} | {max(held[name]) * 1e3:.1f} | {h / b:.2f}x |")
    return "\n".join(lines) + f"\n\n{messages} messages, {rounds} rounds per call."


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--scenario", action="append", choices=sorted(SCENARIOS), help="repeatable; default: all"
    )
    ap.add_argument(
        "--kills", type=int, default=None, help="kills per scenario (default 50; archival_model 6)"
    )
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--seconds", type=float, default=10.0, help="duration of each throughput run")
    ap.add_argument("--skip-crash", action="store_true")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--readers-only", action="store_true", help="only the readers-against-a-writer figures")
    ap.add_argument("--rounds", type=int, default=30, help="rounds of read calls per measurement")
    ap.add_argument(
        "--workdir", default=None, help="keep stores here (default: a temporary directory)"
    )
    ap.add_argument("--quick", action="store_true",
                    help="every scenario at small counts: 2 kills per crash scenario, the probes at their quick counts")
    ap.add_argument("--probe", action="append", choices=sorted(PROBES), help="repeatable; default: all probes")
    ap.add_argument("--attempts", type=int, default=None, help="attempts per probe (default: its own count)")
    ap.add_argument("--probes-only", action="store_true", help="only the probes of a served store")
    ap.add_argument("--skip-probes", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    with tempfile.TemporaryDirectory(prefix="rlmem-rel-") as tmp:
        work = Path(args.workdir or tmp)
        t0 = time.perf_counter()
        if args.readers_only or args.probes_only:
            args.skip_crash = args.skip_throughput = True
        if args.quick:
            args.kills = args.kills or 2
            args.seconds = min(args.seconds, 3.0)
            args.rounds = min(args.rounds, 5)
        if not args.skip_probes and not args.readers_only:
            names = args.probe or list(PROBES)
            counts = {n: args.attempts or (QUICK if args.quick else FULL)[n] for n in names}
            rows = run_probes(names, counts, args.seed, work / "probes")
            print("\n## Probes of a served store (real processes)\n")
            print(probe_table(rows))
            print(f"\nseed {args.seed}; reproduce one row: --probes-only --probe NAME --attempts N --seed {args.seed}")
        if not args.skip_crash:
            results = crash(args.scenario or list(SCENARIOS), args.kills, args.seed, work)
            print("\n## Crash campaign\n")
            print(table(results))
        if not args.skip_throughput:
            print("\n## Sustained durable appends, one SQLite store\n")
            print(throughput(work, args.seconds))
        if not args.probes_only:
            print("\n## Reads while another process holds a write transaction (SQLite, WAL)\n")
            print(readers(work, args.rounds))
        print(f"\ntotal {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
