"""The sandboxed REPL: model-written Python runs in a separate worker process.

Rules this module keeps:

* The worker is a fresh interpreter (``python -I rlm_core/sandbox/worker.py FD``), never a fork of
  this process: it inherits no open database connection, no API key, no client object. Its
  environment is scrubbed (``sandbox_policy.scrub_env``), its cwd and HOME are the scratch
  directory, and it runs in its own session so ``close()`` kills its whole process group.
* One socketpair carries everything, length-prefixed; the worker's fd 1 and 2 are not the
  channel, so model code writing to them cannot corrupt it. Every read in this process has a
  deadline and checks the worker is alive: the parent never hangs on the worker.
* Injected functions run here, in this process, on a thread pool, so proxies called from
  several worker threads at once really run in parallel. Arguments coming back from the
  worker are unpickled with an allow-list of plain data types (``safe_loads``).
* Model-code errors never raise: they come back in ``CellResult.error``. A worker that times
  out or dies is replaced, and the result says so. Only failures to start a worker at all
  raise (``SandboxError``).

What the sandbox does and does not prevent is written down in docs/sandbox.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memory.errors import SandboxError, ValidationError, WorkerCrashedError
from rlm_core.sandbox.channel import Conn, Deadline, WorkerGone, kill_group, peek_exit
from rlm_core.sandbox.policy import UnsafePayloadError, cut_streams, safe_loads, scrub_env

__all__ = ["CellResult", "Sandbox", "SandboxLimits"]

_WORKER = str(Path(__file__).with_name("worker.py"))
_START_TIMEOUT_S = 60.0
_MAX_ERROR_CHARS = 20_000


@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits of one sandbox. ``None`` disables an rlimit.

    ``cell_timeout_s`` and ``max_output_chars`` are read at every ``run`` (assigning a new
    value to ``Sandbox.limits`` between cells takes effect; output is never captured beyond
    the creation-time ``max_output_chars``); the rest are fixed when the Sandbox is created.
    """

    cell_timeout_s: float = 60.0  # wall clock per cell
    cpu_seconds: int | None = 300  # RLIMIT_CPU, cumulative for the worker; it is replaced when hit
    memory_mb: int | None = 2048  # RLIMIT_AS
    max_output_chars: int = 20_000  # stdout + stderr per cell, head and tail kept
    max_file_mb: int = 100  # RLIMIT_FSIZE
    allow_network: bool = False
    allow_subprocess: bool = False
    nproc: int | None = 512  # RLIMIT_NPROC (threads count too); ignored when running as root
    recursion_limit: int = 1000
    # Files or directories model code may not open at all (e.g. the memory store itself:
    # its data reaches the model only through the functions it is given).
    deny_read: tuple[str, ...] = ()


@dataclass
class CellResult:
    """The outcome of one cell, as the parent saw it."""

    stdout: str
    stderr: str
    error: str | None
    timed_out: bool = False
    worker_restarted: bool = False
    restart_reason: str | None = None
    duration_s: float = 0.0
    truncated_chars: int = 0

    @property
    def ok(self) -> bool:
        return self.error is None

    def render(self) -> str:
        """The text the model sees: output, error, and a line if the worker was restarted."""
        parts = [p.rstrip("\n") for p in (self.stdout, self.stderr, self.error or "") if p]
        if self.worker_restarted:
            parts.append(
                f"[the worker was restarted: {self.restart_reason}; variables were lost, "
                "reserved functions and initial variables are back]"
            )
        return "\n".join(parts) if parts else "[no output]"


async def _await(awaitable: Any) -> Any:
    return await awaitable


def _function_spec(name: str, fn: Callable[..., Any]) -> dict[str, Any]:
    if not name.isidentifier():
        raise ValidationError(f"function name {name!r} is not a Python identifier")
    if not callable(fn):
        raise ValidationError(f"functions[{name!r}] is not callable")
    params: list[dict[str, Any]] | None
    try:
        params = [
            {
                "name": p.name,
                "kind": int(p.kind),
                "default": None if p.default is p.empty else repr(p.default),
                "annotation": None
                if p.annotation is p.empty
                else (p.annotation if isinstance(p.annotation, str) else getattr(p.annotation, "__name__", str(p.annotation))),
            }
            for p in inspect.signature(fn).parameters.values()
        ]
    except (TypeError, ValueError):
        params = None
    return {"name": name, "doc": inspect.getdoc(fn), "params": params}


