"""Attacks one level beside tests/test_sandbox_boundary.py, with the audit hook switched OFF.

Each test is an attack a prompt-injected model could write: through the callbacks (odd,
huge or crafted arguments, raw frames written to the channel, grep patterns that cost the
parent CPU or memory), through what the worker inherits (fds, environment, argv, /dev/shm,
/tmp, maps), through the kernel (clone3, namespaces in clone, userfaultfd, perf, io_uring,
memfd + execveat, prctl, rlimits, mremap, core dumps, signals to its own group and pid 1),
and through persistence (threads after a cell, partial or slow frames, a closed channel).
Each asserts the effect did not happen: the parent answered in time, its memory stayed
flat, nothing ran, nothing survived ``close()``. docs/sandbox.md cites this file.
"""

from __future__ import annotations

import os
import resource
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sandbox_procs import descendants, wait_all_gone

from agents.repl.binding import bind_memory
from memory.errors import QueryError
from memory.manager import MemoryManager
from memory.vectors.embeddings import HashEmbedder
from rlm_core.sandbox.repl import Sandbox, SandboxLimits

SECRET = "sk-ant-redteam-" + uuid.uuid4().hex
HOOK_OFF = SandboxLimits(cell_timeout_s=6.0, memory_mb=768, audit_hook=False)
P61 = (1 << 61) - 1  # ints hash modulo this Mersenne prime

# Raw frames written by model code straight to the channel (the fd is the last argv item).
RAW = """
import json, os, socket, struct, sys
ch = socket.socket(fileno=os.dup(int(sys.argv[-1])))
def frame(obj):
    body = json.dumps(obj).encode()
    return struct.pack('>Q', len(body)) + body
def cb(name, *args):
    return {"$": "t", "v": ["cb", 10**9, name, {"$": "t", "v": list(args)}, {}]}
"""


@pytest.fixture(scope="module")
def secret_fd() -> Iterator[int]:
    """An inheritable fd of the parent's on a file holding the secret (a leak if it crosses)."""
    with tempfile.NamedTemporaryFile("w", prefix="rlm-redteam-", delete=False) as f:
        f.write(SECRET)
    fd = os.open(f.name, os.O_RDONLY)
    os.set_inheritable(fd, True)
    yield fd
    os.close(fd)
    os.unlink(f.name)


@pytest.fixture(scope="module")
def sb(secret_fd: int) -> Iterator[Sandbox]:
    os.environ["ANTHROPIC_API_KEY"] = SECRET
    shm = Path("/dev/shm") / f"rlm-redteam-{os.getpid()}"
    shm.write_text(SECRET)
    try:
        with Sandbox(functions={"echo": lambda x: x, "size": lambda x: len(x)}, limits=HOOK_OFF) as box:
            yield box
    finally:
        os.environ.pop("ANTHROPIC_API_KEY", None)
        shm.unlink()


def out(sb: Sandbox, code: str, **kw: Any) -> str:
    r = sb.run(code, **kw)
    assert r.error is None and not r.worker_restarted, r.render()
    return r.stdout


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def alive(sb: Sandbox) -> None:
    assert out(sb, "print(echo(6) * 7)").strip() == "42"


# --- what the worker inherits ------------------------------------------------------------------

