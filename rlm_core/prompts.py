"""The texts the root model reads: the system prompt and the engine's per-turn messages.

Rules this module keeps:

* The system prompt is stable for a whole run (only the function list and depth vary between
  runs), so a provider can cache it as a prefix.
* Functions are described by one line each: ``name(signature) -> return: first docstring
  line``; ``function_docs`` overrides the line for a name (the memory layer uses it).
* The namespace is described by names, types and sizes only: the model never receives the
  contents of a variable unless its own code prints them.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = [
    "SYSTEM_PROMPT",
    "build_system_prompt",
    "describe_function",
    "describe_namespace",
    "final_call_message",
    "first_user_message",
    "no_code_message",
    "turn_message",
]

SYSTEM_PROMPT = """\
You answer a query by writing Python code in a persistent REPL. The data you need is in REPL \
variables (usually `context`), which may be far too large to read in full: never print \
them whole. Inspect them with code (len, slicing, re, split), and delegate reading of pieces \
to sub-models.

How to run code: put it in a fenced block tagged repl, for example

```repl
import re
hits = [m.start() for m in re.finditer(r"needle", context)]
print(len(hits), hits[:10])
```

Every repl block in your reply runs in order; variables persist across blocks and turns. You \
see the printed output (long output is cut with a marker saying how much was cut), and \
tracebacks when code fails. Only print what you need to read.

Functions available in the REPL:
{functions}

Sub-calls: `llm_query(prompt)` asks a sub-model one question (no REPL; give it the text it \
needs inside the prompt, it cannot see your variables). `llm_query_batched(prompts)` asks \
many at once, concurrently, and returns the answers in order: prefer it for independent \
chunks. `rlm_query(prompt, context=None)` starts a child like you, with its own REPL holding \
`context`, for sub-tasks that need several steps of their own{depth_note}. A failing \
`llm_query`/`rlm_query` raises an exception you can catch; in `llm_query_batched` a failed \
item comes back as a string starting with "[error]" so the other answers are kept.

When you are done, give the answer in one of these ways:
- in a repl block: `answer["content"] = <your answer>` then `answer["ready"] = True`
  (`answer` starts as {{"content": "", "ready": False}});
- in a repl block: `FINAL(value)`, or `FINAL_VAR("name")` to answer with a variable's value;
- or on its own line outside code: FINAL(your answer) or FINAL_VAR(name).
Do not mark the answer ready before the task is done. Reason step by step, but act: every \
reply should either run code or give the final answer."""


def describe_function(name: str, fn: Callable[..., Any], doc: str | None = None) -> str:
    """``name(signature) -> return: first docstring line`` (``doc`` replaces the line)."""
    try:
        sig = str(inspect.signature(fn, eval_str=True))
    except (TypeError, ValueError, NameError, SyntaxError):
        # Annotations naming types the module cannot resolve: show them as written.
        try:
            sig = str(inspect.signature(fn)).replace("'", "")
        except (TypeError, ValueError):
            sig = "(...)"
    sig = sig.replace("typing.", "")
    if doc is None:
        raw = inspect.getdoc(fn) or ""
        doc = raw.strip().splitlines()[0] if raw.strip() else ""
    return f"- `{name}{sig}`" + (f": {doc}" if doc else "")


_BUILTIN_DOCS = {
    "llm_query": "one sub-model call; returns its text",
    "llm_query_batched": "many sub-model calls run concurrently; answers in prompt order",
    "rlm_query": "a child RLM with its own REPL (`context` there) answers the prompt",
    "FINAL": "answer with this value and stop",
    "FINAL_VAR": "answer with the value of the named variable and stop",
}


def build_system_prompt(
    functions: Mapping[str, Callable[..., Any]],
    *,
    function_docs: Mapping[str, str] | None = None,
    prelude_functions: Sequence[Mapping[str, Any]] = (),
    depth: int = 0,
    max_depth: int = 0,
    template: str | None = None,
) -> str:
    """The system prompt listing ``functions`` and the functions a prelude defined (as
    ``Sandbox.describe`` reports them: name, signature, doc); ``template`` (with
    ``{functions}``) replaces ours."""
    docs = {**_BUILTIN_DOCS, **(function_docs or {})}
    # Underscore names are plumbing (e.g. the callback a prelude's views use): not for the model.
    lines = [
        describe_function(n, f, docs.get(n)) for n, f in functions.items() if not n.startswith("_")
    ]
    for entry in prelude_functions:
        name = str(entry.get("name", ""))
        if name.startswith("_"):
            continue
        doc = docs.get(name) or str(entry.get("doc") or "").strip().split("\n")[0]
        sig = str(entry.get("signature") or f"{name}(...)")
        lines.append(f"- `{sig}`" + (f": {doc}" if doc else ""))
    if depth >= max_depth:
        depth_note = " (at this depth it is answered by a single sub-model call instead)"
    else:
        depth_note = f" (you are at depth {depth}; children may nest down to depth {max_depth})"
    tpl = template if template is not None else SYSTEM_PROMPT
    return tpl.replace("{functions}", "\n".join(lines)).replace("{depth_note}", depth_note).replace(
        "{{", "{"
    ).replace("}}", "}")


def _size(entry: Mapping[str, Any]) -> str:
    size = entry.get("size")
    if size is None or size == "":
        return ""
    if isinstance(size, int):
        unit = {"str": "chars", "bytes": "bytes", "bytearray": "bytes"}.get(str(entry.get("type")), "items")
        return f", {size:,} {unit}"
    return f", {size}"


def describe_namespace(entries: Sequence[Mapping[str, Any]], hidden: set[str] | frozenset[str] = frozenset()) -> str:
    """One line per variable: name, type and size (never the value); reserved names (the
    functions, listed in the system prompt) are left out."""
    rows = [
        e for e in entries
        if e.get("name") not in hidden and not e.get("reserved") and not str(e.get("name", "")).startswith("_")
    ]
    if not rows:
        return "(no variables)"
    return "\n".join(f"- `{e['name']}`: {e.get('type', '?')}{_size(e)}" for e in rows)


def first_user_message(query: str, namespace: str, *, max_iterations: int) -> str:
    return (
        f"Query:\n{query}\n\nVariables in the REPL (names, types and sizes only):\n{namespace}\n\n"
        f"You have {max_iterations} turns. Start by writing a repl block to look at the data."
    )


def turn_message(outputs: Sequence[str], *, iteration: int, max_iterations: int, note: str | None = None) -> str:
    """The user message carrying this turn's cell outputs back to the model."""
    if len(outputs) == 1:
        body = f"REPL output:\n{outputs[0]}"
    else:
        body = "\n\n".join(f"REPL output (block {i}):\n{o}" for i, o in enumerate(outputs, 1))
    left = max_iterations - iteration
    tail = f"\n\n{note}" if note else ""
    return f"{body}{tail}\n\n[turn {iteration}/{max_iterations} done; {left} left]"


def no_code_message(*, iteration: int, max_iterations: int, note: str | None = None) -> str:
    left = max_iterations - iteration
    head = note or "Your reply had no repl block and no final answer."
    return (
        f"{head} Write a ```repl block to make progress, or give the answer "
        f"(answer[\"ready\"] = True, FINAL(...) or FINAL_VAR(name)).\n\n"
        f"[turn {iteration}/{max_iterations} done; {left} left]"
    )


def final_call_message(max_iterations: int) -> str:
    return (
        f"You have used all {max_iterations} turns; no more code will run. Reply now with your "
        "best final answer to the query as plain text, using what you found so far."
    )
