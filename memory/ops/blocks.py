"""The working-memory block operations: list, show, set, append, replace, insert, rethink,
edit (settings), delete, history.

Rules this module keeps:

* Blocks belong to ``ctx.agent_id`` and every edit is recorded with ``ctx.actor``.
* A write to a block that does not exist yet creates it (``set``, ``append``, ``insert``,
  ``rethink``; the default limit unless one is given), so a fresh store needs no setup;
  ``replace``, ``edit`` and ``delete`` need the block to exist.
* ``set`` with settings on an existing block changes them too (``update_meta``), in the same
  call: a given ``limit`` is never silently ignored, and a value over the new limit (or a
  read-only block left locked) is refused before anything is written.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from memory.blocks import Block, BlockEdit
from memory.errors import BlockLimitError, ReadOnlyBlockError
from memory.ops.schema import BlockLimit, HistoryLimit, Line
from memory.ops.values import DEFAULTS as D
from memory.ops.values import OpContext

__all__ = [
    "blocks_append",
    "blocks_delete",
    "blocks_edit",
    "blocks_history",
    "blocks_insert",
    "blocks_list",
    "blocks_replace",
    "blocks_rethink",
    "blocks_set",
    "blocks_show",
]


def _wm(ctx: OpContext) -> Any:
    return ctx.memory.blocks(ctx.agent_id)


def _write(ctx: OpContext, label: str, first: str, edit: Callable[[Any], Block]) -> Block:
    """``edit`` the block, or create it holding ``first`` when it does not exist yet."""
    wm = _wm(ctx)
    block, created = wm.get_or_create(label, first, actor=ctx.actor)
    return block if created else edit(wm)


def blocks_list(ctx: OpContext) -> list[Block]:
    """List the working-memory blocks (always visible in context), in creation order."""
    return list(_wm(ctx).list())


def blocks_show(ctx: OpContext, label: str) -> Block:
    """Read one working-memory block.

    Args:
        label: The block label, e.g. "human" or "persona".
    """
    return _wm(ctx).get(label)  # type: ignore[no-any-return]


def blocks_set(
    ctx: OpContext,
    label: str,
    value: str,
    limit: BlockLimit | None = None,
    description: str | None = None,
    read_only: bool | None = None,
) -> Block:
    """Set the whole value of a working-memory block, creating it if new.

    Args:
        label: The block label.
        value: The whole new value.
        limit: Character limit (a new block gets the store's default).
        description: What the block is for.
        read_only: Whether models may edit it.
    """
    wm = _wm(ctx)
    settings = {k: v for k, v in (("limit", limit), ("description", description),
                                  ("read_only", read_only)) if v is not None}  # fmt: skip
    block, created = wm.get_or_create(label, value, actor=ctx.actor, **settings)
    if created:
        return block  # type: ignore[no-any-return]
    # The value and the settings go in together or not at all: what would fail is refused
    # before the first of the writes below.
    if len(value) > (limit if limit is not None else block.limit):
        raise BlockLimitError(label, limit if limit is not None else block.limit, len(value))
    if block.read_only and read_only is not False:
        raise ReadOnlyBlockError(label)
    if settings:
        # A raised limit must hold before a longer value is written; a lowered one after.
        if limit is not None and limit >= len(value):
            wm.update_meta(label, actor=ctx.actor, **settings)
            settings = {}
        elif read_only is False:
            wm.update_meta(label, read_only=False, actor=ctx.actor)
            settings.pop("read_only")
    wm.set(label, value, actor=ctx.actor)
    if settings:
        wm.update_meta(label, actor=ctx.actor, **settings)
    return wm.get(label)  # type: ignore[no-any-return]


def blocks_append(ctx: OpContext, label: str, text: str) -> Block:
    """Append text to a working-memory block, on a new line (the block is created if new).

    Args:
        label: The block to edit, e.g. "human" or "persona".
        text: The text to add.
    """
    return _write(ctx, label, text, lambda wm: wm.append(label, text, actor=ctx.actor))


def blocks_replace(ctx: OpContext, label: str, old: str, new: str) -> Block:
    """Replace exact text in a working-memory block; use an empty new text to delete.

    Args:
        label: The block to edit, e.g. "human" or "persona".
        old: The exact text currently in the block.
        new: The text to put in its place.
    """
    return _wm(ctx).replace(label, old, new, actor=ctx.actor)  # type: ignore[no-any-return]


def blocks_insert(ctx: OpContext, label: str, text: str, line: Line = -1) -> Block:
    """Insert text into a working-memory block at a given line (-1 appends at the end).

    Args:
        label: The block to edit, e.g. "human" or "persona".
        text: The text to insert.
        line: The 0-based line number to insert before; -1 for the end.
    """
    return _write(ctx, label, text, lambda wm: wm.insert(label, text, line=line, actor=ctx.actor))


def blocks_rethink(ctx: OpContext, label: str, new_value: str) -> Block:
    """Rewrite a working-memory block completely, e.g. to reorganise or condense it.

    Args:
        label: The block to rewrite, e.g. "human" or "persona".
        new_value: The complete new content of the block.
    """
    return _write(ctx, label, new_value, lambda wm: wm.rethink(label, new_value, actor=ctx.actor))


def blocks_edit(
    ctx: OpContext,
    label: str,
    limit: BlockLimit | None = None,
    description: str | None = None,
    read_only: bool | None = None,
) -> Block:
    """Change a working-memory block's settings: its limit, description or read-only flag.

    Args:
        label: The block label.
        limit: The new character limit (not below the current length).
        description: The new description.
        read_only: Whether models may edit it (false unlocks a read-only block).
    """
    return _wm(ctx).update_meta(  # type: ignore[no-any-return]
        label, limit=limit, description=description, read_only=read_only, actor=ctx.actor
    )


def blocks_delete(ctx: OpContext, label: str) -> dict[str, Any]:
    """Delete a working-memory block; its history (with the final value) is kept.

    Args:
        label: The block label.
    """
    _wm(ctx).delete(label, actor=ctx.actor)
    return {"label": label, "deleted": True}


def blocks_history(
    ctx: OpContext, label: str | None = None, limit: HistoryLimit = D.history
) -> list[BlockEdit]:
    """The edits of one block (or of all blocks), newest first, with who made them and when.

    Args:
        label: Only this block's edits.
        limit: The most edits to return.
    """
    return list(_wm(ctx).history(label, limit=limit))
