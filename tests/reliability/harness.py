"""The crash harness: run a workload in a child process, SIGKILL it at a seeded random moment,
reopen the store and check every invariant; repeat on the same store.

Rules this module keeps:

* One campaign = one store, ``kills`` attempts. Attempt ``a`` starts a fresh child
  (``python -m reliability.harness child ...``), waits until it reports the store open, then
  sleeps a seeded random time within the scenario's window and SIGKILLs its process group.
  About one attempt in seven is killed at a random moment *before* it is ready instead
  (start-up, migrations, opening Chroma); of the others one in five is killed within 0.1 s of
  its first writes and one in three late enough for the background embedder to be writing. A child that exits on its own is a failure (its stderr is kept).
* After every kill the SQL invariants are checked in this process (``checks.check_sql``);
  the vector invariants (Chroma agrees with SQL, pending embeddings complete, ``reindex``)
  are checked in a fresh process every ``vector_every`` attempts and always at the end.
* Everything random comes from ``seed``: the same seed gives the same schedule (the exact
  kill points still depend on timing; a failure report names its attempt and seed).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["SCENARIOS", "Campaign", "run_campaign"]

ROOT = Path(__file__).resolve().parents[2]
# scenario -> (short, long) kill windows after "ready", in seconds; one kill in three uses the
# long one, so kills also land after the background embedder has started writing vectors.
SCENARIOS: dict[str, tuple[float, float]] = {
    "recall_single": (0.6, 5.0),
    "recall_batch": (0.6, 5.0),
    "recall_pg": (0.6, 2.0),
    "archival": (1.5, 4.0),
    "archival_model": (6.0, 15.0),
    "agent_step": (1.5, 4.0),
}
_VECTORS = {"recall_single", "recall_batch", "archival", "archival_model", "agent_step"}


@dataclass
class Campaign:
    scenario: str
    seed: int
    attempts: int = 0
    early_kills: int = 0
    acknowledged: int = 0
    vector_checks: int = 0
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "tests"), env.get("PYTHONPATH", "")])
    env.update(
        ANONYMIZED_TELEMETRY="False",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
    )
    return env


def _wait_ready(ack: Path, proc: subprocess.Popen[bytes], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ack.exists() and b'"ready"' in ack.read_bytes():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.01)
    return False


def _count(acks: list[dict[str, Any]]) -> int:
    """Acknowledged writes: messages or chunks of each call, one per ingested file or agent step."""
    return sum(len(a["ids"]) if "ids" in a and "step" not in a else 1 for a in acks)


def vector_check(
    scenario: str, store: Path, timeout: float = 600
) -> tuple[list[str], dict[str, int]]:
    """``checks.check_vectors`` in a fresh process."""
    cmd = [sys.executable, "-m", "reliability.harness", "check-vectors", scenario, str(store)]
    p = subprocess.run(cmd, env=_env(), cwd=ROOT, capture_output=True, timeout=timeout)
    try:
        out = json.loads(p.stdout.decode().strip().splitlines()[-1])
        return out["failures"], out["info"]
    except (ValueError, IndexError, KeyError):
        return [f"vector check crashed (exit {p.returncode}): {p.stderr.decode()[-800:]}"], {}


def run_campaign(
    scenario: str,
    workdir: Path,
    *,
    kills: int,
    seed: int,
    pg_url: str = "",
    vector_every: int = 0,
    log: bool = False,
) -> Campaign:
    """Kill ``scenario``'s workload ``kills`` times on one store under ``workdir``."""
    from reliability.checks import check_sql, read_acks

    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}: {sorted(SCENARIOS)}")
    window = SCENARIOS[scenario]
    rng = random.Random(seed)
    store = workdir / "store"
    store.mkdir(parents=True, exist_ok=True)
    target = pg_url or str(store / "memory.db")
    res = Campaign(scenario, seed)
    ack_paths: list[Path] = []
    t0 = time.perf_counter()
    for attempt in range(1, kills + 1):
        ack = workdir / f"acks-{attempt}.jsonl"
        ack_paths.append(ack)
        errf = workdir / f"stderr-{attempt}.txt"
        cmd = [
            sys.executable,
            "-m",
            "reliability.harness",
            "child",
            scenario,
            str(store),
            str(ack),
            str(seed),
            str(attempt),
            pg_url,
        ]
        with open(errf, "wb") as err:
            proc = subprocess.Popen(
                cmd,
                env=_env(),
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=err,
                start_new_session=True,
            )
        early = rng.random() < 0.15
        r = rng.random()
        delay = rng.uniform(0.0, 0.1 if r < 0.2 else window[1] if r > 0.67 else window[0])
        if early:
            res.early_kills += 1
            time.sleep(rng.uniform(0.05, 1.5 if scenario != "archival_model" else 4.0))
        elif not _wait_ready(ack, proc, timeout=180):
            res.failures.append(
                f"attempt {attempt}: the child never became ready: {errf.read_text()[-800:]}"
            )
        else:
            time.sleep(delay)
        died = proc.poll()
        if died is not None:  # a workload never ends by itself: it crashed
            res.failures.append(
                f"attempt {attempt}: the child exited by itself ({died}): {errf.read_text()[-800:]}"
            )
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        res.attempts += 1
        acks = read_acks(ack_paths)
        res.acknowledged = _count(acks)
        res.failures += [f"attempt {attempt}: {f}" for f in check_sql(scenario, target, acks)]
        if (
            scenario in _VECTORS
            and vector_every
            and attempt % vector_every == 0
            and attempt != kills
        ):
            fails, _ = vector_check(scenario, store)
            res.vector_checks += 1
            res.failures += [f"attempt {attempt}: {f}" for f in fails]
        if log:
            print(
                f"  {scenario} attempt {attempt}/{kills}: {res.acknowledged} acknowledged, "
                f"{len(res.failures)} failures",
                file=sys.stderr,
                flush=True,
            )
    if scenario in _VECTORS:
        fails, _ = vector_check(scenario, store)
        res.vector_checks += 1
        res.failures += [f"final: {f}" for f in fails]
    res.seconds = time.perf_counter() - t0
    return res


def main(argv: list[str]) -> int:
    if argv and argv[0] == "child":
        from reliability.workloads import run_workload

        scenario, store, ack, seed, attempt = argv[1:6]
        run_workload(
            scenario,
            Path(store),
            Path(ack),
            int(seed),
            int(attempt),
            argv[6] if len(argv) > 6 else "",
        )
        return 0
    if argv and argv[0] == "check-vectors":
        from reliability.checks import check_vectors

        fails, info = check_vectors(Path(argv[2]), model=argv[1] == "archival_model")
        print(json.dumps({"failures": fails, "info": info}))
        return 0
    print("usage: python -m reliability.harness child|check-vectors ...", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
