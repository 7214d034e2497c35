"""The kernel layers the worker puts on itself before any model code runs.

Rules this module keeps:

* Order: drop to the unprivileged uid (only when started as root inside the boundary, which
  hands it CAP_SETUID/CAP_SETGID and nothing else), die with the parent, no new privileges,
  Landlock, seccomp last (so the Landlock calls are not themselves filtered). Every step
  that was asked for and fails raises: a worker that could not confine itself never runs
  model code.
* Landlock is "where the kernel has it": an ABI below 1 (not built, or disabled) is reported
  as 0, not an error, and the parent decides whether that is acceptable. Everything the ABI
  can handle is handled; only the paths the parent names get rights back.
* Nothing loosened here can be tightened back by the model: Landlock domains and seccomp
  filters are irrevocable, and after the uid drop the process holds no capability.
* ``ctypes`` is removed from ``sys.modules`` afterwards, so the guard-rail audit hook (when
  on) still sees a later ``import ctypes`` from model code.
"""

from __future__ import annotations

import os
import signal
import struct
import sys
from typing import Any

from rlm_core.sandbox.worker.bpf import program

__all__ = ["confine", "landlock_abi"]

_PR_SET_PDEATHSIG = 1
_PR_SET_SECCOMP = 22
_PR_SET_NO_NEW_PRIVS = 38
_SECCOMP_MODE_FILTER = 2
_SYS_CREATE, _SYS_ADD, _SYS_RESTRICT = 444, 445, 446
_CREATE_VERSION = 1
_RULE_PATH_BENEATH = 1

_EXECUTE, _WRITE_FILE, _READ_FILE, _READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_READ = _EXECUTE | _READ_FILE | _READ_DIR
_FILE_RIGHTS = _EXECUTE | _WRITE_FILE | _READ_FILE | (1 << 14) | (1 << 15)  # + TRUNCATE, IOCTL_DEV
_FS_BITS_BY_ABI = {1: 13, 2: 14, 3: 15, 4: 15, 5: 16}  # number of filesystem rights per ABI


def _libc() -> Any:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    libc.prctl.restype = ctypes.c_int
    return libc


def _check(rc: int, what: str) -> int:
    if rc < 0:
        import ctypes

        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return rc


def landlock_abi(libc: Any = None) -> int:
    """The kernel's Landlock ABI version; 0 when Landlock is not available."""
    import ctypes

    libc = libc or _libc()
    rc = libc.syscall(ctypes.c_long(_SYS_CREATE), None, ctypes.c_size_t(0), ctypes.c_uint32(_CREATE_VERSION))
    return max(int(rc), 0)


def _landlock(libc: Any, read: list[str], write: list[str], allow_network: bool) -> int:
    import ctypes

    abi = landlock_abi(libc)
    if abi < 1:
        return 0
    fs_all = (1 << _FS_BITS_BY_ABI.get(abi, 16)) - 1
    net = 0 if allow_network or abi < 4 else 0b11  # BIND_TCP | CONNECT_TCP, no rule grants them
    scoped = 0b11 if abi >= 6 else 0  # abstract unix sockets and signals outside the domain
    fields = [fs_all] + ([net] if abi >= 4 else []) + ([scoped] if abi >= 6 else [])
    attr = struct.pack(f"<{len(fields)}Q", *fields)
    ruleset = _check(
        libc.syscall(ctypes.c_long(_SYS_CREATE), attr, ctypes.c_size_t(len(attr)), ctypes.c_uint32(0)),
        "landlock_create_ruleset",
    )
    try:
        for paths, rights in ((read, _READ & fs_all), (write, fs_all)):
            for path in paths:
                try:
                    fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
                except OSError:
                    continue  # a path this machine lacks needs no rule
                try:
                    allowed = rights
                    if not os.path.isdir(path):  # directory rights on a file are EINVAL
                        allowed &= _FILE_RIGHTS
                    rule = struct.pack("<Qi", allowed, fd)
                    _check(
                        libc.syscall(ctypes.c_long(_SYS_ADD), ctypes.c_int(ruleset), ctypes.c_int(_RULE_PATH_BENEATH), rule, ctypes.c_uint32(0)),
                        f"landlock_add_rule({path})",
                    )
                finally:
                    os.close(fd)
        _check(libc.syscall(ctypes.c_long(_SYS_RESTRICT), ctypes.c_int(ruleset), ctypes.c_uint32(0)), "landlock_restrict_self")
    finally:
        os.close(ruleset)
    return abi


def _seccomp(libc: Any, prog: bytes) -> None:
    import ctypes

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    buf = ctypes.create_string_buffer(prog, len(prog))
    fprog = SockFprog(len(prog) // 8, ctypes.cast(buf, ctypes.c_void_p))
    _check(
        libc.prctl(_PR_SET_SECCOMP, ctypes.c_ulong(_SECCOMP_MODE_FILTER), ctypes.byref(fprog), 0, 0),
        "seccomp",
    )


def _drop(uid: int) -> None:
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    with open("/proc/self/status") as f:
        caps = {k: v.strip() for k, _, v in (line.partition(":") for line in f) if k.startswith("Cap")}
    if int(caps.get("CapEff", "1"), 16) or int(caps.get("CapPrm", "1"), 16):
        raise OSError(f"capabilities left after dropping to uid {uid}: {caps}")


def confine(cfg: dict[str, Any]) -> dict[str, Any]:
    """Apply the layers ``cfg`` asks for; returns what was applied, for the parent to check."""
    applied: dict[str, Any] = {"landlock": 0, "seccomp": False}
    if cfg.get("drop_uid") is not None:
        _drop(int(cfg["drop_uid"]))
    if cfg.get("cwd"):
        os.chdir(str(cfg["cwd"]))
    libc = _libc()
    try:
        _check(libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "PR_SET_PDEATHSIG")
        if os.getppid() == 1 and not cfg.get("in_pid_namespace"):
            os._exit(0)  # the parent died before the signal was armed
        _check(libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "PR_SET_NO_NEW_PRIVS")
        if cfg.get("landlock"):
            applied["landlock"] = _landlock(
                libc, list(cfg.get("read") or ()), list(cfg.get("write") or ()),
                bool(cfg.get("allow_network")),
            )
        if cfg.get("seccomp"):
            _seccomp(libc, program(no_exec=not cfg.get("allow_subprocess"), allow_inet=bool(cfg.get("allow_network"))))
            applied["seccomp"] = True
    finally:
        for name in [m for m in sys.modules if m == "ctypes" or m.startswith(("ctypes.", "_ctypes"))]:
            del sys.modules[name]
    applied["uid"] = os.getuid()
    return applied
