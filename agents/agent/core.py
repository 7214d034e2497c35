"""A long-lived agent: one model, one memory, conversations that survive restarts.

Rules this module keeps:

* Every message of a step (the user's, the assistant's text, each tool call, each tool result)
  is appended to the recall log as it happens, so it is durable before ``step`` returns and a
  crash loses at most the call in flight.
* The prompt is rebuilt from stored state on every model call (``agents.agent.context``): system
  prompt, rendered blocks, memory statistics, and the buffer, which is every recall message
  of the agent from ``buffer_start_id`` on. Nothing lives only in this process, so a process
  that restarts resumes exactly, and two processes see each other's turns.
* Steps are serialised across processes by a lease on the agent's row (``agents.agent.state``):
  a second process waits for the running step, and past ``lock_timeout_s`` gets
  ``StoreBusyError`` naming the holder.
* Tool rounds per step are bounded (``max_tool_rounds``); past the bound the model is told to
  answer with what it has. A failing tool answers with an error result the model can read,
  never with an exception out of ``step``.
* When the buffer outgrows its budget, older turns leave the prompt (``agents.agent.summary``); the
  ``summary`` block is rewritten first, then ``buffer_start_id`` moves, so a crash between
  the two only repeats messages, never loses them.
* ``step`` and ``astep`` share one generator that yields model and tool calls; only the
  driver differs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agents.agent.context import (
    KIND_TEXT,
    KIND_TOOL_CALL,
    KIND_TOOL_RESULT,
    MemoryStats,
    StatsCache,
    memory_stats_text,
    render_system,
    to_chat_messages,
    tool_call_text,
)
from agents.agent.state import (
    SUMMARY_DESCRIPTION,
    AgentRecord,
    AgentTable,
    new_session_id,
    open_store,
)
from agents.agent.summary import choose_cut, fallback_summary, fit_summary, summary_request
from agents.agent.types import (
    _ROUND_LIMIT_NOTE,
    AGENT_TOOLS,
    DEFAULT_SYSTEM_PROMPT,
    Reply,
    ToolCallRecord,
    _LMOp,
    _Op,
    _ToolOp,
    tools_kw,
)
from memory.errors import BlockError, BlockLimitError, LMError, RlmMemoryError, ValidationError
from memory.tokens import count_tokens
from memory.types import Message
from rlm_core.lm.types import LMResponse

if TYPE_CHECKING:
    from memory.manager import MemoryManager
    from rlm_core.limits import Limits
    from rlm_core.lm import LM


def _models(model: LM | None, root: LM | None, sub_model: LM | None, sub: LM | None) -> tuple[LM, LM | None]:
    """``model``/``sub_model`` or their ``RLM``/``ask`` names ``root``/``sub``: one of each pair."""
    if model is not None and root is not None:
        raise ValidationError("give the model once: model= or root= (the same thing), not both")
    if sub_model is not None and sub is not None:
        raise ValidationError("give the sub-model once: sub_model= or sub= (the same thing), not both")
    chosen = model if model is not None else root
    if chosen is None:
        raise ValidationError("an agent needs a model: Agent.create(name, store, model) or root=...")
    return chosen, sub_model if sub_model is not None else sub

__all__ = ["AGENT_TOOLS", "DEFAULT_SYSTEM_PROMPT", "Agent", "Reply", "ToolCallRecord"]


class Agent:
    """A named agent in a store. Build with ``Agent.create`` or ``Agent.open``."""

    def __init__(
        self,
        record: AgentRecord,
        memory: MemoryManager,
        model: LM,
        *,
        sub_model: LM | None = None,
        limits: Limits | None = None,
        owns_memory: bool = False,
        table: AgentTable | None = None,
    ) -> None:
        settings = record.settings
        self.name = record.agent_id
        self.memory = memory
        self.model = model
        self.sub_model = sub_model
        self.limits = limits
        self.tools: tuple[str, ...] = tuple(settings.get("tools", AGENT_TOOLS))
        self.context_budget_tokens = int(settings.get("context_budget_tokens", 32_000))
        self.max_tool_rounds = int(settings.get("max_tool_rounds", 8))
        self.max_tokens: int | None = settings.get("max_tokens")
        self.summary_limit = int(settings.get("summary_limit", 4000))
        self.keep_fraction = float(settings.get("keep_fraction", 0.5))
        self.lock_timeout_s = 30.0
        self._owns_memory = owns_memory
        self._table = table or AgentTable(memory.db)
        self._record = record
        self._stats = StatsCache(memory, self.name)

    # --- construction --------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        name: str,
        store: MemoryManager | str | Path,
        model: LM | None = None,
        *,
        root: LM | None = None,
        sub: LM | None = None,
        persona: str = "",
        human: str = "",
        system_prompt: str | None = None,
        sub_model: LM | None = None,
        limits: Limits | None = None,
        tools: Sequence[str] = AGENT_TOOLS,
        context_budget_tokens: int = 32_000,
        max_tool_rounds: int = 8,
        max_tokens: int | None = None,
        summary_limit: int = 4000,
        keep_fraction: float = 0.5,
        block_limit: int = 5000,
    ) -> Agent:
        """Create a new agent (its blocks and its row); refused if the name is taken.
        ``root``/``sub`` are other names for ``model``/``sub_model`` (as ``RLM`` and ``ask``
        call them)."""
        model, sub_model = _models(model, root, sub_model, sub)
        if context_budget_tokens < 256:
            raise ValidationError(f"context_budget_tokens must be at least 256, got {context_budget_tokens}")
        if max_tool_rounds < 0:
            raise ValidationError(f"max_tool_rounds must be 0 or more, got {max_tool_rounds}")
        if not 0.0 < keep_fraction < 1.0:
            raise ValidationError(f"keep_fraction must be between 0 and 1, got {keep_fraction}")
        from agents.tools.builtin import TOOLS

        unknown = [t for t in tools if t not in TOOLS]
        if unknown:
            raise ValidationError(f"unknown tool {unknown[0]!r}: choose from {', '.join(TOOLS)}")
        for label, value in (("persona", persona), ("human", human)):
            if len(value) > block_limit:
                raise BlockLimitError(label, block_limit, len(value))
        memory, owns = open_store(store)
        try:
            settings = {
                "tools": list(tools), "context_budget_tokens": context_budget_tokens,
                "max_tool_rounds": max_tool_rounds, "max_tokens": max_tokens,
                "summary_limit": summary_limit, "keep_fraction": keep_fraction,
            }  # fmt: skip
            table = AgentTable(memory.db)
            record = table.create_with_blocks(
                memory, name, system_prompt=system_prompt or DEFAULT_SYSTEM_PROMPT,
                session_id=new_session_id(name), settings=settings, persona=persona,
                human=human, block_limit=block_limit, summary_limit=summary_limit,
            )  # fmt: skip
        except BaseException:
            if owns:
                memory.close()
            raise
        return cls(record, memory, model, sub_model=sub_model, limits=limits,
                   owns_memory=owns, table=table)

    @classmethod
    def open(
        cls,
        name: str,
        store: MemoryManager | str | Path,
        model: LM | None = None,
        *,
        root: LM | None = None,
        sub: LM | None = None,
        sub_model: LM | None = None,
        limits: Limits | None = None,
        new_session: bool = False,
    ) -> Agent:
        """Open an existing agent where it left off (``NotFoundError`` if there is none)."""
        model, sub_model = _models(model, root, sub_model, sub)
        memory, owns = open_store(store)
        try:
            table = AgentTable(memory.db)
            record = table.get(name)
        except BaseException:
            if owns:
                memory.close()
            raise
        agent = cls(record, memory, model, sub_model=sub_model, limits=limits,
                    owns_memory=owns, table=table)
        if new_session:
            agent.new_session()
        return agent

    @classmethod
    def open_or_create(
        cls,
        name: str,
        store: MemoryManager | str | Path,
        model: LM | None = None,
        *,
        root: LM | None = None,
        sub: LM | None = None,
        sub_model: LM | None = None,
        limits: Limits | None = None,
        **create_options: Any,
    ) -> Agent:
        """Get-or-create: the agent ``name`` where it left off, or a new one made with
        ``create_options`` (``create``'s keywords, used only when it is new), so setup code
        can run twice."""
        model, sub_model = _models(model, root, sub_model, sub)
        from memory.errors import NotFoundError

        try:
            return cls.open(name, store, model, sub_model=sub_model, limits=limits)
        except NotFoundError:
            pass
        try:
            return cls.create(name, store, model, sub_model=sub_model, limits=limits, **create_options)
        except ValidationError as exc:
            try:  # created by another process in between: open that one
                return cls.open(name, store, model, sub_model=sub_model, limits=limits)
            except NotFoundError:
                raise exc from None

    @classmethod
    def list_agents(cls, store: MemoryManager) -> list[AgentRecord]:
        """Every agent in ``store``."""
        return AgentTable(store.db).list()

    # --- state ---------------------------------------------------------------------------

    @property
    def session_id(self) -> str:
        return self._record.session_id

    @property
    def system_prompt(self) -> str:
        return self._record.system_prompt

    @property
    def blocks(self) -> Any:
        """The agent's working memory (``WorkingMemory``)."""
        return self.memory.blocks(self.name)

    def new_session(self, session_id: str | None = None) -> str:
        """Start a new session (the buffer carries on; only new messages get the new id)."""
        sid = session_id or new_session_id(self.name)
        self._table.update(self.name, session_id=sid)
        self._record = self._table.get(self.name)
        return sid

    def buffer(self) -> list[Message]:
        """The recall messages currently in the prompt, oldest first."""
        self._record = self._table.get(self.name)
        out: list[Message] = []
        start = self._record.buffer_start_id
        while True:
            page = self.memory.recall.range(start, None, limit=1000, agent_id=self.name)
            out.extend(page)
            if len(page) < 1000:
                return out
            start = page[-1].id + 1

    def context(self) -> tuple[str, list[dict[str, Any]]]:
        """The system text and messages the model would see now (for inspection)."""
        buf = self.buffer()
        return self._system(self._stats.gather(), len(buf)), to_chat_messages(buf)

    def _system(self, stats: MemoryStats, in_prompt: int, written: int = 0) -> str:
        text = memory_stats_text(stats, in_prompt=in_prompt, session_id=self.session_id,
                                 written=written)
        return render_system(self.system_prompt, self.blocks.render(), text)

    def close(self) -> None:
        if self._owns_memory:
            self.memory.close()

    def __enter__(self) -> Agent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- stepping ------------------------------------------------------------------------

    def step(self, user_message: str) -> Reply:
        """Send one user message; returns when the model has answered in text."""
        lease = self._table.acquire(self.name, wait_s=self.lock_timeout_s)
        try:
            gen = self._run(user_message)
            try:
                op = next(gen)
                while True:
                    self._table.renew(lease)
                    try:
                        value = self._do_sync(op)
                    except Exception as exc:  # the step decides: summaries survive LM errors
                        op = gen.throw(exc)
                    else:
                        op = gen.send(value)
            except StopIteration as stop:
                reply: Reply = stop.value
                return reply
        finally:
            self._table.release(lease)

    async def astep(self, user_message: str) -> Reply:
        """``step`` for asyncio: model calls through ``acomplete``, tools in a worker thread."""
        lease = await asyncio.to_thread(self._table.acquire, self.name, wait_s=self.lock_timeout_s)
        try:
            gen = self._run(user_message)
            try:
                op = next(gen)
                while True:
                    try:
                        if isinstance(op, _LMOp):
                            value: Any = await self.model.acomplete(
                                op.messages, system=op.system, max_tokens=op.max_tokens,
                                **tools_kw(op),
                            )
                        else:
                            value = await asyncio.to_thread(self._run_tool, op)
                    except Exception as exc:
                        op = gen.throw(exc)
                    else:
                        op = gen.send(value)
            except StopIteration as stop:
                reply: Reply = stop.value
                return reply
        finally:
            await asyncio.to_thread(self._table.release, lease)

    def _do_sync(self, op: _Op) -> Any:
        if isinstance(op, _LMOp):
            return self.model.complete(op.messages, system=op.system, max_tokens=op.max_tokens,
                                       **tools_kw(op))
        return self._run_tool(op)

    def _run_tool(self, op: _ToolOp) -> tuple[str, bool]:
        from agents.tools.builtin import ToolContext, call_tool

        if op.name not in self.tools:
            return f"error: there is no tool named {op.name!r}; available: {', '.join(self.tools)}", True
        ctx = ToolContext(self.memory, agent_id=self.name, session_id=self.session_id,
                          root=self.model, sub=self.sub_model or self.model, limits=self.limits,
                          actor=self.name)
        try:
            result = call_tool(op.name, ctx, op.arguments)
        except RlmMemoryError as exc:
            return f"error: {exc}", True
        except Exception as exc:  # a tool bug must reach the model as text, not end the step
            return f"error: {type(exc).__name__}: {exc}", True
        text = result if isinstance(result, str) else json.dumps(result, ensure_ascii=False, default=str)
        return text, False

    def _append(self, content: str, role: str, **kw: Any) -> Message:
        return self.memory.recall.append(content, role=role, agent_id=self.name,
                                         session_id=self.session_id, **kw)

    def _run(self, user_message: str) -> Generator[_Op, Any, Reply]:
        if not isinstance(user_message, str) or not user_message.strip():
            raise ValidationError("the user message is empty: give some text")
        from agents.tools.builtin import anthropic_tools

        self._record = self._table.get(self.name)
        reply = Reply(text="")
        reply.messages.append(self._append(user_message, "user"))
        stats = self._stats.gather()
        tools = anthropic_tools(self.tools) if self.tools else None
        rounds = 0
        while True:
            buf = self.buffer()
            system = self._system(stats, len(buf), len(reply.messages) - 1)
            budget = self.context_budget_tokens - count_tokens(system)
            cut = choose_cut(buf, max(budget, 1), self.keep_fraction)
            if cut:
                yield from self._evict(buf[:cut], buf[cut].id, reply)
                buf = buf[cut:]
                system = self._system(stats, len(buf), len(reply.messages) - 1)
            resp: LMResponse = yield _LMOp(to_chat_messages(buf), system, tools, self.max_tokens)
            reply.usage = reply.usage + resp.usage
            reply.cost_usd += resp.cost_usd
            calls = list(getattr(resp, "tool_calls", None) or [])
            if resp.text.strip():
                reply.messages.append(self._append(resp.text, "assistant",
                                                   metadata={"kind": KIND_TEXT}))
            if not calls:
                reply.text = resp.text
                return reply
            over = rounds >= self.max_tool_rounds
            for call in calls:
                args = call.arguments if isinstance(call.arguments, dict) else {}
                reply.messages.append(self._append(
                    tool_call_text(call.name, args), "assistant", tool_name=call.name,
                    tool_args=args, metadata={"kind": KIND_TOOL_CALL, "tool_call_id": call.id},
                ))  # fmt: skip
                if over:
                    result, is_error = f"error: {_ROUND_LIMIT_NOTE}", True
                else:
                    result, is_error = yield _ToolOp(call.id, call.name, args)
                reply.tool_calls.append(ToolCallRecord(call.id, call.name, args, result, is_error))
                reply.messages.append(self._append(
                    result, "tool", tool_name=call.name,
                    metadata={"kind": KIND_TOOL_RESULT, "tool_call_id": call.id, "is_error": is_error},
                ))  # fmt: skip
            if over and rounds > self.max_tool_rounds:
                reply.text = resp.text or "(no answer: the tool round limit was reached)"
                return reply
            rounds += 1

    def _evict(self, evicted: list[Message], new_start: int, reply: Reply) -> Generator[_Op, Any, None]:
        wm = self.blocks
        if "summary" not in {b.label for b in wm.list()}:  # deleted by hand: bring it back
            wm.create("summary", "", limit=self.summary_limit, actor="system",
                      description=SUMMARY_DESCRIPTION)
        block = wm.get("summary")
        previous, limit = str(block.value), int(block.limit)
        messages, system, max_tokens = summary_request(previous, evicted, limit=limit)
        try:
            resp: LMResponse = yield _LMOp(messages, system, None, max_tokens)
            reply.usage = reply.usage + resp.usage
            reply.cost_usd += resp.cost_usd
            new = fit_summary(resp.text, limit) or fallback_summary(previous, evicted, limit)
        except LMError:
            new = fallback_summary(previous, evicted, limit)
        # A summary block made read-only by hand stays as it is; the messages leave anyway
        # (they stay in recall).
        with contextlib.suppress(BlockError):
            wm.rethink("summary", new, actor="summarizer")
        self._table.update(self.name, buffer_start_id=new_start)
        self._record = self._table.get(self.name)
        reply.summarised = True

    def __repr__(self) -> str:
        return f"Agent(name={self.name!r}, session={self.session_id!r}, model={getattr(self.model, 'name', '?')!r})"
