"""Judging an answer against the gold answer, per question type, as the LongMemEval protocol does.

Rules this module keeps:

* One judge call per (question, answer); the judge model sees the question, the gold answer
  and the response, and answers ``yes`` or ``no``. The first ``yes``/``no`` word of its reply
  decides; a reply with neither counts as ``no`` and is kept in the record (``judge_reply``).
* The rubric follows the question type: temporal reasoning forgives an off-by-one count of
  days, weeks or months; knowledge updates accept an answer that also names the old value as
  long as the updated one is given as current; preference questions are judged against a
  rubric of what a personalised answer must take into account; abstention questions
  (LongMemEval ids ending ``_abs``, LoCoMo category 5) are right when the response says the
  information is not available.
* Everything else uses the plain rubric: the response contains the gold answer or is
  equivalent to it; a subset of the needed information is wrong.
"""

from __future__ import annotations

import re

__all__ = ["judge_prompt", "parse_verdict"]

_PLAIN = (
    "I will give you a question, a correct answer, and a response from a model. Answer yes if "
    "the response contains the correct answer or is equivalent to it. Answer no if the "
    "response is wrong, or gives only part of the information the correct answer needs."
)
_TEMPORAL = (
    _PLAIN + " Do not penalise an off-by-one error in a count of days, weeks or months (if "
    "the question asks for a number of days and the correct answer is 18, 17 or 19 is also "
    "right)."
)
_UPDATE = (
    _PLAIN + " If the response mentions earlier information together with the updated "
    "answer, it is right as long as the updated answer is the one given as current."
)
_PREFERENCE = (
    "I will give you a question, a rubric for the desired personalised response, and a "
    "response from a model. Answer yes if the response satisfies the rubric: it need not "
    "reflect every point, as long as it recalls and uses the user's personal information "
    "correctly. Otherwise answer no."
)
_ABSTAIN = (
    "I will give you an unanswerable question, an explanation of why it cannot be answered, "
    "and a response from a model. Answer yes if the response correctly says the question "
    "cannot be answered (for example: the information is not available, or it was never "
    "mentioned). Answer no if the response attempts an answer."
)

RUBRICS = {
    "temporal-reasoning": _TEMPORAL,
    "knowledge-update": _UPDATE,
    "single-session-preference": _PREFERENCE,
}


def judge_prompt(question: str, gold: str, response: str, qtype: str, abstention: bool) -> str:
    """The one prompt the judge model answers with yes or no."""
    if abstention:
        head, label = _ABSTAIN, "Explanation"
    elif qtype == "single-session-preference":
        head, label = _PREFERENCE, "Rubric"
    else:
        head, label = RUBRICS.get(qtype, _PLAIN), "Correct answer"
    return (
        f"{head}\n\nQuestion: {question}\n\n{label}: {gold}\n\nModel response: {response}\n\n"
        "Is the model response correct? Answer yes or no only."
    )


_VERDICT = re.compile(r"\b(yes|no)\b", re.IGNORECASE)


def parse_verdict(reply: str) -> bool:
    """True when the judge's first yes/no word is yes."""
    m = _VERDICT.search(reply or "")
    return bool(m and m.group(1).lower() == "yes")
