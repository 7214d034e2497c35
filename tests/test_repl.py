"""The REPL sandbox as its users see it: namespace, output, errors, proxies, restarts."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import threading
import time
from collections.abc import Iterator

import pytest
from sandbox_procs import descendants

from memory.errors import QueryError, SandboxError, ValidationError
from rlm_core.sandbox.policy import cut_output
from rlm_core.sandbox.repl import CellResult, Sandbox, SandboxLimits
from rlm_core.sandbox.worker.guard import CappedStream

FAST = SandboxLimits(cell_timeout_s=10.0, memory_mb=1024)


def slow_upper(prompt: str, suffix: str = "") -> str:
    """Upper-case the prompt after 0.2 s, like a sub-model would."""
    time.sleep(0.2)
    return prompt.upper() + suffix


class ParentOnlyError(Exception):
    pass


def failing(kind: str) -> None:
    if kind == "value":
        raise ValueError("bad value from the parent")
    if kind == "query":
        raise QueryError("no such regex")
    raise ParentOnlyError("custom failure in the parent")


@pytest.fixture(scope="module")
def sb() -> Iterator[Sandbox]:
    with Sandbox(
        functions={"llm_query": slow_upper, "failing": failing},
        variables={"context": "needle in a haystack", "n_docs": 3},
        prelude="def count_words(text):\n    return len(text.split())\n",
        reserved_variables=["context"],
        limits=FAST,
    ) as box:
        yield box


def test_namespace_persists_across_cells(sb: Sandbox) -> None:
    assert sb.run("total = 40").ok
    r = sb.run("total += 2\nprint(total)")
    assert r.stdout == "42\n" and r.error is None
    assert sb.get("total") == 42


def test_trailing_expression_is_echoed(sb: Sandbox) -> None:
    assert sb.run("n_docs * 2").stdout == "6\n"


def test_stdout_and_stderr_are_captured(sb: Sandbox) -> None:
    r = sb.run("import sys\nprint('out')\nprint('err', file=sys.stderr)")
    assert (r.stdout, r.stderr) == ("out\n", "err\n")
    assert r.render() == "out\nerr"


def test_long_output_is_cut_with_marker_keeping_head_and_tail() -> None:
    limits = SandboxLimits(max_output_chars=1000)
    with Sandbox(limits=limits) as box:
        r = box.run("print('H' + 'x' * 5000 + 'T')")
    assert r.truncated_chars == 5003 - 1000
    assert f"... [{5003 - 1000} characters cut] ..." in r.stdout
    assert r.stdout.startswith("H") and r.stdout.rstrip("\n").endswith("T")
    assert len(r.stdout) < 1100


def test_stdout_and_stderr_share_the_output_budget() -> None:
    with Sandbox(limits=SandboxLimits(max_output_chars=1000)) as box:
        r = box.run("import sys\nprint('o' * 3000)\nprint('e' * 3000, file=sys.stderr)")
    assert "characters cut" in r.stdout and "characters cut" in r.stderr
    assert r.truncated_chars == 6002 - 1000


def test_syntax_error_is_readable(sb: Sandbox) -> None:
    r = sb.run("def f(:\n    pass")
    assert r.error is not None and "SyntaxError" in r.error and "<cell" in r.error
    assert "worker.py" not in r.error


def test_name_error_traceback_shows_the_cell_line(sb: Sandbox) -> None:
    r = sb.run("a = 1\nprint(undefined_name)")
    assert r.error is not None
    assert "NameError: name 'undefined_name' is not defined" in r.error
    assert "line 2" in r.error and "print(undefined_name)" in r.error
    assert "worker.py" not in r.error


def test_deep_recursion_is_a_readable_recursion_error(sb: Sandbox) -> None:
    r = sb.run("def f(n):\n    return f(n + 1)\nf(0)")
    assert r.error is not None and "RecursionError" in r.error
    assert not r.worker_restarted
    assert sb.run("print('alive')").stdout == "alive\n"


def test_infinite_loop_times_out_and_the_next_cell_works() -> None:
    with Sandbox(
        functions={"llm_query": slow_upper},
        variables={"context": "ctx"},
        limits=SandboxLimits(cell_timeout_s=1.0),
    ) as box:
        box.run("lost = 1")
        old_pid = box.pid
        t = time.monotonic()
        r = box.run("while True:\n    pass")
        assert time.monotonic() - t < 8  # 1 s timeout + a worker start
        assert r.timed_out and r.worker_restarted and "time limit" in (r.restart_reason or "")
        assert "variables were lost" in r.render()
        assert box.pid != old_pid and box.restarts == 1
        after = box.run("print(context, 'lost' in dir(), callable(llm_query))")
        assert after.stdout == "ctx False True\n"


def test_reserved_names_are_restored_after_every_cell(sb: Sandbox) -> None:
    r = sb.run("del llm_query\ncount_words = 1\ncontext = 'overwritten'")
    assert r.ok
    r = sb.run("print(callable(llm_query), count_words('a b c'), context)")
    assert r.stdout == "True 3 needle in a haystack\n"
    r = sb.run("llm_query = 1")
    assert sb.run("print(llm_query('x'))").stdout == "X\n"


def test_proxy_keeps_name_signature_and_docstring(sb: Sandbox) -> None:
    r = sb.run(
        "import inspect\n"
        "print(llm_query.__name__, inspect.signature(llm_query))\n"
        "print(llm_query.__doc__)"
    )
    assert r.stdout.splitlines() == [
        "llm_query (prompt: str, suffix: str = '')",
        "Upper-case the prompt after 0.2 s, like a sub-model would.",
    ]


def test_proxy_calls_back_into_the_parent(sb: Sandbox) -> None:
    r = sb.run("print(llm_query('abc', suffix='!'))")
    assert r.stdout == "ABC!\n"


def test_proxy_calls_from_worker_threads_run_concurrently(sb: Sandbox) -> None:
    code = (
        "import time\n"
        "from concurrent.futures import ThreadPoolExecutor\n"
        "t0 = time.perf_counter()\n"
        "with ThreadPoolExecutor(8) as ex:\n"
        "    out = list(ex.map(llm_query, 'abcdefgh'))\n"
        "elapsed = time.perf_counter() - t0\n"
    )
    r = sb.run(code)
    assert r.ok, r.error
    assert sb.get("out") == list("ABCDEFGH")
    # Sequential service would take 8 x 0.2 = 1.6 s.
    assert sb.get("elapsed") < 0.8


def test_parent_exceptions_surface_readably(sb: Sandbox) -> None:
    r = sb.run("failing('value')")
    assert r.error is not None and "ValueError: bad value from the parent" in r.error
    r = sb.run("try:\n    failing('custom')\nexcept RuntimeError as e:\n    print(type(e).__name__, e)")
    assert r.stdout == "ParentOnlyError custom failure in the parent\n"
    r = sb.run("failing('query')")
    assert r.error is not None and "QueryError: no such regex" in r.error
    r = sb.run("try:\n    failing('query')\nexcept ValueError as e:\n    print('caught', e)")
    assert r.stdout == "caught no such regex\n"


def test_unpicklable_arguments_get_a_readable_error(sb: Sandbox) -> None:
    r = sb.run("llm_query(lambda: 1)")
    assert r.error is not None and "TypeError" in r.error and "plain data" in r.error
    r = sb.run("import pathlib\nllm_query(pathlib.Path('x'))")
    assert r.error is not None and "TypeError" in r.error and "not plain data" in r.error


def test_worker_killed_mid_cell_is_reported_and_replaced() -> None:
    with Sandbox(limits=FAST) as box:
        pid = box.pid
        assert pid is not None
        killer = threading.Timer(0.5, os.kill, (pid, signal.SIGKILL))
        killer.start()
        r = box.run("import time\ntime.sleep(30)")
        killer.join()
        assert r.worker_restarted and not r.timed_out
        assert "SIGKILL" in (r.restart_reason or "")
        assert box.pid not in (None, pid)
        assert box.run("print(1 + 1)").stdout == "2\n"


def test_ten_million_character_variable_round_trips_fast() -> None:
    big = "abcdefghij" * 1_000_000
    t = time.perf_counter()
    with Sandbox(variables={"context": big}, limits=FAST) as box:
        r = box.run("print(len(context), context.count('j'))")
        assert r.stdout == "10000000 1000000\n"
        box.set("other", big[::-1])
        assert box.get("other") == big[::-1]
    assert time.perf_counter() - t < 10  # typically well under 1 s; see bench/bench_repl.py


def test_get_set_and_unpicklable_values(sb: Sandbox) -> None:
    sb.set("payload", {"a": [1, 2], "b": ("x", None)})
    assert sb.get("payload") == {"a": [1, 2], "b": ("x", None)}
    assert sb.get("no_such_name", "dflt") == "dflt"
    sb.run("gen = (i for i in range(3))\nclass Thing:\n    def __repr__(self): return 'Thing()'\nthing = Thing()")
    assert sb.get("gen").startswith("<generator object")
    assert sb.get("thing") == "Thing()"
    with pytest.raises(ValidationError):
        sb.set("bad", threading.Lock())
    with pytest.raises(ValidationError):
        sb.set("not an identifier", 1)


def test_describe_gives_structure_not_contents(sb: Sandbox) -> None:
    rows = {r["name"]: r for r in sb.describe()}
    assert rows["context"]["type"] == "str" and rows["context"]["size"] == 20
    assert rows["llm_query"]["reserved"] and rows["llm_query"]["signature"].startswith("llm_query(")
    assert "needle" not in repr(rows)


def test_arun(sb: Sandbox) -> None:
    r = asyncio.run(sb.arun("print('async')"))
    assert isinstance(r, CellResult) and r.stdout == "async\n"


def test_callback_in_flight_at_timeout_is_abandoned_safely() -> None:
    def very_slow() -> str:
        time.sleep(1.5)
        return "late"

    with Sandbox(functions={"very_slow": very_slow}, limits=SandboxLimits(cell_timeout_s=0.5)) as box:
        r = box.run("very_slow()")
        assert r.timed_out and r.worker_restarted
        assert box.run("print('fresh')").stdout == "fresh\n"
        time.sleep(1.2)  # the abandoned call finishes now and must not reach the new worker
        assert box.run("print('still fine')").stdout == "still fine\n"


def test_environment_is_scrubbed_and_cwd_is_scratch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-should-not-leak")
    monkeypatch.setenv("GITHUB_TOKEN", "tok")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:p@h/db")
    monkeypatch.setenv("RLMEM_STORE", "/secret/place")
    monkeypatch.setenv("MY_PASSWORD", "pw")
    with Sandbox() as box:
        r = box.run("import os\nprint(sorted(os.environ))\nprint(os.getcwd() == os.environ['HOME'])")
        names = r.stdout.splitlines()[0]
        for secret in ("ANTHROPIC_API_KEY", "GITHUB_TOKEN", "DATABASE_URL", "RLMEM_STORE", "MY_PASSWORD"):
            assert secret not in names
        assert r.stdout.splitlines()[1] == "True"
        assert box.run("print(os.getcwd())").stdout.strip() == str(box.scratch_dir)


def test_close_leaves_no_process_behind() -> None:
    box = Sandbox(limits=SandboxLimits(allow_subprocess=True))
    r = box.run("import subprocess\np = subprocess.Popen(['sleep', '60'])\nprint(p.pid)")
    assert r.ok, r.render()
    pid = box.pid
    assert pid is not None
    tree = descendants(pid)  # host pids: the worker's own are of its pid namespace
    assert len(tree) >= 2, tree  # at least the worker and its sleep
    scratch = box.scratch_dir
    box.close()
    for p in (pid, *tree):
        with pytest.raises(ProcessLookupError):
            _wait_gone(p)
    assert not scratch.exists()
    with pytest.raises(SandboxError):
        box.run("1")


def _wait_gone(pid: int) -> None:
    """Signal 0 until the pid is gone (raises ProcessLookupError) or 5 s have passed."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        os.kill(pid, 0)
        with open(f"/proc/{pid}/stat") as f:  # a zombie is gone for our purposes
            if re.search(r"\) Z ", f.read()):
                raise ProcessLookupError(pid)
        time.sleep(0.05)


def test_async_parent_functions_are_awaited() -> None:
    async def afetch(key: str) -> str:
        await asyncio.sleep(0.01)
        return f"value of {key}"

    with Sandbox(functions={"afetch": afetch}) as box:
        assert box.run("print(afetch('k'))").stdout == "value of k\n"


@pytest.mark.parametrize("total", [0, 5, 999, 1000, 1001, 1999, 2000, 2001, 5000, 123_457])
@pytest.mark.parametrize("chunk", [1, 7, 1000, 10_000])
def test_capture_and_cut_keep_exact_head_and_tail(total: int, chunk: int) -> None:
    text = "".join(chr(48 + i % 70) for i in range(total))
    stream = CappedStream(1000)
    for i in range(0, total, chunk):
        stream.write(text[i : i + chunk])
    out, cut = cut_output(*stream.snapshot(), 1000)
    if total <= 1000:
        assert (out, cut) == (text, 0)
    else:
        assert cut == total - 1000
        assert out == f"{text[:500]}\n... [{cut} characters cut] ...\n{text[-500:]}"
