"""The SQL copies of the vectors (table ``rlmem_vectors``, ``memory.vectors.schema``).

Rules this module keeps:

* Each vector is also kept in SQL, with the name of the model that made it, written in the
  transaction that dequeues its item, and only if the item is still queued at the same
  sequence number (neither deleted nor changed since it was read). A changed item's copy is
  dropped in the transaction that changes it. The copies serve two things: hybrid search
  reads the similarity of a text-only candidate from them (one indexed SQL read instead of a
  Chroma ``get``), and a rebuilt collection is refilled from them without embedding again.
  Copies made by another model are ignored, so after a model change ``reindex`` embeds
  everything; ``reindex(reembed=True)`` always does.
* A copy is stored as float16 (column ``dtype``): half the bytes of float32, and a cosine
  read from it is within about 1e-3 of the float32 one (docs/scaling.md; tested on the real
  model). Rows written as float32 before the column existed keep ``dtype = 'float32'`` and
  are read as they are; every read returns float32. A copy that cannot be read as numbers
  is left out, never raised.
* An unfiltered vector query on a tier of at most ``exact_max`` items whose every
  not-queued item has a copy is answered from the copies, exactly (``nearest``): a fresh
  process then never imports chromadb to search. A ``where`` filter is applied in SQL when
  ``where_sql`` can write it over the tier's columns; otherwise Chroma answers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import text
from sqlalchemy.engine import Connection

from memory.db import id_lists
from memory.vectors.schema import QUEUE_TABLE, VECTORS_TABLE

if TYPE_CHECKING:
    import numpy as np

__all__ = ["COPY_DTYPE", "decode", "drop", "nearest", "read", "where_sql", "write"]

COPY_DTYPE = "float16"  # what new copies are written as
_DTYPES = ("float16", "float32")  # the element types a stored copy may have


def decode(blob: Any, dtype: str | None, dim: int) -> np.ndarray | None:
    """A stored copy as a float32 array (passages end to end); None when it cannot be one."""
    import numpy as np
    kind = dtype or "float32"
    data = bytes(blob)
    if kind not in _DTYPES or not data or len(data) % (np.dtype(kind).itemsize * dim):
        return None
    return np.frombuffer(data, dtype=kind).astype(np.float32)


def read(conn: Connection, tier: str, model: str, ids: Sequence[int]) -> dict[int, Any]:
    """``id -> float32 vector`` (all its passages' vectors end to end, for a tier that
    splits) of the copies made by ``model`` among ``ids``; a copy that cannot be read as
    numbers is left out."""
    out: dict[int, Any] = {}
    for marks in id_lists(ids):
        rows = conn.execute(
            text(
                f"SELECT item_id, vec, dtype FROM {VECTORS_TABLE}"
                f" WHERE tier = :t AND model = :m AND item_id IN ({marks})"
            ),
            {"t": tier, "m": model},
        )
        for i, v, dtype in rows:
            vec = decode(v, dtype, 1)  # whole vectors: checked where the dimension is known
            if vec is not None:
                out[int(i)] = vec
    return out


def drop(conn: Connection, tier: str, ids: Sequence[int]) -> None:
    """Delete the copies of ``ids`` in the caller's transaction."""
    conn.execute(
        text(f"DELETE FROM {VECTORS_TABLE} WHERE tier = :t AND item_id = :i"),
        [{"t": tier, "i": int(i)} for i in ids],
    )


def write(conn: Connection, dialect: str, tier: str, model: str, fresh: Mapping[int, Any],
          seqs: Mapping[int, int]) -> None:
    """Store ``fresh`` (``id -> vector``, an item's passages stacked) as copies made by
    ``model``, each only if its item is still queued at the sequence number in ``seqs``: a
    copy is never kept for an item deleted or changed since it was read."""
    import numpy as np
    blob = "CAST(:v AS BYTEA)" if dialect == "postgresql" else ":v"
    conn.execute(
        text(
            f"INSERT INTO {VECTORS_TABLE} (tier, item_id, model, vec, dtype)"
            f" SELECT CAST(:t AS VARCHAR(32)), CAST(:i AS BIGINT),"
            f" CAST(:m AS VARCHAR(300)), {blob}, CAST(:d AS VARCHAR(8)) WHERE EXISTS (SELECT 1 FROM"
            f" {QUEUE_TABLE} q WHERE q.tier = :t AND q.item_id = :i AND q.seq = :s)"
            " ON CONFLICT (tier, item_id) DO UPDATE SET model = excluded.model,"
            " vec = excluded.vec, dtype = excluded.dtype"
        ),
        [
            {"t": tier, "i": i, "m": model, "v": np.asarray(v, dtype=COPY_DTYPE).tobytes(),
             "d": COPY_DTYPE, "s": seqs[i]}
            for i, v in fresh.items()
        ],
    )


