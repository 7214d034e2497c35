"""The parent's end of the channel to a REPL worker.

Rules this module keeps:

* Frames are an 8-byte big-endian length and JSON (``worker.wire``), both ways. A frame that
  claims more than the limit, or is not well-formed plain data, ends the worker. The body is
  read in chunks into a buffer that grows only as bytes arrive: a header alone allocates
  nothing.
* The socket is non-blocking and every wait has a deadline, and while waiting to read the
  worker process is polled: nothing here can block forever on a stuck or dead worker.
* Sends are serialised by a lock (callback replies come from many threads); there is one
  reader, the thread running the current request.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import subprocess
import threading
import time
from typing import Any

from rlm_core.sandbox.worker import wire

__all__ = ["MAX_MESSAGE", "Conn", "Deadline", "WorkerGone", "kill_group", "peek_exit"]

_HEADER = wire.HEADER
_CHUNK = 1 << 20
MAX_MESSAGE = 64 << 20  # the default bound on one frame from the worker


class WorkerGone(Exception):
    """The worker died, closed the channel or broke the protocol."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Deadline(Exception):
    """The deadline of the current request passed."""


class Conn:
    """Parent end of the channel: non-blocking socket, every wait bounded by a deadline."""

    def __init__(
        self, sock: socket.socket, proc: subprocess.Popen[bytes], max_message: int = MAX_MESSAGE
    ) -> None:
        self.sock = sock
        self.proc = proc
        self.max_message = max_message
        self.last_size = 0  # bytes of the last frame received
        sock.setblocking(False)
        self._send_lock = threading.Lock()
        self.closed = False

    def _wait(self, want_write: bool, deadline: float) -> None:
        # poll, not select: select() cannot watch a descriptor numbered 1024 or more, which a
        # long-lived process with many open files reaches.
        poller = select.poll()
        poller.register(self.sock, select.POLLOUT if want_write else select.POLLIN)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Deadline
            if poller.poll(max(1, int(min(left, 0.25) * 1000))):
                return
            if not want_write and peek_exit(self.proc, 0) is not None:
                # Drain what is buffered before declaring the worker gone.
                if poller.poll(0):
                    return
                raise WorkerGone("worker exited")

    def send(self, msg: Any, deadline: float) -> None:
        """Send one message; ``wire.WireError`` (before anything is sent) if it cannot cross."""
        data = wire.dumps(msg, max_bytes=1 << 31)
        with self._send_lock:
            for part in (_HEADER.pack(len(data)), data):  # no concatenation: values can be big
                view = memoryview(part)
                while view:
                    self._wait(True, deadline)
                    try:
                        n = self.sock.send(view)
                    except BlockingIOError:
                        continue
                    except OSError as exc:
                        raise WorkerGone(f"channel closed ({exc})") from None
                    view = view[n:]

    def _exact(self, n: int, deadline: float) -> bytearray:
        buf = bytearray()
        while len(buf) < n:
            self._wait(False, deadline)
            try:
                chunk = self.sock.recv(min(n - len(buf), _CHUNK))
            except BlockingIOError:
                continue
            except OSError as exc:
                raise WorkerGone(f"channel closed ({exc})") from None
            if not chunk:
                raise WorkerGone("worker closed the channel")
            buf += chunk
        return buf

    def recv(self, deadline: float) -> Any:
        (n,) = _HEADER.unpack(self._exact(_HEADER.size, deadline))
        if n > self.max_message:
            raise WorkerGone(
                f"worker sent an oversized message ({n:,} bytes, the limit is {self.max_message:,})"
            )
        self.last_size = n
        try:
            return wire.loads(self._exact(n, deadline))
        except wire.WireError as exc:  # untrusted bytes: anything but plain data is a violation
            raise WorkerGone(f"worker sent an invalid message ({exc})") from None

    def close(self) -> None:
        self.closed = True
        with contextlib.suppress(OSError):
            self.sock.close()


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    # The group is killed before the leader is reaped, so its pid (= the group id) cannot
    # have been reused by an unrelated process at this point.
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)


def peek_exit(proc: subprocess.Popen[bytes], wait_s: float) -> int | None:
    """The worker's exit status (negative: killed by that signal) without reaping it.

    The leader stays a zombie until ``kill_group`` has killed the rest of its group, so the
    group id cannot be reused by an unrelated process in between.
    """
    if proc.returncode is not None:
        return proc.returncode
    deadline = time.monotonic() + wait_s
    while True:
        try:
            info = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return proc.poll()
        if info is not None:
            if info.si_code in (os.CLD_KILLED, os.CLD_DUMPED):
                return -info.si_status
            return info.si_status
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.01)