def test_no_inherited_fd_environment_argv_or_map_holds_a_secret(sb: Sandbox) -> None:
    text = out(sb, """
import os, sys, stat
seen = []
for name in os.listdir('/proc/self/fd'):
    fd = int(name)
    try:
        seen.append(os.readlink(f'/proc/self/fd/{fd}'))
        if stat.S_ISREG(os.fstat(fd).st_mode):
            seen.append(os.pread(fd, 4096, 0).decode('latin-1'))
    except OSError as e:
        seen.append(type(e).__name__)
seen += [repr(dict(os.environ)), repr(sys.argv), repr(sys.orig_argv)]
for p in ('/proc/self/environ', '/proc/self/cmdline', '/proc/self/maps', '/proc/1/environ',
          '/proc/1/cmdline', '/proc/1/maps'):
    try:
        seen.append(open(p, 'rb').read().decode('latin-1'))
    except OSError as e:
        seen.append(p + ' ' + type(e).__name__)
seen += os.listdir('/dev/shm') + os.listdir('/tmp')
for p in ('/proc/1/root', '/proc/1/cwd', '/proc/1/fd'):
    try:
        seen += os.listdir(p)
    except OSError as e:
        seen.append(p + ' ' + type(e).__name__)
print(len(os.listdir('/proc/self/fd')), '\\n'.join(seen))
""")
    assert SECRET not in text
    assert "rlm-redteam-" not in text  # neither the parent's fd nor its /dev/shm file is there
    assert str(Path.home()) + "/" not in text  # not even the parent's PATH


# --- the kernel surface -------------------------------------------------------------------------

KERNEL = """
import ctypes, errno, os
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def sc(nr, *a):
    r = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(x) for x in a])
    return 'ok' if r >= 0 else errno.errorcode.get(ctypes.get_errno(), '?')
import platform
X86 = platform.machine() == 'x86_64'
NR = dict(clone=56, clone3=435, userfaultfd=323, perf_event_open=298, io_uring_setup=425,
          unshare=272, setns=308, pidfd_getfd=438) if X86 else dict(
          clone=220, clone3=435, userfaultfd=282, perf_event_open=241, io_uring_setup=425,
          unshare=97, setns=268, pidfd_getfd=438)
buf = ctypes.create_string_buffer(256)
print('clone3', sc(NR['clone3'], ctypes.addressof(buf), 88))
print('clone_newuser', sc(NR['clone'], 0x10000000 | 17, 0, 0, 0, 0))
print('clone_newns', sc(NR['clone'], 0x00020000 | 17, 0, 0, 0, 0))
print('userfaultfd', sc(NR['userfaultfd'], 0))
print('perf', sc(NR['perf_event_open'], ctypes.addressof(buf), 0, -1, -1, 0))
print('io_uring', sc(NR['io_uring_setup'], 1, ctypes.addressof(buf)))
print('unshare', sc(NR['unshare'], 0x10000000))
print('pidfd_getfd', sc(NR['pidfd_getfd'], 0, 0, 0))
"""


def test_kernel_calls_beside_the_obvious_ones_are_refused(sb: Sandbox) -> None:
    got = dict(line.split() for line in out(sb, KERNEL).splitlines())
    assert got["clone3"] == "ENOSYS"  # glibc then falls back to clone, whose flags are checked
    for name in ("clone_newuser", "clone_newns", "userfaultfd", "perf", "io_uring", "unshare", "pidfd_getfd"):
        assert got[name] != "ok", (name, got)
    alive(sb)


def test_memfd_and_execveat_run_nothing(sb: Sandbox) -> None:
    marker = Path(sb.scratch_dir) / "ran"
    r = sb.run(f"""
import ctypes, os
fd = os.memfd_create('x', 0)
os.write(fd, open('/usr/bin/touch', 'rb').read())
for how in ('execveat', 'proc', 'fexecve'):
    try:
        if how == 'execveat':
            libc = ctypes.CDLL(None, use_errno=True)
            argv = (ctypes.c_char_p * 3)(b'touch', {str(marker)!r}.encode(), None)
            envp = (ctypes.c_char_p * 1)(None)
            libc.syscall(322 if os.uname().machine == 'x86_64' else 281, fd, b'', argv, envp, 0x1000)
        elif how == 'proc':
            os.execv(f'/proc/self/fd/{{fd}}', ['touch', {str(marker)!r}])
        else:
            os.execve(fd, ['touch', {str(marker)!r}], {{}})
    except OSError as e:
        print(how, type(e).__name__)
""")
    assert not marker.exists(), r.render()
    if r.worker_restarted:  # a filter may kill instead of refusing: either way nothing ran
        assert "WorkerCrashed" in (r.error or "")
    alive(sb)


