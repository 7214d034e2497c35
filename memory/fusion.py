"""Hybrid ranking: full text (BM25) and vectors fused into one list, shared by every tier.

Rules this module keeps:

* One code path: recall, archival and the manager's cross-tier search all rank with
  ``hybrid_rank``; the retrieval benchmark measures exactly this function through the
  public API.
* Fusion is a normalised, weighted score combination over the *union* of both candidate
  lists, not a rank-only vote: each candidate gets both scores (the cosine similarity of a
  text-only candidate is looked up from its stored vector; a BM25 score missing from the text
  list counts as the list's floor). By default (``norm="zscore"``) the square root of BM25
  and the cosine are standardised over the union and weighted equally, then combined by
  their mean (archival) or soft maximum (recall messages; ``FusionConfig.combine``). Max/min-max
  normalisation, a query-dependent weight (``adaptive``) and reciprocal rank fusion
  (``method="rrf"``) are kept as alternatives; docs/benchmarks.md compares them.
* Items without a vector yet (still in the embedding queue) are ranked by their text score
  alone, so nothing pending is invisible.
* Groups of items (the messages of one conversation session) are ranked by ``pool_groups``:
  a soft maximum (log-sum-exp) of their members' standardised scores, so a session with
  several relevant messages outranks one with a single equally good message, while one very
  good message still dominates many weak ones. Session search fuses each message's two
  scores by ``FusionConfig.for_sessions`` first.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from memory.errors import ValidationError

RECALL_DEPTH = 200
# Recall message search leans towards vectors (by passages) and weighs a relative date in the
# query more than the archival tier does; chosen on held-apart questions (docs/benchmarks.md).
RECALL_TEXT_WEIGHT = 0.4
RECALL_TIME_WEIGHT = 3.0

__all__ = [
    "MODES", "RECALL_DEPTH", "RECALL_TEXT_WEIGHT", "RECALL_TIME_WEIGHT", "Candidates", "FusionConfig", "check_mode", "hybrid_rank", "merge_candidates",
    "pool_groups", "rrf",
]

MODES = ("hybrid", "vector", "text")
# Ids are message or chunk ids within a tier, (tier, id) pairs across tiers.
Ranked = list[tuple[Any, float]]


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValidationError(f"unknown search mode {mode!r}: use hybrid, vector or text")
    return mode


@dataclass(frozen=True)
class FusionConfig:
    """How hybrid search fuses its two lists.

    ``text_weight`` is the base weight of BM25 (vectors get ``1 - text_weight``);
    ``adaptive`` shifts it per query by the two lists' separation; ``depth`` is how many
    candidates each method contributes (more when ``k + offset`` is larger): deeper lists
    give steadier normalisation at a cost linear in the depth (recall search uses
    ``RECALL_DEPTH``, where the retrieval benchmark gained from it; archival keeps the
    default for its latency, see docs/benchmarks.md);
    ``time_weight`` is the bonus (in fused-score units) for matching a relative time
    expression of the query ("two weeks ago"), see ``memory.text.temporal``.
    ``combine`` (z-score fusion): ``mean``, the weighted mean of the two standardised scores,
    rewards what both methods agree on; ``softmax``, their weighted log-sum-exp (temperature
    one standard deviation), also lets an item that one method scores far above the rest
    rank high. Recall message search uses ``softmax`` (its vectors, by passages, are often
    sure of an item BM25 misses) with BM25 at ``RECALL_TEXT_WEIGHT`` and the time bonus at
    ``RECALL_TIME_WEIGHT``, archival chunk search ``mean``. Session search fuses each
    message's scores with ``session_combine`` and ``session_text_weight`` before pooling
    them per session (``pool_groups`` at ``session_temperature``). The recall settings were
    chosen on held-apart questions, see docs/benchmarks.md.
    """

    method: Literal["convex", "rrf"] = "convex"
    norm: Literal["max", "zscore"] = "zscore"
    combine: Literal["mean", "softmax"] = "mean"
    text_weight: float = 0.5
    adaptive: bool = False
    rrf_k: int = 60
    depth: int = 100
    time_weight: float = 2.0
    session_combine: Literal["mean", "softmax"] = "softmax"
    session_text_weight: float = 0.35
    session_temperature: float = 1.0

    def for_sessions(self) -> FusionConfig:
        """The fusion of one message's scores when messages are pooled into sessions."""
        return replace(self, combine=self.session_combine, text_weight=self.session_text_weight)

    def candidates(self, k: int, offset: int) -> int:
        # A fixed depth (not a multiple of k) makes the ranking independent of k: the top 10
        # of a k=10 search are the top 10 of a k=200 search.
        return max(self.depth, k + offset)