def nearest(
    conn: Connection, tier: str, *, table: str, cond: str, model: str, vector: Sequence[float], k: int,
    cap: int, filt: tuple[str, dict[str, Any]] = ("", {}),
) -> list[tuple[int, float]] | None:
    """The exact ``k`` nearest items of ``tier`` (rows of ``table`` ``WHERE 1 = 1{cond}``,
    narrowed by the SQL filter ``filt``) from the copies ``model`` made, best first (an item
    with passages: its best passage); None when the copies cannot answer alone: the tier has
    more than ``cap`` items, or an item that is not queued has no copy (vectors written
    before copies were kept: Chroma has them)."""
    import numpy as np
    q = np.asarray(vector, dtype=np.float32)
    n = int(conn.execute(text(f"SELECT COUNT(*) FROM {table} WHERE 1 = 1{cond}")).scalar() or 0)
    if cap <= 0 or n > cap:
        return None
    uncovered = conn.execute(
        text(
            f"SELECT COUNT(*) FROM {table} WHERE 1 = 1{cond}"
            f" AND NOT EXISTS (SELECT 1 FROM {VECTORS_TABLE} v WHERE v.tier = :t"
            f" AND v.model = :m AND v.item_id = {table}.id)"
            f" AND NOT EXISTS (SELECT 1 FROM {QUEUE_TABLE} q WHERE q.tier = :t"
            f" AND q.item_id = {table}.id)"
        ),
        {"t": tier, "m": model},
    ).scalar()
    if uncovered:
        return None
    rows = conn.execute(
        text(f"SELECT v.item_id, v.vec, v.dtype FROM {VECTORS_TABLE} v"
             + (f" JOIN {table} ON {table}.id = v.item_id" if filt[0] else "")
             + f" WHERE v.tier = :t AND v.model = :m{filt[0]}"),
        {"t": tier, "m": model, **filt[1]},
    ).all()
    ids, parts = [], []
    for r in rows:
        vec = decode(r[1], r[2], q.size)
        if vec is not None:
            ids.append(int(r[0]))
            parts.append(vec)
    if not ids or k <= 0:
        return []
    mat = np.concatenate(parts).reshape(-1, q.size)
    sims = mat @ q
    if len(mat) != len(ids):  # several passages per item: an item scores by its best
        starts = np.cumsum([0] + [len(v) // q.size for v in parts[:-1]])
        sims = np.maximum.reduceat(sims, starts)
    top = np.argsort(-sims, kind="stable")[:k] if k < len(ids) else np.argsort(-sims, kind="stable")
    return [(ids[i], float(sims[i])) for i in top]


_OPS = {"$eq": "=", "$ne": "<>", "$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}


def where_sql(where: Mapping[str, Any], columns: Mapping[str, str]) -> tuple[str, dict[str, Any]] | None:
    """A Chroma ``where`` (keys, ``$and``/``$or``, comparison operators) as a SQL condition over
    ``columns``, with its parameters; None when it uses anything else (Chroma answers it)."""
    params: dict[str, Any] = {}

    def cond(key: str, value: Any) -> str | None:
        if key in ("$and", "$or"):
            if not isinstance(value, list) or not value:
                return None
            parts = [clause(v) for v in value]
            if any(p is None for p in parts):
                return None
            return "(" + (" AND " if key == "$and" else " OR ").join(p for p in parts if p) + ")"
        col = columns.get(key)
        if col is None:
            return None
        if isinstance(value, Mapping):
            if len(value) != 1:
                return None
            op, value = next(iter(value.items()))
        else:
            op = "$eq"
        if op not in _OPS or not isinstance(value, str | int | float | bool):
            return None
        name = f"w{len(params)}"
        params[name] = value
        return f"{col} {_OPS[op]} :{name}"

    def clause(w: Any) -> str | None:
        if not isinstance(w, Mapping) or not w:
            return None
        parts = [cond(str(k), v) for k, v in w.items()]
        if any(p is None for p in parts):
            return None
        return parts[0] if len(parts) == 1 else "(" + " AND ".join(p for p in parts if p) + ")"

    sql = clause(where)
    return None if sql is None else (sql, params)
