"""``rlmem doctor``: which isolation model code gets on this machine, and why.

Rules this module keeps:

* It checks by doing: it starts a real sandbox worker behind the kernel boundary and reports
  the layers the worker says it applied (namespaces, seccomp, Landlock ABI, its uid), so the
  answer cannot disagree with what ``ask``/``chat``/``serve`` will get.
* Where the boundary cannot be built it says what is missing and how to install it, and
  names the setting that accepts process-only isolation; exit status 1.
* It says which isolation runs on this store are configured for and where that came from:
  the environment (RLMEM_ISOLATION), the store's rlmem.toml, or the default.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agents.cli.common import CliContext

__all__ = ["cmd_doctor", "register"]


def register(cmd: Callable[..., argparse.ArgumentParser]) -> Callable[[CliContext, argparse.Namespace], int]:
    cmd("doctor", "say which sandbox isolation model code gets on this machine, and why")
    return cmd_doctor


def configured_isolation(store: Path | None) -> tuple[str, str]:
    """(the isolation runs on ``store`` get unless a caller passes one, where it came from)."""
    env = os.environ.get("RLMEM_ISOLATION", "").strip()
    if env:
        return env.lower(), "environment variable RLMEM_ISOLATION"
    if store is not None:
        from memory.config import TOML_NAME, MemoryConfig

        chosen = MemoryConfig.load(store).isolation
        if chosen:
            return chosen, str(store / TOML_NAME)
    return "kernel", "the default"


def diagnose(store: Path | None = None) -> dict[str, Any]:
    from memory.errors import SandboxError
    from rlm_core.sandbox import launcher
    from rlm_core.sandbox.repl import Sandbox

    configured, origin = configured_isolation(store)
    report: dict[str, Any] = {
        "configured": configured,
        "configured_from": origin,
        "bwrap": launcher.find_bwrap(),
        "root": os.geteuid() == 0,
    }
    why = launcher.kernel_unavailable()
    if why is None:
        t0 = time.perf_counter()
        try:
            with Sandbox(isolation="kernel") as box:
                report["kernel"] = dict(box.confinement)
            report["start_s"] = round(time.perf_counter() - t0, 3)
        except SandboxError as exc:
            why = str(exc)
    report["kernel_ok"] = why is None
    if why is not None:
        report["problem"] = why
        report["accept_weaker"] = launcher.HOW_TO_ACCEPT
    return report


def cmd_doctor(ctx: CliContext, args: argparse.Namespace) -> int:
    report = diagnose(ctx.store_path)
    if ctx.json:
        print(json.dumps(report), file=ctx.out)
        return 0 if report["kernel_ok"] else 1
    out = ctx.out
    if report["kernel_ok"]:
        k = report["kernel"]
        uid = f"uid {k.get('uid')}" + (" (its own; owns nothing here)" if report["root"] else " (your own, in a user namespace)")
        landlock = f"Landlock ABI {k['landlock']}" if k.get("landlock") else "no Landlock (kernel without it)"
        spaces = "mount/pid/net/ipc/uts" if report["root"] else "user/mount/pid/net/ipc/uts"
        print(f"isolation: kernel (bubblewrap namespaces: {spaces})", file=out)
        print(f"  launcher: {report['bwrap']}", file=out)
        print(f"  worker:   {uid}, seccomp filter on, {landlock}", file=out)
        print(f"  start:    {report['start_s']:.3f} s for one worker", file=out)
        print(f"configured: {report['configured']} (from {report['configured_from']})", file=out)
        if report["configured"] == "process":
            print("  note: runs on this store use process-only isolation (weaker: docs/sandbox.md)", file=out)
        return 0
    print("isolation: the kernel boundary cannot be built here", file=out)
    print(f"  why: {report['problem']}", file=out)
    print(f"  fix: install bubblewrap (apt-get install bubblewrap), or {report['accept_weaker']}", file=out)
    print(f"configured: {report['configured']} (from {report['configured_from']})", file=out)
    return 1
