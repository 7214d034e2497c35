"""Worker-side views of memory: what the model's code holds as ``recall``, ``archival``,
``working`` and the search functions.

Rules this module keeps:

* Standard library only. Its source is run as the REPL prelude inside the sandbox worker,
  which holds no database handle: every view reads through the callables handed to
  ``build_namespace`` (proxies that call back into the parent process).
* Nothing is loaded whole. ``len(recall)`` is one count; ``recall[i]`` and ``recall[a:b]``
  fetch exactly that range, in pages of at most ``PAGE`` messages; iteration goes page by page.
  Only code that asks for everything (``list(recall)``, ``recall[:]``) reads everything.
* Results are plain dicts (``Record`` and its kinds) with attribute access and a one-line
  ``repr``, in ``Results`` lists that print one result per line, so printed output stays
  readable and short; the full text is always in the dict (``hit["text"]``, ``msg.content``).
* The views are read-only. The only writes are the parent functions ``remember`` and ``note``.
"""

import contextlib
import datetime
import inspect
import types
from collections.abc import Callable, Iterator, Mapping
from typing import Any

__all__ = [
    "PAGE",
    "ArchivalView",
    "Chunk",
    "Hit",
    "Message",
    "RecallView",
    "Record",
    "Results",
    "Session",
    "WorkingView",
    "build_namespace",
    "render_transcript",
]

PAGE = 500
_SNIPPET = 160


def _when(value: Any) -> str:
    if isinstance(value, datetime.datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, str):
        return value[:16].replace("T", " ")
    return "?"


def _one_line(text: Any, limit: int = _SNIPPET) -> str:
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[: limit - 1] + "…"


