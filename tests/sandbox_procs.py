"""Host-side views of a sandbox worker's processes, for tests.

Under the kernel boundary the worker sees its own pid namespace, so the pids model code
prints are not host pids; these helpers find the worker's processes from the host's /proc.
"""

from __future__ import annotations

import os
import time

__all__ = ["descendants", "host_ids", "wait_all_gone"]


def _ppid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rindex(")") + 2 :].split()
    return None if fields[0] == "Z" else int(fields[1])


def descendants(pid: int) -> list[int]:
    """Every live (non-zombie) host process below ``pid``."""
    parents = {p: _ppid(p) for p in (int(n) for n in os.listdir("/proc") if n.isdigit())}
    found, frontier = [], [pid]
    while frontier:
        cur = frontier.pop()
        kids = [p for p, pp in parents.items() if pp == cur]
        found += kids
        frontier += kids
    return found


def host_ids(pid: int) -> dict[str, list[int]]:
    """The real, effective, saved and filesystem uids and gids of a host process."""
    out: dict[str, list[int]] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("Uid", "Gid"):
                out[key] = [int(v) for v in value.split()]
    return out


def wait_all_gone(pids: list[int], timeout_s: float = 5.0) -> list[int]:
    """The pids still alive (not zombies) after waiting up to ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if _ppid(p) is not None]
        if alive:
            time.sleep(0.05)
    return alive
