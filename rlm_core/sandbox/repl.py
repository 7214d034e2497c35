"""The sandboxed REPL: model-written Python runs in a worker behind a kernel boundary.

Rules this module keeps:

* The worker is a fresh interpreter started by ``launcher.plan`` (bubblewrap namespaces,
  seccomp, Landlock by default; a plain child process only when ``isolation="process"`` is
  asked for), never a fork of this process: it inherits no open database connection, no API
  key, no client object. Its environment is scrubbed (``policy.scrub_env``), its cwd and HOME
  are the scratch directory, and ``close()`` kills it and everything it started. Workers are
  forked by ``spawner``'s long-lived thread, so a worker dies with this process (its death
  signal is armed) but not with the thread that happened to create its ``Sandbox``.
* One socketpair carries everything as JSON frames (``worker.wire``); the worker's fd 1 and 2
  are not the channel. Every read here has a deadline and checks the worker is alive.
* Nothing the worker sends is trusted: frames are bounded (``max_message_mb``), callback
  arguments (``max_callback_kb``), callbacks in flight (``max_callbacks_in_flight``) and error
  texts (``max_error_chars``) too; a reply of the wrong shape ends the worker.
* Injected functions run here, on a thread pool, so proxies called from several worker
  threads at once really run in parallel; a callback whose cell is over gets no reply.
* Model-code errors never raise: they come back in ``CellResult.error``. A worker that times
  out or dies is replaced, and the result says so. Only failures to start a worker at all
  raise (``SandboxError``), with what to do about it.

What the sandbox does and does not prevent is written down in docs/sandbox.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import os
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
from pathlib import Path
from typing import Any

from memory.errors import SandboxError, ValidationError, WorkerCrashedError
from rlm_core.sandbox import launcher, spawner
from rlm_core.sandbox.channel import Conn, Deadline, WorkerGone, kill_group, peek_exit
from rlm_core.sandbox.checks import await_value, cell_streams, cut, function_spec
from rlm_core.sandbox.policy import cut_streams, scrub_env
from rlm_core.sandbox.types import CellResult, SandboxLimits
from rlm_core.sandbox.worker import wire

__all__ = ["CellResult", "Sandbox", "SandboxLimits"]

_START_TIMEOUT_S = 60.0
_DEFAULT_LIMITS = SandboxLimits()
_STDERR_CAP = 8192


class Sandbox:
    """A persistent Python namespace in a worker process, with proxies back to this one."""

    def __init__(
        self,
        *,
        functions: Mapping[str, Callable[..., Any]] | None = None,
        variables: Mapping[str, Any] | None = None,
        prelude: str = "",
        limits: SandboxLimits = _DEFAULT_LIMITS,
        scratch_dir: str | Path | None = None,
        callback_workers: int = 16,
        reserved_variables: Iterable[str] = (),
        python: str | None = None,
        run_as: int | None = None,
        isolation: str | None = None,
    ) -> None:
        self.limits = limits
        self.isolation = launcher.resolve_isolation(isolation or limits.isolation)
        if run_as is not None and self.isolation == "kernel":
            raise ValidationError("run_as applies to isolation='process' only (the kernel boundary picks its own uid)")
        self.functions: dict[str, Callable[..., Any]] = dict(functions or {})
        specs = [function_spec(n, f) for n, f in self.functions.items()]
        for name in variables or {}:
            if not name.isidentifier():
                raise ValidationError(f"variable name {name!r} is not a Python identifier")
        initial = dict(variables or {})
        try:  # checked once here: every restart of the worker sends the same values
            wire.dumps(initial, max_bytes=1 << 31)
        except (wire.WireError, ValueError) as exc:
            raise ValidationError(f"variables must be plain data: {exc}") from None
        self._owns_scratch = scratch_dir is None
        self.scratch_dir = Path(
            tempfile.mkdtemp(prefix="rlm-scratch-") if scratch_dir is None else scratch_dir
        ).resolve()
        self.scratch_dir.mkdir(parents=True, exist_ok=True)
        self._python = python or sys.executable
        self._run_as = run_as
        self._uid = launcher.new_uid() if self.isolation == "kernel" else run_as
        if self._uid is not None:
            os.chown(self.scratch_dir, self._uid, self._uid)
        self._init_cfg = {
            "functions": specs,
            "variables": initial,
            "prelude": prelude,
            "reserved_variables": list(reserved_variables),
            "max_output_chars": limits.max_output_chars,
            "memory_mb": limits.memory_mb,
            "max_callback_bytes": limits.max_callback_kb * 1024,
            "max_message_bytes": limits.max_message_mb << 20,
            "callback_timeout_s": limits.cell_timeout_s,
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
            "audit_hook": limits.audit_hook,
        }
        self._in_flight = threading.BoundedSemaphore(max(1, limits.max_callbacks_in_flight))
        self.confinement: dict[str, Any] = {}
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
        lim = self.limits
        try:
            plan = launcher.plan(
                isolation=self.isolation, python=self._python, scratch=str(self.scratch_dir),
                env=scrub_env(os.environ, str(self.scratch_dir)), channel_fd=child_sock.fileno(),
                allow_network=lim.allow_network, run_as=self._run_as,
                drop_uid=self._uid if self.isolation == "kernel" else None,
            )
        except BaseException:
            parent_sock.close()
            child_sock.close()
            raise
        policy = {
            **self._policy,
            "confine": {**plan.confine, "allow_network": lim.allow_network,
                        "allow_subprocess": lim.allow_subprocess},
        }
        try:
            proc = spawner.popen(  # forked by a thread that lives as long as the process
                plan.argv,
                pass_fds=tuple(plan.pass_fds),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,  # the launcher's and the interpreter's start errors
                cwd=plan.cwd,
                env=plan.env or scrub_env(os.environ, str(self.scratch_dir)),
                start_new_session=True,
                user=plan.run_as,
                group=plan.run_as,
                extra_groups=[] if plan.run_as is not None else None,
            )
        except OSError as exc:
            parent_sock.close()
            raise SandboxError(f"could not start the REPL worker ({plan.argv[0]}): {exc}") from exc
        finally:
            child_sock.close()
            for fd in plan.close_after:
                os.close(fd)
        weakref.finalize(self, kill_group, proc)
        self._proc, self._conn = proc, Conn(parent_sock, proc, lim.max_message_mb << 20)
        deadline = time.monotonic() + _START_TIMEOUT_S
        try:
            self._conn.send(("policy", policy), deadline)
            ok, info = self._roundtrip(("init", next(self._ids), self._init_cfg), deadline)
        except (WorkerGone, Deadline) as exc:
            reason = self._reason(exc)
            detail = self._start_stderr(proc)
            self._kill()
            where = " behind the kernel boundary" if plan.kernel else ""
            hint = f"; {launcher.HOW_TO_ACCEPT}" if plan.kernel else ""
            raise SandboxError(
                f"the REPL worker failed to start{where}: {reason}" + (f"\n{detail}" if detail else "") + hint
            ) from None
        finally:
            if proc.stderr is not None:
                proc.stderr.close()
        if not ok:
            self._kill()
            raise SandboxError(f"the REPL prelude or variables failed in the worker:\n{cut(info, 20_000)}")
        if not isinstance(info, dict) or not all(isinstance(n, str) for n in info.get("reserved", ())):
            self._kill()
            raise SandboxError("the REPL worker answered its start with a malformed message")
        raw = info.get("confined")
        confined: dict[str, Any] = raw if isinstance(raw, dict) else {}
        if plan.kernel and not (confined.get("seccomp") and (self._uid is None or confined.get("uid") == self._uid)):
            self._kill()
            raise SandboxError(f"the REPL worker did not confine itself ({confined}); {launcher.HOW_TO_ACCEPT}")
        self.confinement = {"isolation": self.isolation, **confined}
        self.reserved = list(info["reserved"])

    def _start_stderr(self, proc: subprocess.Popen[bytes]) -> str:
        """What the launcher or the interpreter wrote before dying (bounded, never blocking)."""
        if proc.stderr is None or peek_exit(proc, 1.0) is None:
            return ""
        with contextlib.suppress(OSError):
            os.set_blocking(proc.stderr.fileno(), False)
            data = proc.stderr.read(_STDERR_CAP) or b""
            return data.decode("utf-8", "replace").strip()
        return ""

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
        if self.isolation == "kernel" and 128 < rc < 128 + 65:  # bubblewrap: 128 + signal
            rc = 128 - rc
        if rc == -signal.SIGXCPU:
            return f"CPU time limit exceeded ({self.limits.cpu_seconds} s of CPU in total)"
        if rc < 0:
            try:
                sig = signal.Signals(-rc).name
            except ValueError:
                sig = f"signal {-rc}"
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
            if reply[0] == "cb" and len(reply) == 5:
                self._admit_callback(conn, reply[1:], deadline)
            elif reply[0] == "done" and len(reply) == 4 and reply[1] == msg[1]:
                return bool(reply[2]), reply[3]
            elif reply[0] == "refused" and len(reply) == 2:
                raise WorkerGone(f"the worker could not confine itself: {cut(reply[1], 2000)}")
            # anything else is a stale or forged message: ignore it

    def _admit_callback(self, conn: Conn, call: tuple[Any, ...], deadline: float) -> None:
        call_id, name, args, kwargs = call
        lim = self.limits
        problem = None
        if not isinstance(args, tuple) or not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
            problem = ("TypeError", "malformed call")
        elif conn.last_size > lim.max_callback_kb * 1024 + 4096:
            problem = ("ValueError", f"{cut(name, 100)}(): arguments of {conn.last_size:,} bytes are over the "
                       f"{lim.max_callback_kb} KiB limit of one call; pass less (slice, or call several times)")
        elif not self._in_flight.acquire(blocking=False):
            problem = ("RuntimeError", f"more than {lim.max_callbacks_in_flight} calls to the parent are in "
                       "flight; wait for some to finish")
        if problem is not None:
            with contextlib.suppress(WorkerGone, Deadline, wire.WireError):
                conn.send(("cb_reply", call_id, False, (*problem, problem[0])), deadline)
            return
        try:
            self._pool.submit(self._serve_callback, conn, call_id, name, args, kwargs)
        except RuntimeError:  # the pool is shut down: the sandbox is closing
            self._in_flight.release()

    def _serve_callback(self, conn: Conn, call_id: Any, name: Any, args: Any, kwargs: Any) -> None:
        cap = self.limits.max_error_chars
        try:
            try:
                fn = self.functions.get(name) if isinstance(name, str) else None
                if fn is None:
                    raise NameError(f"{cut(name, 100)!s} is not a function of this sandbox")
                result = fn(*args, **kwargs)
                if inspect.isawaitable(result):  # async functions run on a private loop here
                    result = asyncio.run(await_value(result))
                reply: tuple[Any, ...] = ("cb_reply", call_id, True, result)
            except Exception as exc:
                base = next(c for c in type(exc).__mro__ if c.__module__ == "builtins")
                reply = ("cb_reply", call_id, False, (type(exc).__name__, cut(str(exc), cap), base.__name__))
            if conn.closed:
                return  # the cell timed out or the worker died: nobody is waiting any more
            deadline = time.monotonic() + self.limits.cell_timeout_s
            try:
                conn.send(reply, deadline)
            except (wire.WireError, ValueError) as exc:
                msg = f"{name}() returned a value that cannot cross the sandbox boundary: {cut(str(exc), cap)}"
                with contextlib.suppress(WorkerGone, Deadline):
                    conn.send(("cb_reply", call_id, False, ("TypeError", msg, "TypeError")), deadline)
            except (WorkerGone, Deadline):
                pass
        finally:
            self._in_flight.release()

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
            cap = self.limits.max_error_chars
            if not ok:  # the worker's own machinery failed; the namespace is intact
                return CellResult("", "", cut(payload, cap), duration_s=time.monotonic() - started)
            streams = cell_streams(payload)
            if streams is None:  # a worker that breaks the protocol is not trusted again
                self._replace()
                return CellResult("", "", "WorkerCrashed: the worker sent a malformed cell result",
                                  False, True, "protocol violation", time.monotonic() - started)
            out, err, n_cut = cut_streams(*streams, self.limits.max_output_chars)
            error = payload.get("error")
            return CellResult(
                out, err, None if error is None else cut(error, cap), worker_restarted=died is not None,
                restart_reason=died, duration_s=time.monotonic() - started, truncated_chars=n_cut,
            )

    async def arun(self, code: str, *, timeout_s: float | None = None) -> CellResult:
        """``run`` on a thread, so an event loop keeps serving while the cell runs."""
        return await asyncio.to_thread(self.run, code, timeout_s=timeout_s)

    def get(self, name: str, default: Any = None) -> Any:
        """A value from the namespace; values that are not plain data come back as repr()."""
        reply = self._request("get", name)
        if not isinstance(reply, tuple) or len(reply) != 2:
            return default
        kind, payload = reply
        if kind == "missing":
            return default
        if kind == "repr":
            return cut(payload, self.limits.max_error_chars)
        return payload

    def set(self, name: str, value: Any) -> None:
        """Bind ``name`` in the namespace (not reserved: lost if the worker is replaced)."""
        if not isinstance(name, str) or not name.isidentifier():
            raise ValidationError(f"variable name {name!r} is not a Python identifier")
        try:  # encoding fails before a byte is sent: the worker is untouched
            self._request("set", name, value)
        except (wire.WireError, ValueError) as exc:
            raise ValidationError(f"value for {name!r} must be plain data: {exc}") from None

    def describe(self) -> list[dict[str, Any]]:
        """Names, types and sizes of the user-visible names (never their contents)."""
        rows = self._request("describe")
        if not isinstance(rows, list):
            return []
        return [
            {k: cut(v, 500) if isinstance(v, str) else v for k, v in r.items()}
            for r in rows[:10_000]
            if isinstance(r, dict) and isinstance(r.get("name"), str)
        ]

