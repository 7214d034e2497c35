"""Model code that tries to get out: every attempt is refused readably or contained.

docs/sandbox.md lists what is and is not prevented; each "prevented" line has a test here.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sandbox_procs import descendants, wait_all_gone

from memory.errors import SandboxError
from rlm_core.sandbox.repl import Sandbox, SandboxLimits


@pytest.fixture(scope="module")
def sb() -> Iterator[Sandbox]:
    with Sandbox(
        functions={"echo": lambda x: x},
        limits=SandboxLimits(cell_timeout_s=10.0, memory_mb=512),
    ) as box:
        yield box


def refused(sb: Sandbox, code: str, words: str = "not allowed") -> str:
    r = sb.run(code)
    assert r.error is not None, f"not refused: {code!r}\n{r.render()}"
    assert "PermissionError" in r.error and words in r.error, r.error
    assert not r.worker_restarted
    return r.error


@pytest.mark.parametrize(
    "code",
    [
        "import os\nos.system('touch pwned')",
        "import os\nos.popen('id').read()",
        "import subprocess",
        "import os\nos.execv('/bin/true', ['true'])",
        "import os\nos.fork()",
        "import os\nos.posix_spawn('/bin/true', ['true'], {})",
        "import pty\npty.spawn('/bin/true')",
    ],
)
def test_processes_are_refused(sb: Sandbox, code: str) -> None:
    refused(sb, code, "starting processes")


def test_subprocess_works_when_allowed() -> None:
    with Sandbox(limits=SandboxLimits(allow_subprocess=True)) as box:
        r = box.run("import subprocess\nprint(subprocess.run(['echo', 'hi'], capture_output=True, text=True).stdout)")
        assert r.stdout == "hi\n\n", r.render()


def test_network_is_refused(sb: Sandbox) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        refused(sb, f"import socket\nsocket.create_connection(('127.0.0.1', {port}))", "network")
        refused(sb, "import socket\ns = socket.socket()\ns.bind(('127.0.0.1', 0))", "network")
        refused(sb, "import socket\nsocket.getaddrinfo('example.com', 80)", "network")
        refused(
            sb,
            "import socket\nsocket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('127.0.0.1', 9))",
            "network",
        )
        refused(sb, f"import urllib.request\nurllib.request.urlopen('http://127.0.0.1:{port}/')", "network")


def test_network_works_when_allowed() -> None:
    with socket.socket() as server, Sandbox(limits=SandboxLimits(allow_network=True)) as box:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        r = box.run(f"import socket\nsocket.create_connection(('127.0.0.1', {port})).close()\nprint('ok')")
        assert r.stdout == "ok\n", r.render()


def test_writes_outside_scratch_are_refused_inside_allowed(sb: Sandbox, tmp_path: Path) -> None:
    outside = tmp_path / "victim.txt"
    outside.write_text("original")
    refused(sb, f"open({str(outside)!r}, 'w').write('x')", "writing outside")
    refused(sb, f"open({str(outside)!r}, 'a').write('x')", "writing outside")
    refused(sb, f"import os\nos.open({str(outside)!r}, os.O_WRONLY)", "writing outside")
    refused(sb, f"import os\nos.remove({str(outside)!r})", "outside the scratch")
    refused(sb, f"import os\nos.truncate({str(outside)!r}, 0)", "outside the scratch")
    refused(sb, f"import shutil\nshutil.rmtree({str(tmp_path)!r})", "outside the scratch")
    refused(sb, f"import os\nos.rename({str(outside)!r}, 'stolen.txt')", "outside the scratch")
    refused(sb, f"import os\nos.link({str(outside)!r}, 'hard.txt')", "hard links")
    refused(sb, "open('../escape.txt', 'w')", "writing outside")
    # A symlink inside the scratch dir that points out is followed and refused.
    r = sb.run(f"import os\nos.symlink({str(outside)!r}, 'link.txt')")
    assert r.ok, r.render()
    refused(sb, "open('link.txt', 'w').write('x')", "writing outside")
    assert outside.read_text() == "original"
    db = tmp_path / "store.db"
    refused(sb, f"import sqlite3\nsqlite3.connect({str(db)!r})", "database outside")
    refused(sb, f"import sqlite3\nsqlite3.connect('file:{db}?mode=rw', uri=True)", "database outside")
    assert not db.exists()
    r = sb.run("import sqlite3\nc = sqlite3.connect('mine.db')\nc.execute('create table t (x)')\nc.close()\nsqlite3.connect(':memory:').close()")
    assert r.ok, r.render()
    r = sb.run("open('notes.txt', 'w').write('kept')\nimport os\nos.makedirs('d/e', exist_ok=True)\nprint(open('notes.txt').read())")
    assert r.stdout == "kept\n", r.render()
    assert (sb.scratch_dir / "notes.txt").read_text() == "kept"


def test_file_size_limit() -> None:
    with Sandbox(limits=SandboxLimits(max_file_mb=1)) as box:
        r = box.run("open('big.bin', 'wb').write(b'x' * (2 * 1024 * 1024))")
        assert r.error is not None and "File too large" in r.error, r.render()


def test_other_processes_proc_entries_are_refused(sb: Sandbox) -> None:
    refused(sb, "import os\nopen(f'/proc/{os.getppid()}/environ').read()", "/proc")
    refused(sb, "open('/proc/1/cmdline').read()", "/proc")
    r = sb.run("print(len(open('/proc/self/status').read()) > 0)")
    assert r.stdout == "True\n"


def test_signals_to_other_processes_are_refused(sb: Sandbox) -> None:
    refused(sb, "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)", "signals")
    refused(sb, "import os, signal\nos.kill(-1, signal.SIGKILL)", "signals")
    refused(sb, "import os, signal\nos.kill(0, signal.SIGKILL)", "signals")
    refused(sb, "import os, signal\nos.killpg(os.getpgid(0), signal.SIGKILL)")
    assert sb.run("print('alive')").stdout == "alive\n"


def test_native_code_routes_are_refused(sb: Sandbox) -> None:
    refused(sb, "import ctypes", "native code")
    refused(sb, "import resource\nresource.setrlimit(resource.RLIMIT_AS, (-1, -1))", "resource limits")
    r = sb.run("import sys\nprint([m for m in ('ctypes', '_ctypes', '_posixsubprocess') if m in sys.modules])")
    assert r.stdout == "[]\n"
    # An extension module copied into the scratch dir cannot be loaded.
    so = Path(sb.run("import _bisect\nprint(getattr(_bisect, '__file__', ''))").stdout.strip() or "/x")
    if so.suffix != ".so":
        pytest.skip("_bisect is built in here: no extension module to copy")
    code = (
        f"data = open({str(so)!r}, 'rb').read()\n"
        f"open('evil{so.name[len('_bisect'):]}', 'wb').write(data)\n"
        "import importlib.util, os\n"
        f"spec = importlib.util.spec_from_file_location('_bisect', os.path.abspath('evil{so.name[len('_bisect'):]}'))\n"
        "mod = importlib.util.module_from_spec(spec)\n"
    )
    refused(sb, code, "native code")


def test_forged_channel_messages_cannot_run_code_in_the_parent(sb: Sandbox, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    code = (
        "import gc, os\n"
        "ch = next(o for o in gc.get_objects() if type(o).__name__ == 'Channel')\n"
        "import pickle\n"
        "class Evil:\n"
        f"    def __reduce__(self): return (os.mkdir, ({str(marker)!r},))\n"
        "ch.send_raw(pickle.dumps(('done', 0, True, Evil())))\n"
        "ch.send_raw(b'{\"$\": \"os.system\", \"v\": \"id\"}')\n"
        "import time\ntime.sleep(0.5)\n"
    )
    r = sb.run(code)
    assert r.worker_restarted and "invalid message" in (r.restart_reason or ""), r.render()
    assert not marker.exists()
    assert sb.run("print(echo('back'))").stdout == "back\n"


def test_writing_to_real_stdout_fd_does_not_corrupt_the_channel(sb: Sandbox) -> None:
    r = sb.run("import os\nos.write(1, b'\\x00' * 64)\nos.write(2, b'junk')\nprint('fine')")
    assert r.stdout == "fine\n" and not r.worker_restarted


def test_ten_gigabyte_allocation_is_contained(sb: Sandbox) -> None:
    r = sb.run("x = bytearray(10 * 1024 ** 3)")
    assert r.error is not None and "MemoryError" in r.error and "512 MB" in r.error
    assert sb.run("print('after')").stdout == "after\n"


def test_growing_allocation_is_contained(sb: Sandbox) -> None:
    r = sb.run("hog = []\nwhile True:\n    hog.append(bytearray(10 ** 7))")
    assert r.error is not None and "MemoryError" in r.error
    assert sb.run("del hog\nprint('freed')").stdout == "freed\n"


def test_cpu_limit_replaces_the_worker() -> None:
    with Sandbox(limits=SandboxLimits(cpu_seconds=1, cell_timeout_s=20)) as box:
        t = time.monotonic()
        r = box.run("while True:\n    pass")
        assert time.monotonic() - t < 19  # 1 s of CPU; wall time depends on the machine's load
        assert r.worker_restarted and not r.timed_out
        assert "CPU time limit" in (r.restart_reason or ""), r.restart_reason
        assert box.run("print('next')").stdout == "next\n"


def test_flooding_output_until_timeout_keeps_the_parent_small() -> None:
    with Sandbox(limits=SandboxLimits(cell_timeout_s=1.0, max_output_chars=500)) as box:
        r = box.run("while True:\n    print('x' * 1000)")
        assert r.timed_out and r.worker_restarted
        r = box.run("for _ in range(20000):\n    print('y' * 100)")
        assert len(r.stdout) < 600 and r.truncated_chars > 1_000_000


def test_exit_attempts(sb: Sandbox) -> None:
    r = sb.run("import sys\nsys.exit(3)")
    assert r.error is not None and "SystemExit" in r.error and not r.worker_restarted
    r = sb.run("raise KeyboardInterrupt")
    assert r.error is not None and "KeyboardInterrupt" in r.error and not r.worker_restarted
    r = sb.run("import os\nos._exit(7)")
    assert r.worker_restarted and "status 7" in (r.restart_reason or "")


def test_segfault_is_contained(sb: Sandbox) -> None:
    # faulthandler can raise SIGSEGV in-process without ctypes.
    r = sb.run("import faulthandler\nfaulthandler._sigsegv()")
    assert r.worker_restarted and "SIGSEGV" in (r.restart_reason or ""), r.render()
    assert sb.run("print('up')").stdout == "up\n"


def test_model_threads_outliving_a_cell_do_not_break_the_next(sb: Sandbox) -> None:
    r = sb.run(
        "import threading, time\n"
        "late = []\n"
        "def bg():\n"
        "    time.sleep(0.3)\n"
        "    late.append(echo('from thread'))\n"
        "threading.Thread(target=bg).start()\n"
    )
    assert r.ok
    time.sleep(0.5)
    # The callback was made between cells; it is served when the parent next talks to the worker.
    deadline = time.monotonic() + 5
    while sb.get("late") != ["from thread"] and time.monotonic() < deadline:
        sb.run("import time\ntime.sleep(0.1)")
    assert sb.get("late") == ["from thread"]


def test_parent_is_untouched_by_hostile_cells() -> None:
    seen: list[str] = []
    lock = threading.Lock()

    def record(x: str) -> int:
        with lock:
            seen.append(x)
        return len(seen)

    with Sandbox(functions={"record": record}, limits=SandboxLimits(cell_timeout_s=2)) as box:
        box.run("import os\ntry:\n    os.kill(os.getppid(), 9)\nexcept PermissionError:\n    record('refused')")
        assert seen == ["refused"]
        assert os.getpid() > 0  # still here


def test_run_as_an_unprivileged_user() -> None:
    if os.geteuid() != 0:
        pytest.skip("dropping privileges needs root")
    # The worker needs only the standard library: any readable 3.11 interpreter will do.
    candidates = [sys.executable, "/usr/bin/python3.11", "/usr/local/bin/python3.11"]
    for python in candidates:
        try:
            box = Sandbox(python=python, run_as=65534, isolation="process")
        except SandboxError:
            continue
        break
    else:
        pytest.skip("no interpreter readable by uid 65534")
    with box:
        r = box.run("import os\nprint(os.getuid(), os.getgid())\n_ = open('mine.txt', 'w').write('ok')")
        assert r.stdout == "65534 65534\n", r.render()
        r = box.run("import os\nprint(os.listdir('/root'))")
        if os.path.isdir("/root") and not os.stat("/root").st_mode & 0o005:
            assert r.error is not None and "Permission denied" in r.error


def test_worker_dying_between_cells_is_reported_on_the_next(sb: Sandbox) -> None:
    r = sb.run("import threading, time, os\nthreading.Timer(0.2, os._exit, (5,)).start()")
    assert r.ok
    time.sleep(0.6)
    r = sb.run("print('again')")
    assert r.stdout == "again\n" and r.worker_restarted
    assert "between cells" in (r.restart_reason or "") and "status 5" in (r.restart_reason or "")


def test_children_die_with_a_crashed_worker() -> None:
    with Sandbox(limits=SandboxLimits(allow_subprocess=True)) as box:
        r = box.run("import subprocess\np = subprocess.Popen(['sleep', '60'])\nprint(p.pid)")
        assert box.pid is not None
        tree = descendants(box.pid)  # host pids of the worker and its sleep
        assert len(tree) >= 2, tree
        r = box.run("import os\nos._exit(9)")
        assert r.worker_restarted and "status 9" in (r.restart_reason or "")
        assert wait_all_gone(tree) == []
