"""Small things a new user meets first: ``--version``, a mistyped command, model settings that
need not be typed on every call, trajectory short ids, a server that cuts the prompt, empty
input, limits, numbers and hints as the commands print them."""

from __future__ import annotations

import io
import json
import re
import warnings
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import httpx
import pytest

from agents.cli.main import main
from agents.trajectories import list_trajectories, load_trajectory, question_of, save_trajectory
from memory.config import MemoryConfig
from memory.errors import NotFoundError, ValidationError
from memory.manager import MemoryManager
from rlm_core.lm.fakes import ScriptedLM
from rlm_core.lm.openai import ContextWindowWarning, OpenAICompatibleLM
from rlm_core.trajectory.records import Trajectory


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    try:
        code = main(list(argv), stdout=out, stderr=err)
    except SystemExit as exc:  # argparse's own exits (--version, --help)
        code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, _ = run("--version")
    assert code == 0
    assert capsys.readouterr().out.startswith("rlmem 0.")


def test_mistyped_command_suggests_the_close_one(tmp_path: Path) -> None:
    code, _, err = run("--store", str(tmp_path / "s"), "serch", "x")
    assert code == 2 and "did you mean `rlmem search`" in err
    code, _, err = run("stast", "--store", str(tmp_path / "s"))
    assert code == 2 and "`rlmem stats`" in err
    # The store's path is not taken for the command, and nothing close means argparse's own error.
    with pytest.raises(SystemExit):
        main(["--store", "serch", "zzzzzz"], stdout=io.StringIO(), stderr=io.StringIO())


def _store(tmp_path: Path, toml: str = "") -> Path:
    store = tmp_path / "s"
    assert run("init", str(store), "-q")[0] == 0
    if toml:
        (store / "rlmem.toml").write_text(toml)
    return store


def _model_of(store: Path, monkeypatch: pytest.MonkeyPatch, *argv: str) -> Any:
    """The (root, sub) models ``rlmem ask`` builds from these flags and the settings."""
    from agents.cli.common import CliContext
    from agents.cli.main import build_parser
    from agents.cli.model import make_model

    args = build_parser().parse_args(["ask", "q", "--store", str(store), *argv])
    ctx = CliContext(store_arg=str(store), json=False, out=io.StringIO(), err=io.StringIO(),
                     lm=None, sub_lm=None, quiet=True)
    return make_model(ctx, args), make_model(ctx, args, sub=True)


def test_model_settings_from_the_store_toml_then_env_then_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("RLMEM_MODEL", "RLMEM_SUB_MODEL", "RLMEM_BASE_URL", "ANTHROPIC_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    store = _store(tmp_path, 'embed_threads = 1\n[model]\nname = "qwen2.5:7b"\nsub_model = "qwen2.5:1.5b"\n'
                             'base_url = "http://127.0.0.1:8080/v1"\n')
    # The memory options beside the [model] table still load.
    assert MemoryConfig.load(store).embed_threads == 1
    root, sub = _model_of(store, monkeypatch)
    assert isinstance(root, OpenAICompatibleLM) and root.model == "qwen2.5:7b"
    assert root.base_url == "http://127.0.0.1:8080/v1" and sub.model == "qwen2.5:1.5b"
    monkeypatch.setenv("RLMEM_MODEL", "llama3.1")
    monkeypatch.setenv("RLMEM_BASE_URL", "http://127.0.0.1:8000/v1")
    root, sub = _model_of(store, monkeypatch)
    assert (root.model, root.base_url, sub.model) == ("llama3.1", "http://127.0.0.1:8000/v1", "qwen2.5:1.5b")
    root, sub = _model_of(store, monkeypatch, "--model", "m", "--base-url", "http://127.0.0.1:9999/v1")
    assert (root.model, root.base_url) == ("m", "http://127.0.0.1:9999/v1")


def test_model_settings_refuse_unknown_keys(tmp_path: Path) -> None:
    store = _store(tmp_path, '[model]\nmodle = "x"\n')
    code, _, err = run("ask", "q", "--store", str(store))
    assert code == 2 and "unknown [model] option 'modle'" in err


def test_trajectory_short_id_and_question_column(tmp_path: Path) -> None:
    store = _store(tmp_path)
    mem = MemoryManager.open(store)
    a = Trajectory(query="when is the report due?\n\nmemory: 3 messages in 1 session", root_model="r", sub_model="s")
    a.answer = "the 14th"
    save_trajectory(mem.db, a)
    b = Trajectory(query="second", root_model="r", sub_model="s")
    b.run_id = a.run_id[:4] + "f" * (len(a.run_id) - 4) if a.run_id[4] != "f" else a.run_id[:4] + "0" * 28
    save_trajectory(mem.db, b)
    assert load_trajectory(mem.db, a.run_id[:8]).run_id == a.run_id
    with pytest.raises(ValidationError, match="names 2"):
        load_trajectory(mem.db, a.run_id[:4])
    with pytest.raises(NotFoundError, match="rlmem trajectory list"):
        load_trajectory(mem.db, "0123456789")
    assert question_of(a.query) == "when is the report due?"
    mem.close()
    code, out, _ = run("trajectory", "show", a.run_id[:8], "--store", str(store))
    assert code == 0 and a.run_id[:8] in out
    code, out, _ = run("trajectory", "list", "--store", str(store))
    assert code == 0 and "when is the report due?" in out and "memory: 3 messages" not in out
    assert len(list_trajectories(MemoryManager.open(store).db)) == 2