def rrf(lists: Sequence[Ranked], *, k: int = 60, weights: Sequence[float] | None = None) -> Ranked:
    """Reciprocal rank fusion of ranked ``(id, score)`` lists."""
    w = list(weights) if weights is not None else [1.0] * len(lists)
    acc: dict[Any, float] = {}
    for lst, wt in zip(lists, w, strict=True):
        for rank, (i, _) in enumerate(lst):
            acc[i] = acc.get(i, 0.0) + wt / (k + rank + 1)
    return sorted(acc.items(), key=lambda x: (-x[1], x[0]))


def _separation(scores: Sequence[float]) -> float:
    """How clearly the top scores stand out of the list, in its own standard deviations."""
    if len(scores) < 3:
        return 0.0
    mean = sum(scores) / len(scores)
    sd = math.sqrt(sum((s - mean) ** 2 for s in scores) / len(scores))
    if sd <= 1e-9:
        return 0.0
    top = sum(scores[:3]) / 3
    return (top - mean) / sd


def pool_groups(
    ranked: Ranked, group_of: Callable[[Any], Any], *, temperature: float = 1.0
) -> list[tuple[Any, float, list[tuple[Any, float]]]]:
    """``(group, pooled score, members best first)``, best group first.

    Scores are standardised over ``ranked`` (z-scores: text, vector and fused scores alike),
    then each group's score is ``t * log(sum(exp(z / t)))`` over its members: its best
    member's score, raised by each further member in proportion to how close that member
    comes to the best. ``temperature`` ``t`` in standard deviations; as ``t`` goes to 0 this is
    the best member's score alone.
    """
    if temperature <= 0:
        raise ValidationError("temperature must be > 0")
    mean, sd = _zscores([s for _, s in ranked])
    groups: dict[Any, list[tuple[Any, float]]] = {}
    for i, s in ranked:
        groups.setdefault(group_of(i), []).append((i, s))
    out = []
    for g, members in groups.items():
        zs = [(s - mean) / sd / temperature for _, s in members]
        top = max(zs)
        pooled = temperature * (top + math.log(sum(math.exp(z - top) for z in zs)))
        out.append((g, pooled, members))
    out.sort(key=lambda x: -x[1])
    return out


def _zscores(scores: Sequence[float]) -> tuple[float, float]:
    """Mean and standard deviation (never zero) of a score list."""
    if not scores:
        return 0.0, 1.0
    mean = sum(scores) / len(scores)
    sd = math.sqrt(sum((x - mean) ** 2 for x in scores) / len(scores))
    return mean, sd if sd > 1e-9 else 1.0


