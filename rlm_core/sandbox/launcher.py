"""How the REPL worker is started: behind the kernel boundary (bubblewrap), or process-only.

Rules this module keeps:

* ``isolation="kernel"`` is the default and the only mode model code gets unless someone asks
  for less: ``Sandbox(isolation="process")``, ``SandboxLimits(isolation="process")``,
  ``RLMEM_ISOLATION=process``, or ``isolation = "process"`` in the store's ``rlmem.toml``
  (read by ``agents`` through ``MemoryConfig`` and passed as ``SandboxLimits.isolation``). Where the kernel boundary cannot be built (no bubblewrap, not
  Linux, an architecture without a seccomp program, user namespaces refused), starting a
  worker raises ``SandboxError`` naming those settings; it never falls back by itself.
* The kernel boundary: bubblewrap puts the worker in new user (when not root), mount, pid,
  network, IPC, UTS and cgroup namespaces, on an empty tmpfs root holding only ``/usr`` (plus
  its ``/lib``, ``/bin`` links), the interpreter's own tree (read-only, at ``/opt/rlm/python``
  when it lives outside ``/usr``), the worker package (read-only, ``/opt/rlm/lib``), a fresh
  ``/proc`` of its own pid namespace, a minimal ``/dev`` and the scratch directory. The store,
  home directories, other processes and every socket path do not exist in there. bubblewrap
  applies our seccomp program (``worker.bpf``) before the interpreter starts; the worker adds
  Landlock and a second filter without ``execve`` itself (``worker.confine``).
* Root gets no user namespace (bubblewrap would map the worker to outside uid 0): the worker
  starts with only CAP_SETUID/CAP_SETGID and drops to a uid of its own from ``UID_BASE`` up,
  a uid that owns nothing on the machine, before it reads model code. An ordinary user gets
  bubblewrap's unprivileged user namespace: inside it the worker has no capability, and
  outside it is still that user (the kernel gives an unprivileged process no other uid
  without setuid helpers); the namespaces and Landlock are what keep it from that user's
  files and processes.
"""

from __future__ import annotations

import itertools
import os
import platform
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from memory.errors import SandboxError
from rlm_core.sandbox.worker import bpf

__all__ = [
    "ISOLATIONS",
    "UID_BASE",
    "Launch",
    "find_bwrap",
    "kernel_unavailable",
    "new_uid",
    "plan",
    "resolve_isolation",
]

ISOLATIONS = ("kernel", "process")
UID_BASE = 2_100_000_000
_WORKER_PKG = Path(__file__).with_name("worker")
_LIB_IN = "/opt/rlm/lib"
_PY_IN = "/opt/rlm/python"
_uids = itertools.count()
_PIPE_MIN = 4096  # what a pipe holds on every Linux (PIPE_BUF): written without a reader

BOOT = (
    "import sys, types\n"
    "root = sys.argv[1]\n"
    "for name, sub in (('rlm_core', '/rlm_core'), ('rlm_core.sandbox', '/rlm_core/sandbox')):\n"
    "    m = types.ModuleType(name); m.__path__ = [root + sub]; sys.modules[name] = m\n"
    "from rlm_core.sandbox.worker.main import main\n"
    "main(sys.argv[2:])\n"
)

HOW_TO_ACCEPT = (
    "to run model code with process-only isolation instead (weaker: see docs/sandbox.md), set "
    "isolation=\"process\" (Sandbox or SandboxLimits), RLMEM_ISOLATION=process, or "
    "isolation = \"process\" in the store's rlmem.toml"
)


def new_uid() -> int | None:
    """A uid for one sandbox's worker when we are root (None otherwise): unused by anything
    on the machine, distinct per sandbox so RLIMIT_NPROC counts that worker alone."""
    if os.geteuid() != 0:
        return None
    return UID_BASE + (os.getpid() % 10_000) * 1000 + next(_uids) % 1000


def resolve_isolation(explicit: str | None) -> str:
    value = (explicit or os.environ.get("RLMEM_ISOLATION") or "kernel").strip().lower()
    if value not in ISOLATIONS:
        raise SandboxError(f"isolation must be one of {', '.join(ISOLATIONS)}, got {value!r}")
    return value


def find_bwrap() -> str | None:
    """``RLMEM_BWRAP`` when set (it must be an executable file), else ``bwrap`` on PATH."""
    configured = os.environ.get("RLMEM_BWRAP")
    if configured:
        return configured if os.path.isfile(configured) and os.access(configured, os.X_OK) else None
    return shutil.which("bwrap")


def kernel_unavailable() -> str | None:
    """Why the kernel boundary cannot be built here (None when it can, as far as we can
    tell without starting it)."""
    if sys.platform != "linux":
        return f"the kernel boundary needs Linux (this is {sys.platform})"
    if not bpf.supported():
        return f"no seccomp program for the {platform.machine()} architecture"
    if find_bwrap() is None:
        where = os.environ.get("RLMEM_BWRAP")
        if where:
            return f"RLMEM_BWRAP={where} is not an executable file"
        return "bubblewrap (bwrap) is not installed: apt-get install bubblewrap (dnf/pacman: bubblewrap)"
    if os.geteuid() != 0:
        try:
            if Path("/proc/sys/user/max_user_namespaces").read_text().strip() == "0":
                return "user namespaces are disabled (sysctl user.max_user_namespaces=0)"
        except OSError:
            pass
    return None


