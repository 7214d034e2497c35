"""``ask``: an RLM run over memory, with a scripted root model and real stores.

The 10M-token recall log (needle and prompt-size tests) is built once per test session with
recall embeddings off; the multi-hop test uses the real MiniLM model where meaning matters.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from memory_corpus import NEEDLE_ANSWER, BigStore, big_store, fill_recall, open_store

from agents.ask import ask
from agents.repl.console import run_console
from memory.errors import ValidationError
from rlm_core.limits import Limits
from rlm_core.lm import FunctionLM, LMRequest, ScriptedLM

MAX_FIRST_PROMPT_TOKENS = 3000


def first_prompt_tokens(lm: ScriptedLM) -> int:
    """The first request's size in tokens (system + messages), at 4 characters a token."""
    req = lm.requests[0]
    chars = len(req.system or "") + sum(len(str(m["content"])) for m in req.messages)
    return (chars + 3) // 4


def repl(code: str) -> str:
    return f"```repl\n{code}\n```"


@pytest.fixture(scope="session")
def big(tmp_path_factory: pytest.TempPathFactory) -> BigStore:
    """10M tokens of recall (100,000 messages of 400 characters), one planted fact."""
    return big_store(tmp_path_factory.mktemp("big"))


@pytest.fixture()
def small(tmp_path: Path) -> Iterator[Any]:
    mem = open_store(tmp_path / "small")
    fill_recall(mem, tokens=1000, needle_at=0.5)
    mem.working.create("persona", "I am the team's assistant.", limit=2000)
    mem.working.create("human", "Ada, project lead.", limit=2000)
    yield mem
    mem.close()


# --- 1. needle in 10M tokens -------------------------------------------------------------


NEEDLE_SCRIPT = [
    repl("print(len(recall), recall[0])\nhits = grep('Heliotrope', ignore_case=True)\nprint(hits)"),
    repl(
        "import re\nctx = peek(hits[0].id, 1, 1)\nprint(ctx)\n"
        "code = re.search(r'\\d{4}-alpha-\\d+', hits[0].snippet).group(0)\nFINAL(code)"
    ),
]


def test_needle_in_a_10m_token_log(big: BigStore) -> None:
    assert big.messages == 100_000
    mem = open_store(big.path)
    try:
        root = ScriptedLM(NEEDLE_SCRIPT)
        result = ask(mem, "What is the vault combination for project Heliotrope?", root=root)
    finally:
        mem.close()
    assert result.answer == NEEDLE_ANSWER
    assert result.iterations == 2
    out = root.requests[1].messages[-1]["content"]
    assert out.startswith("REPL output:\n100000 #1 [2024-01-01 09:00 s000000 user]")
    assert f"#{big.needle_id} recall [" in out and f"{big.needle_session} user]" in out
    assert first_prompt_tokens(root) < MAX_FIRST_PROMPT_TOKENS


def test_first_prompt_stays_small_from_1k_to_10m_tokens(big: BigStore, small: Any) -> None:
    sizes = {}
    full = open_store(big.path)
    for label in ("persona", "human", "project"):  # blocks filled to their limits
        if label not in full.working.as_dict():
            full.working.create(label, label[0] * 2000, limit=2000)
    for name, mem in (("1K", small), ("10M", full)):
        root = ScriptedLM([repl("FINAL('ok')")])
        ask(mem, "What happened last week?", root=root)
        sizes[name] = first_prompt_tokens(root)
        prompt = root.requests[0].messages[0]["content"]
        assert "vault combination" not in prompt  # no message content, only structure
        if name == "10M":
            assert "100,000 messages in 1,000 sessions" in prompt
            mem.close()
    assert sizes["1K"] < MAX_FIRST_PROMPT_TOKENS and sizes["10M"] < MAX_FIRST_PROMPT_TOKENS, sizes
    assert sizes["10M"] - sizes["1K"] < 1000, sizes  # the difference is the capped blocks


# --- 2. multi-hop across sessions and archival, with the real embedding model ----------------