def hybrid_rank(
    *,
    k: int,
    offset: int,
    text_search: Callable[[int], Ranked],
    vector_search: Callable[[int], Ranked] | None,
    similarities: Callable[[list[Any]], dict[Any, float]] | None = None,
    config: FusionConfig | None = None,
) -> Ranked:
    """Fused ``(id, score)`` for ranks ``offset .. offset + k``, best first.

    ``text_search(n)`` and ``vector_search(n)`` return up to ``n`` candidates, best first
    (BM25 higher-is-better; cosine similarity). ``similarities(ids)`` gives the cosine of
    stored vectors for text candidates the vector list missed. Without a vector search
    (no embedder, or vectors unavailable) the text ranking is returned.
    """
    cfg = config or FusionConfig()
    n = cfg.candidates(k, offset)
    text_list = text_search(n)
    if vector_search is None:
        return text_list[offset : offset + k]
    vec_list = vector_search(n)
    if cfg.method == "rrf":
        return rrf([text_list, vec_list], k=cfg.rrf_k)[offset : offset + k]
    cos = dict(vec_list)
    missing = [i for i, _ in text_list if i not in cos]
    if missing and similarities is not None:
        cos.update(similarities(missing))
    bm25 = dict(text_list)
    union = list(dict.fromkeys([i for i, _ in text_list] + [i for i, _ in vec_list]))
    if not union:
        return []
    # A text list cut at n leaves unseen items between 0 and its last score: take the last.
    t_floor = text_list[-1][1] if len(text_list) >= n else 0.0
    t_max = max((s for _, s in text_list), default=0.0)
    known = [cos[i] for i in union if i in cos]
    c_max = max(known, default=1.0)
    c_min = min(known, default=0.0)
    w = cfg.text_weight
    if cfg.adaptive and text_list and vec_list:
        st = _separation([s for _, s in text_list])
        sv = _separation([s for _, s in vec_list])
        if st + sv > 0:
            # Lean (at most +-0.2) towards the list whose top stands out more.
            w = min(0.8, max(0.2, w + 0.4 * (st - sv) / (st + sv) * 0.5))
    fused: Ranked = []
    if cfg.norm == "zscore":
        # BM25 is a sum of per-term weights with a long right tail; its square root is
        # closer to symmetric, so its z-scores weigh comparably with the cosine's.
        # Both distributions are taken over the same union of candidates, so a candidate
        # that one method did not find at all counts as that method's floor.
        t_all = {i: math.sqrt(max(bm25.get(i, t_floor), 0.0)) for i in union}
        tz = _zscores(list(t_all.values()))
        vz = _zscores(known)
        for i in union:
            tn = (t_all[i] - tz[0]) / tz[1]
            # An item still waiting for its vector is ranked by its text score alone.
            if i not in cos:
                fused.append((i, tn))
                continue
            vn = (cos[i] - vz[0]) / vz[1]
            if cfg.combine == "softmax":
                top = max(tn, vn)
                fused.append((i, top + math.log(w * math.exp(tn - top) + (1 - w) * math.exp(vn - top))))
            else:
                fused.append((i, w * tn + (1 - w) * vn))
    else:
        for i in union:
            t = bm25.get(i, t_floor)
            tn = t / t_max if t_max > 0 else 0.0
            if i in cos:
                cn = (cos[i] - c_min) / (c_max - c_min) if c_max > c_min else 1.0
                score = w * tn + (1 - w) * cn
            else:
                score = tn  # not embedded yet: its text score alone
            fused.append((i, score))
    fused.sort(key=lambda x: (-x[1], x[0]))
    return fused[offset : offset + k]


@dataclass(frozen=True)
class Candidates:
    """The two candidate generators of one search (one tier, or several merged)."""

    text_search: Callable[[int], Ranked]
    vector_search: Callable[[int], Ranked] | None = None
    similarities: Callable[[list[Any]], dict[Any, float]] | None = None

    def rank(self, mode: str, *, k: int, offset: int, config: FusionConfig) -> Ranked:
        """Ranks ``offset .. offset + k`` in ``mode`` (text, vector or hybrid)."""
        if mode == "text":
            return self.text_search(k + offset)[offset:]
        if mode == "vector":
            return self.vector_search(k + offset)[offset:] if self.vector_search is not None else []
        return hybrid_rank(
            k=k, offset=offset, text_search=self.text_search, vector_search=self.vector_search,
            similarities=self.similarities, config=config,
        )


def merge_candidates(parts: dict[str, Candidates]) -> Candidates:
    """One candidate set over several tiers, ids becoming ``(tier, id)``.

    BM25 scores of different tiers come from different indexes but the same formula, and
    cosine similarities share one model, so the merged lists are ranked by raw score and
    normalised together by ``hybrid_rank``: one ranking, not a merge of per-tier rankings.
    """

    def merged(fns: dict[str, Callable[[int], Ranked]]) -> Callable[[int], Ranked]:
        def run(n: int) -> Ranked:
            out = [((tier, i), sc) for tier, fn in fns.items() for i, sc in fn(n)]
            out.sort(key=lambda x: (-x[1], x[0]))
            return out[:n]

        return run

    vec = {t: c.vector_search for t, c in parts.items() if c.vector_search is not None}
    sims = {t: c.similarities for t, c in parts.items() if c.similarities is not None}

    def similarities(keys: list[Any]) -> dict[Any, float]:
        out: dict[Any, float] = {}
        for tier, fn in sims.items():
            got = fn([i for t, i in keys if t == tier])
            out.update(((tier, i), v) for i, v in got.items())
        return out

    return Candidates(
        merged({t: c.text_search for t, c in parts.items()}),
        merged(vec) if vec else None,
        similarities if sims else None,
    )
