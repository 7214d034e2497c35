"""The engine's modules depend one way: engine -> node -> subcalls, through interfaces."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from rlm_core.lm import ScriptedLM
from rlm_core.runconfig import RunConfig

PKG = Path(__file__).resolve().parent.parent / "rlm_core"


def _imports(module: str) -> set[str]:
    """Every rlm_core module ``module`` imports, TYPE_CHECKING blocks and function bodies too."""
    tree = ast.parse((PKG / f"{module}.py").read_text())
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
    return {m for m in out if m.startswith("rlm_core")}


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        ("node", {"rlm_core.engine"}),
        ("subcalls", {"rlm_core.engine", "rlm_core.node"}),
        ("runconfig", {"rlm_core.engine", "rlm_core.node", "rlm_core.subcalls"}),
    ],
)
def test_no_module_imports_the_one_above_it(module: str, forbidden: set[str]) -> None:
    assert not _imports(module) & forbidden


def test_node_takes_no_private_lock_of_the_trajectory() -> None:
    assert "traj._lock" not in (PKG / "node.py").read_text()


def test_a_run_config_is_frozen_and_later_edits_of_the_rlm_do_not_reach_it() -> None:
    from dataclasses import FrozenInstanceError

    from rlm_core.engine import RLM
    from rlm_core.limits import Limits

    rlm = RLM(ScriptedLM(name="a"), limits=Limits(max_iterations=3))
    config = rlm.run_config()
    assert isinstance(config, RunConfig) and config.sub is rlm.root
    rlm.limits = Limits(max_iterations=9)
    assert config.limits.max_iterations == 3
    with pytest.raises(FrozenInstanceError):
        config.limits = Limits()  # type: ignore[misc]
