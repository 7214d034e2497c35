"""Benchmark of the RLM engine, with a language model that answers after a fixed delay.

Figures (each with the baseline it is compared with, measured in the same run):

1. Engine overhead per iteration, LM time excluded: a scripted run of N iterations, each a
   small cell; the engine's time between the first and the last model call, minus model
   time, over the N-1 turns in between. Start-up (worker spawn) and teardown (last cell,
   cleanup) are reported apart.
   Measured behind the kernel boundary (the default) and with process-only isolation.
   Baseline: the official RLM library (``rlms``) on the same script, run from its own
   virtualenv (``--rlms-python``); skipped with a note when that interpreter is missing.
   (Make it with ``python3 -m venv /tmp/rlms-venv && /tmp/rlms-venv/bin/pip install rlms``.)
2. Cell round-trip latency of the sandbox (``Sandbox.run("x = 1")``, both isolations), against an in-process
   ``exec`` of the same cell and a bare pickle round trip to a child process over a pipe.
3. ``llm_query_batched`` speedup over sequential ``llm_query`` for 16 prompts at concurrency
   8 (target >= 6x; 8x is the ceiling), measured inside a cell; the same cell is run by the
   official library for comparison.

Run:  .venv/bin/python bench/bench_engine.py [--iterations 10] [--delay 0.2]
      [--rlms-python /tmp/rlms-venv/bin/python] [--json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing as mp
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rlm_core import RLM, FunctionLM, Limits, Sandbox  # noqa: E402
from rlm_core.lm import LMRequest  # noqa: E402
from rlm_core.sandbox.repl import SandboxLimits  # noqa: E402

DEFAULT_RLMS_PYTHON = "/tmp/rlms-venv/bin/python"


def script(iterations: int) -> list[str]:
    """The root model's replies: ``iterations - 1`` small cells, then the answer."""
    cells = [
        f"```repl\nx{k} = sum(range(1000)) + len(context)\nprint({k}, x{k})\n```"
        for k in range(iterations - 1)
    ]
    return [*cells, "```repl\nanswer['content'] = str(x0)\nanswer['ready'] = True\n```"]


BATCH_CELL = """```repl
import time
prompts = [f"question {i}" for i in range(16)]
t = time.perf_counter()
seq = [llm_query(p) for p in prompts]
t_seq = time.perf_counter() - t
t = time.perf_counter()
par = llm_query_batched(prompts)
t_par = time.perf_counter() - t
answer['content'] = f"{t_seq:.4f} {t_par:.4f} {len(par)}"
answer['ready'] = True
```"""


class TimedLM:
    """Scripted root replies / fixed sub answer, each after ``delay`` seconds, timed."""

    def __init__(self, replies: list[str], delay: float) -> None:
        self.replies = list(replies)
        self.delay = delay
        self.lock = threading.Lock()
        self.lm_s = 0.0
        self.first_call: float | None = None
        self.last_end = 0.0
        self.spans: list[tuple[float, float]] = []  # root turns only

    def __call__(self, req: LMRequest) -> str:
        t0 = time.perf_counter()
        with self.lock:
            if self.first_call is None:
                self.first_call = t0
        time.sleep(self.delay)
        with self.lock:
            out = (self.replies.pop(0) if self.replies else "FINAL(out of script)") if req.system else "sub answer"
            self.last_end = time.perf_counter()
            self.lm_s += self.last_end - t0
            if req.system:
                self.spans.append((t0, self.last_end))
        return out


def gaps(spans: list[tuple[float, float]]) -> list[float]:
    """Engine time between one root turn's reply and the next request: the turn's cells,
    answer check, trajectory and prompt building."""
    return [b[0] - a[1] for a, b in itertools.pairwise(spans)]


def ours_overhead(iterations: int, delay: float, context: str, isolation: str = "kernel") -> dict[str, float]:
    lm = TimedLM(script(iterations), delay)
    limits = Limits(max_iterations=iterations + 2, sandbox=SandboxLimits(isolation=isolation))
    rlm = RLM(FunctionLM(lm, name="timed"), limits=limits)
    t0 = time.perf_counter()
    res = rlm.completion("What is x0?", context=context)
    elapsed = time.perf_counter() - t0
    assert res.iterations == iterations, res.iterations
    out = _split(elapsed, lm.lm_s, (lm.first_call or t0) - t0, lm.last_end - (lm.first_call or t0),
                 t0 + elapsed - lm.last_end, iterations)
    out["median_gap_s"] = statistics.median(gaps(lm.spans))
    return out


