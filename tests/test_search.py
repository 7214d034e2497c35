"""Hybrid ranking: fusion rules on hand-made lists, and retrieval quality with the real model."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_embeddings import minilm  # noqa: F401 - the session-scoped real model

from memory.errors import ValidationError
from memory.fusion import FusionConfig, check_mode, hybrid_rank, rrf
from memory.manager import MemoryManager
from memory.vectors.embeddings import SentenceTransformerEmbedder


def test_rrf() -> None:
    fused = rrf([[(1, 9.0), (2, 5.0)], [(2, 0.9), (3, 0.8)]], k=60)
    assert [i for i, _ in fused] == [2, 1, 3]


def _rank(text: list[tuple[int, float]], cos: dict[int, float], k: int = 10, **cfg: object) -> list[int]:
    vec = sorted(cos.items(), key=lambda x: -x[1])
    out = hybrid_rank(
        k=k, offset=0, text_search=lambda n: text[:n], vector_search=lambda n: vec[:n],
        similarities=lambda ids: {i: cos[i] for i in ids if i in cos}, config=FusionConfig(**cfg),  # type: ignore[arg-type]
    )
    return [i for i, _ in out]


def test_hybrid_uses_both_scores_of_every_candidate() -> None:
    # 1 is best by text, 2 best by vector; 3 is second on both and wins the fusion.
    text = [(1, 10.0), (3, 8.0), (2, 1.0), (4, 0.5)]
    cos = {1: 0.1, 2: 0.9, 3: 0.85, 4: 0.05, 5: 0.0}
    assert _rank(text, cos)[0] == 3
    for norm in ("zscore", "max"):
        ranked = _rank(text, cos, norm=norm)
        assert set(ranked) == {1, 2, 3, 4, 5} and ranked[0] == 3
    assert set(_rank(text, cos, method="rrf")) == {1, 2, 3, 4, 5}



def test_softmax_combine_lets_one_method_carry_an_item() -> None:
    # 1 stands far above the rest by vector and is last by text; 2 is good on both.
    text = [(2, 9.0)] + [(i, 4.0 - i / 10) for i in range(10, 30)] + [(1, 0.5)]
    cos = {1: 0.95, 2: 0.6} | {i: 0.35 + i / 1000 for i in range(10, 30)}
    assert _rank(text, cos)[0] == 2  # the mean rewards agreement
    assert _rank(text, cos, combine="softmax")[0] == 1  # the soft maximum, a standout
    # Both agree when one item is best on both.
    text = [(1, 9.5), *text[:-1]]
    assert _rank(text, cos)[0] == _rank(text, cos, combine="softmax")[0] == 1

def test_recall_and_archival_fusion_defaults_and_the_session_rule(tmp_path: Path) -> None:
    from memory.vectors.embeddings import HashEmbedder

    cfg = FusionConfig(text_weight=0.6, depth=50)
    assert cfg.for_sessions() == FusionConfig(text_weight=0.35, depth=50, combine="softmax")
    with MemoryManager.open(tmp_path / "m", embedder=HashEmbedder(64), background_embed=False) as mem:
        assert mem.recall_search.fusion.combine == "softmax"  # messages: the soft maximum
        assert mem.archival.fusion.combine == "mean"
        mem.recall.append_many([{"content": f"note {i} about gardens", "session_id": f"s{i % 3}"} for i in range(9)])
        mem.embed_pending()
        seen: list[FusionConfig] = []
        ranked = mem.recall_search._ranked

        def spy(*a: object) -> object:
            seen.append(a[-1])  # type: ignore[arg-type]
            return ranked(*a)  # type: ignore[arg-type]

        mem.recall_search._ranked = spy  # type: ignore[method-assign]
        assert len(mem.search_sessions("gardens", k=3)) == 3
        assert seen == [mem.recall_search.fusion.for_sessions()]


def test_pending_items_rank_by_text_and_k_does_not_change_the_order() -> None:
    text = [(7, 5.0), (1, 4.0), (2, 3.0)]
    cos = {1: 0.9, 2: 0.2, 3: 0.5}  # 7 has no vector yet
    ranked = _rank(text, cos)
    assert 7 in ranked
    assert _rank(text, cos, k=2) == ranked[:2]
    assert _rank([], {}) == []
    only_text = hybrid_rank(k=2, offset=1, text_search=lambda n: text[:n], vector_search=None)
    assert [i for i, _ in only_text] == [1, 2]


def test_check_mode() -> None:
    assert check_mode("hybrid") == "hybrid"
    with pytest.raises(ValidationError):
        check_mode("semantic")


CONVERSATION = [
    ("s1", "I just adopted a golden retriever puppy named Biscuit."),
    ("s1", "Can you recommend a good brand of dog food for puppies?"),
    ("s2", "My flight to Tokyo leaves on March 3rd from gate B12."),
    ("s2", "I need to renew my passport before the trip."),
    ("s3", "I've been learning to play the cello for six months."),
    ("s3", "My teacher says my bowing technique is improving."),
    ("s4", "The quarterly report for ACME-7731 is due next Friday."),
    ("s4", "I prefer spreadsheets over slides for financial summaries."),
    ("s5", "I started running three times a week to train for a 10k."),
    ("s5", "My knees hurt after long runs on concrete."),
]
QUERIES = [
    ("what is the name of my new dog?", 0),  # paraphrase: vectors find it
    ("ACME-7731", 6),  # a rare identifier: full text finds it
    ("which musical instrument am I studying?", 4),
    ("when does my trip to Japan depart?", 2),
    ("exercise routine and joint pain", 9),
]


def test_retrieval_quality_with_minilm(tmp_path: Path, minilm: SentenceTransformerEmbedder) -> None:  # noqa: F811
    with MemoryManager.open(tmp_path / "m", embedder=minilm, background_embed=False) as mem:
        msgs = mem.recall.append_many([{"content": c, "session_id": s} for s, c in CONVERSATION])
        mem.archival.insert_many(["Golden retrievers need daily exercise.", "Cello strings: A, D, G, C."])
        mem.embed_pending()
        found = {mode: 0 for mode in ("text", "vector", "hybrid")}
        for q, want in QUERIES:
            for mode in found:
                found[mode] += msgs[want].id in [h.id for h in mem.search_recall(q, k=3, mode=mode)]
        # Full text misses the paraphrases; the fusion keeps what vectors find.
        assert found["hybrid"] == len(QUERIES) > found["text"]
        cross = mem.search("how many strings does a cello have", k=3)
        assert {h.tier for h in cross[:2]} == {"recall", "archival"}
        assert any(h.tier == "archival" and "Cello" in h.text for h in cross[:2])


def test_relative_time_expressions() -> None:
    from datetime import UTC, datetime, timedelta

    from memory.text.temporal import TimeSpan, parse_relative, time_prior

    now = datetime(2024, 6, 15, 12, tzinfo=UTC)  # a Saturday
    assert parse_relative("what did I buy 10 days ago?", now) == (now - timedelta(days=10), timedelta(days=3))
    target = parse_relative("the event two weeks ago", now)
    assert target is not None and target[0] == now - timedelta(days=14)
    assert parse_relative("a couple of days ago I cooked", now) == (now - timedelta(days=2), timedelta(days=2))
    assert parse_relative("Yesterday", now) == (now - timedelta(days=1), timedelta(days=2))
    last_monday = parse_relative("what happened last Monday", now)
    assert last_monday is not None and last_monday[0].weekday() == 0 and last_monday[0] < now
    assert parse_relative("the agenda for days ago.", now) is None
    assert parse_relative("ago", now) is None
    tgt = (now, timedelta(days=2))
    assert time_prior(now, tgt) == 1.0 and time_prior(now - timedelta(days=1), tgt) == 0.5
    assert time_prior(now - timedelta(days=5), tgt) == 0.0
    # The weekend before now (today is a Saturday: the one a week back), and stretches ending now.
    weekend = parse_relative("which bike did I fix the past weekend?", now)
    assert weekend is not None and weekend[0] == datetime(2024, 6, 9, tzinfo=UTC)  # Sat 8 - Sun 9
    assert parse_relative("what did I do last weekend", now) == weekend
    month = parse_relative("How many dinner parties have I attended in the past month?", now)
    assert isinstance(month, TimeSpan) and month.end == now and (now - month.start).days == 30
    weeks = parse_relative("how often did I bake over the last two weeks", now)
    assert weeks == TimeSpan(now - timedelta(days=14), now, timedelta(days=3.5))
    this_year = parse_relative("How many weddings have I attended this year?", now)
    assert this_year is not None and this_year[0] == datetime(2024, 1, 1, tzinfo=UTC)
    assert parse_relative("in the past, I liked jazz", now) is None
    assert time_prior(now - timedelta(days=10), weeks) == 1.0  # anywhere inside: full bonus
    assert time_prior(now - timedelta(days=14 + 1.75), weeks) == 0.5
    assert time_prior(now - timedelta(days=20), weeks) == 0.0


def test_hybrid_search_favours_the_time_the_query_names(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from memory.vectors.embeddings import HashEmbedder

    now = datetime(2024, 6, 15, tzinfo=UTC)
    with MemoryManager.open(tmp_path / "m", embedder=HashEmbedder(64), background_embed=False) as mem:
        mem.recall.append_many(
            [
                {"content": "I cooked lasagna for my friend", "created_at": now - timedelta(days=40)},
                {"content": "I cooked curry for my friend", "created_at": now - timedelta(days=3)},
                {"content": "I cooked soup for my friend", "created_at": now - timedelta(days=90)},
            ]
        )
        mem.embed_pending()
        q = "what did I cook for my friend three days ago"
        assert mem.search_recall(q, k=1, now=now)[0].text == "I cooked curry for my friend"
        q = "what did I cook for my friend about 40 days ago"
        assert mem.search_recall(q, k=1, now=now)[0].text == "I cooked lasagna for my friend"
        q = "what have I cooked for my friend in the past week?"
        assert mem.search_recall(q, k=1, now=now)[0].text == "I cooked curry for my friend"
        # Without a time expression nothing changes; text mode ignores time.
        assert len(mem.search_recall("cooked friend", k=3, now=now)) == 3


def test_pool_groups_rewards_repeated_evidence_but_not_noise() -> None:
    from memory.fusion import pool_groups

    # Session "a": one message at the top; "b": two messages each a little below it.
    ranked = [(1, 10.0), (2, 9.5), (3, 9.4), (4, 1.0), (5, 0.9), (6, 0.8), (7, 0.7)]
    group = {1: "a", 2: "b", 3: "b", 4: "c", 5: "c", 6: "c", 7: "c"}
    pooled = pool_groups(ranked, group.__getitem__)
    assert [g for g, _, _ in pooled] == ["b", "a", "c"]
    # Four weak messages do not outrank one strong one.
    assert pooled[-1][0] == "c" and pooled[-1][1] < pooled[1][1]
    # Members come back best first; a tiny temperature is the best member alone.
    assert [i for i, _ in pooled[0][2]] == [2, 3]
    sharp = pool_groups(ranked, group.__getitem__, temperature=1e-3)
    assert [g for g, _, _ in sharp] == ["a", "b", "c"]
    with pytest.raises(ValidationError):
        pool_groups(ranked, group.__getitem__, temperature=0)
    assert pool_groups([], group.__getitem__) == []


def test_search_sessions_pools_messages_per_session(tmp_path: Path) -> None:
    from memory.vectors.embeddings import HashEmbedder

    with MemoryManager.open(tmp_path / "m", embedder=HashEmbedder(64), background_embed=False) as mem:
        mem.recall.append_many(
            [
                {"content": "we planned the garden: tomatoes and basil", "session_id": "s1"},
                {"content": "the weather was grey all week", "session_id": "s1"},
                {"content": "garden beds need compost before the tomatoes", "session_id": "s2"},
                {"content": "more garden ideas: tomatoes against the south wall", "session_id": "s2"},
                {"content": "tomatoes ripen late in a cold garden", "session_id": "s2"},
                {"content": "a trip to the coast", "session_id": "s3"},
                {"content": "garden tomatoes", "session_id": "s1", "agent_id": "other"},
            ]
        )
        mem.embed_pending()
        for mode in ("hybrid", "text", "vector"):
            sessions = mem.search_sessions("garden tomatoes", k=5, mode=mode, per_session=2)
            assert sessions, mode
            assert len({(s.agent_id, s.session_id) for s in sessions}) == len(sessions)
            assert all(1 <= len(s.hits) <= 2 for s in sessions)
            assert all(s.hits[0].score >= s.hits[-1].score for s in sessions)
        text = mem.search_sessions("garden tomatoes", k=5, mode="text", agent_id="default")
        # s2 mentions the subject three times, s1 once (its one message ranks well too).
        assert [s.session_id for s in text] == ["s2", "s1"]
        assert [s.score for s in text] == sorted((s.score for s in text), reverse=True)
        only = mem.search_sessions("garden tomatoes", k=5, mode="text", agent_id="other")
        assert [(s.agent_id, s.session_id) for s in only] == [("other", "s1")]
        d = text[0].to_dict()
        assert d["session_id"] == "s2" and d["hits"][0]["session_id"] == "s2"
        for bad in ({"k": 0}, {"per_session": 0}, {"mode": "fuzzy"}):
            with pytest.raises(ValidationError):
                mem.search_sessions("garden", **bad)  # type: ignore[arg-type]
        assert mem.recall.count() == 7


def test_snippet_marks_content_words_and_shows_the_densest_part() -> None:
    from memory.text.fts import make_snippet, snippet_pattern

    rx = snippet_pattern("when is the quarterly report due")
    assert make_snippet("The quarterly report is due on the 14th", rx) == "The [quarterly] [report] is [due] on the 14th"
    # a query of function words only still marks them
    assert make_snippet("what is it", snippet_pattern("what is")) == "[what] [is] it"
    # the excerpt shows where most query words meet, not the first stray one
    text = "the report " + "filler " * 200 + "the quarterly report is due on Friday " + "tail " * 200
    snip = make_snippet(text, rx)
    assert "[quarterly] [report] is [due] on Friday" in snip and snip.startswith("…")


def test_names_in_the_query_weigh_more_in_recall_text_search(tmp_path: Path) -> None:
    from memory.text.fts import NAME_WEIGHT, names, phrase_counts
    from memory.vectors.embeddings import HashEmbedder

    q = "Which gift did I get for Emma's party? I think Lake Tahoe. I'm not sure"
    assert names(q) == {"emma", "s", "lake", "tahoe"}  # "Which" and "I'm" start sentences; "I" is no name
    counts = phrase_counts(q, name_weight=NAME_WEIGHT)
    assert counts["emma"] == NAME_WEIGHT and counts["gift"] == 1 and phrase_counts(q)["emma"] == 1
    with MemoryManager.open(tmp_path / "m", embedder=HashEmbedder(64), background_embed=False) as mem:
        mem.recall.append_many([{"content": "Emma loved the scarf."}, {"content": "A gift for a party."}])

        def emma_score(query: str) -> float:
            return next(h.score for h in mem.search_recall(query, k=2, mode="text") if "Emma" in h.text)

        # The same words, the name capitalised or not: only the name's share grows.
        assert emma_score("a scarf for Emma") - emma_score("a scarf") == pytest.approx(
            NAME_WEIGHT * (emma_score("a scarf for emma") - emma_score("a scarf"))
        )


def test_sentence_starts_are_read_as_the_anchored_rule_reads_them() -> None:
    import regex
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from memory.text.fts import starts_sentence

    rule = regex.compile(r"(?:^|[.!?:]\s*)$")  # what "starts a sentence" means, read on the prefix

    @settings(max_examples=400, deadline=None)
    @given(st.text(alphabet=st.sampled_from(list("aB .!?:\n\t\u00a0\u2003x")), max_size=30))
    def same(q: str) -> None:
        for i in range(len(q) + 1):
            assert starts_sentence(q, i) == bool(rule.search(q[:i])), (q, i)

    same()
