"""Worker processes are started from one long-lived thread, so they die with the process only.

Rules this module keeps:

* Linux ties ``PR_SET_PDEATHSIG`` (and so bubblewrap's ``--die-with-parent`` and the worker's
  own death signal) to the *thread* that forked the child, not to the process: a worker
  started from a short-lived thread (an HTTP request handler, a thread-pool task) would be
  killed when that thread ends, while its ``Sandbox`` is still in use. Every worker is
  therefore forked by one daemon thread owned by this module, which lives until the process
  ends: the worker dies when the process dies (killed or not), and at no other time.
* The thread is started on first use and again in a forked child (a thread does not survive
  ``fork``); callers wait for their own ``Popen`` and get its exception, if any, unchanged.
"""

from __future__ import annotations

import os
import queue
import subprocess
import threading
from concurrent.futures import Future
from typing import Any

__all__ = ["popen", "spawner_thread"]

_Job = tuple["Future[subprocess.Popen[bytes]]", tuple[Any, ...], dict[str, Any]]

_lock = threading.Lock()
_jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
_thread: threading.Thread | None = None
_owner_pid = -1


def _serve(jobs: queue.SimpleQueue[_Job]) -> None:
    while True:
        fut, args, kwargs = jobs.get()
        if not fut.set_running_or_notify_cancel():
            continue
        try:
            fut.set_result(subprocess.Popen(*args, **kwargs))  # type: ignore[arg-type]
        except BaseException as exc:  # handed to the caller, who raises it
            fut.set_exception(exc)


def _ensure() -> tuple[threading.Thread, queue.SimpleQueue[_Job]]:
    global _thread, _jobs, _owner_pid
    with _lock:
        if _thread is None or _owner_pid != os.getpid() or not _thread.is_alive():
            _jobs = queue.SimpleQueue()
            _thread = threading.Thread(target=_serve, args=(_jobs,), name="rlm-spawner", daemon=True)
            _thread.start()
            _owner_pid = os.getpid()
        return _thread, _jobs


def spawner_thread() -> threading.Thread:
    """The thread that forks every worker of this process (started when first needed)."""
    return _ensure()[0]


def popen(*args: Any, **kwargs: Any) -> subprocess.Popen[bytes]:
    """``subprocess.Popen(*args, **kwargs)``, forked from the spawner thread."""
    thread, jobs = _ensure()
    if threading.current_thread() is thread:
        return subprocess.Popen(*args, **kwargs)
    fut: Future[subprocess.Popen[bytes]] = Future()
    jobs.put((fut, args, kwargs))
    return fut.result()
