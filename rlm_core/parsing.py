"""Reading a root model's reply: code blocks to run and a final answer written as text.

Rules this module keeps:

* Code is taken from fenced blocks tagged ``repl``, ``python`` or ``py`` (in order of
  appearance). A block left unterminated (a reply cut off by its token limit) is not run:
  half a program does more harm than none.
* ``FINAL(...)`` and ``FINAL_VAR(name)`` count only outside code blocks and only at the start of
  a line, so prose that merely mentions them ("call FINAL(x) when done") does not end a run.
  Inside code they are ordinary functions of the sandbox.
* ``FINAL("text")`` with a Python string literal yields the string's value; anything else
  yields the text between the parentheses, stripped.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from typing import Literal

__all__ = ["FinalMarker", "find_code_blocks", "find_final", "strip_code_blocks"]

_FENCE = re.compile(r"```[ \t]*(repl|python|py)[ \t]*\r?\n(.*?)(?:\r?\n)?```", re.DOTALL | re.IGNORECASE)
_ANY_FENCE = re.compile(r"```.*?(?:```|\Z)", re.DOTALL)
_FINAL_VAR = re.compile(r"^[ \t]*FINAL_VAR\([ \t]*['\"]?([A-Za-z_][A-Za-z0-9_]*)['\"]?[ \t]*\)", re.MULTILINE)
_FINAL = re.compile(r"^[ \t]*FINAL\(", re.MULTILINE)


@dataclass(frozen=True)
class FinalMarker:
    """A final answer written in the reply text: the answer itself or a variable name."""

    kind: Literal["FINAL", "FINAL_VAR"]
    value: str


def find_code_blocks(text: str) -> list[str]:
    """The code of every terminated ```repl / ```python block, in order."""
    return [m.group(2) for m in _FENCE.finditer(text) if m.group(2).strip()]


def strip_code_blocks(text: str) -> str:
    """The reply with every fenced block (of any language, terminated or not) removed."""
    return _ANY_FENCE.sub("", text)


def _closing_paren(text: str, start: int) -> int:
    """Index of the ``)`` closing the ``(`` before ``start``, or the last ``)`` as a fallback."""
    depth = 1
    quote: str | None = None
    i = start
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 2
                continue
            if text.startswith(quote, i):
                i += len(quote)
                quote = None
                continue
        elif text.startswith(('"""', "'''"), i):
            quote = text[i : i + 3]
            i += 3
            continue
        elif ch in "\"'":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return text.rfind(")")


def find_final(text: str) -> FinalMarker | None:
    """The ``FINAL_VAR(name)`` or ``FINAL(answer)`` written outside code, if any."""
    prose = strip_code_blocks(text)
    var = _FINAL_VAR.search(prose)
    plain = _FINAL.search(prose)
    if var and (plain is None or var.start() <= plain.start()):
        return FinalMarker("FINAL_VAR", var.group(1))
    if plain is None:
        return None
    start = plain.end()
    end = _closing_paren(prose, start)
    if end < start:
        return None
    inner = prose[start:end].strip()
    try:
        value = ast.literal_eval(inner)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return FinalMarker("FINAL", inner)
    return FinalMarker("FINAL", value if isinstance(value, str) else inner)