def _multi_hop_store(path: Path) -> Any:
    from memory.manager import MemoryManager
    from memory.vectors.embeddings import SentenceTransformerEmbedder

    mem = MemoryManager.open(
        path, embedder=SentenceTransformerEmbedder(threads=1), background_embed=False
    )
    t = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
    filler = [
        "Can you summarise the quarterly budget spreadsheet?",
        "The staging server ran out of disk space again.",
        "Please move the design review to Thursday afternoon.",
        "The customer asked for a refund on invoice 4471.",
        "Let's switch the test runner to run in parallel.",
    ]
    rows: list[dict[str, Any]] = []
    for s in range(12):
        for j, text in enumerate(filler):
            rows.append(
                {
                    "content": f"{text} (note {s}.{j})",
                    "session_id": f"chat-{s:02d}",
                    "created_at": t,
                }
            )
            t += timedelta(minutes=3)
        t += timedelta(days=1)
    rows[17]["content"] = "For the company retreat in May we settled on Porto as the city."
    rows[38]["content"] = "I booked everyone into the Hotel Miramar for the retreat."
    mem.recall.append_many(rows)
    mem.archival.insert(
        "Hotel Miramar guest information: check-in from 15:00, check-out by 11:00.",
        source="travel/miramar.md",
    )
    mem.archival.insert(
        "Expense policy: meals are reimbursed up to 40 EUR a day.", source="policy.md"
    )
    mem.embed_pending()
    return mem


MULTI_HOP_SCRIPT = [
    repl(
        "hits = recall_search('where is the offsite going to be and where do we sleep', k=6)\n"
        "sessions = sorted({h.session_id for h in hits})\n"
        "prompts = ['Read this conversation. Reply with the retreat city or hotel it names, or NONE.\\n'"
        " + recall.text(session=s) for s in sessions]\n"
        "answers = llm_query_batched(prompts)\n"
        "print(sessions, answers)"
    ),
    repl(
        "found = [a for a in answers if a != 'NONE']\n"
        "hotel = next(a for a in found if a.startswith('hotel:')).split(':', 1)[1].strip()\n"
        "doc = archival_search(hotel + ' check-in time', k=1)[0]\n"
        "print(doc)\n"
        "import re\n"
        "checkin = re.search(r'check-in from (\\d\\d:\\d\\d)', doc.text).group(1)\n"
        "city = next(a for a in found if a.startswith('city:')).split(':', 1)[1].strip()\n"
        "FINAL(f'{city}, {hotel}, check-in {checkin}')"
    ),
]


def _reader(req: LMRequest) -> str:
    """The sub model: reads only the text it was given."""
    text = req.prompt
    if m := re.search(r"settled on (\w+) as the city", text):
        return f"city: {m.group(1)}"
    if m := re.search(r"into the (Hotel \w+)", text):
        return f"hotel: {m.group(1)}"
    return "NONE"


def test_multi_hop_over_sessions_and_archival(tmp_path: Path) -> None:
    mem = _multi_hop_store(tmp_path / "mh")
    try:
        root = ScriptedLM(MULTI_HOP_SCRIPT)
        sub = FunctionLM(_reader)
        result = ask(mem, "Where is the retreat and when can we check in?", root=root, sub=sub)
    finally:
        mem.close()
    assert result.answer == "Porto, Hotel Miramar, check-in 15:00"
    prompts = [r.prompt for r in sub.requests]
    assert any("Porto" in p for p in prompts) and any("Hotel Miramar" in p for p in prompts)
    assert 2 <= len(prompts) <= 6  # only the candidate sessions went to the sub model
    assert result.sub_calls == len(prompts)


# --- context alongside memory, validation, writes through a run ------------------------------


def test_context_is_given_alongside_memory(small: Any) -> None:
    root = ScriptedLM([repl("FINAL(f'{len(context)} {len(recall)} {context[:5]}')")])
    result = ask(small, "How long is the document?", root=root, context="hello world " * 1000)
    assert result.answer == "12000 10 hello"


