"""A worker lives exactly as long as the process that owns its Sandbox.

Linux ties ``PR_SET_PDEATHSIG`` / ``--die-with-parent`` to the thread that forked the child;
these tests pin that a Sandbox made in a thread that then ends keeps its worker, and that
SIGKILL of a real process owning sandboxes leaves none of its workers alive.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from rlm_core.sandbox import spawner
from rlm_core.sandbox.repl import Sandbox, SandboxLimits

LIMITS = SandboxLimits(cell_timeout_s=20)
ROOT = Path(__file__).resolve().parent.parent


def _isolations() -> list[str]:
    from rlm_core.sandbox.launcher import kernel_unavailable

    return ["process"] + ([] if kernel_unavailable() else ["kernel"])


@pytest.mark.parametrize("isolation", _isolations())
def test_sandbox_made_in_a_thread_that_ends_keeps_its_worker(isolation: str) -> None:
    box: dict[str, Sandbox] = {}
    t = threading.Thread(target=lambda: box.update(s=Sandbox(limits=LIMITS, isolation=isolation)))
    t.start()
    t.join()
    sb = box["s"]
    try:
        pid = sb.pid
        time.sleep(0.5)  # a death signal tied to the ended thread would have fired by now
        res = sb.run("x = 41\nprint(x + 1)")
        assert (res.stdout, res.worker_restarted, res.error) == ("42\n", False, None), res
        assert sb.pid == pid
    finally:
        sb.close()


def test_sandbox_made_in_a_pool_task_survives_the_pool() -> None:
    with ThreadPoolExecutor(2) as pool:
        sb = pool.submit(Sandbox, limits=LIMITS).result()
    try:
        time.sleep(0.5)
        restarted = sb.run("print('alive')")
        assert restarted.stdout == "alive\n" and not restarted.worker_restarted, restarted
        # A replacement worker (after a crash) is also forked by the long-lived thread.
        crash = sb.run("import os\nos._exit(3)")
        assert crash.worker_restarted
        time.sleep(0.3)
        again = sb.run("print('still')")
        assert again.stdout == "still\n" and not again.worker_restarted, again
    finally:
        sb.close()


def test_workers_are_forked_by_one_long_lived_thread() -> None:
    assert spawner.spawner_thread() is spawner.spawner_thread()
    assert spawner.spawner_thread().daemon and spawner.spawner_thread().is_alive()
    with pytest.raises(FileNotFoundError):  # the caller gets Popen's own error
        spawner.popen(["/nonexistent/interpreter"])


def _children() -> dict[int, int]:
    """pid -> parent pid of every live (non-zombie) process on the machine."""
    out: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] != "Z":
            out[int(entry)] = int(fields[1])
    return out


def _descendants(root: int) -> set[int]:
    tree = _children()
    found, frontier = set(), {root}
    while frontier:
        frontier = {p for p, pp in tree.items() if pp in frontier} - found
        found |= frontier
    return found


OWNER = """
import sys, threading, time
sys.path.insert(0, sys.argv[1])
from rlm_core.sandbox.repl import Sandbox, SandboxLimits
lim = SandboxLimits(cell_timeout_s=60)
boxes = []
t = threading.Thread(target=lambda: boxes.append(Sandbox(limits=lim, isolation=sys.argv[2])))
t.start(); t.join()
boxes.append(Sandbox(limits=lim, isolation=sys.argv[2]))
for b in boxes:
    assert b.run("print(1)").stdout == "1\\n"
print("ready", flush=True)
boxes[0].run("import time\\nwhile True: time.sleep(1)")  # busy in a cell when killed
"""


@pytest.mark.parametrize("isolation", _isolations())
def test_sigkill_of_the_owning_process_leaves_no_worker(isolation: str) -> None:
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER, str(ROOT), isolation], stdout=subprocess.PIPE, text=True
    )
    try:
        assert owner.stdout is not None and owner.stdout.readline().strip() == "ready"
        time.sleep(0.3)
        workers = _descendants(owner.pid)
        assert len(workers) >= 2, workers  # one worker (or launcher chain) per sandbox at least
        os.kill(owner.pid, signal.SIGKILL)
        owner.wait(10)
        deadline = time.monotonic() + 10
        alive = workers & set(_children())
        while alive and time.monotonic() < deadline:
            time.sleep(0.1)
            alive = workers & set(_children())
        assert not alive, f"workers outlived their killed parent: {sorted(alive)}"
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait(10)


@pytest.mark.parametrize("isolation", _isolations())
def test_each_cell_starts_in_the_scratch_dir(isolation: str) -> None:
    with Sandbox(limits=LIMITS, isolation=isolation) as sb:
        home = sb.run("import os\nprint(os.getcwd())").stdout.strip()
        assert home == str(sb.scratch_dir)
        moved = sb.run("os.makedirs('sub', exist_ok=True)\nos.chdir('sub')\nprint(os.getcwd())")
        assert moved.stdout.strip() == f"{home}/sub", moved
        after = sb.run("print(os.getcwd())\nn = open('here.txt', 'w').write('x')")
        assert after.stdout.strip() == home and after.error is None, after
        assert (sb.scratch_dir / "here.txt").exists() and not (sb.scratch_dir / "sub" / "here.txt").exists()