@dataclass
class Launch:
    """Everything ``subprocess.Popen`` needs for one worker."""

    argv: list[str]
    env: dict[str, str]
    cwd: str
    kernel: bool
    confine: dict[str, object] = field(default_factory=dict)
    pass_fds: list[int] = field(default_factory=list)
    close_after: list[int] = field(default_factory=list)  # parent's copies, closed once started
    run_as: int | None = None


def _interpreter(python: str) -> tuple[str, str]:
    """(the real executable, the prefix whose tree it needs)."""
    exe = os.path.realpath(python)
    if python == sys.executable:
        exe = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
        return exe, os.path.realpath(sys.base_prefix)
    return exe, os.path.dirname(os.path.dirname(exe))


def _system_binds() -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = f"/{name}"
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    args += ["--perms", "0755", "--dir", "/etc"]
    for name in ("ld.so.cache", "localtime"):
        args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    return args


def plan(
    *, isolation: str, python: str, scratch: str, env: dict[str, str], channel_fd: int,
    allow_network: bool, run_as: int | None, drop_uid: int | None,
) -> Launch:
    """The command line and confinement settings of one worker start."""
    exe, prefix = _interpreter(python)
    lib_root = str(_WORKER_PKG.parent.parent.parent)
    if isolation == "process":
        return Launch(
            [exe, "-I", "-S", "-c", BOOT, lib_root, str(channel_fd)], env, scratch, False,
            {"landlock": False, "seccomp": False}, [channel_fd], run_as=run_as,
        )
    why = kernel_unavailable()
    if why is not None:
        raise SandboxError(f"cannot build the sandbox's kernel boundary: {why}; {HOW_TO_ACCEPT}")
    bwrap = find_bwrap()
    assert bwrap is not None
    root = os.geteuid() == 0
    args = [bwrap, "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    if not allow_network:
        args.append("--unshare-net")
    if root:
        args += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:
        args += ["--unshare-user", "--cap-drop", "ALL"]
    args += ["--die-with-parent", "--new-session", "--perms", "0755", "--tmpfs", "/"]
    args += _system_binds()
    in_exe, worker_env = exe, dict(env)
    # The parent's PATH names its home and tool directories, none of which exist in there.
    worker_env["PATH"] = "/usr/local/bin:/usr/bin:/bin"
    if not prefix.startswith("/usr/") and prefix != "/usr":
        args += ["--perms", "0755", "--dir", "/opt", "--perms", "0755", "--dir", "/opt/rlm"]
        args += ["--ro-bind", prefix, _PY_IN]
        in_exe = _PY_IN + exe[len(prefix):] if exe.startswith(prefix + "/") else exe
        worker_env["LD_LIBRARY_PATH"] = f"{_PY_IN}/lib"
    worker_in = f"{_LIB_IN}/rlm_core/sandbox/worker"
    # Directories bubblewrap makes on its own are 0700: each one is made readable explicitly.
    for d in ("/opt", "/opt/rlm", _LIB_IN, f"{_LIB_IN}/rlm_core", f"{_LIB_IN}/rlm_core/sandbox"):
        args += ["--perms", "0755", "--dir", d]
    args += ["--ro-bind", str(_WORKER_PKG), worker_in]
    args += ["--proc", "/proc", "--dev", "/dev"]
    # No --chdir: the scratch dir is private to the worker's uid, which bubblewrap (holding no
    # CAP_DAC_OVERRIDE) cannot enter; the worker enters it after dropping to that uid.
    args += ["--perms", "0755", "--dir", "/tmp", "--bind", scratch, scratch, "--chdir", "/"]
    args.append("--clearenv")
    for key, value in sorted(worker_env.items()):
        args += ["--setenv", key, value]
    r, w = os.pipe()
    os.write(w, bpf.program(no_exec=False, allow_inet=allow_network))
    os.close(w)
    args += ["--seccomp", str(r)]
    fds = [channel_fd, r]
    # bubblewrap's own command line is readable in there (/proc/1/cmdline) and would name the
    # parent's directories (its interpreter, home, checkout): the options go through a pipe.
    opts = b"".join(a.encode() + b"\0" for a in args[1:])
    if len(opts) < _PIPE_MIN:
        ar, aw = os.pipe()
        os.write(aw, opts)
        os.close(aw)
        args, fds = [bwrap, "--args", str(ar)], [*fds, ar]
    args += ["--", in_exe, "-I", "-S", "-c", BOOT, _LIB_IN, str(channel_fd)]
    confine: dict[str, object] = {
        "landlock": True,
        "seccomp": True,
        "in_pid_namespace": True,
        "read": ["/"],
        "write": [scratch],
        "drop_uid": drop_uid,
        "cwd": scratch,
    }
    return Launch(args, {}, "/", True, confine, fds, fds[1:])
