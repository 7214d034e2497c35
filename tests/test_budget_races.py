"""Budgets hold under concurrency: tokens are reserved before a call is admitted.

Real sandbox workers; the models are fakes that honour ``max_tokens`` as a provider does
(the output is cut to what the request allows).
"""

from __future__ import annotations

import threading
import time

import pytest

from memory.errors import RLMLimitError
from rlm_core.engine import RLM
from rlm_core.limits import Limits
from rlm_core.lm import FunctionLM, LMRequest, LMResponse, ScriptedLM, Usage
from rlm_core.sandbox.repl import SandboxLimits

SANDBOX = SandboxLimits(cell_timeout_s=20, audit_hook=False)


def honest_sub(out_tokens: int) -> FunctionLM:
    def answer(req: LMRequest) -> LMResponse:
        time.sleep(0.05)  # long enough for the four threads to overlap
        chars = sum(len(str(m["content"])) for m in req.messages)
        out = out_tokens if req.max_tokens is None else min(out_tokens, req.max_tokens)
        return LMResponse("x", usage=Usage(input_tokens=chars // 4 + 1, output_tokens=out))

    return FunctionLM(answer, name="sub")


FOUR_THREADS = """
import threading
res = []
def spend():
    for _ in range(10):
        try:
            llm_query("summarise the tier " * 20)
            res.append("ok")
        except Exception as e:
            res.append(type(e).__name__)
ts = [threading.Thread(target=spend) for _ in range(4)]
[t.start() for t in ts]; [t.join() for t in ts]
print(res)
"""


def test_four_threads_cannot_overspend_a_token_limit() -> None:
    root = ScriptedLM([f"```repl\n{FOUR_THREADS}\n```"], default="FINAL(done)")
    rlm = RLM(root, honest_sub(800), limits=Limits(max_tokens=3000, max_iterations=2, sandbox=SANDBOX))
    with pytest.raises(RLMLimitError) as err:
        rlm.completion("spend it")
    used = err.value.result.usage.root.total_tokens + err.value.result.usage.sub.total_tokens
    assert used <= 3000, used


def test_live_child_rlms_are_bounded() -> None:
    running = {"now": 0, "max": 0}
    lock = threading.Lock()

    def child_root(req: LMRequest) -> str:
        with lock:
            running["now"] += 1
            running["max"] = max(running["max"], running["now"])
        time.sleep(0.3)
        with lock:
            running["now"] -= 1
        return "FINAL(child)"

    code = (
        "import threading\nres = []\n"
        "def go():\n"
        "    try:\n        res.append(rlm_query('q'))\n"
        "    except RuntimeError as e:\n        res.append('refused' if 'max_live_children' in str(e) else str(e))\n"
        "ts = [threading.Thread(target=go) for _ in range(5)]\n"
        "[t.start() for t in ts]; [t.join() for t in ts]\nprint(sorted(res))"
    )
    root = ScriptedLM([f"```repl\n{code}\n```"], default="FINAL(done)")
    rlm = RLM(root, FunctionLM(child_root), limits=Limits(max_live_children=2, max_iterations=2, sandbox=SANDBOX))
    res = rlm.completion("fan out")
    out = res.trajectory.iterations[0].cells[0].output
    assert running["max"] <= 2 and "refused" in out and "child" in out, out


def test_four_threads_cannot_overspend_a_cost_limit() -> None:
    def answer(req: LMRequest) -> str:
        time.sleep(0.05)  # the four threads' calls overlap
        return "x"

    sub = FunctionLM(answer, name="sub", cost_per_call_usd=0.01)
    root = ScriptedLM([f"```repl\n{FOUR_THREADS}\n```"], default="FINAL(done)")
    rlm = RLM(root, sub, limits=Limits(max_cost_usd=0.05, max_iterations=2, sandbox=SANDBOX))
    with pytest.raises(RLMLimitError) as err:
        rlm.completion("spend it")
    assert type(err.value).__name__ == "CostLimitError"
    assert err.value.result.cost_usd <= 0.05 + 1e-9, err.value.result.cost_usd
    assert sub.calls == 5  # the limit is spent exactly, not refused early


def test_a_priced_model_gets_an_output_cap_the_money_left_pays_for() -> None:
    from memory.errors import CostLimitError
    from rlm_core.limits import Budget
    from rlm_core.lm.pricing import ModelPrice, PriceTable

    class Priced:
        model = "m"
        prices = PriceTable("m", {"m": ModelPrice.standard(1.0, 10.0)})  # USD per million

    budget = Budget(Limits(max_cost_usd=0.001))
    with pytest.raises(CostLimitError):  # ~1,016 input tokens at $1/M: over $0.001 alone
        budget.reserve(3000, 4096, Priced())
    hold = budget.reserve(300, 4096, Priced())  # 116 input tokens ($0.000116) leave 88 out
    assert hold.max_output == 88 and abs(hold.cost_usd - 0.000996) < 1e-9, hold
    with pytest.raises(CostLimitError):  # the call in flight holds all that is left
        budget.reserve(300, 4096, Priced())
    budget.release(hold)
    assert budget.reserve(300, 4096, Priced()).max_output == 88