def test_prctl_and_rlimit_games_change_nothing(sb: Sandbox) -> None:
    text = out(sb, """
import ctypes, resource, errno, mmap
libc = ctypes.CDLL(None, use_errno=True)
for res in (resource.RLIMIT_AS, resource.RLIMIT_CORE, resource.RLIMIT_NPROC, resource.RLIMIT_CPU,
            resource.RLIMIT_FSIZE):
    soft, hard = resource.getrlimit(res)
    try:
        resource.setrlimit(res, (resource.RLIM_INFINITY, resource.RLIM_INFINITY)); print('raised', res)
    except (ValueError, OSError):
        pass
print('nnp', libc.prctl(39, 0, 0, 0, 0))           # PR_GET_NO_NEW_PRIVS
print('caps', open('/proc/self/status').read().split('CapEff:')[1].split()[0])
try:
    m = mmap.mmap(-1, 8 << 30); print('mmap8g ok')
except OSError:
    print('mmap8g refused')
libc.mmap.restype = ctypes.c_void_p
libc.mremap.restype = ctypes.c_void_p
a = libc.mmap(None, 4096, 3, 0x22, -1, 0)
b = libc.mremap(ctypes.c_void_p(a), 4096, ctypes.c_size_t(8 << 30), 1)  # MREMAP_MAYMOVE
print('mremap', 'refused' if b in (None, 2**64 - 1) else 'ok')
print('core', resource.getrlimit(resource.RLIMIT_CORE))
""")
    assert "raised" not in text and "nnp 1" in text
    assert "caps 0000000000000000" in text
    assert "mmap8g refused" in text and "mremap refused" in text
    assert "core (0, 0)" in text


def test_a_crash_leaves_no_core_and_the_next_cell_works(sb: Sandbox) -> None:
    r = sb.run("import os\nos.abort()")
    assert r.worker_restarted
    assert not [p for p in Path(sb.scratch_dir).iterdir() if p.name.startswith("core")]
    alive(sb)


def test_stopping_its_own_group_or_signalling_pid_1_costs_one_cell(sb: Sandbox) -> None:
    for code in ("import os, signal\nos.killpg(0, signal.SIGSTOP)",
                 "import os, signal\nos.kill(-1, signal.SIGSTOP)\nos.kill(1, signal.SIGSTOP)",
                 "import os, signal\nos.kill(1, signal.SIGKILL)\nimport time; time.sleep(30)"):
        t0 = time.monotonic()
        sb.run(code, timeout_s=1.5)
        assert time.monotonic() - t0 < 5
        alive(sb)


def test_clearing_pdeathsig_and_setsid_survive_nothing() -> None:
    with Sandbox(limits=HOOK_OFF) as box:
        out(box, """
import ctypes, os, time
libc = ctypes.CDLL(None)
libc.prctl(1, 0, 0, 0, 0)       # PR_SET_PDEATHSIG 0
libc.prctl(36, 1, 0, 0, 0)      # PR_SET_CHILD_SUBREAPER
if os.fork() == 0:
    os.setsid(); libc.prctl(1, 0, 0, 0, 0)
    if os.fork() == 0:
        time.sleep(600)
    os._exit(0)
print('ok')
""")
        assert box.pid is not None
        procs = descendants(box.pid)
        assert len(procs) >= 2
    assert wait_all_gone(procs, 10) == []


# --- the callbacks ------------------------------------------------------------------------------

