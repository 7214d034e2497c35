"""Benchmark of the REPL sandbox; every figure is a ratio against a baseline from the same run.

    .venv/bin/python bench/bench_repl.py [--cells 500] [--calls 2000] [--starts 10]

Each figure is measured twice in the same run: ``isolation="process"`` (a plain child
process, what the sandbox was before the kernel boundary) and ``isolation="kernel"``
(bubblewrap namespaces + seccomp + Landlock, the default), with the kernel/process ratio.

* worker start: ``Sandbox()`` until the first cell can run, vs starting a bare ``python -I -c pass``
* cell round trip (a trivial cell), p50 / p95, vs ``exec(compile(...))`` of the same code here
* callback round trip (worker -> parent function -> worker), vs handing the same call to a
  thread pool in this process (the parent's own cost of servicing a call)
* 10M-character variable: ``set`` then ``get``, vs ``pickle.dumps`` + ``pickle.loads`` here
* 8 worker threads calling a parent function that sleeps 0.2 s, vs 8 sequential calls
"""

from __future__ import annotations

import argparse
import pickle
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rlm_core.sandbox.repl import Sandbox, SandboxLimits

__all__ = ["main"]


def _times(fn: Callable[[], object], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _ms(x: float) -> str:
    return f"{x * 1e3:8.3f} ms"


def bench_start(starts: int) -> None:
    def bare() -> None:
        subprocess.run([sys.executable, "-I", "-c", "pass"], check=True)

    base = statistics.median(_times(bare, starts))
    medians = {}
    for iso in ("process", "kernel"):
        medians[iso] = statistics.median(_times(lambda iso=iso: Sandbox(isolation=iso).close(), starts))
        print(f"worker start [{iso:7}] {_ms(medians[iso])}   bare interpreter {_ms(base)}   ratio {medians[iso] / base:6.2f}x")
    print(f"worker start kernel / process: {medians['kernel'] / medians['process']:.2f}x")


def bench_cells(sb: Sandbox, cells: int) -> None:
    code = "x = 1 + 1"
    sb.run(code)
    ours = _times(lambda: sb.run(code), cells)
    ns: dict[str, object] = {}
    base = _times(lambda: exec(compile(code, "<cell>", "exec"), ns), cells)
    for name, q in (("p50", 0.5), ("p95", 0.95)):
        o, b = _p(ours, q), _p(base, q)
        print(f"cell round trip {name} {_ms(o)}   in-process exec  {_ms(b)}   ratio {o / b:8.1f}x")


def bench_callbacks(sb: Sandbox, calls: int) -> None:
    r = sb.run(
        "import time\n"
        "t0 = time.perf_counter()\n"
        f"for _ in range({calls}):\n"
        "    ping(1)\n"
        f"per_call = (time.perf_counter() - t0) / {calls}\n"
    )
    assert r.ok, r.render()
    ours = float(sb.get("per_call"))
    with ThreadPoolExecutor(4) as pool:
        t = time.perf_counter()
        for _ in range(calls):
            pool.submit(int, 1).result()
        base = (time.perf_counter() - t) / calls
    print(f"callback round trip {_ms(ours)}   pool submit      {_ms(base)}   ratio {ours / base:8.1f}x")


def bench_transfer(sb: Sandbox) -> None:
    big = "0123456789" * 1_000_000
    rounds = 5

    def ours() -> None:
        sb.set("big", big)
        assert len(sb.get("big")) == len(big)

    def base() -> None:
        assert len(pickle.loads(pickle.dumps(big, protocol=pickle.HIGHEST_PROTOCOL))) == len(big)

    o = statistics.median(_times(ours, rounds))
    b = statistics.median(_times(base, rounds))
    print(f"10M chars set+get   {_ms(o)}   dumps+loads      {_ms(b)}   ratio {o / b:8.1f}x")


def bench_parallel(sb: Sandbox) -> None:
    r = sb.run(
        "import time\n"
        "from concurrent.futures import ThreadPoolExecutor\n"
        "t0 = time.perf_counter()\n"
        "with ThreadPoolExecutor(8) as ex:\n"
        "    list(ex.map(nap, range(8)))\n"
        "par = time.perf_counter() - t0\n"
        "t0 = time.perf_counter()\n"
        "for i in range(8):\n"
        "    nap(i)\n"
        "seq = time.perf_counter() - t0\n"
    )
    assert r.ok, r.render()
    par, seq = float(sb.get("par")), float(sb.get("seq"))
    print(f"8 x 0.2 s callbacks {_ms(par)}   sequential       {_ms(seq)}   speedup {seq / par:6.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--cells", type=int, default=500)
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--starts", type=int, default=10)
    args = ap.parse_args()

    def nap(i: int) -> int:
        time.sleep(0.2)
        return i

    print(f"python {sys.version.split()[0]}")
    bench_start(args.starts)
    for iso in ("process", "kernel"):
        print(f"--- isolation={iso}")
        limits = SandboxLimits(cell_timeout_s=120, isolation=iso)
        with Sandbox(functions={"ping": lambda x: x, "nap": nap}, limits=limits) as sb:
            bench_cells(sb, args.cells)
            bench_callbacks(sb, args.calls)
            bench_transfer(sb)
            bench_parallel(sb)


if __name__ == "__main__":
    main()
