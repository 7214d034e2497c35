"""The sandbox's isolation can be chosen in the store's rlmem.toml, not only in code and env.

Precedence: an explicit ``isolation=`` (Sandbox / SandboxLimits) > RLMEM_ISOLATION >
rlmem.toml > the default (``kernel``). The refusal names all three ways to accept less.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from memory_corpus import open_store

from agents.ask import ask, store_isolation
from agents.cli.main import main
from memory.config import MemoryConfig
from memory.errors import ConfigError, SandboxError
from rlm_core.limits import Limits
from rlm_core.lm import ScriptedLM
from rlm_core.sandbox.repl import Sandbox, SandboxLimits


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RLMEM_ISOLATION", raising=False)


def _store(tmp_path: Path, toml: str | None) -> Path:
    d = tmp_path / "store"
    d.mkdir()
    if toml is not None:
        (d / "rlmem.toml").write_text(toml)
    return d


def test_the_setting_is_read_from_toml_and_env_overrides_it(tmp_path: Path) -> None:
    d = _store(tmp_path, 'isolation = "Process"\n')
    assert MemoryConfig.load(d).isolation == "process"
    assert MemoryConfig.load(d, env={"RLMEM_ISOLATION": "kernel"}).isolation == "kernel"
    assert MemoryConfig.load(tmp_path / "elsewhere").isolation is None
    (d / "rlmem.toml").write_text('isolation = "none"\n')
    with pytest.raises(ConfigError, match=r"rlmem.toml option isolation.*kernel or process"):
        MemoryConfig.load(d)


def test_an_explicit_choice_beats_the_store_setting(tmp_path: Path) -> None:
    mem = open_store(_store(tmp_path, 'isolation = "process"\n'))
    try:
        assert store_isolation(Limits(), mem).sandbox_limits().isolation == "process"
        mine = Limits(sandbox=SandboxLimits(isolation="kernel"))
        assert store_isolation(mine, mem).sandbox_limits().isolation == "kernel"
    finally:
        mem.close()


def test_the_refusal_names_all_three_ways(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RLMEM_BWRAP", "/nonexistent/bwrap")
    with pytest.raises(SandboxError) as err:
        Sandbox()
    text = str(err.value)
    assert 'isolation="process"' in text and "RLMEM_ISOLATION=process" in text
    assert 'isolation = "process" in the store\'s rlmem.toml' in text


@pytest.mark.parametrize("toml", [None, 'isolation = "process"\n'])
def test_ask_follows_the_store_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, toml: str | None) -> None:
    monkeypatch.setenv("RLMEM_BWRAP", "/nonexistent/bwrap")  # no kernel boundary here
    mem = open_store(_store(tmp_path, toml))
    try:
        root = ScriptedLM(["```repl\nprint(1)\n```", "FINAL(ok)"])
        if toml is None:
            with pytest.raises(SandboxError, match=r"rlmem\.toml"):
                ask(mem, "q?", root=root)
        else:
            assert ask(mem, "q?", root=root).answer == "ok"
    finally:
        mem.close()


def test_doctor_says_where_the_setting_came_from(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = _store(tmp_path, 'isolation = "process"\n')
    out = io.StringIO()
    main(["--store", str(d), "doctor", "--json"], stdout=out)
    report = json.loads(out.getvalue())
    assert (report["configured"], report["configured_from"]) == ("process", str(d / "rlmem.toml"))
    monkeypatch.setenv("RLMEM_ISOLATION", "kernel")
    out = io.StringIO()
    main(["--store", str(d), "doctor"], stdout=out)
    assert "configured: kernel (from environment variable RLMEM_ISOLATION)" in out.getvalue()
    monkeypatch.delenv("RLMEM_ISOLATION")
    out = io.StringIO()
    main(["--store", str(tmp_path / "none"), "doctor", "--json"], stdout=out)
    assert json.loads(out.getvalue())["configured_from"] == "the default"