def test_show_trajectory_prints_the_answer_once(tmp_path: Path) -> None:
    store = _store(tmp_path)
    lm = ScriptedLM(['```repl\nFINAL("the fourteenth")\n```'])
    out, err = io.StringIO(), io.StringIO()
    code = main(["ask", "when?", "--store", str(store), "--show-trajectory"], lm=lm, stdout=out, stderr=err)
    assert code == 0, err.getvalue()
    lines = [ln.strip() for ln in out.getvalue().splitlines() if ln.strip()]
    assert lines[-1] == "ANSWER: the fourteenth"
    assert "the fourteenth" not in lines  # not printed a second time on a line of its own
    plain = io.StringIO()
    assert main(["ask", "when?", "--store", str(store)], lm=ScriptedLM(['```repl\nFINAL("x")\n```']),
                stdout=plain, stderr=io.StringIO()) == 0
    assert plain.getvalue().strip() == "x"


def _completion(prompt_tokens: int) -> dict[str, Any]:
    return {"choices": [{"message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 1}}


def test_a_server_that_cuts_the_prompt_is_named_once() -> None:
    replies = [2048, 2048, 9000]
    lm = OpenAICompatibleLM("llama3", base_url="http://127.0.0.1:11434/v1",
                            transport=httpx.MockTransport(lambda r: httpx.Response(200, json=_completion(replies.pop(0)))))
    long = [{"role": "user", "content": "word " * 40_000}]  # ~50K tokens by the chars/4 estimate
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lm.complete(long)
        lm.complete(long)
    hits = [w for w in caught if issubclass(w.category, ContextWindowWarning)]
    assert len(hits) == 1 and "read 2,048 prompt tokens" in str(hits[0].message)
    fine = OpenAICompatibleLM("llama3", base_url="http://127.0.0.1:11434/v1",
                              transport=httpx.MockTransport(lambda r: httpx.Response(200, json=_completion(9000))))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ContextWindowWarning)
        fine.complete([{"role": "user", "content": "word " * 6000}])



def test_agent_takes_the_rlm_names_for_its_models(tmp_path: Path) -> None:
    from agents import Agent

    root, sub = ScriptedLM(["hi"]), ScriptedLM([])
    a = Agent.create("a", MemoryManager.open(tmp_path / "s"), root=root, sub=sub)
    assert a.model is root and a.sub_model is sub
    b = Agent.open_or_create("a", a.memory, root=root)
    assert b.model is root and b.name == "a"
    with pytest.raises(ValidationError, match="not both"):
        Agent.open("a", a.memory, root, root=root)
    with pytest.raises(ValidationError, match="needs a model"):
        Agent.open("a", a.memory)
    a.memory.close()


def test_ingest_counts_what_a_folder_left_out_by_extension(tmp_path: Path) -> None:
    store = _store(tmp_path)
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.org").write_text("* TODO the quarterly report is due on the 14th\n")
    (notes / "NOTES").write_text("the printer is on floor 3\n")
    (notes / "plan.md").write_text("# Plan\nship it\n")
    code, out, err = run("ingest", str(notes), "--store", str(store))
    assert code == 0 and out.startswith("ingested 1 file,") and "2 files skipped" in out
    assert "left out for their extension: no extension (1), .org (1)" in err or \
        "left out for their extension: .org (1), no extension (1)" in err, err
    assert "--ext .org" in err and "read when named" in err
    code, out, _ = run("ingest", str(notes), "--store", str(store), "--json")
    data = json.loads(out)
    assert data["by_extension"] == {".org": 1, "": 1} and data["seconds"] == round(data["seconds"], 3)
    code, out, err = run("ingest", str(notes), "--ext", ".org", "--store", str(store))
    assert code == 0 and "left out for their extension: no extension (1) (a file without" in err, err
    code, out, err = run("ingest", str(notes / "NOTES"), "--store", str(store))
    assert code == 0 and out.startswith("ingested 1 file,") and "left out" not in err  # named: read


def test_blocks_set_with_settings_is_all_or_nothing(tmp_path: Path) -> None:
    store = _store(tmp_path)
    s = ("--store", str(store))

    def block() -> dict[str, Any]:
        return json.loads(run("blocks", "show", "human", "--json", *s)[1])  # type: ignore[no-any-return]

    assert run("blocks", "set", "human", "Name: Ada B", "--limit", "50", *s)[0] == 0
    assert run("blocks", "set", "human", "Name: Ada", "--limit", "40", *s)[0] == 0  # a limit given is kept
    assert (block()["value"], block()["limit"]) == ("Name: Ada", 40)
    edits = len(json.loads(run("blocks", "history", "human", "--json", *s)[1]))
    code, _, err = run("blocks", "set", "human", "Name: Ada Byron", "--limit", "5", *s)
    assert code == 2 and "limit of 5" in err
    assert (block()["value"], block()["limit"]) == ("Name: Ada", 40)  # neither the value nor the limit
    assert run("blocks", "edit", "human", "--read-only", *s)[0] == 0
    code, _, err = run("blocks", "set", "human", "x", "--limit", "100", *s)
    assert code == 2 and "read-only" in err
    assert (block()["value"], block()["limit"], block()["read_only"]) == ("Name: Ada", 40, True)
    assert len(json.loads(run("blocks", "history", "human", "--json", *s)[1])) == edits + 1  # the edit only
    assert run("blocks", "set", "human", "x", "--limit", "100", "--writable", *s)[0] == 0
    assert (block()["value"], block()["limit"], block()["read_only"]) == ("x", 100, False)


def test_grep_limit_counts_every_tier_and_help_gives_the_defaults(tmp_path: Path) -> None:
    store = _store(tmp_path)
    s = ("--store", str(store))
    for i in range(3):
        assert run("log", f"the quarterly report, draft {i}", *s)[0] == 0
    (tmp_path / "r.md").write_text("the quarterly report is due on the 14th\n")
    assert run("ingest", str(tmp_path / "r.md"), *s)[0] == 0
    code, out, _ = run("grep", "report", "--limit", "3", "--json", *s)
    assert code == 0 and len(json.loads(out)) == 3  # default tier: all, the limit over both
    code, out, _ = run("grep", "report", "--limit", "4", "--json", *s)
    assert sorted({h["tier"] for h in json.loads(out)}) == ["archival", "recall"]
    assert run("grep", "report", "--limit", "2", *s)[1].count("\n") == 2
    for command, texts in (("grep", ("which tiers (default: all)", "over all tiers together (default: 100)")),
                           ("search", ("which tiers (default: all)", "number of results (default: 10)",
                                       "default: hybrid"))):
        helped = io.StringIO()
        with pytest.raises(SystemExit), redirect_stdout(helped):
            main([command, "--help"])
        flat = " ".join(helped.getvalue().split())
        assert all(t in flat for t in texts), (command, flat)


def test_empty_input_is_refused_alike_and_stores_nothing(tmp_path: Path) -> None:
    store = _store(tmp_path)
    s = ("--store", str(store))
    for argv, name in ((("log", ""), "TEXT"), (("log", "  \n"), "TEXT"), (("search", ""), "QUERY"),
                       (("search", " ", "--mode", "text"), "QUERY"), (("grep", ""), "PATTERN")):
        code, out, err = run(*argv, *s)
        assert code == 2 and f"{name} must be a non-empty string" in err and out == "", argv
    assert json.loads(run("stats", "--json", *s)[1])["messages"] == 0


def test_a_bad_pattern_names_the_flag_for_plain_text(tmp_path: Path) -> None:
    store = _store(tmp_path)
    assert run("log", "call f(x) then g(y)", "--store", str(store))[0] == 0
    code, _, err = run("grep", "f(x", "--store", str(store))
    assert code == 2 and "invalid regular expression" in err and "rlmem grep -F" in err and "literal" in err
    code, out, _ = run("grep", "f(x", "-F", "--json", "--store", str(store))
    assert code == 0 and json.loads(out)[0]["match"] == "f(x"


def test_numbers_print_rounded(tmp_path: Path) -> None:
    store = _store(tmp_path)
    s = ("--store", str(store))
    for text in ("the deploy key rotates every 90 days", "lunch on Friday", "the key is in the vault"):
        assert run("log", text, *s)[0] == 0
    (tmp_path / "k.md").write_text("the deploy key lives in vault zebra\n")
    code, out, _ = run("ingest", str(tmp_path / "k.md"), *s)
    assert code == 0 and re.fullmatch(r"ingested 1 file, 1 chunk \(0 duplicate chunks left out, 0 files skipped\) "
                                      r"in \d+\.\d s\n", out), out
    code, out, _ = run("reindex", *s)
    assert code == 0 and out.strip() == "reindexed: recall 3, archival 1"
    for mode in ("text", "hybrid", "vector"):
        code, out, _ = run("search", "deploy key", "--mode", mode, *s)
        scores = re.findall(r"^\[(?:recall|archival) \d+\] (\S+) ", out, re.M)
        assert code == 0 and scores and all(re.fullmatch(r"-?\d+\.\d{3}", x) for x in scores), (mode, out)