class Record(dict):  # type: ignore[type-arg]
    """A result: a dict whose keys also read as attributes (``r.id`` is ``r["id"]``)."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(
                f"{type(self).__name__} has no field {name!r}; fields: {', '.join(self)}"
            ) from None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({dict.__repr__(self)})"

    def __reduce__(self) -> Any:
        # Crosses the sandbox boundary as a plain dict: the parent accepts plain data only.
        return (dict, (dict(self),))


class Message(Record):
    """One message of the recall log."""

    __slots__ = ()

    def __repr__(self) -> str:
        return (
            f"#{self.get('id')} [{_when(self.get('created_at'))} {self.get('session_id')} "
            f"{self.get('role')}] {_one_line(self.get('content', ''))}"
        )


class Hit(Record):
    """One grep or search result, from either tier."""

    __slots__ = ()

    def __repr__(self) -> str:
        score = self.get("score")
        head = f"#{self.get('id')} {self.get('tier')}"
        if self.get("tier") == "recall":
            where = f"[{_when(self.get('created_at'))} {self.get('session_id')} {self.get('role')}]"
        else:
            pos = self.get("position")
            where = f"[{self.get('source')}" + (f" pos {pos}]" if pos is not None else "]")
        s = f" score={score:.3f}" if isinstance(score, float) else ""
        text = self.get("snippet") or self.get("text") or ""
        return f"{head} {where}{s}: {_one_line(text)}"


class Session(Record):
    """One conversation session: its id, agent, size, id range and time span."""

    __slots__ = ()

    def __repr__(self) -> str:
        return (
            f"session {self.get('session_id')!r} (agent {self.get('agent_id')!r}): "
            f"{self.get('message_count')} messages #{self.get('first_id')}..#{self.get('last_id')}, "
            f"{_when(self.get('first_at'))} .. {_when(self.get('last_at'))}"
        )


class Chunk(Record):
    """One archival chunk."""

    __slots__ = ()

    def __repr__(self) -> str:
        tags = self.get("tags") or ()
        t = f" tags={list(tags)}" if tags else ""
        return (
            f"chunk #{self.get('id')} [{self.get('source')}]{t}: {_one_line(self.get('text', ''))}"
        )


class Results(list):  # type: ignore[type-arg]
    """A list of results that prints one per line."""

    def __repr__(self) -> str:
        if not self:
            return "[] (no results)"
        return "\n".join(repr(r) for r in self)

    def __reduce__(self) -> Any:
        return (list, (list(self),))

    def __getitem__(self, key: Any) -> Any:
        got = list.__getitem__(self, key)
        return Results(got) if isinstance(key, slice) else got


def _wrap(kind: type[Record], rows: Any) -> Results:
    return Results(kind(r) for r in rows)


def render_transcript(messages: Any, max_chars: int | None = None) -> str:
    """Messages as ``[#id 2024-05-01 10:00 user] content`` lines (cut at ``max_chars``)."""
    out: list[str] = []
    used = 0
    for m in messages:
        line = f"[#{m['id']} {_when(m['created_at'])} {m['role']}] {m['content']}"
        if max_chars is not None and used + len(line) > max_chars:
            out.append(f"... (cut at max_chars={max_chars})")
            break
        out.append(line)
        used += len(line) + 1
    return "\n".join(out)


def _opt_index(key: Any, what: str = "recall") -> Any:
    if key is None:
        return None
    if isinstance(key, bool) or not isinstance(key, int):
        raise TypeError(
            f"{what} indices must be integers or slices, not {type(key).__name__}; "
            "to fetch a message by its id use recall.get(id) or peek(id)"
        )
    return key


class _ReadOnly:
    """Views cannot be re-pointed or given new attributes from model code."""

    __slots__ = ()
    _call: Mapping[str, Callable[..., Any]]

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only")


class RecallView(_ReadOnly):
    """The whole message log as a lazy sequence in log order (oldest first).

    ``len(recall)``, ``recall[i]``, ``recall[a:b]`` (negative indices work), ``for m in recall``
    (page by page), ``recall.get(id)``, ``recall.sessions()``, ``recall.session(id)``,
    ``recall.text(a, b)`` / ``recall.text(session=id)``.
    """

    def __init__(self, call: Mapping[str, Callable[..., Any]]) -> None:
        object.__setattr__(self, "_call", types.MappingProxyType(dict(call)))

    def __len__(self) -> int:
        return int(self._call["recall_len"]())

    def _slice(self, start: int | None, stop: int | None) -> tuple[int, Results]:
        """``recall[start:stop]`` (Python slice rules) in one call per page; returns the log
        length with the messages."""
        reply = self._call["recall_slice"](start, stop)
        total, lo, hi = reply["total"], reply["start"], reply["stop"]
        out = Results(Message(m) for m in reply["messages"])
        while lo + len(out) < hi:  # more than one page was asked for
            more = self._call["recall_slice"](lo + len(out), hi)["messages"]
            if not more:
                break
            out.extend(Message(m) for m in more)
        return total, out

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, slice):
            if key.step in (None, 1):
                return self._slice(_opt_index(key.start), _opt_index(key.stop))[1]
            start, stop, step = key.indices(len(self))
            wanted = range(start, stop, step)
            if not wanted:
                return Results()
            if abs(step) > PAGE // 4:
                return Results(self._slice(i, i + 1)[1][0] for i in wanted)
            lo, hi = min(wanted), max(wanted)
            span = self._slice(lo, hi + 1)[1]
            return Results(span[i - lo] for i in wanted)
        i = _opt_index(key, "recall")
        total, got = self._slice(i, i + 1 if i != -1 else None)
        if not got:
            raise IndexError(f"recall index {key} out of range: it holds {total} messages")
        return got[0]

    def __iter__(self) -> Iterator[Message]:
        start = 0
        while True:
            page = self._call["recall_slice"](start, start + PAGE)["messages"]
            if not page:
                return
            for m in page:
                yield Message(m)
            start += len(page)

    def get(self, id: int) -> Message:
        """The message with this id (ids are stable; positions are ``recall[i]``)."""
        return Message(self._call["recall_get"](id))

    def sessions(self, limit: int | None = None) -> Results:
        """Every session, oldest first (the last ``limit`` ones when given)."""
        return _wrap(Session, self._call["recall_sessions"](limit))

    def session(self, session_id: str, limit: int | None = None) -> Results:
        """The messages of one session, in order (the first ``limit`` when given)."""
        return _wrap(Message, self._call["recall_session"](session_id, limit))

    def text(
        self,
        start: int | None = None,
        stop: int | None = None,
        *,
        session: str | None = None,
        max_chars: int | None = None,
    ) -> str:
        """``recall[start:stop]`` (or one session) as a transcript, one message per line."""
        if session is not None:
            if start is not None or stop is not None:
                raise TypeError("recall.text: give either start/stop or session=, not both")
            return render_transcript(self.session(session), max_chars)
        return render_transcript(self[slice(start, stop)], max_chars)

    def __repr__(self) -> str:
        info = self._call["recall_info"]()
        return (
            f"<recall: {info['messages']:,} messages in {info['sessions']:,} sessions, "
            f"{_when(info['first_at'])} .. {_when(info['last_at'])}; "
            "recall[i], recall[a:b], recall.sessions(), recall.session(id), recall.text(a, b)>"
        )


