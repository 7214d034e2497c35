"""Small things a new user meets first: ``--version``, a mistyped command, model settings that
need not be typed on every call, trajectory short ids, and a server that cuts the prompt."""

from __future__ import annotations

import io
import warnings
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