def test_odd_values_cross_and_huge_ones_are_refused_with_the_parent_flat(sb: Sandbox) -> None:
    text = out(sb, """
import math
print(echo(10**100000) == 10**100000, echo('\\ud800x') == '\\ud800x', math.isnan(echo(float('nan'))))
print(echo(float('inf')), echo(-0.0), echo(complex(1, 2)), echo(b'\\x00' * 10) == b'\\x00' * 10)
for bad in (list(range(10**6)), 'x' * (2 << 20)):
    try:
        size(bad); print('crossed')
    except Exception as e:
        print(type(e).__name__)
deep = []
for _ in range(100_000):
    deep = [deep]
try:
    echo(deep); print('crossed')
except Exception as e:
    print(type(e).__name__)
try:
    echo(object()); print('crossed')
except Exception as e:
    print(type(e).__name__)
""")
    assert text.splitlines()[0] == "True True True"
    assert "crossed" not in text


def _raw(sb: Sandbox, code: str, timeout: float = 3.0) -> tuple[float, Any]:
    t0 = time.monotonic()
    r = sb.run(RAW + code, timeout_s=timeout)
    return time.monotonic() - t0, r


def test_colliding_hashes_in_a_raw_frame_cost_the_parent_nothing(sb: Sandbox) -> None:
    # 40,000 ints of equal hash in a set or as map keys: n**2/2 comparisons (about a minute of
    # the parent's CPU, with the reader stuck past every deadline) unless refused while decoding.
    before = rss_mb()
    for tag in ("s", "fs"):
        took, r = _raw(sb, f"""
vals = [k * {P61} for k in range(1, 40_000)]
ch.sendall(frame(cb('size', {{"$": "{tag}", "v": vals}})))
import time; time.sleep(10)
""")
        assert took < 4, r.render()
        assert r.worker_restarted and "invalid message" in (r.restart_reason or ""), r.render()
    took, r = _raw(sb, f"""
ch.sendall(frame(cb('size', {{"$": "m", "v": [[k * {P61}, 0] for k in range(1, 40_000)]}})))
import time; time.sleep(10)
""")
    assert took < 4 and r.worker_restarted, r.render()
    assert rss_mb() - before < 200
    alive(sb)


def test_partial_slow_and_abandoned_frames_cost_one_cell_timeout(sb: Sandbox) -> None:
    cases = {
        # a header, then half a body, then the channel closed
        "closed": "ch.sendall(struct.pack('>Q', 100) + b'[1,2'); ch.close(); os.close(int(sys.argv[-1]))\n"
                  "import time; time.sleep(10)",
        # one byte of a frame every 0.2 s, forever
        "slow": "ch.sendall(struct.pack('>Q', 10_000))\nimport time\nwhile True:\n"
                "    ch.sendall(b' '); time.sleep(0.2)",
        # a header that claims 1 TiB, then nothing
        "claim": "ch.sendall(struct.pack('>Q', 1 << 40))\nimport time; time.sleep(10)",
        # a reply to a request that was never made, then a forged 'done' for another id
        "forged": "ch.sendall(frame({'$': 't', 'v': ['done', 123456, True, {'stdout': 'x'}]}))\n"
                  "import time; time.sleep(10)",
    }
    before = rss_mb()
    for name, code in cases.items():
        took, r = _raw(sb, code, timeout=2.0)
        assert took < 5, (name, r.render())
        assert r.error is not None, name
        alive(sb)
    assert rss_mb() - before < 100


def test_callbacks_from_many_threads_are_bounded_and_none_outlives_close() -> None:
    calls: list[float] = []

    def slow(x: Any) -> Any:
        calls.append(time.monotonic())
        time.sleep(0.2)
        return x

    # Each worker thread reserves a malloc arena against RLIMIT_AS: 100 threads need ~2 GiB.
    box = Sandbox(functions={"slow": slow}, limits=SandboxLimits(cell_timeout_s=20, memory_mb=2048, audit_hook=False))
    try:
        text = out(box, """
import threading, collections
threading.stack_size(1 << 18)
res = collections.Counter()
def hit():
    for _ in range(3):
        try:
            slow(1); res['ok'] += 1
        except Exception as e:
            res[type(e).__name__] += 1
ts = [threading.Thread(target=hit) for _ in range(100)]
[t.start() for t in ts]; [t.join() for t in ts]
print(dict(res))
def forever():
    while True:
        try:
            slow(1)
        except Exception:
            pass
for _ in range(8):
    threading.Thread(target=forever, daemon=True).start()
""", timeout_s=30)
        assert "RuntimeError" in text and "'ok'" in text  # over the in-flight bound: refused
        assert threading.active_count() < 100  # the parent's pool stayed bounded
    finally:
        box.close()
    time.sleep(0.3)
    n = len(calls)
    time.sleep(0.5)
    assert len(calls) == n, "callbacks were still served after close()"


