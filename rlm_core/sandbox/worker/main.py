"""The REPL worker's main loop: the child-process side of ``rlm_core.sandbox.repl.Sandbox``.

Rules this module keeps:

* Standard library and this package only (see the package docstring). The parent starts it
  through ``launcher.BOOT`` with the channel's file descriptor as its argument.
* The first frame is the policy. ``confine`` (uid drop, Landlock, seccomp) and
  ``guard.install_policy`` (rlimits, the optional audit hook) are applied before the first
  byte of model code runs, and fd 1 and 2 are pointed at /dev/null, so model code writing to
  them reaches nobody.
* Frames are JSON (``wire``), both ways; nothing here unpickles.
* Model code runs in the main thread. A reader thread owns the receiving side of the socket
  so proxies called from many model threads at once each get their own reply; a proxy call
  waits at most ``callback_timeout_s`` for it.
* Reserved names (injected functions, prelude definitions, reserved variables) are put back
  after every cell; stdout/stderr are captured per cell with a head + tail cap, so a cell
  that prints forever cannot exhaust memory.
"""

from __future__ import annotations

import builtins
import contextlib
import inspect
import io
import itertools
import os
import queue
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from rlm_core.sandbox.worker import confine, guard, wire

__all__ = ["main"]

# Frames from these files are the sandbox's, not the model's: tracebacks leave them out.
_OWN_FILES = frozenset({__file__, guard.__file__, wire.__file__})
_MAX_IN = 1 << 31  # frames from the parent are trusted; the limit only guards the header

# --- channel -----------------------------------------------------------------------------


class Channel:
    """JSON frames over a socket; sends are serialised, one reader thread."""

    def __init__(self, fd: int) -> None:
        self.sock = socket.socket(fileno=fd)
        self.sock.setblocking(True)
        self._send_lock = threading.Lock()
        self.max_out = 64 << 20

    def encode(self, msg: Any, max_bytes: int | None = None) -> bytes:
        return wire.dumps(msg, max_bytes=self.max_out if max_bytes is None else max_bytes)

    def send_raw(self, data: bytes) -> None:
        with self._send_lock:
            wire.send_frame(self.sock, data)

    def send(self, msg: Any) -> None:
        self.send_raw(self.encode(msg))

    def recv(self) -> Any:
        return wire.loads(wire.recv_frame(self.sock, _MAX_IN))


# --- the worker --------------------------------------------------------------------------