class Sandbox:
    """A persistent Python namespace in a worker process, with proxies back to this one."""

    def __init__(
        self,
        *,
        functions: Mapping[str, Callable[..., Any]] | None = None,
        variables: Mapping[str, Any] | None = None,
        prelude: str = "",
        limits: SandboxLimits = SandboxLimits(),
        scratch_dir: str | Path | None = None,
        callback_workers: int = 16,
        reserved_variables: Iterable[str] = (),
        python: str | None = None,
        run_as: int | None = None,
    ) -> None:
        self.limits = limits
        self.functions: dict[str, Callable[..., Any]] = dict(functions or {})
        specs = [_function_spec(n, f) for n, f in self.functions.items()]
        for name in variables or {}:
            if not name.isidentifier():
                raise ValidationError(f"variable name {name!r} is not a Python identifier")
        try:  # pickled once: every restart of the worker reuses these bytes
            variables_blob = pickle.dumps(dict(variables or {}), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            raise ValidationError(f"variables must be picklable: {exc}") from None
        self._owns_scratch = scratch_dir is None
        self.scratch_dir = Path(
            tempfile.mkdtemp(prefix="rlm-scratch-") if scratch_dir is None else scratch_dir
        ).resolve()
        self.scratch_dir.mkdir(parents=True, exist_ok=True)
        self._python = python or sys.executable
        self._run_as = run_as
        if run_as is not None:
            os.chown(self.scratch_dir, run_as, run_as)
        self._init_cfg = {
            "functions": specs,
            "variables": variables_blob,
            "prelude": prelude,
            "reserved_variables": list(reserved_variables),
            "max_output_chars": limits.max_output_chars,
            "memory_mb": limits.memory_mb,
        }
        self._policy = {
            "scratch_dir": str(self.scratch_dir),
            "memory_mb": limits.memory_mb,
            "cpu_seconds": limits.cpu_seconds,
            "max_file_mb": limits.max_file_mb,
            "allow_network": limits.allow_network,
            "allow_subprocess": limits.allow_subprocess,
            "nproc": limits.nproc,
            "recursion_limit": limits.recursion_limit,
            "deny_read": [str(p) for p in limits.deny_read],
        }
        self._pool = ThreadPoolExecutor(max(1, callback_workers), thread_name_prefix="rlm-cb")
        self._lock = threading.RLock()
        self._ids = itertools.count(1)
        self._proc: subprocess.Popen[bytes] | None = None
        self._conn: Conn | None = None
        self._closed = False
        self.restarts = 0
        self.reserved: list[str] = []
        try:
            self._start()
        except BaseException:
            self._closed = True
            self._pool.shutdown(wait=False)
            if self._owns_scratch:
                shutil.rmtree(self.scratch_dir, ignore_errors=True)
            raise

    # --- lifecycle -------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.returncode is None else None

    def _start(self) -> None:
        parent_sock, child_sock = socket.socketpair()
        for sock in (parent_sock, child_sock):  # large buffers: fewer wake-ups per big value
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        try:
            proc = subprocess.Popen(
                [self._python, "-I", _WORKER, str(child_sock.fileno())],
                pass_fds=(child_sock.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd=self.scratch_dir,
                env=scrub_env(os.environ, str(self.scratch_dir)),
                start_new_session=True,
                user=self._run_as,
                group=self._run_as,
                extra_groups=[] if self._run_as is not None else None,
            )
        except OSError as exc:
            parent_sock.close()
            raise SandboxError(f"could not start the REPL worker ({self._python}): {exc}") from exc
        finally:
            child_sock.close()
        weakref.finalize(self, kill_group, proc)
        self._proc, self._conn = proc, Conn(parent_sock, proc)
        deadline = time.monotonic() + _START_TIMEOUT_S
        try:
            self._conn.send(("policy", self._policy), deadline)
            ok, info = self._roundtrip(("init", next(self._ids), self._init_cfg), deadline)
        except (WorkerGone, Deadline) as exc:
            self._kill()
            raise SandboxError(f"the REPL worker failed to start: {self._reason(exc)}") from None
        if not ok:
            self._kill()
            raise SandboxError(f"the REPL prelude or variables failed in the worker:\n{info}")
        self.reserved = list(info["reserved"])

    def _kill(self) -> None:
        if self._conn is not None:
            self._conn.close()
        if self._proc is not None:
            kill_group(self._proc)

    def _replace(self) -> None:
        self._kill()
        self.restarts += 1
        self._start()

    def restart(self) -> None:
        """Replace the worker: every name but the initial ones is lost."""
        with self._lock:
            self._check_open()
            self._replace()

    def close(self) -> None:
        """Kill the worker and its process group, stop serving callbacks, drop the scratch dir
        if this sandbox created it."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._kill()
            self._pool.shutdown(wait=False, cancel_futures=True)
            if self._owns_scratch:
                shutil.rmtree(self.scratch_dir, ignore_errors=True)

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise SandboxError("the sandbox is closed; create a new Sandbox")

    def _reason(self, exc: BaseException) -> str:
        if isinstance(exc, Deadline):
            return "no answer from the worker in time"
        reason = getattr(exc, "reason", str(exc))
        if reason.startswith("worker sent"):  # alive but broke the protocol
            return reason
        rc = peek_exit(self._proc, 2.0) if self._proc is not None else None
        if rc is None:
            return reason
        if rc == -signal.SIGXCPU:  # (SIGKILL at the hard CPU limit looks like any kill)
            return f"CPU time limit exceeded ({self.limits.cpu_seconds} s of CPU in total)"
        if rc < 0:
            sig = signal.Signals(-rc).name
            hint = {
                "SIGKILL": " (killed: out of memory, or killed from outside)",
                "SIGSEGV": " (crashed: segmentation fault)",
                "SIGABRT": " (aborted, often a failed memory allocation: memory limit exceeded)",
                "SIGXFSZ": " (file size limit exceeded)",
            }.get(sig, "")
            return f"worker terminated by {sig}{hint}"
        return f"worker exited with status {rc}"


    # --- protocol ----------------------------------------------------------------------------

    def _roundtrip(self, msg: tuple[Any, ...], deadline: float) -> tuple[bool, Any]:
        """Send a request and service callbacks until its reply arrives."""
        conn = self._conn
        assert conn is not None
        conn.send(msg, deadline)
        while True:
            reply = conn.recv(deadline)
            if not isinstance(reply, tuple) or not reply:
                raise WorkerGone("worker sent an invalid message")
            if reply[0] == "cb" and len(reply) == 4:
                self._pool.submit(self._serve_callback, conn, *reply[1:])
            elif reply[0] == "done" and len(reply) == 4 and reply[1] == msg[1]:
                return bool(reply[2]), reply[3]
            # anything else is a stale or forged message: ignore it

    def _serve_callback(self, conn: Conn, call_id: Any, name: Any, blob: Any) -> None:
        try:
            fn = self.functions.get(name) if isinstance(name, str) else None
            if fn is None:
                raise NameError(f"{name!r} is not a function of this sandbox")
            args, kwargs = safe_loads(blob)
            if not isinstance(args, tuple) or not isinstance(kwargs, dict):
                raise TypeError("malformed call")
            result = fn(*args, **kwargs)
            if inspect.isawaitable(result):  # async functions run on a private loop here
                result = asyncio.run(_await(result))
            reply: tuple[Any, ...] = ("cb_reply", call_id, True, result)
        except UnsafePayloadError as exc:
            reply = ("cb_reply", call_id, False, ("TypeError", f"{name}(): {exc}", "TypeError"))
        except Exception as exc:
            base = next(c for c in type(exc).__mro__ if c.__module__ == "builtins")
            text = str(exc)
            if len(text) > _MAX_ERROR_CHARS:
                text = text[:_MAX_ERROR_CHARS] + f"... [{len(text) - _MAX_ERROR_CHARS} characters cut]"
            reply = ("cb_reply", call_id, False, (type(exc).__name__, text, base.__name__))
        if conn.closed:
            return  # the cell timed out or the worker died: nobody is waiting any more
        deadline = time.monotonic() + self.limits.cell_timeout_s
        try:
            conn.send(reply, deadline)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            msg = f"{name}() returned a value that cannot cross the sandbox boundary: {exc}"
            with contextlib.suppress(WorkerGone, Deadline):
                conn.send(("cb_reply", call_id, False, ("TypeError", msg, "TypeError")), deadline)
        except (WorkerGone, Deadline):
            pass

    def _request(self, kind: str, *args: Any) -> Any:
        """A non-cell request (get/set/describe); a worker that fails it is replaced."""
        with self._lock:
            self._check_open()
            deadline = time.monotonic() + self.limits.cell_timeout_s
            try:
                ok, payload = self._roundtrip((kind, next(self._ids), *args), deadline)
            except (WorkerGone, Deadline) as exc:
                reason = self._reason(exc)
                self._replace()
                raise WorkerCrashedError(f"the REPL worker failed during {kind}: {reason}; it was replaced") from None
            if not ok:
                raise SandboxError(f"{kind} failed in the worker:\n{payload}")
            return payload

    # --- public API --------------------------------------------------------------------------

    def run(self, code: str, *, timeout_s: float | None = None) -> CellResult:
        """Run one cell. Model-code errors, timeouts and worker deaths come back in the result.

        ``timeout_s`` overrides ``limits.cell_timeout_s`` for this cell only.
        """
        if not isinstance(code, str):
            raise ValidationError(f"code must be a str, not {type(code).__name__}")
        with self._lock:
            self._check_open()
            died: str | None = None
            if self._proc is None or peek_exit(self._proc, 0) is not None:
                # Died between cells (a model thread, an outside kill): say so in this result.
                died = f"the worker died between cells ({self._reason(WorkerGone('exited'))})"
                self._replace()
            started = time.monotonic()
            timeout = self.limits.cell_timeout_s if timeout_s is None else timeout_s
            try:
                ok, payload = self._roundtrip(("exec", next(self._ids), code), started + timeout)
            except (WorkerGone, Deadline) as exc:
                timed_out = isinstance(exc, Deadline)
                reason = f"the cell ran past its {timeout:g} s time limit" if timed_out else self._reason(exc)
                self._replace()
                error = (
                    f"TimeoutError: the cell was stopped after {timeout:g} s"
                    if timed_out
                    else f"WorkerCrashed: the worker process died while running the cell: {reason}"
                )
                return CellResult(
                    "", "", error, timed_out, True, reason, time.monotonic() - started, 0
                )
            if not ok:  # the worker's own machinery failed; the namespace is intact
                return CellResult("", "", str(payload), duration_s=time.monotonic() - started)
            out, err, cut = cut_streams(
                tuple(payload["stdout"]), tuple(payload["stderr"]), self.limits.max_output_chars
            )
            return CellResult(
                out, err, payload["error"], worker_restarted=died is not None,
                restart_reason=died, duration_s=time.monotonic() - started, truncated_chars=cut,
            )

    async def arun(self, code: str, *, timeout_s: float | None = None) -> CellResult:
        """``run`` on a thread, so an event loop keeps serving while the cell runs."""
        return await asyncio.to_thread(self.run, code, timeout_s=timeout_s)

    def get(self, name: str, default: Any = None) -> Any:
        """A value from the namespace; values that are not plain data come back as repr()."""
        kind, payload = self._request("get", name)
        if kind == "missing":
            return default
        if kind == "pickle":
            try:
                return safe_loads(payload)
            except UnsafePayloadError:
                kind, payload = self._request("repr", name)
        return payload

    def set(self, name: str, value: Any) -> None:
        """Bind ``name`` in the namespace (not reserved: lost if the worker is replaced)."""
        if not isinstance(name, str) or not name.isidentifier():
            raise ValidationError(f"variable name {name!r} is not a Python identifier")
        try:
            blob = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            raise ValidationError(f"value for {name!r} must be picklable: {exc}") from None
        self._request("set", name, blob)

    def describe(self) -> list[dict[str, Any]]:
        """Names, types and sizes of the user-visible names (never their contents)."""
        rows = self._request("describe")
        return [r for r in rows if isinstance(r, dict)]
