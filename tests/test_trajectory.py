"""Trajectories: JSONL round trip, database storage (SQLite and Postgres), renderings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agents.trajectories import TrajectoryStore, list_trajectories, load_trajectory
from memory.db import Database
from memory.errors import ErrorLimitError, NotFoundError, ValidationError
from rlm_core import RLM, FunctionLM, Limits, ScriptedLM, Trajectory, load_jsonl
from rlm_core.lm import LMRequest
from rlm_core.trajectory import render_html, render_text


def repl(code: str) -> str:
    return f"```repl\n{code}\n```"


def _sub(req: LMRequest) -> str:
    if req.system is not None:  # a child RLM turn
        return repl("FINAL('child:' + llm_query('<b>leaf</b>'))")
    return f"answer to {req.prompt}"


def _run(**kw: object) -> tuple[RLM, Trajectory]:
    root = ScriptedLM(
        [
            repl("print('<script>alert(1)</script>')\nr = llm_query_batched(['a', 'b'])"),
            repl("print(rlm_query('deep', context='c'))"),
            "FINAL(all done)",
        ]
    )
    rlm = RLM(root, FunctionLM(_sub, name="sub"), limits=Limits(max_depth=1), **kw)  # type: ignore[arg-type]
    res = rlm.completion("What happened?", context="x" * 1000)
    return rlm, res.trajectory


def test_jsonl_round_trip_keeps_everything_including_children(tmp_path: Path) -> None:
    _, traj = _run(trajectory_dir=tmp_path)
    path = tmp_path / f"{traj.run_id}.jsonl"
    assert path.exists()  # written by the engine
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [rec["type"] for rec in lines] == ["run", "iteration", "iteration", "iteration"]
    loaded = load_jsonl(path)
    assert loaded.to_dict() == traj.to_dict()
    child = loaded.sub_calls[-1].child
    assert child is not None and child.depth == 1 and child.answer == "child:answer to <b>leaf</b>"
    assert loaded.answer == "all done" and loaded.stopped_by == "answer"
    assert loaded.total_usage.total_tokens == traj.total_usage.total_tokens > 0
    # explicit save to another place
    again = load_jsonl(traj.save_jsonl(tmp_path / "sub" / "copy.jsonl"))
    assert again.run_id == traj.run_id


def test_trajectory_records_sizes_timings_and_sub_call_previews() -> None:
    _, traj = _run()
    first = traj.iterations[0]
    assert first.prompt_messages == 1 and first.prompt_chars > 1000 and first.lm_s >= 0
    assert first.cells[0].output.startswith("<script>")
    batch = [s for s in first.sub_calls if s.kind == "llm_query_batched"]
    assert [s.batch_index for s in batch] == [0, 1]
    assert batch[0].response_preview == "answer to a" and batch[0].usage.total_tokens > 0
    assert traj.iterations[1].prompt_messages == 3


def test_load_jsonl_rejects_files_that_are_not_trajectories(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"type": "iteration"}\n')
    with pytest.raises(ValidationError, match="no 'run' line"):
        load_jsonl(bad)
    bad.write_text("not json\n")
    with pytest.raises(ValidationError, match="not JSON"):
        load_jsonl(bad)


def test_render_and_html_show_the_tree_and_escape_model_text() -> None:
    _, traj = _run()
    text = render_text(traj)
    assert "iteration 1" in text and "llm_query_batched[1]" in text and "RLM depth 1" in text
    assert "ANSWER: all done" in text
    page = render_html(traj)
    assert page.startswith("<!DOCTYPE html>") and "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "http://" not in page and "https://" not in page  # self-contained


def test_saved_to_sqlite_and_loaded_back(tmp_path: Path) -> None:
    db = Database.open(tmp_path / "memory.db")
    try:
        _, traj = _run(trajectory_sink=TrajectoryStore(db))
        loaded = load_trajectory(db, traj.run_id)
        assert loaded.to_dict() == traj.to_dict()
        [summary] = list_trajectories(db)
        assert summary.run_id == traj.run_id and summary.sub_calls == 4 and summary.iterations == 3
        assert db.schema_version("trajectories") == 1
        with pytest.raises(NotFoundError, match="no trajectory"):
            load_trajectory(db, "nope")
    finally:
        db.close()


def test_a_failed_run_is_saved_too(tmp_path: Path) -> None:
    db = Database.open(tmp_path / "memory.db")
    try:
        rlm = RLM(ScriptedLM(default=repl("1/0")), limits=Limits(max_consecutive_errors=2),
                  trajectory_sink=TrajectoryStore(db), trajectory_dir=tmp_path)
        with pytest.raises(ErrorLimitError) as info:
            rlm.completion("q?")
        run_id = info.value.trajectory.run_id
        stored = TrajectoryStore(db).load(run_id)
        assert stored.stopped_by == "max_consecutive_errors" and "ErrorLimitError" in (stored.error or "")
        assert load_jsonl(tmp_path / f"{run_id}.jsonl").error == stored.error
    finally:
        db.close()


@pytest.mark.postgres
def test_saved_to_postgres(pg_url: str) -> None:
    db = Database.open(pg_url)
    try:
        _, traj = _run(trajectory_sink=TrajectoryStore(db))
        assert load_trajectory(db, traj.run_id).to_dict() == traj.to_dict()
        TrajectoryStore(db).save(traj)  # saving again replaces the row
        assert len(list_trajectories(db)) == 1
    finally:
        db.close()


# --- reading replies (rlm_core.parsing) ------------------------------------------------------


def test_code_blocks_repl_python_and_unterminated() -> None:
    from rlm_core.parsing import find_code_blocks

    text = "a\n```repl\nx = 1\n```\n```python\ny = 2\n```\n```bash\nls\n```\n```repl\nhalf = ("
    assert find_code_blocks(text) == ["x = 1", "y = 2"]


def test_final_markers_outside_code_only() -> None:
    from rlm_core.parsing import FinalMarker, find_final

    assert find_final("done.\nFINAL(f(x) = (a, b))") == FinalMarker("FINAL", "f(x) = (a, b)")
    assert find_final("FINAL('it''s')") == FinalMarker("FINAL", "its")
    assert find_final("FINAL(\"a ) b\")") == FinalMarker("FINAL", "a ) b")
    assert find_final("  FINAL_VAR(result)") == FinalMarker("FINAL_VAR", "result")
    assert find_final("FINAL_VAR('result')") == FinalMarker("FINAL_VAR", "result")
    assert find_final("```repl\nFINAL(1)\n```") is None
    assert find_final("I will call FINAL(x) later") is None
    assert find_final("FINAL(\nmulti\nline\n)") == FinalMarker("FINAL", "multi\nline")