class _Default:
    """Stands for a parent-side default value or annotation in a proxy's signature."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


class RemoteError(RuntimeError):
    """Raised in the worker when a parent function failed with a non-builtin exception."""


class Worker:
    def __init__(self, channel: Channel) -> None:
        self.ch = channel
        self.ns: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}
        self.reserved: dict[str, Any] = {}
        self.requests: queue.Queue[Any] = queue.Queue()
        self.pending: dict[int, list[Any]] = {}
        self.pending_lock = threading.Lock()
        self.call_ids = itertools.count(1)
        self.confined: dict[str, Any] = {}
        self.max_output = 20_000
        self.memory_mb = 0
        self.max_callback_bytes = 1 << 20
        self.callback_timeout_s = 60.0
        self.home = ""  # the scratch dir, each cell's cwd

    # reader thread: route replies to waiting proxies, everything else to the main thread
    def read_loop(self) -> None:
        try:
            while True:
                msg = self.ch.recv()
                if msg[0] == "cb_reply":
                    with self.pending_lock:
                        slot = self.pending.pop(msg[1], None)
                    if slot is not None:
                        slot[1] = msg
                        slot[0].set()
                else:
                    self.requests.put(msg)
        except BaseException:  # channel gone: the parent is gone or restarting us
            os._exit(0)

    def call_parent(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        call_id = next(self.call_ids)
        slot: list[Any] = [threading.Event(), None]
        with self.pending_lock:
            self.pending[call_id] = slot
        try:
            data = self.ch.encode(("cb", call_id, name, args, kwargs), self.max_callback_bytes)
        except wire.WireError as exc:
            with self.pending_lock:
                self.pending.pop(call_id, None)
            raise TypeError(f"{name}(): arguments cannot cross the sandbox boundary: {exc}") from None
        self.ch.send_raw(data)
        if not slot[0].wait(self.callback_timeout_s):
            with self.pending_lock:
                self.pending.pop(call_id, None)
            raise TimeoutError(f"{name}() got no answer from the parent in {self.callback_timeout_s:g} s")
        _, _, ok, value = slot[1]
        if ok:
            return value
        raise _remote_exception(*value)

    def make_proxy(self, spec: dict[str, Any]) -> Callable[..., Any]:
        name = spec["name"]

        def proxy(*args: Any, **kwargs: Any) -> Any:
            return self.call_parent(name, args, kwargs)

        proxy.__name__ = proxy.__qualname__ = name
        proxy.__doc__ = spec.get("doc")
        params = spec.get("params")
        if params is not None:
            with contextlib.suppress(ValueError, TypeError):
                proxy.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
                    [
                        inspect.Parameter(
                            p["name"],
                            inspect._ParameterKind(p["kind"]),
                            default=_Default(p["default"])
                            if p["default"] is not None
                            else inspect.Parameter.empty,
                            annotation=_Default(p["annotation"])
                            if p["annotation"]
                            else inspect.Parameter.empty,
                        )
                        for p in params
                    ]
                )
        return proxy

    def init(self, cfg: dict[str, Any]) -> dict[str, Any]:
        self.max_output = int(cfg["max_output_chars"])
        self.memory_mb = int(cfg.get("memory_mb") or 0)
        self.max_callback_bytes = int(cfg.get("max_callback_bytes") or self.max_callback_bytes)
        self.callback_timeout_s = float(cfg.get("callback_timeout_s") or self.callback_timeout_s)
        self.ch.max_out = int(cfg.get("max_message_bytes") or self.ch.max_out)
        for spec in cfg["functions"]:
            self.ns[spec["name"]] = self.make_proxy(spec)
        self.ns.update(cfg["variables"])
        before = set(self.ns)
        if cfg["prelude"]:
            exec(compile(cfg["prelude"], "<prelude>", "exec"), self.ns)
        names = {s["name"] for s in cfg["functions"]}
        names |= set(self.ns) - before
        names |= {n for n in cfg["reserved_variables"] if n in self.ns}
        self.reserved = {n: self.ns[n] for n in names if n in self.ns}
        return {"pid": os.getpid(), "reserved": sorted(self.reserved), "confined": self.confined}

    def restore(self) -> None:
        self.ns["__builtins__"] = builtins
        for name, value in self.reserved.items():
            if self.ns.get(name, _MISSING) is not value:
                self.ns[name] = value

    def run_cell(self, code: str, number: int) -> dict[str, Any]:
        if self.home:  # every cell starts in the scratch dir: one cell's chdir does not leak
            try:
                os.chdir(self.home)
            except OSError as exc:
                return {"stdout": ("", "", 0), "stderr": ("", "", 0), "duration_s": 0.0,
                        "error": f"OSError: the scratch directory cannot be entered ({exc}); the cell was not run\n"}
        out = guard.CappedStream(self.max_output)
        err = guard.CappedStream(self.max_output)
        old = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = out, err
        error: str | None = None
        start = time.perf_counter()
        try:
            try:
                compiled = _compile_cell(code, f"<cell {number}>")
            except SyntaxError:
                error = traceback.format_exc(limit=0)
            else:
                for block, mode in compiled:
                    if mode == "exec":
                        exec(block, self.ns)
                        continue
                    value = eval(block, self.ns)
                    if value is not None:
                        self.ns["_"] = value
                        print(repr(value))
        except BaseException as exc:  # KeyboardInterrupt and SystemExit too: the cell ends
            error = _format_error(exc)
            if isinstance(exc, MemoryError) and self.memory_mb:
                error += f"(the worker's memory limit is {self.memory_mb} MB)\n"
        finally:
            sys.stdout, sys.stderr = old
            self.restore()
        return {
            "stdout": out.snapshot(),
            "stderr": err.snapshot(),
            "error": error,
            "duration_s": time.perf_counter() - start,
        }

    def describe(self) -> list[dict[str, Any]]:
        rows = []
        for name, value in list(self.ns.items()):
            if name.startswith("_") or inspect.ismodule(value):
                continue
            row: dict[str, Any] = {
                "name": name,
                "type": type(value).__name__,
                "reserved": name in self.reserved,
            }
            # Model-defined objects can raise from len() or signature(): describe the rest.
            with contextlib.suppress(Exception):
                if isinstance(value, str | bytes | bytearray | list | tuple | dict | set | frozenset):
                    row["size"] = len(value)
                elif callable(value):
                    row["signature"] = f"{name}(...)"
                    row["signature"] = f"{name}{inspect.signature(value)}"
                    doc = inspect.getdoc(value)
                    if doc:
                        row["doc"] = doc.strip().splitlines()[0][:200]
            rows.append(row)
        return rows

    def handle(self, msg: Any) -> Any:
        kind = msg[0]
        if kind == "exec":
            return self.run_cell(msg[2], msg[1])
        if kind == "get":
            name = msg[2]
            if name not in self.ns:
                return ("missing", None)
            value = self.ns[name]
            try:  # what cannot cross comes back as its repr
                return _Encoded(self.ch.encode(("done", msg[1], True, ("value", value))))
            except (wire.WireError, ValueError, TypeError):
                return ("repr", _safe_repr(value))
        if kind == "repr":
            return ("repr", _safe_repr(self.ns.get(msg[2])))
        if kind == "set":
            self.ns[msg[2]] = msg[3]
            return None
        if kind == "describe":
            return self.describe()
        if kind == "init":
            return self.init(msg[2])
        raise ValueError(f"unknown request {kind!r}")

    def serve(self) -> None:
        threading.Thread(target=self.read_loop, name="rlm-channel", daemon=True).start()
        while True:
            msg = self.requests.get()
            try:
                result = self.handle(msg)
                if isinstance(result, _Encoded):
                    self.ch.send_raw(result.data)
                    continue
                reply = ("done", msg[1], True, result)
            except BaseException as exc:
                reply = ("done", msg[1], False, _format_error(exc))
            try:
                self.ch.send(reply)
            except (wire.WireError, ValueError, TypeError) as exc:
                self.ch.send(("done", msg[1], False, f"reply could not be sent: {exc}"))


_MISSING = object()


class _Encoded:
    """A reply already encoded (``get`` encodes once to learn whether the value can cross)."""

    def __init__(self, data: bytes) -> None:
        self.data = data


_remote_classes: dict[tuple[str, type], type] = {}


def _remote_exception(cls_name: str, message: str, base_name: str) -> Exception:
    """The parent's exception as the worker raises it.

    A builtin class is raised as itself. Any other class becomes a class of the same name
    deriving from ``RemoteError`` (a RuntimeError) and from its nearest builtin base, so a
    parent ``QueryError(ValueError)`` still reads ``QueryError: ...`` and is caught by
    ``except ValueError``.
    """
    base = getattr(builtins, base_name, None)
    if not (isinstance(base, type) and issubclass(base, Exception)):
        base = Exception
    if cls_name == base_name:
        with contextlib.suppress(Exception):  # builtins with other signatures fall through
            return base(message)
    cls = _remote_classes.get((cls_name, base))
    if cls is None:
        bases: tuple[type, ...] = (RemoteError,)
        if base not in (Exception, RuntimeError):
            bases = (base, RemoteError)
        try:
            cls = type(cls_name, bases, {"__module__": "__main__"})
            cls(message)
        except Exception:
            cls = type(cls_name, (RemoteError,), {"__module__": "__main__"})
        _remote_classes[(cls_name, base)] = cls
    return cls(message)


def _compile_cell(code: str, filename: str) -> list[tuple[Any, str]]:
    """Compile a cell; a trailing expression is evaluated and echoed, as in a notebook."""
    import ast
    import linecache

    # Registered so tracebacks show the model its own source lines.
    linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
    tree = ast.parse(code, filename, "exec")
    tail = tree.body[-1] if tree.body else None
    if isinstance(tail, ast.Expr):
        tree.body.pop()
        last = ast.Expression(tail.value)
        return [
            (compile(tree, filename, "exec"), "exec"),
            (compile(last, filename, "eval"), "eval"),
        ]
    return [(compile(tree, filename, "exec"), "exec")]


def _format_error(exc: BaseException) -> str:
    # The worker's own frames (cell runner, proxies, audit hook) are noise to the model.
    te = traceback.TracebackException.from_exception(exc)
    te.stack = traceback.StackSummary.from_list(
        [f for f in te.stack if f.filename not in _OWN_FILES]
    )
    return "".join(te.format())


def _safe_repr(value: Any, cap: int = 10_000) -> str:
    try:
        text = repr(value)
    except Exception as exc:
        text = f"<{type(value).__name__} object; repr failed: {exc}>"
    return text if len(text) <= cap else text[:cap] + f"... [{len(text) - cap} characters cut]"


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    channel = Channel(int(argv[0]))
    first = channel.recv()  # ("policy", config): applied before anything else runs
    cfg = first[1]
    null = os.open(os.devnull, os.O_WRONLY)  # before Landlock, which would refuse it later
    try:
        confined = confine.confine(cfg.get("confine") or {})
    except OSError as exc:
        channel.send(("refused", f"{type(exc).__name__}: {exc}"))
        os._exit(3)
    guard.install_policy(cfg)
    sys.setrecursionlimit(int(cfg.get("recursion_limit", 1000)))
    # Model output must never reach the real fd 1/2: the parent reads them only at start.
    os.dup2(null, 1)
    os.dup2(null, 2)
    os.close(null)
    sys.stdin = io.StringIO("")
    worker = Worker(channel)
    worker.confined = confined
    worker.home = str(cfg.get("scratch_dir") or "")
    worker.serve()
