"""The REPL worker: the child-process side of ``rlm_core.sandbox.repl.Sandbox``.

Rules this module keeps:

* Standard library only, and it never imports the ``rlm_core`` package: the parent starts it
  as a script (``python -I worker.py FD``) so nothing the parent imports (SDK clients, API
  keys read at import time, database drivers) is loaded here. Its sibling
  ``sandbox_policy.py`` (also standard library only) is loaded by path.
* The channel to the parent is the inherited socket ``FD``: 8-byte big-endian length, then a
  pickle. Messages from the parent are trusted; the parent never trusts what comes back.
* The policy (rlimits, audit hook: ``sandbox_policy.install_policy``) is installed before the
  first byte of model code runs and cannot be removed from Python.
* Model code runs in the main thread. A reader thread owns the receiving side of the socket
  so proxies called from many model threads at once each get their own reply.
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
import pickle
import queue
import socket
import struct
import sys
import threading
import time
import traceback
from collections.abc import Callable
from types import ModuleType
from typing import Any

__all__ = ["main"]

_HEADER = struct.Struct(">Q")


def _load_policy() -> ModuleType:
    import importlib.util

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "policy.py")
    spec = importlib.util.spec_from_file_location("rlm_sandbox_policy", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_policy = _load_policy()
# Frames from these files are the sandbox's, not the model's: tracebacks leave them out.
_OWN_FILES = frozenset({__file__, _policy.__file__})

# --- channel -----------------------------------------------------------------------------


class Channel:
    """Length-prefixed pickles over a socket; sends are serialised, one reader thread."""

    def __init__(self, fd: int) -> None:
        self.sock = socket.socket(fileno=fd)
        self.sock.setblocking(True)
        self._send_lock = threading.Lock()

    def send(self, msg: Any) -> None:
        data = pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL)
        with self._send_lock:
            self.sock.sendall(_HEADER.pack(len(data)))
            self.sock.sendall(data)

    def _exact(self, n: int) -> bytearray:
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            k = self.sock.recv_into(view[got:], n - got)
            if k == 0:
                raise EOFError("parent closed the channel")
            got += k
        return buf

    def recv(self) -> Any:
        (n,) = _HEADER.unpack(self._exact(_HEADER.size))
        return pickle.loads(self._exact(n))


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
        self.max_output = 20_000
        self.memory_mb = 0

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
            blob = pickle.dumps((args, kwargs), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            with self.pending_lock:
                self.pending.pop(call_id, None)
            raise TypeError(
                f"{name}(): arguments must be plain data (str, int, list, dict, ...): {exc}"
            ) from None
        self.ch.send(("cb", call_id, name, blob))
        slot[0].wait()
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
        for spec in cfg["functions"]:
            self.ns[spec["name"]] = self.make_proxy(spec)
        self.ns.update(pickle.loads(cfg["variables"]))
        before = set(self.ns)
        if cfg["prelude"]:
            exec(compile(cfg["prelude"], "<prelude>", "exec"), self.ns)
        names = {s["name"] for s in cfg["functions"]}
        names |= set(self.ns) - before
        names |= {n for n in cfg["reserved_variables"] if n in self.ns}
        self.reserved = {n: self.ns[n] for n in names if n in self.ns}
        return {"pid": os.getpid(), "reserved": sorted(self.reserved)}

    def restore(self) -> None:
        self.ns["__builtins__"] = builtins
        for name, value in self.reserved.items():
            if self.ns.get(name, _MISSING) is not value:
                self.ns[name] = value

    def run_cell(self, code: str, number: int) -> dict[str, Any]:
        out = _policy.CappedStream(self.max_output)
        err = _policy.CappedStream(self.max_output)
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
            try:
                return ("pickle", pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
            except Exception:
                return ("repr", _safe_repr(value))
        if kind == "repr":
            return ("repr", _safe_repr(self.ns.get(msg[2])))
        if kind == "set":
            self.ns[msg[2]] = pickle.loads(msg[3])
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
                reply = ("done", msg[1], True, self.handle(msg))
            except BaseException as exc:
                reply = ("done", msg[1], False, _format_error(exc))
            try:
                self.ch.send(reply)
            except (pickle.PicklingError, TypeError, AttributeError) as exc:
                self.ch.send(("done", msg[1], False, f"reply could not be sent: {exc}"))


_MISSING = object()


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
    _policy.install_policy(first[1])
    sys.setrecursionlimit(int(first[1].get("recursion_limit", 1000)))
    # Model output must never reach the real fd 1/2 (the parent ignores them anyway).
    sys.stdin = io.StringIO("")
    Worker(channel).serve()


if __name__ == "__main__":
    main()