class ArchivalView(_ReadOnly):
    """The archival chunks, lazily: ``len(archival)``, ``for c in archival`` (page by page),
    ``archival.get(id)``, ``archival.sources()``."""

    def __init__(self, call: Mapping[str, Callable[..., Any]]) -> None:
        object.__setattr__(self, "_call", types.MappingProxyType(dict(call)))

    def __len__(self) -> int:
        return int(self._call["archival_len"]())

    def __iter__(self) -> Iterator[Chunk]:
        after = 0
        while True:
            page = self._call["archival_page"](after, PAGE)
            if not page:
                return
            for c in page:
                yield Chunk(c)
            after = page[-1]["id"]

    def get(self, id: int) -> Chunk:
        """The chunk with this id."""
        return Chunk(self._call["archival_get"](id))

    def sources(self, limit: int | None = None) -> list[tuple[str, int]]:
        """``[(source, chunk_count), ...]``, largest first."""
        return [(str(s[0]), int(s[1])) for s in self._call["archival_sources"](limit)]

    def __repr__(self) -> str:
        return f"<archival: {len(self):,} chunks; len(archival), iteration, archival.sources(), archival.get(id)>"


class WorkingView(_ReadOnly, Mapping):  # type: ignore[type-arg]
    """Working memory, read-only: label -> text. ``working.blocks()`` gives sizes and limits."""

    def __init__(self, call: Mapping[str, Callable[..., Any]]) -> None:
        object.__setattr__(self, "_call", types.MappingProxyType(dict(call)))

    def _blocks(self) -> list[dict[str, Any]]:
        return list(self._call["working"]())

    def __getitem__(self, label: str) -> str:
        for b in self._blocks():
            if b["label"] == label:
                return str(b["value"])
        raise KeyError(label)

    def __iter__(self) -> Iterator[str]:
        return iter([b["label"] for b in self._blocks()])

    def __len__(self) -> int:
        return len(self._blocks())

    def __setitem__(self, label: str, value: Any) -> None:
        raise TypeError("working memory is read-only here: use note(label, text) to add to a block")

    def __delitem__(self, label: str) -> None:
        raise TypeError("working memory is read-only here: blocks cannot be deleted")

    def blocks(self) -> Results:
        """Every block with its label, size (chars), limit, description and read_only flag."""
        return Results(
            Record({k: b[k] for k in ("label", "chars", "limit", "description", "read_only")})
            for b in self._blocks()
        )

    def __repr__(self) -> str:
        parts = [f"{b['label']} ({b['chars']}/{b['limit']} chars)" for b in self._blocks()]
        return "<working: " + (", ".join(parts) or "no blocks") + ">"


_RETURNS: dict[str, type[Record] | None] = {
    "grep": Hit,
    "search": Hit,
    "recall_search": Hit,
    "archival_search": Hit,
    "peek": Message,
    "remember": None,
    "note": None,
}


def _returning(kind: type[Record] | None, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` with its name, signature and docstring, its rows wrapped as ``kind`` records."""
    if kind is None:
        return fn

    def wrapper(*args: Any, **kwargs: Any) -> Results:
        return _wrap(kind, fn(*args, **kwargs))

    wrapper.__name__ = wrapper.__qualname__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    with contextlib.suppress(TypeError, ValueError):
        wrapper.__signature__ = inspect.signature(fn)  # type: ignore[attr-defined]
    return wrapper


def build_namespace(
    rpc: Callable[..., Any], functions: Mapping[str, Callable[..., Any]]
) -> dict[str, Any]:
    """The model's memory names: the views reading through ``rpc(op, *args)`` and the
    ``functions`` (parent proxies) wrapped so that their results print readably."""
    call: dict[str, Callable[..., Any]] = {
        op: (lambda *args, _op=op: rpc(_op, *args))
        for op in (
            "recall_len", "recall_slice", "recall_get", "recall_sessions", "recall_session",
            "recall_info", "archival_len", "archival_page", "archival_get", "archival_sources",
            "working",
        )
    }  # fmt: skip
    out: dict[str, Any] = {
        "working": WorkingView(call),
        "recall": RecallView(call),
        "archival": ArchivalView(call),
    }
    for name, fn in functions.items():
        out[name] = _returning(_RETURNS.get(name), fn)
    return out
