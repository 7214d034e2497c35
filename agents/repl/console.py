"""An interactive Python console over memory, with the namespace the root model gets.

Rules this module keeps:

* The console runs its code in the same sandbox, with the same functions and prelude, as an
  ``ask`` run: what a person tries here is exactly what the model can do (``working``,
  ``recall``, ``archival``, ``context``, grep/search/peek/remember/note, llm_query,
  llm_query_batched, rlm_query).
* Sub-model calls use the models passed in. With none, the first call builds the default
  Anthropic client; without ``ANTHROPIC_API_KEY`` it fails with the error naming that
  variable, and the console goes on.
* Input and output are injectable (``input_fn``, ``output``) so the console is testable.
"""

from __future__ import annotations

import code
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import IO, TYPE_CHECKING, Any

from agents.repl.binding import MemoryBinding, bind_memory
from agents.repl.prompt import FUNCTION_DOCS
from rlm_core.limits import Limits
from rlm_core.lm import LM

if TYPE_CHECKING:
    from memory.manager import MemoryManager
    from rlm_core.sandbox.repl import Sandbox

__all__ = ["ConsoleModels", "MemoryConsole", "run_console"]


class ConsoleModels:
    """``llm_query``, ``llm_query_batched`` and ``rlm_query`` for the console."""

    def __init__(
        self,
        binding: MemoryBinding,
        root: LM | None,
        sub: LM | None,
        limits: Limits,
        factory: Callable[[], LM] | None = None,
    ) -> None:
        self.binding = binding
        self.root = root
        self.sub = sub
        self.limits = limits
        self._factory = factory
        self._default: LM | None = None
        self._lock = threading.Lock()

    def _lm(self, *, for_root: bool = False) -> LM:
        first = self.root if for_root else self.sub
        second = self.sub if for_root else self.root
        if first is not None:
            return first
        if second is not None:
            return second
        with self._lock:
            if self._default is None:
                self._default = self._factory() if self._factory is not None else _anthropic()
            return self._default

    def functions(self) -> dict[str, Callable[..., Any]]:
        return {
            "llm_query": self.llm_query,
            "llm_query_batched": self.llm_query_batched,
            "rlm_query": self.rlm_query,
        }

    def llm_query(self, prompt: str) -> str:
        """Ask the sub model one question; returns its answer text."""
        if not isinstance(prompt, str):
            raise TypeError(f"llm_query: prompt must be a str, got {type(prompt).__name__}")
        return self._lm().complete([{"role": "user", "content": prompt}]).text

    def llm_query_batched(self, prompts: list[str]) -> list[str]:
        """Ask the sub model many questions concurrently; answers come back in prompt order."""
        if isinstance(prompts, str) or not isinstance(prompts, list | tuple):
            raise TypeError("llm_query_batched: prompts must be a list of str")
        lm = self._lm()

        def one(p: Any) -> str:
            try:
                if not isinstance(p, str):
                    raise TypeError(f"prompt must be a str, got {type(p).__name__}")
                return lm.complete([{"role": "user", "content": p}]).text
            except Exception as exc:
                return f"[error] {type(exc).__name__}: {exc}"

        if not prompts:
            return []
        with ThreadPoolExecutor(min(self.limits.sub_concurrency, len(prompts))) as pool:
            return list(pool.map(one, prompts))

    def rlm_query(self, prompt: str, context: Any = None) -> str:
        """Start an RLM with its own REPL (memory included, ``context`` given) to answer."""
        from agents.repl.prompt import memory_system_prompt
        from rlm_core.engine import RLM

        rlm = RLM(
            self._lm(for_root=True),
            self.sub,
            limits=self.limits,
            system_prompt=memory_system_prompt(),
        )
        b = self.binding
        result = rlm.completion(
            prompt,
            context=context,
            functions=b.functions,
            prelude=b.prelude,
            function_docs=b.function_docs,
        )
        return result.answer


def _anthropic() -> LM:
    from rlm_core.lm.anthropic import AnthropicLM

    return AnthropicLM()  # raises MissingAPIKeyError naming ANTHROPIC_API_KEY


class MemoryConsole(code.InteractiveConsole):
    """``code.InteractiveConsole`` whose complete inputs run in the sandbox."""

    def __init__(self, sandbox: Sandbox, input_fn: Callable[[str], str], output: IO[str]) -> None:
        super().__init__()
        self.sandbox = sandbox
        self.input_fn = input_fn
        self.output = output

    def raw_input(self, prompt: str = "") -> str:
        return self.input_fn(prompt)

    def write(self, data: str) -> None:
        self.output.write(data)
        self.output.flush()

    def runsource(self, source: str, filename: str = "<input>", symbol: str = "single") -> bool:
        try:
            compiled = self.compile(source, filename, symbol)
        except (OverflowError, SyntaxError, ValueError):
            self.showsyntaxerror(filename)
            return False
        if compiled is None:
            return True  # incomplete: read more lines
        result = self.sandbox.run(source)
        text = result.render()
        if text != "[no output]":
            self.write(text.rstrip("\n") + "\n")
        return False


def banner(binding: MemoryBinding, extra: dict[str, Any]) -> str:
    names = ", ".join(
        [
            *("working", "recall", "archival"),
            *extra,
            *(n for n in FUNCTION_DOCS if not n.startswith("_")),
        ]
    )
    return (
        "rlm-memory console: the REPL the root model gets. Code runs in the sandbox worker.\n"
        f"{binding.summary()}\n"
        f"Names: {names}, llm_query, llm_query_batched, rlm_query. help(grep) for details; "
        "Ctrl-D to leave."
    )


def run_console(
    memory: MemoryManager,
    *,
    root: LM | None = None,
    sub: LM | None = None,
    context: Any = None,
    agent_id: str | None = None,
    limits: Limits | None = None,
    lm_factory: Callable[[], LM] | None = None,
    input_fn: Callable[[str], str] | None = None,
    output: IO[str] | None = None,
) -> None:
    """Open the console on ``memory`` until end of input (Ctrl-D)."""
    from agents.repl.isolation import store_isolation
    from rlm_core.sandbox.repl import Sandbox

    lim = store_isolation(limits if limits is not None else Limits(), memory)
    binding = bind_memory(memory, agent_id=agent_id, actor="console")
    models = ConsoleModels(binding, root, sub, lim, lm_factory)
    variables = {"context": context} if context is not None else {}
    out = output if output is not None else sys.stdout
    with Sandbox(
        functions={**binding.functions, **models.functions()},
        variables=variables,
        prelude=binding.prelude,
        limits=lim.sandbox_limits(),
    ) as sandbox:
        console = MemoryConsole(sandbox, input_fn if input_fn is not None else input, out)
        console.interact(banner=banner(binding, variables), exitmsg="")