def _split(elapsed: float, lm_s: float, startup: float, between: float, teardown: float,
           iterations: int) -> dict[str, float]:
    """Per-iteration overhead = engine time between the first and the last model call, minus
    model time, over the N-1 turns it spans; start-up and teardown (last cell, cleanup) apart."""
    return {
        "elapsed_s": elapsed,
        "lm_s": lm_s,
        "startup_s": startup,
        "teardown_s": teardown,
        "per_iteration_s": (between - lm_s) / max(1, iterations - 1),
    }


def official(python: str, cfg: dict[str, Any]) -> dict[str, Any] | None:
    if not Path(python).exists():
        return None
    proc = subprocess.run(
        [python, str(ROOT / "bench" / "rlms_driver.py"), json.dumps(cfg)],
        capture_output=True, text=True, timeout=600, cwd="/tmp",
    )
    if proc.returncode != 0:
        print(f"official library run failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
        return None
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def _echo(conn: Any) -> None:
    while True:
        msg = conn.recv()
        if msg is None:
            return
        conn.send(msg)


def cell_latency(n: int, isolation: str = "kernel") -> dict[str, float]:
    with Sandbox(isolation=isolation) as sb:
        for _ in range(20):
            sb.run("x = 1")
        times = []
        for _ in range(n):
            t = time.perf_counter()
            sb.run("x = 1")
            times.append(time.perf_counter() - t)
    ns: dict[str, Any] = {}
    code = compile("x = 1", "<cell>", "exec")
    t = time.perf_counter()
    for _ in range(n):
        exec(code, ns)
    inproc = (time.perf_counter() - t) / n
    parent, child = mp.Pipe()
    p = mp.get_context("spawn").Process(target=_echo, args=(child,))
    p.start()
    for _ in range(20):
        parent.send(("exec", 1, "x = 1"))
        parent.recv()
    pipe = []
    for _ in range(n):
        t = time.perf_counter()
        parent.send(("exec", 1, "x = 1"))
        parent.recv()
        pipe.append(time.perf_counter() - t)
    parent.send(None)
    p.join(5)
    times.sort()
    return {
        "median_s": statistics.median(times),
        "p95_s": times[int(0.95 * (len(times) - 1))],
        "inprocess_exec_s": inproc,
        "bare_pipe_roundtrip_s": statistics.median(pipe),
    }


def ours_batched(delay: float, concurrency: int = 8) -> tuple[float, float]:
    lm = TimedLM([BATCH_CELL], delay)
    rlm = RLM(FunctionLM(lm), limits=Limits(sub_concurrency=concurrency, cell_timeout_s=120))
    seq, par, n = rlm.completion("bench").answer.split()
    assert n == "16"
    return float(seq), float(par)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--iterations", type=int, default=20)
    ap.add_argument("--delay", type=float, default=0.2)
    ap.add_argument("--cells", type=int, default=300, help="cells for the latency figure")
    ap.add_argument("--context-chars", type=int, default=100_000)
    ap.add_argument("--rlms-python", default=DEFAULT_RLMS_PYTHON)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    context = ("lorem ipsum " * (args.context_chars // 12 + 1))[: args.context_chars]
    report: dict[str, Any] = {"iterations": args.iterations, "delay_s": args.delay}

    report["ours"] = ours_overhead(args.iterations, args.delay, context)
    report["ours_process"] = ours_overhead(args.iterations, args.delay, context, "process")
    report["official"] = official(args.rlms_python, {
        "delay_s": args.delay, "replies": script(args.iterations), "context": context,
        "query": "What is x0?", "max_iterations": args.iterations + 2,
    })
    if report["official"] is not None:
        o = report["official"]
        o.update(_split(o["elapsed_s"], o["lm_s"], o["startup_s"], o["between_calls_s"],
                        o["teardown_s"], args.iterations))
        o["median_gap_s"] = statistics.median(o.pop("gaps_s"))
    report["cell"] = cell_latency(args.cells)
    report["cell_process"] = cell_latency(args.cells, "process")
    seq, par = ours_batched(args.delay)
    report["batched"] = {"sequential_s": seq, "batched_s": par, "speedup": seq / par}
    seq16, par16 = ours_batched(args.delay, 16)
    report["batched"]["concurrency_16"] = {"sequential_s": seq16, "batched_s": par16,
                                           "speedup": seq16 / par16}
    off_b = official(args.rlms_python, {
        "delay_s": args.delay, "replies": [BATCH_CELL], "context": "x", "query": "bench",
        "max_iterations": 3,
    })
    if off_b is not None:
        s, p, _ = off_b["answer"].split()
        report["batched"]["official"] = {"sequential_s": float(s), "batched_s": float(p),
                                         "speedup": float(s) / float(p)}

    if args.json:
        print(json.dumps(report, indent=2))
        return
    ours, off, cell, b = report["ours"], report["official"], report["cell"], report["batched"]
    ms = 1000.0
    print(f"RLM engine benchmark: {args.iterations} iterations, LM delay {args.delay * ms:.0f} ms, "
          f"context {args.context_chars:,} chars")
    for label, o in (("kernel ", ours), ("process", report["ours_process"])):
        print(f"  ours {label}: per-iteration overhead mean {o['per_iteration_s'] * ms:6.2f} ms, median "
              f"{o['median_gap_s'] * ms:6.2f} ms, start-up "
              f"{o['startup_s'] * ms:7.1f} ms, teardown {o['teardown_s'] * ms:6.1f} ms, total {o['elapsed_s']:.2f} s (LM {o['lm_s']:.2f} s)")
    print(f"  kernel/process per iteration (median): "
          f"{ours['median_gap_s'] / report['ours_process']['median_gap_s']:.2f}x")
    if off is not None:
        print(f"  official : per-iteration overhead mean {off['per_iteration_s'] * ms:6.2f} ms, median "
              f"{off['median_gap_s'] * ms:6.2f} ms, start-up "
              f"{off['startup_s'] * ms:7.1f} ms, teardown {off['teardown_s'] * ms:6.1f} ms, total {off['elapsed_s']:.2f} s (LM {off['lm_s']:.2f} s)"
              f"  [rlms {off['version']}]")
        print(f"  ratio ours/official per iteration (median): "
              f"{ours['median_gap_s'] / off['median_gap_s']:.2f}x; whole run: "
              f"{ours['elapsed_s'] / off['elapsed_s']:.2f}x")
    else:
        print(f"  official : skipped ({args.rlms_python} not found or failed)")
    cp = report["cell_process"]
    print(f"cell round trip, process isolation: median {cp['median_s'] * ms:.3f} ms, p95 {cp['p95_s'] * ms:.3f} ms")
    print(f"cell round trip, kernel boundary: median {cell['median_s'] * ms:.3f} ms, p95 {cell['p95_s'] * ms:.3f} ms; "
          f"{cell['median_s'] / cell['bare_pipe_roundtrip_s']:.1f}x a bare pipe round trip "
          f"({cell['bare_pipe_roundtrip_s'] * ms:.3f} ms), in-process exec {cell['inprocess_exec_s'] * 1e6:.1f} us")
    print(f"llm_query_batched, 16 prompts, concurrency 8: sequential {b['sequential_s']:.2f} s, "
          f"batched {b['batched_s']:.2f} s, speedup {b['speedup']:.1f}x (target >= 6x)")
    b16 = b["concurrency_16"]
    print(f"  ours at concurrency 16: batched {b16['batched_s']:.2f} s, speedup {b16['speedup']:.1f}x")
    if "official" in b:
        ob = b["official"]
        print(f"  official llm_query_batched (no bound, all 16 at once): sequential "
              f"{ob['sequential_s']:.2f} s, batched {ob['batched_s']:.2f} s, speedup {ob['speedup']:.1f}x")


if __name__ == "__main__":
    main()
