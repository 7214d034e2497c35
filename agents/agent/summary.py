"""Context overflow: which messages leave the prompt, and the running summary that replaces them.

Rules this module keeps:

* Messages leave the prompt only at a turn boundary (a turn starts at a user message), oldest
  first, and never the turn in progress. Enough turns leave to bring the buffer down to
  ``keep_fraction`` of its budget, so summarising is rare rather than once per step.
* Leaving the prompt deletes nothing: the messages stay in recall, the model can search them.
* The summary is rewritten by the model from the previous summary and the leaving messages
  (one call with ``SUMMARY_SYSTEM`` as its system prompt, so a scripted model can recognise
  it). The new summary is cut to the summary block's limit. When the call fails, a mechanical
  note (message ids and time span) is added instead, so the step still goes on.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC
from typing import Any

from agents.agent.context import message_tokens
from memory.tokens import count_tokens
from memory.types import Message

__all__ = [
    "SUMMARY_SYSTEM",
    "choose_cut",
    "fallback_summary",
    "fit_summary",
    "summary_request",
    "transcript",
]

SUMMARY_SYSTEM = (
    "You maintain the running summary of a long conversation between an assistant and a user. "
    "Older messages are leaving the assistant's context window; they stay searchable in its "
    "recall log, but the summary is all it will see of them. Rewrite the summary so that it "
    "covers the previous summary and the messages below: keep facts about the user, decisions, "
    "commitments, open tasks and anything the assistant promised to remember; drop small talk. "
    "Write plain prose or short bullet points, at most {limit} characters. Reply with the new "
    "summary only."
)


def choose_cut(messages: Sequence[Message], budget_tokens: int, keep_fraction: float = 0.5) -> int:
    """Index of the first message to keep; 0 when nothing can or needs to leave.

    The buffer is over budget when its tokens exceed ``budget_tokens``; the cut is the
    earliest turn start that brings it to ``keep_fraction * budget_tokens`` or below, and at
    most the start of the last turn.
    """
    sizes = [message_tokens(m) for m in messages]
    total = sum(sizes)
    if total <= budget_tokens:
        return 0
    starts = [i for i, m in enumerate(messages) if i > 0 and _is_turn_start(m)]
    if not starts:
        return 0
    target = keep_fraction * budget_tokens
    removed = 0
    prev = 0
    for s in starts:
        removed += sum(sizes[prev:s])
        prev = s
        if total - removed <= target:
            return s
    return starts[-1]


def _is_turn_start(m: Message) -> bool:
    return m.role == "user"


def transcript(messages: Sequence[Message], *, max_chars_per_message: int = 2000) -> str:
    """Messages rendered for the summariser: ``[id time] role: text``, long ones cut."""
    return "\n".join(_transcript_lines(messages, max_chars_per_message))


def _transcript_lines(messages: Sequence[Message], max_chars_per_message: int = 2000) -> list[str]:
    lines = []
    for m in messages:
        body = m.content
        if len(body) > max_chars_per_message:
            body = body[:max_chars_per_message] + f" … [{len(m.content) - max_chars_per_message} more characters]"
        who = m.role if not m.tool_name else f"{m.role} ({m.tool_name})"
        when = m.created_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M")
        lines.append(f"[{m.id} {when}] {who}: {body}")
    return lines


def fit_summary(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters at a line or word boundary where possible."""
    text = text.strip()
    if len(text) <= limit:
        return text
    cut = text[: max(0, limit - 1)]
    for sep in ("\n", ". ", " "):
        i = cut.rfind(sep)
        if i >= limit // 2:
            cut = cut[: i + (1 if sep == ". " else 0)]
            break
    return cut.rstrip() + "…"


def fallback_summary(previous: str, evicted: Sequence[Message], limit: int) -> str:
    """A mechanical note used when the summarising call failed."""
    first, last = evicted[0], evicted[-1]
    note = (
        f"[Messages {first.id}-{last.id} ({first.created_at:%Y-%m-%d %H:%M} to "
        f"{last.created_at:%Y-%m-%d %H:%M} UTC) left the prompt without a summary; "
        "search recall for them.]"
    )
    joined = f"{previous.strip()}\n{note}".strip()
    if len(joined) <= limit:
        return joined
    # Keep the newest notes: the oldest text is the least useful and still in recall.
    return "…" + joined[-(limit - 1):]


def summary_request(
    previous: str, evicted: Sequence[Message], *, limit: int, max_chars: int = 120_000
) -> tuple[list[dict[str, Any]], str, int]:
    """The summarising call as ``(messages, system, max_tokens)``; fit the reply with
    ``fit_summary``. The transcript is bounded by ``max_chars``: the newest leaving messages
    are kept, the number of older ones left out is said."""
    kept: list[str] = []
    size = 0
    for line in reversed(_transcript_lines(evicted)):
        if kept and size + len(line) > max_chars:
            break
        kept.append(line)
        size += len(line) + 1
    text = "\n".join(reversed(kept))
    if len(kept) < len(evicted):
        text = f"({len(evicted) - len(kept)} older messages left out here; they stay in the recall log)\n{text}"
    prompt = (
        f"Previous summary:\n{previous.strip() or '(none yet)'}\n\n"
        f"Messages leaving the context window:\n{text}"
    )
    max_tokens = max(256, min(4096, count_tokens("x" * limit) * 2))
    return [{"role": "user", "content": prompt}], SUMMARY_SYSTEM.format(limit=limit), max_tokens
