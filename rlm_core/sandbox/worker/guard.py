"""The worker's guard-rails: output capture, rlimits, and the audit hook.

Rules this module keeps:

* The audit hook is a guard-rail, not the boundary: it turns the common mistakes (writing
  outside the scratch directory, opening the store, starting a process) into readable
  ``PermissionError``s naming what to do instead. The boundary is the kernel's
  (``rlm_core.sandbox.launcher``, ``confine``); every hostile test passes with the hook off
  (``SandboxLimits(audit_hook=False)``).
* ``install_policy`` runs before any model code: the rlimits first (lowered soft and hard, so
  an unprivileged worker cannot raise them again), then the hook when asked for. Hooks cannot
  be removed, and the hook refuses ``resource.setrlimit``.
* ``CappedStream`` keeps only the first and last ``cap`` characters of a stream, so a cell
  printing forever cannot exhaust memory.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import threading
from typing import Any

__all__ = ["CappedStream", "install_policy"]


class CappedStream(io.TextIOBase):
    """Keeps the first and last ``cap`` characters written and counts the rest."""

    def __init__(self, cap: int) -> None:
        self.cap = max(cap, 0)
        self.head: list[str] = []
        self.head_len = 0
        self.tail = ""
        self.total = 0
        self._lock = threading.Lock()

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:  # type: ignore[override]
        if not isinstance(s, str):
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        n = len(s)
        with self._lock:
            self.total += n
            room = self.cap - self.head_len
            if room > 0:
                self.head.append(s[:room])
                self.head_len += min(room, len(s))
                s = s[room:]
            if s:
                self.tail = (self.tail + s)[-self.cap :] if len(s) < self.cap else s[-self.cap :]
        return n

    def snapshot(self) -> tuple[str, str, int]:
        with self._lock:
            return "".join(self.head), self.tail, self.total


# --- rlimits and the audit hook ----------------------------------------------------------

# Native doors around the hook: foreign calls, and modules that write files from C.
_BLOCKED_MODULES = frozenset(
    {"ctypes", "_ctypes", "cffi", "_cffi_backend", "_dbm", "_gdbm", "readline"}
)
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
_PATH_EVENTS = {  # event -> indexes of the path arguments that must stay in the scratch dir
    "os.remove": (0,),
    "os.rmdir": (0,),
    "os.mkdir": (0,),
    "os.rename": (0, 1),
    "os.chmod": (0,),
    "os.chown": (0,),
    "os.truncate": (0,),
    "os.utime": (0,),
    "os.symlink": (1,),
    "os.chflags": (0,),
    "os.setxattr": (0,),
    "os.removexattr": (0,),
    "shutil.rmtree": (0,),
}
_PROCESS_EVENTS = frozenset(
    {
        "subprocess.Popen",
        "os.system",
        "os.exec",
        "os.posix_spawn",
        "os.spawn",
        "os.fork",
        "os.forkpty",
        "pty.spawn",
    }
)
_NETWORK_EVENTS = frozenset(
    {
        "socket.connect",
        "socket.bind",
        "socket.sendto",
        "socket.sendmsg",
        "socket.getaddrinfo",
        "socket.gethostbyname",
        "socket.gethostbyaddr",
        "socket.getnameinfo",
    }
)


def _within(path: Any, root: str) -> bool:
    if isinstance(path, int):  # an already-open descriptor: access was checked at open
        return True
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    real = os.path.realpath(os.path.join(os.getcwd(), os.fspath(path)))
    return real == root or real.startswith(root + os.sep)


def _foreign_proc(path: Any) -> bool:
    """True for /proc/<pid>/... of another process (environment, memory, open files)."""
    if isinstance(path, int):
        return False
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    real = os.path.realpath(os.path.join(os.getcwd(), os.fspath(path)))
    parts = real.split(os.sep)
    return len(parts) > 2 and parts[1] == "proc" and parts[2].isdigit() and (
        int(parts[2]) != os.getpid()
    )


def install_policy(config: dict[str, Any]) -> None:
    """Apply rlimits and (unless ``audit_hook`` is false) the audit hook. Must run before
    any model code."""
    import resource

    def limit(which: int, soft: int, hard: int | None = None) -> None:
        # Failing means a lower hard limit already applies: keep it.
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(which, (soft, soft if hard is None else hard))

    if config.get("memory_mb"):
        limit(resource.RLIMIT_AS, int(config["memory_mb"]) * 1024 * 1024)
    if config.get("cpu_seconds"):
        cpu = int(config["cpu_seconds"])
        limit(resource.RLIMIT_CPU, cpu, cpu + 2)  # SIGXCPU at soft, SIGKILL at hard
    if config.get("max_file_mb") is not None:
        limit(resource.RLIMIT_FSIZE, int(config["max_file_mb"]) * 1024 * 1024)
    limit(resource.RLIMIT_CORE, 0)
    if config.get("nproc") and os.geteuid() != 0:  # the kernel ignores NPROC for root
        limit(resource.RLIMIT_NPROC, int(config["nproc"]))

    if not config.get("audit_hook", True):
        return
    scratch = os.path.realpath(config["scratch_dir"])
    denied = [os.path.realpath(p) for p in config.get("deny_read") or ()]
    allow_net = bool(config.get("allow_network"))
    allow_proc = bool(config.get("allow_subprocess"))
    me = os.getpid()
    socket_unix = 1  # AF_UNIX: the worker's own channel and socketpair() stay usable
    # Extension modules may load only from where the interpreter's own modules live, so a
    # shared object written into the scratch dir cannot be imported to run native code.
    ext_roots = tuple(
        os.path.realpath(p)
        for p in sys.path
        if p and os.path.isdir(p) and not _within(p, scratch)
    )

    # Refusing an import is worthless if the module is already loaded.
    preloaded = set(sys.modules) & (
        _BLOCKED_MODULES | (set() if allow_proc else {"_posixsubprocess"})
    )
    if preloaded:
        raise RuntimeError(f"refused modules were imported before the policy: {sorted(preloaded)}")

    def deny(what: str) -> None:
        raise PermissionError(f"sandbox: {what} is not allowed in this REPL")

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event == "open":
            path, mode, flags = args
            if _foreign_proc(path):
                deny(f"reading another process's /proc entry ({path})")
            if denied and not isinstance(path, int) and any(_within(path, d) for d in denied):
                deny(f"opening {path} (a protected store file; use the memory functions)")
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & _WRITE_FLAGS
            )
            if writing and not _within(path, scratch):
                deny(f"writing outside the scratch directory ({path}); write under {scratch}")
        elif event in ("os.listdir", "os.scandir"):
            if args and args[0] is not None and _foreign_proc(args[0]):
                deny(f"listing another process's /proc entry ({args[0]})")
        elif event in _PATH_EVENTS:
            for i in _PATH_EVENTS[event]:
                if i < len(args) and args[i] is not None and not _within(args[i], scratch):
                    deny(f"{event} outside the scratch directory ({args[i]})")
        elif event == "os.link":
            deny("creating hard links")
        elif event == "import":
            name, filename = args[0], args[1]
            top = name.split(".")[0]
            if top == "_posixsubprocess" and not allow_proc:
                # Its fork_exec starts processes without raising an audit event.
                deny("starting processes (the subprocess module)")
            if top in _BLOCKED_MODULES:
                deny(f"importing {name} (native code escapes the sandbox's checks)")
            if filename and (
                _within(filename, scratch)
                or not any(os.path.realpath(filename).startswith(r + os.sep) for r in ext_roots)
            ):
                deny(f"loading native code from {filename}")
        elif event in _PROCESS_EVENTS:
            if not allow_proc:
                deny(f"starting processes ({event})")
        elif event in _NETWORK_EVENTS:
            if not allow_net:
                deny(f"network access ({event})")
        elif event == "socket.__new__":
            if not allow_net and len(args) > 1 and args[1] not in (socket_unix, -1):
                deny("network access (socket.__new__)")
        elif event == "os.kill":
            if args[0] != me:
                deny(f"sending signals to other processes (pid {args[0]})")
        elif event in ("os.killpg", "signal.pthread_kill"):
            deny(f"{event}")
        elif event in ("resource.setrlimit", "resource.prlimit"):
            deny("changing resource limits")
        elif event == "ctypes.dlopen":
            deny("ctypes")
        elif event == "sqlite3.connect":
            # SQLite opens its files in C, without an "open" event: a database outside the
            # scratch dir (the memory store itself, say) would be writable through it.
            database = os.fsdecode(args[0]) if isinstance(args[0], bytes) else str(args[0])
            if database.startswith("file:"):
                database = database[5:].split("?", 1)[0]
            if database not in ("", ":memory:") and not _within(database, scratch):
                deny(f"opening a database outside the scratch directory ({database})")
        elif event in ("sqlite3.enable_load_extension", "sqlite3.load_extension"):
            deny("loading SQLite extensions")

    sys.addaudithook(hook)
    _guard_readlink(deny)


def _guard_readlink(deny: Any) -> None:
    """``os.readlink`` raises no audit event: wrap it so another process's /proc/<pid>/fd
    links cannot be read. A guard-rail like the hook (the C function is reachable anyway)."""
    import posix
    import threading

    real = posix.readlink
    busy = threading.local()

    def readlink(path: Any, *, dir_fd: int | None = None) -> Any:
        # realpath (inside _foreign_proc) calls readlink itself: check only the outer call.
        if not getattr(busy, "on", False) and dir_fd is None and not isinstance(path, int):
            busy.on = True
            try:
                parent = os.path.dirname(os.fsdecode(os.fspath(path))) or "."
                foreign = _foreign_proc(os.path.join(parent, "_"))
            finally:
                busy.on = False
            if foreign:
                deny(f"reading another process's /proc entry ({path})")
        return real(path, dir_fd=dir_fd)

    os.readlink = readlink
    posix.readlink = readlink