def test_writes_in_a_run_are_recorded(small: Any, tmp_path: Path) -> None:
    root = ScriptedLM(
        [
            repl(
                "i = remember('Ada likes tea', tags=['prefs'])\nnote('human', 'Likes tea.')\nFINAL(str(i))"
            )
        ]
    )
    result = ask(small, "Remember that Ada likes tea.", root=root, trajectory_dir=tmp_path / "traj")
    chunk = small.archival.get(int(result.answer))
    assert chunk.metadata["written_by"] == "rlm" and chunk.text == "Ada likes tea"
    assert small.working.get("human").value == "Ada, project lead.\nLikes tea."
    assert small.working.history("human")[0].actor == "rlm"
    assert list((tmp_path / "traj").glob("*.jsonl"))


def test_child_rlm_sees_memory_too(small: Any) -> None:
    root = ScriptedLM(
        [
            repl("child = rlm_query('find the vault combination')\nprint(child)"),
            repl("import re\nFINAL(re.search(r'\\d{4}-alpha-\\d+', child).group(0))"),
        ]
    )
    sub = ScriptedLM([repl("FINAL(grep('Heliotrope')[0].snippet)")])  # the child's root turn
    result = ask(small, "Vault combination?", root=root, sub=sub, limits=Limits(max_depth=1))
    assert result.answer == NEEDLE_ANSWER
    assert "Memory, as it stands now" not in sub.requests[0].messages[0]["content"]


def test_bad_question_is_refused(small: Any) -> None:
    with pytest.raises(ValidationError, match="question must be a non-empty string"):
        ask(small, "  ", root=ScriptedLM([]))


# --- the console -------------------------------------------------------------------------


def _console(mem: Any, lines: list[str], monkeypatch: pytest.MonkeyPatch, **kw: Any) -> str:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    feed = iter(lines)

    def read(_prompt: str) -> str:
        try:
            return next(feed)
        except StopIteration:
            raise EOFError from None

    out = io.StringIO()
    run_console(mem, input_fn=read, output=out, **kw)
    return out.getvalue()


def test_console_has_the_model_namespace(small: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    out = _console(
        small,
        ["len(recall)", "for h in grep('Heliotrope'):", "    print(h.id)", "", "llm_query('hi')"],
        monkeypatch,
    )
    assert "rlm-memory console" in out and "10 messages in 1 sessions" in out
    assert "\n10\n" in out and "\n6\n" in out
    assert "MissingAPIKeyError" in out and "ANTHROPIC_API_KEY" in out


def test_console_sub_calls_use_the_given_model(small: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    sub = FunctionLM(lambda req: f"echo: {req.prompt}")
    out = _console(
        small, ["llm_query('hi')", "llm_query_batched(['a', 'b'])"], monkeypatch, sub=sub
    )
    assert "'echo: hi'" in out and "['echo: a', 'echo: b']" in out


def test_the_documented_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    doc = (Path(__file__).resolve().parent.parent / "docs" / "memory-repl.md").read_text()
    example = re.search(r"````python\n(.*?)````", doc, re.DOTALL)
    assert example is not None
    exec(compile(example.group(1), "docs/memory-repl.md", "exec"), {})
    assert capsys.readouterr().out.splitlines()[:2] == ["We moved the launch to March 3rd.", "2"]


def test_a_failing_search_reaches_the_root_model_readably(
    small: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from memory.errors import IndexError_

    def broken(*_a: Any, **_k: Any) -> Any:
        raise IndexError_("the vector index disagrees with SQLite; run rlmem reindex")

    monkeypatch.setattr(small, "search_recall", broken)
    root = ScriptedLM(
        [
            repl(
                "try:\n    recall_search('launch')\nexcept Exception as e:\n    print('caught', e)"
            ),
            repl("recall_search('launch')"),
            repl("FINAL(str(len(grep('Heliotrope'))))"),
        ]
    )
    result = ask(small, "Anything about the launch?", root=root)
    assert result.answer == "1"
    caught = root.requests[1].messages[-1]["content"]
    assert (
        "caught" in caught and "the vector index disagrees with SQLite; run rlmem reindex" in caught
    )
    raised = root.requests[2].messages[-1]["content"]
    assert "IndexError_: the vector index disagrees with SQLite" in raised
