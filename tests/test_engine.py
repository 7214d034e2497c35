"""The RLM engine end to end: real sandbox worker processes, scripted models.

Every test runs the real ``Sandbox`` (a worker process per RLM node); only the language model
is faked (``ScriptedLM`` / ``FunctionLM``, or the real anthropic SDK against a fake server).
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from typing import Any

import pytest

from memory.errors import (
    CostLimitError,
    DepthLimitError,
    ErrorLimitError,
    IterationLimitError,
    LMTransientError,
    RLMLimitError,
    TimeLimitError,
    TokenLimitError,
    ValidationError,
)
from rlm_core import RLM, Event, FunctionLM, Limits, ScriptedLM
from rlm_core.lm import LMRequest, LMResponse, Usage


def repl(code: str, prose: str = "") -> str:
    return f"{prose}\n```repl\n{code}\n```\n"


def outputs_seen(lm: ScriptedLM) -> list[str]:
    """The user message of every request after the first (what the cells printed)."""
    return [r.prompt for r in lm.requests[1:]]


FAST = Limits(max_iterations=6, cell_timeout_s=20.0)


# --- the loop and the ways to answer ---------------------------------------------------------


def test_multi_iteration_run_answers_by_variable_and_never_sends_the_context() -> None:
    secret = "the-context-body-" * 50
    root = ScriptedLM(
        [
            repl("n = len(context)\nprint('chars', n)"),
            repl("words = context.split('-')\nprint(len(words))"),
            repl("answer['content'] = f'{n} chars'\nanswer['ready'] = True"),
        ]
    )
    res = RLM(root, limits=FAST).completion("How long is it?", context=secret)
    assert res.answer == f"{len(secret)} chars"
    assert res.stopped_by == "answer" and res.iterations == 3 and res.depth == 0
    first = root.requests[0].prompt
    assert "`context`: str" in first and f"{len(secret):,} chars" in first
    for req in root.requests:  # the content itself never reaches the model
        assert all("the-context-body-the-context" not in str(m["content"]) for m in req.messages)
        assert "llm_query_batched(prompts: list[str]) -> list[str]" in (req.system or "")
    assert "chars 850" in outputs_seen(root)[0]
    assert [len(it.cells) for it in res.trajectory.iterations] == [1, 1, 1]
    assert res.usage.root.total_tokens > 0 and res.usage.sub.total_tokens == 0
    assert res.trajectory.answer == res.answer and res.elapsed_s > 0


@pytest.mark.parametrize(
    ("reply", "expected", "source"),
    [
        ("I know it now.\nFINAL(forty two)", "forty two", "FINAL"),
        ('FINAL("quoted answer")', "quoted answer", "FINAL"),
        (repl("x = 6 * 7") + "FINAL_VAR(x)", "42", "FINAL_VAR"),
        (repl("FINAL(6 * 7)"), "42", "variable"),
        (repl("result = 'from a var'\nFINAL_VAR('result')"), "from a var", "variable"),
    ],
)
def test_answer_by_final_and_final_var(reply: str, expected: str, source: str) -> None:
    root = ScriptedLM([reply])
    res = RLM(root, limits=FAST).completion("q?")
    assert (res.answer, res.stopped_by, res.iterations) == (expected, "answer", 1)
    assert res.trajectory.iterations[0].answer_source == source


def test_final_var_of_a_missing_name_is_reported_and_the_run_goes_on() -> None:
    root = ScriptedLM(["FINAL_VAR(nothing_here)", repl("nothing_here = 'now'") + "FINAL_VAR(nothing_here)"])
    res = RLM(root, limits=FAST).completion("q?")
    assert res.answer == "now" and res.iterations == 2
    assert "no variable named 'nothing_here'" in outputs_seen(root)[0]


def test_prose_mentioning_final_and_a_reply_without_code_do_not_end_the_run() -> None:
    root = ScriptedLM(["I will call FINAL(x) when I am done.", repl("FINAL('done')")])
    res = RLM(root, limits=FAST).completion("q?")
    assert res.answer == "done" and res.iterations == 2
    assert "no repl block" in outputs_seen(root)[0]


def test_python_fenced_blocks_run_and_cells_stop_at_the_first_ready_answer() -> None:
    reply = "```python\nFINAL('first')\n```\n```repl\nFINAL('second')\n```"
    res = RLM(ScriptedLM([reply]), limits=FAST).completion("q?")
    assert res.answer == "first" and len(res.trajectory.iterations[0].cells) == 1


def test_blocks_after_a_failing_block_are_not_run() -> None:
    reply = repl("x = undefined_name") + repl("print('second')") + repl("print('third')")
    root = ScriptedLM([reply, "FINAL(ok)"])
    res = RLM(root, limits=FAST).completion("q?")
    assert len(res.trajectory.iterations[0].cells) == 1
    seen = outputs_seen(root)[0]
    assert "NameError" in seen and "Blocks 2-3 were not run because block 1 failed" in seen


def test_a_10m_character_context_is_found_by_a_scripted_grep() -> None:
    filler = "lorem ipsum dolor sit amet " * (10_000_000 // 27 + 1)
    pos = 7_654_321
    context = filler[:pos] + "MAGIC=8675309;" + filler[pos : 10_000_000 - 14]
    assert len(context) == 10_000_000
    root = ScriptedLM(
        [
            repl("import re\nm = re.search(r'MAGIC=(\\d+)', context)\nprint(m.start(), m.group(1))"),
            repl("FINAL(m.group(1))"),
        ]
    )
    res = RLM(root, limits=FAST).completion("What is the magic number?", context=context)
    assert res.answer == "8675309"
    assert f"{pos} 8675309" in outputs_seen(root)[0]
    assert max(sum(len(str(m["content"])) for m in r.messages) for r in root.requests) < 5_000


# --- sub-calls --------------------------------------------------------------------------------


def _sleepy(delay: float, box: dict[str, int]) -> FunctionLM:
    lock = threading.Lock()

    def fn(req: LMRequest) -> str:
        with lock:
            box["now"] = box.get("now", 0) + 1
            box["peak"] = max(box.get("peak", 0), box["now"])
        time.sleep(delay)
        with lock:
            box["now"] -= 1
        return f"echo:{req.prompt}"

    return FunctionLM(fn, name="sleepy")


def test_llm_query_batched_runs_concurrently_within_the_bound() -> None:
    box: dict[str, int] = {}
    code = (
        "import time\nt = time.perf_counter()\n"
        "out = llm_query_batched([f'p{i}' for i in range(8)])\n"
        "took = time.perf_counter() - t\nprint(out[0], out[7], round(took, 2))\nFINAL(took)"
    )
    root = ScriptedLM([repl(code)])
    res = RLM(root, _sleepy(0.4, box), limits=Limits(sub_concurrency=8)).completion("q?")
    assert float(res.answer) < 1.2  # sequential would take 3.2 s
    assert box["peak"] == 8
    assert [s.batch_index for s in res.trajectory.sub_calls] == list(range(8))

    box2: dict[str, int] = {}
    root = ScriptedLM([repl(code)])
    res = RLM(root, _sleepy(0.1, box2), limits=Limits(sub_concurrency=2)).completion("q?")
    assert box2["peak"] == 2 and float(res.answer) >= 0.4
    assert res.usage.sub.total_tokens > 0 and res.sub_calls == 8


def test_sub_call_errors_are_readable_raised_singly_and_kept_per_item_in_batches() -> None:
    def flaky(req: LMRequest) -> str:
        if "bad" in req.prompt:
            raise LMTransientError("upstream overloaded after 4 retries")
        return "fine"

    code = (
        "try:\n    llm_query('bad one')\nexcept RuntimeError as e:\n    print('caught', type(e).__name__, e)\n"
        "print(llm_query_batched(['ok', 'bad', 'ok']))"
    )
    root = ScriptedLM([repl(code), "FINAL(done)"])
    RLM(root, FunctionLM(flaky)).completion("q?")
    seen = outputs_seen(root)[0]
    assert "caught LMTransientError upstream overloaded" in seen
    assert "['fine', '[error] LMTransientError: upstream overloaded after 4 retries', 'fine']" in seen


def test_sub_call_arguments_are_checked_with_a_useful_message() -> None:
    root = ScriptedLM([repl("llm_query(['a', 'b'])"), "FINAL(x)"])
    RLM(root).completion("q?")
    assert "use llm_query_batched for a list of prompts" in outputs_seen(root)[0]


def _recursive_sub(req: LMRequest) -> str:
    """The sub model: runs child RLM turns (it gets a system prompt) and leaf llm_query calls."""
    if req.system is None:
        return f"leaf({req.prompt})"
    if "you are at depth 1" in req.system:
        return repl("r = rlm_query('go deeper: ' + context, context=context + '!')\nFINAL('d1[' + r + ']')")
    return repl("FINAL('d2[' + context + '|' + llm_query('x') + ']')")


def test_depth_two_recursion_builds_a_tree_of_trajectories() -> None:
    root = ScriptedLM([repl("print(rlm_query('solve', context='ctx'))"), "FINAL_VAR(zz)", "FINAL(ok)"])
    sub = FunctionLM(_recursive_sub, name="sub")
    res = RLM(root, sub, limits=Limits(max_depth=2, max_iterations=5)).completion("q?")
    assert "d1[d2[ctx!|leaf(x)]]" in outputs_seen(root)[0]
    call = res.trajectory.sub_calls[0]
    assert call.kind == "rlm_query" and call.child is not None and call.child.depth == 1
    grand = call.child.sub_calls[0].child
    assert grand is not None and grand.depth == 2 and grand.answer == "d2[ctx!|leaf(x)]"
    assert grand.sub_calls[0].kind == "llm_query" and grand.sub_calls[0].depth == 2
    assert [t.depth for t in res.trajectory.walk()] == [0, 1, 2]
    # budgets are shared: the tree's sub usage is in the top-level result
    assert res.usage.sub.total_tokens == sum(
        it.usage.total_tokens for t in res.trajectory.walk()[1:] for it in t.iterations
    ) + sum(s.usage.total_tokens for s in grand.sub_calls)


def test_rlm_query_at_max_depth_falls_back_to_llm_query_or_raises_when_asked() -> None:
    root = ScriptedLM([repl("FINAL(rlm_query('hi', context='c'))")])
    res = RLM(root, FunctionLM(_recursive_sub), limits=Limits(max_depth=0)).completion("q?")
    assert res.answer.startswith("leaf(hi") and "Context:\nc" in res.answer
    assert res.trajectory.sub_calls[0].fallback

    root = ScriptedLM([repl("rlm_query('hi')"), "FINAL(no)"])
    with pytest.raises(DepthLimitError, match=r"past Limits\.max_depth=0") as info:
        RLM(root, limits=Limits(max_depth=0, on_max_depth="error")).completion("q?")
    assert info.value.trajectory is not None and info.value.result.stopped_by == "max_depth"


# --- limits ---------------------------------------------------------------------------------


def test_iteration_limit_makes_one_final_call_for_the_best_answer() -> None:
    root = ScriptedLM([repl("answer['content'] = 'draft'"), repl("print(1)"), "My best answer: 7"])
    res = RLM(root, limits=Limits(max_iterations=2)).completion("q?")
    assert (res.answer, res.stopped_by, res.iterations) == ("My best answer: 7", "final_call", 2)
    last = root.requests[-1]
    assert "used all 2 turns" in last.prompt and last.messages[-1]["role"] == "user"
    assert [m["role"] for m in last.messages] == ["user", "assistant", "user", "assistant", "user"]
    assert res.trajectory.iterations[-1].kind == "final_call"


def test_iteration_limit_error_when_the_final_call_fails_carries_the_partial_answer() -> None:
    root = ScriptedLM([repl("answer['content'] = 'draft'"), repl("print(1)")])  # runs out
    with pytest.raises(IterationLimitError) as info:
        RLM(root, limits=Limits(max_iterations=2)).completion("q?")
    err = info.value
    assert err.partial_answer == "draft" and len(err.trajectory.iterations) == 3
    assert err.result.answer == "draft" and err.result.stopped_by == "max_iterations"


def test_token_limit_holds_across_the_tree() -> None:
    root = ScriptedLM(default=repl("print(llm_query_batched(['x' * 4000] * 4))"))
    with pytest.raises(TokenLimitError, match="max_tokens=3000") as info:
        RLM(root, FunctionLM(lambda r: "ok"), limits=Limits(max_tokens=3000)).completion("q?")
    assert info.value.trajectory.sub_calls  # the sub-calls that spent it are recorded


def test_an_answer_written_by_the_call_that_crossed_a_limit_is_kept() -> None:
    big = LMResponse("FINAL(just in time)", usage=Usage(input_tokens=5000, output_tokens=5))
    root = ScriptedLM([repl("print('x' * 10)"), big])
    res = RLM(root, limits=Limits(max_tokens=3000)).completion("q?")
    assert res.answer == "just in time" and res.usage.total.total_tokens > 5000


def test_token_limit_hit_in_a_child_stops_the_whole_run() -> None:
    def sub(req: LMRequest) -> str:
        return repl("print(llm_query('y' * 8000))") if req.system else "leaf"

    root = ScriptedLM(default=repl("r = rlm_query('go')\nprint(r)"))
    with pytest.raises(TokenLimitError) as info:
        RLM(root, FunctionLM(sub), limits=Limits(max_tokens=6000)).completion("q?")
    child = info.value.trajectory.sub_calls[0].child
    assert child is not None and child.depth == 1 and child.error and "TokenLimitError" in child.error


def test_cost_limit() -> None:
    root = ScriptedLM(default=repl("print(1)"), cost_per_call_usd=0.25)
    with pytest.raises(CostLimitError, match=r"max_cost_usd=\$0.6000") as info:
        RLM(root, limits=Limits(max_cost_usd=0.6)).completion("q?")
    # The third call would cost $0.25 with $0.10 left: it is refused before it is made.
    assert info.value.result.cost_usd == pytest.approx(0.5) and root.calls == 2


def test_time_limit() -> None:
    def slow(req: LMRequest) -> str:
        time.sleep(0.3)
        return repl("print(1)")

    t0 = time.perf_counter()
    with pytest.raises(TimeLimitError, match=r"max_seconds=0\.5"):
        RLM(FunctionLM(slow), limits=Limits(max_seconds=0.5)).completion("q?")
    assert time.perf_counter() - t0 < 3


def test_time_limit_shortens_a_long_cell_to_the_time_left() -> None:
    root = ScriptedLM(default=repl("while True:\n    pass"))
    t0 = time.perf_counter()
    with pytest.raises(TimeLimitError):
        RLM(root, limits=Limits(max_seconds=1.5, cell_timeout_s=60)).completion("q?")
    assert time.perf_counter() - t0 < 5


def test_a_child_rlm_whose_parent_cell_timed_out_stops_spending() -> None:
    calls: list[float] = []

    def child_turn(req: LMRequest) -> str:
        calls.append(time.perf_counter())
        time.sleep(0.3)
        return repl("print('still working')")

    root = ScriptedLM([repl("rlm_query('long job')"), "FINAL(gave up on the child)"])
    res = RLM(root, FunctionLM(child_turn), limits=Limits(cell_timeout_s=1.0)).completion("q?")
    assert res.answer == "gave up on the child"
    assert res.trajectory.iterations[0].cells[0].timed_out
    time.sleep(1.0)
    n = len(calls)
    time.sleep(0.8)
    assert len(calls) == n and n <= 6  # the orphaned child stopped after its parent's cell ended


def test_consecutive_error_limit_and_a_good_cell_resets_the_count() -> None:
    root = ScriptedLM([repl("1/0"), repl("print('ok')"), repl("1/0"), repl("1/0"), repl("1/0")])
    with pytest.raises(ErrorLimitError) as info:
        RLM(root, limits=Limits(max_consecutive_errors=3)).completion("q?")
    assert len(info.value.trajectory.iterations) == 5


def test_max_sub_calls_refuses_further_calls_but_the_run_goes_on() -> None:
    code = "print([llm_query(str(i)) for i in range(2)])\ntry:\n    llm_query('3')\nexcept RuntimeError as e:\n    print(e)"
    root = ScriptedLM([repl(code), "FINAL(partial)"])
    res = RLM(root, FunctionLM(lambda r: "a"), limits=Limits(max_sub_calls=2)).completion("q?")
    assert res.answer == "partial" and "max_sub_calls=2" in outputs_seen(root)[0]


def test_limits_reject_nonsense() -> None:
    with pytest.raises(ValidationError, match="max_iterations"):
        Limits(max_iterations=0)
    with pytest.raises(ValidationError, match="on_max_depth"):
        Limits(on_max_depth="explode")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="reserved"):
        RLM(ScriptedLM()).completion("q", functions={"llm_query": len})
    with pytest.raises(ValidationError, match="not both"):
        RLM(ScriptedLM()).completion("q", context="a", variables={"context": "b"})


# --- the sandbox under the engine -------------------------------------------------------------


def test_syntax_error_is_shown_and_the_run_goes_on() -> None:
    root = ScriptedLM([repl("def f(:\n    pass"), repl("FINAL('fixed')")])
    res = RLM(root, limits=FAST).completion("q?")
    assert res.answer == "fixed" and "SyntaxError" in outputs_seen(root)[0]
    assert res.trajectory.iterations[0].cells[0].error


def test_infinite_loop_times_out_and_the_run_goes_on() -> None:
    root = ScriptedLM([repl("while True:\n    pass"), repl("FINAL(context)")])
    res = RLM(root, limits=Limits(cell_timeout_s=1.0)).completion("q?", context="still here")
    cell = res.trajectory.iterations[0].cells[0]
    assert cell.timed_out and cell.worker_restarted
    assert "stopped after 1 s" in outputs_seen(root)[0]
    assert res.answer == "still here"  # initial variables come back with the new worker


def test_a_10gb_allocation_hits_the_memory_limit_and_the_run_goes_on() -> None:
    root = ScriptedLM([repl("x = bytearray(10 * 1024 ** 3)"), repl("FINAL('survived')")])
    res = RLM(root, limits=FAST).completion("q?")
    assert res.answer == "survived" and "MemoryError" in outputs_seen(root)[0]


def test_os_system_and_sockets_are_blocked_and_the_model_reads_why() -> None:
    code = (
        "import os, socket\n"
        "try:\n    os.system('echo hi')\nexcept Exception as e:\n    print('system:', e)\n"
        "try:\n    socket.create_connection(('127.0.0.1', 9))\nexcept Exception as e:\n    print('socket:', e)"
    )
    root = ScriptedLM([repl(code), "FINAL(ok)"])
    RLM(root, limits=FAST).completion("q?")
    seen = outputs_seen(root)[0]
    assert re.search(r"system: .*not allowed", seen) and re.search(r"socket: .*not allowed", seen)


def test_a_worker_killed_mid_cell_is_replaced_and_the_model_is_told() -> None:
    code = "import os, signal\nprint('before')\nos.kill(os.getpid(), signal.SIGKILL)"
    root = ScriptedLM([repl(code), repl("FINAL(context)")])
    res = RLM(root, limits=FAST).completion("q?", context="back")
    cell = res.trajectory.iterations[0].cells[0]
    assert cell.worker_restarted and "SIGKILL" in (cell.restart_reason or "")
    assert "worker was restarted" in outputs_seen(root)[0] and res.answer == "back"


# --- functions, events, async ---------------------------------------------------------------


def test_user_functions_run_in_the_parent_and_are_described_with_function_docs() -> None:
    calls: list[str] = []

    def search(query: str, k: int = 3) -> list[str]:
        """Search the archive."""
        calls.append(query)
        return [f"{query}-{i}" for i in range(k)]

    root = ScriptedLM([repl("FINAL(search('cats', k=2))")])
    res = RLM(root).completion(
        "q?", functions={"search": search}, variables={"n": 5},
        function_docs={"search": "hybrid search over archival memory"},
        prelude='def helper(x):\n    """Doubles x."""\n    return 2 * x\n',
    )
    assert res.answer == "['cats-0', 'cats-1']" and calls == ["cats"]
    assert "`helper(x)`: Doubles x." in (root.requests[0].system or "")
    system = root.requests[0].system or ""
    assert "`search(query: str, k: int = 3) -> list[str]`: hybrid search over archival memory" in system
    assert "`n`: int" in root.requests[0].prompt


def test_events_are_reported_in_order() -> None:
    events: list[Event] = []
    root = ScriptedLM([repl("print(llm_query('a'))"), "FINAL(x)"])
    RLM(root, FunctionLM(lambda r: "s"), on_event=events.append).completion("q?")
    kinds = [e.kind for e in events]
    assert kinds == ["iteration", "reply", "sub_call", "cell", "iteration", "reply", "answer"]


def test_acompletion() -> None:
    root = ScriptedLM([repl("FINAL(1 + 1)")])
    res = asyncio.run(RLM(root).acompletion("q?"))
    assert res.answer == "2"


def test_limit_errors_are_rlm_limit_errors_with_a_result() -> None:
    root = ScriptedLM(default=repl("1/0"))
    with pytest.raises(RLMLimitError) as info:
        RLM(root, limits=Limits(max_consecutive_errors=1)).completion("q?")
    assert info.value.result.trajectory is info.value.trajectory


# --- the real anthropic SDK against a fake Messages API ---------------------------------------


def test_end_to_end_with_anthropic_lm_against_a_fake_server() -> None:
    fakes = pytest.importorskip("fakes.anthropic_server")
    anthropic_lm = pytest.importorskip("rlm_core.lm.anthropic")

    def handler(body: dict[str, Any]) -> str:
        if body.get("system"):  # a root turn
            n = sum(1 for m in body["messages"] if m["role"] == "assistant")
            return repl("print(llm_query('sub?'))") if n == 0 else "FINAL(got it)"
        return "sub answer"

    with fakes.FakeAnthropicServer(handler=handler) as server:
        lm = anthropic_lm.AnthropicLM("claude-haiku-4-5", api_key="test-key", base_url=server.url)
        res = RLM(lm).completion("q?", context="abc")
        assert res.answer == "got it" and server.calls == 3
        assert all(r.api_key == "test-key" for r in server.requests)
    assert "sub answer" in str(server.bodies()[2]["messages"])
    assert res.usage.root.total_tokens > 0 and res.usage.sub.total_tokens > 0


# --- the docs run ---------------------------------------------------------------------------


def test_the_python_examples_in_docs_rlm_md_run() -> None:
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "docs" / "rlm.md").read_text()
    blocks = re.findall(r"^```python\n(.*?)^```$", text, re.DOTALL | re.MULTILINE)
    assert blocks
    for code in blocks:
        exec(compile(code, "docs/rlm.md", "exec"), {})
