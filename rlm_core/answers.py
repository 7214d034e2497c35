"""How an RLM run's answer becomes ready: the ``answer`` variable and FINAL / FINAL_VAR.

Rules this module keeps:

* There is one mechanism with three spellings. The REPL variable ``answer`` starts as
  ``{"content": "", "ready": False}``; the answer is ready when ``answer["ready"]`` is truthy.
  ``FINAL(value)`` and ``FINAL_VAR(name)`` in code are prelude functions that write that same
  dict. ``FINAL(text)`` / ``FINAL_VAR(name)`` in the reply text (outside code) are read by
  ``text_final``.
* Answers are strings at the edge: any other value is converted with ``str()``.
* Reading the answer never fails the run: a value that cannot cross the process boundary, or
  a worker that died meanwhile, counts as "not ready".
"""

from __future__ import annotations

from typing import Any

from memory.errors import SandboxError
from rlm_core.parsing import find_final

__all__ = [
    "ANSWER_VAR",
    "FINAL_SIGNATURES",
    "PRELUDE",
    "initial_answer",
    "read_answer",
    "text_final",
]

ANSWER_VAR = "answer"

# Runs in the worker; the functions write the same dict the model may set by hand.
PRELUDE = '''
def FINAL(value):
    """Answer with value and end the run."""
    globals()["answer"] = {"content": value, "ready": True}
    return value

def FINAL_VAR(name):
    """Answer with the value of the variable called name and end the run."""
    if not isinstance(name, str):
        return FINAL(name)
    g = globals()
    if name not in g:
        raise NameError(f"FINAL_VAR: no variable named {name!r}; assign it first, or use FINAL(value)")
    return FINAL(g[name])
'''


def _final(value: Any) -> Any:
    return value


def _final_var(name: str) -> Any:
    return name


# Stand-ins with the prelude functions' signatures, for the function list in the prompt.
FINAL_SIGNATURES = {"FINAL": _final, "FINAL_VAR": _final_var}

Answer = tuple[str, str]  # (text, source: "variable" | "FINAL" | "FINAL_VAR")


def initial_answer() -> dict[str, Any]:
    return {"content": "", "ready": False}


def as_text(value: Any) -> str:
    """The answer as text; never raises (an int past CPython's 4,300-digit str() limit, e.g.
    one model code computed, is written in hex instead of failing the run)."""
    if isinstance(value, str):
        return value
    try:
        return str(value)
    except ValueError:
        if isinstance(value, int):
            return hex(value)
        return f"<a {type(value).__name__} holding an int too long to write as text>"


def read_answer(sandbox: Any) -> tuple[Answer | None, str | None]:
    """(the ready answer or None, the content written so far or None)."""
    try:
        value = sandbox.get(ANSWER_VAR)
    except SandboxError:
        return None, None
    if not isinstance(value, dict):
        return None, None
    content = value.get("content")
    partial = as_text(content) if content not in (None, "") else None
    if value.get("ready"):
        return (as_text("" if content is None else content), "variable"), partial
    return None, partial


def text_final(sandbox: Any, reply: str) -> tuple[Answer | None, str | None]:
    """(the answer written as FINAL/FINAL_VAR outside code or None, a note for the model)."""
    marker = find_final(reply)
    if marker is None:
        return None, None
    if marker.kind == "FINAL":
        return (marker.value, "FINAL"), None
    missing = object()
    try:
        value = sandbox.get(marker.value, missing)
    except SandboxError:
        value = missing
    if value is missing:
        return None, (
            f"FINAL_VAR({marker.value}) was ignored: there is no variable named "
            f"{marker.value!r} in the REPL. Assign it in a repl block first."
        )
    return (as_text(value), "FINAL_VAR"), None
