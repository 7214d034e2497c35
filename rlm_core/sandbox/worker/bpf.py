"""The worker's seccomp program, written as classic BPF (``struct sock_filter``) here.

Rules this module keeps:

* One program per architecture we know (x86_64, aarch64); a syscall made under any other
  architecture (an x86_64 process entering through the i386 or x32 ABI, say) kills the
  process, so no syscall number can be reached by another table.
* A deny list, not an allow list. The filesystem, the network and other processes are
  already out of reach through the namespaces and Landlock; what the filter adds is the kernel
  surface those do not cover: ptrace and cross-process memory (``process_vm_*``,
  ``pidfd_getfd``, ``kcmp``), mounts and namespaces, ``bpf``, keyrings, modules, kexec,
  ``perf_event_open``, ``userfaultfd``, io_uring (which bypasses seccomp), handle-based opens,
  ``TIOCSTI``, and every socket family but ``AF_UNIX`` (no raw, packet, netlink or inet
  sockets even where a network namespace would allow them). An allow list of what CPython and
  every C extension of the standard library may call changes with each glibc and Python
  release and would break on the next one; sandbox-runtime, Flatpak and bubblewrap's own
  examples use deny lists for the same reason.
* ``clone`` with any namespace flag is refused and ``clone3`` answers ``ENOSYS`` (its flags
  live in memory a filter cannot read), so the C library falls back to ``clone``.
* ``no_exec=True`` adds ``execve``/``execveat``: installed by the worker once the interpreter
  runs, so nothing but that interpreter ever runs in the sandbox.
"""

from __future__ import annotations

import errno
import platform
import struct

__all__ = ["ARCHES", "program", "supported"]

_LD_ABS_W = 0x20
_JEQ = 0x15
_JGE = 0x35
_JSET = 0x45
_RET = 0x06
_KILL_PROCESS = 0x80000000
_ALLOW = 0x7FFF0000
_ERRNO = 0x00050000
_OFF_NR, _OFF_ARCH, _OFF_ARGS = 0, 4, 16
_AF_UNIX, _AF_INET, _AF_INET6 = 1, 2, 10
_TIOCSTI, _TIOCLINUX = 0x5412, 0x541C
_CLONE_NAMESPACES = 0x7E020080  # NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET|NEWTIME

# name -> (x86_64, aarch64); None where the architecture has no such call.
_NUMBERS: dict[str, tuple[int | None, int | None]] = {
    "ptrace": (101, 117),
    "process_vm_readv": (310, 270),
    "process_vm_writev": (311, 271),
    "pidfd_getfd": (438, 438),
    "kcmp": (312, 272),
    "mount": (165, 40),
    "umount2": (166, 39),
    "pivot_root": (155, 41),
    "chroot": (161, 51),
    "open_tree": (428, 428),
    "move_mount": (429, 429),
    "fsopen": (430, 430),
    "fsconfig": (431, 431),
    "fsmount": (432, 432),
    "fspick": (433, 433),
    "mount_setattr": (442, 442),
    "unshare": (272, 97),
    "setns": (308, 268),
    "bpf": (321, 280),
    "keyctl": (250, 219),
    "add_key": (248, 217),
    "request_key": (249, 218),
    "kexec_load": (246, 104),
    "kexec_file_load": (320, 294),
    "init_module": (175, 105),
    "finit_module": (313, 273),
    "delete_module": (176, 106),
    "perf_event_open": (298, 241),
    "userfaultfd": (323, 282),
    "io_uring_setup": (425, 425),
    "io_uring_enter": (426, 426),
    "io_uring_register": (427, 427),
    "open_by_handle_at": (304, 265),
    "name_to_handle_at": (303, 264),
    "swapon": (167, 224),
    "swapoff": (168, 225),
    "reboot": (169, 142),
    "acct": (163, 89),
    "quotactl": (179, 60),
    "syslog": (103, 116),
    "personality": (135, 92),
    "vhangup": (153, 58),
    "lookup_dcookie": (212, 18),
    "iopl": (172, None),
    "ioperm": (173, None),
}
_EXEC = {"execve": (59, 221), "execveat": (322, 281)}
_SOCKET = (41, 198)
_SOCKETPAIR = (53, 199)
_IOCTL = (16, 29)
_CLONE = (56, 220)
_CLONE3 = (435, 435)

