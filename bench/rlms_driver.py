"""Runs the official RLM library (``rlms`` on PyPI) on the scripted benchmark run.

Executed by ``bench/bench_engine.py`` with the interpreter of a separate virtualenv that has
``rlms`` installed (never the project's own environment). Standard library + ``rlm`` only.
The seam is the one the library's design leaves: it looks its client up by backend name
through ``rlm.core.rlm.get_client``, so that name is replaced by a factory returning a
scripted ``BaseLM``. Prints one JSON object on stdout.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
import threading
import time
from typing import Any


def main() -> None:
    cfg = json.loads(sys.argv[1])
    import rlm.core.rlm as rlm_mod
    from rlm import RLM
    from rlm.clients.base_lm import BaseLM
    from rlm.core.types import ModelUsageSummary, UsageSummary

    delay = float(cfg["delay_s"])
    replies: list[str] = list(cfg["replies"])

    class ScriptedClient(BaseLM):
        def __init__(self) -> None:
            super().__init__(model_name="scripted")
            self.lock = threading.Lock()
            self.calls = 0
            self.lm_time = 0.0
            self.first_call: float | None = None
            self.last_end = 0.0
            self.spans: list[tuple[float, float]] = []
            self.queue = list(replies)

        def _next(self, prompt: Any) -> str:
            is_root = isinstance(prompt, list)  # the root gets a message list, sub-calls a str
            with self.lock:
                self.calls += 1
                if is_root:
                    return self.queue.pop(0) if self.queue else "FINAL(out of script)"
            return "sub answer"

        def completion(self, prompt: Any) -> str:
            t0 = time.perf_counter()
            with self.lock:
                if self.first_call is None:
                    self.first_call = t0
            time.sleep(delay)
            out = self._next(prompt)
            with self.lock:
                self.last_end = time.perf_counter()
                self.lm_time += self.last_end - t0
                if isinstance(prompt, list):
                    self.spans.append((t0, self.last_end))
            return out

        async def acompletion(self, prompt: Any) -> str:
            t0 = time.perf_counter()
            await asyncio.sleep(delay)
            out = self._next(prompt)
            with self.lock:
                self.lm_time += time.perf_counter() - t0
            return out

        def get_usage_summary(self) -> UsageSummary:
            return UsageSummary({"scripted": self.get_last_usage()})

        def get_last_usage(self) -> ModelUsageSummary:
            return ModelUsageSummary(self.calls, 0, 0)

    clients: list[ScriptedClient] = []

    def fake_get_client(backend: str, kwargs: dict[str, Any]) -> BaseLM:
        c = ScriptedClient()
        clients.append(c)
        return c

    rlm_mod.get_client = fake_get_client  # type: ignore[assignment]
    engine = RLM(backend="openai", backend_kwargs={"model_name": "scripted"},
                 max_iterations=int(cfg["max_iterations"]))
    t0 = time.perf_counter()
    out = engine.completion(cfg["context"], root_prompt=cfg["query"])
    t1 = time.perf_counter()
    c = clients[0]
    print(json.dumps({
        "answer": out.response,
        "elapsed_s": t1 - t0,
        "lm_s": c.lm_time,
        "startup_s": (c.first_call or t1) - t0,
        "between_calls_s": c.last_end - (c.first_call or t0),
        "teardown_s": t1 - c.last_end,
        "gaps_s": [b[0] - a[1] for a, b in itertools.pairwise(c.spans)],
        "root_calls": c.calls,
        "version": __import__("importlib.metadata").metadata.version("rlms"),
    }))


if __name__ == "__main__":
    main()