# --- grep patterns: the parent's CPU and memory ------------------------------------------------

@pytest.fixture(scope="module")
def mem(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MemoryManager]:
    m = MemoryManager.open(tmp_path_factory.mktemp("redteam") / "store", embedder=HashEmbedder(),
                           background_embed=False)
    m.recall.append("a" * 40 + "!", session_id="s1")
    for _ in range(3):
        m.archival.insert("a" * 40 + "!")
    yield m
    m.close()


@pytest.mark.parametrize("pattern", [
    "a{4294967294}",                          # never finished compiling, GIL held
    "(?:(?:(?:a{100}){100}){100}){100}",      # ~28 GB of unrolled program
    "(?:a{1000}){1000}",                      # 3 s and 270 MB of the parent's
])
def test_grep_patterns_that_unroll_are_refused_before_compiling(mem: MemoryManager, pattern: str) -> None:
    b = bind_memory(mem, grep_timeout_s=2.0)
    before = rss_mb()
    for tier in ("recall", "archival"):
        t0 = time.monotonic()
        with pytest.raises(QueryError, match="repeats too much"):
            b.grep(pattern, tier=tier)
        assert time.monotonic() - t0 < 0.5
    assert rss_mb() - before < 50
    assert b.grep(r"a{40}!", tier="all")  # counted repeats of a sane size still work


def test_archival_grep_has_one_deadline_for_the_whole_call(mem: MemoryManager) -> None:
    # Each chunk backtracks for minutes; the per-chunk timeout alone made this 3 x 10 s.
    b = bind_memory(mem, grep_timeout_s=1.0)
    t0 = time.monotonic()
    with pytest.raises(QueryError, match="timeout"):
        b.grep(r"(a|aa)+$", tier="archival")
    assert time.monotonic() - t0 < 6  # the regex package checks its timeout coarsely
    t0 = time.monotonic()
    with pytest.raises(QueryError):
        b.grep(r"(a|aa)+$", tier="all")  # recall's leg and archival's share the one deadline
    assert time.monotonic() - t0 < 6


# --- through the real ask() path ---------------------------------------------------------------

def test_through_ask_patterns_fanout_and_odd_answers_harm_nothing(mem: MemoryManager) -> None:
    from agents.ask import ask
    from rlm_core.limits import Limits
    from rlm_core.lm import ScriptedLM

    cells = [
        "try:\n    grep('a{4294967294}')\nexcept Exception as e:\n    print(type(e).__name__)",
        "r = llm_query_batched(['p'] * 5000)\nprint(sum(x.startswith('[error]') for x in r))",
        "answer = {'content': [10**100000], 'ready': False}",
        "answer = {'content': 10**100000, 'ready': True}",
    ]
    root = ScriptedLM([f"```repl\n{c}\n```" for c in cells], default="FINAL(done)")
    sub = ScriptedLM(default="ok")
    lim = Limits(max_iterations=8, max_sub_calls=40, cell_timeout_s=10.0,
                 sandbox=SandboxLimits(cell_timeout_s=10.0, memory_mb=768, audit_hook=False))
    t0 = time.monotonic()
    res = ask(mem, "q", root=root, sub=sub, limits=lim)
    assert time.monotonic() - t0 < 60
    assert isinstance(res.answer, str)  # a 100,000-digit int answer is read without failing
    assert len(sub.requests) <= 40  # the fan-out stopped at the sub-call bound
    assert "QueryError" in root.requests[1].prompt