# machine -> (AUDIT_ARCH value, index into the number tuples)
ARCHES = {"x86_64": (0xC000003E, 0), "aarch64": (0xC00000B7, 1)}


def supported(machine: str | None = None) -> bool:
    return (machine or platform.machine()) in ARCHES


def _ins(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("HBBI", code, jt, jf, k & 0xFFFFFFFF)


def program(*, no_exec: bool = False, allow_inet: bool = False, machine: str | None = None) -> bytes:
    """The filter as packed ``sock_filter`` instructions (8 bytes each).

    ``allow_inet`` also admits ``AF_INET``/``AF_INET6`` sockets (``allow_network=True``).
    """
    arch_name = machine or platform.machine()
    if arch_name not in ARCHES:
        raise OSError(f"no seccomp program for the {arch_name} architecture")
    audit_arch, col = ARCHES[arch_name]
    eperm = _ERRNO | errno.EPERM
    out = [
        _ins(_LD_ABS_W, 0, 0, _OFF_ARCH),
        _ins(_JEQ, 1, 0, audit_arch),
        _ins(_RET, 0, 0, _KILL_PROCESS),
        _ins(_LD_ABS_W, 0, 0, _OFF_NR),
    ]
    if arch_name == "x86_64":  # the x32 ABI: same arch value, numbers with bit 30 set
        out += [_ins(_JGE, 0, 1, 0x40000000), _ins(_RET, 0, 0, _KILL_PROCESS)]
    denied = dict(_NUMBERS, **(_EXEC if no_exec else {}))
    for numbers in denied.values():
        nr = numbers[col]
        if nr is not None:
            out += [_ins(_JEQ, 0, 1, nr), _ins(_RET, 0, 0, eperm)]
    out += [_ins(_JEQ, 0, 1, _CLONE3[col]), _ins(_RET, 0, 0, _ERRNO | errno.ENOSYS)]

    def on_arg(nr: int, arg: int, body: list[bytes]) -> list[bytes]:
        # if nr matches: load the low word of the argument and run body (which returns);
        # otherwise skip over it with the syscall number still in the accumulator.
        block = [_ins(_LD_ABS_W, 0, 0, _OFF_ARGS + 8 * arg), *body]
        return [_ins(_JEQ, 0, len(block), nr), *block]

    eaf = _ERRNO | errno.EAFNOSUPPORT
    families = (_AF_UNIX, _AF_INET, _AF_INET6) if allow_inet else (_AF_UNIX,)
    for pair in (_SOCKET, _SOCKETPAIR):
        checks = [_ins(_JEQ, len(families) - i, 0, fam) for i, fam in enumerate(families)]
        out += on_arg(pair[col], 0, [*checks, _ins(_RET, 0, 0, eaf), _ins(_RET, 0, 0, _ALLOW)])
    out += on_arg(
        _IOCTL[col], 1,
        [
            _ins(_JEQ, 2, 0, _TIOCSTI),
            _ins(_JEQ, 1, 0, _TIOCLINUX),
            _ins(_RET, 0, 0, _ALLOW),
            _ins(_RET, 0, 0, eperm),
        ],
    )
    out += on_arg(
        _CLONE[col], 0,
        [_ins(_JSET, 0, 1, _CLONE_NAMESPACES), _ins(_RET, 0, 0, eperm), _ins(_RET, 0, 0, _ALLOW)],
    )
    out.append(_ins(_RET, 0, 0, _ALLOW))
    return b"".join(out)
