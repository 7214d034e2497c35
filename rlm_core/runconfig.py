"""The frozen configuration one RLM run hands down its tree of nodes.

Rules this module keeps:

* ``RunConfig`` is a value: the models, limits, prompt template and event hook of one
  ``RLM.completion``, fixed when the run starts. Nodes read it and nothing else of the
  ``RLM`` that made it, so ``rlm_core.node`` never imports ``rlm_core.engine``.
* ``sub`` is always an LM (the root model when no sub model was given).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rlm_core.limits import Limits
from rlm_core.lm import LM
from rlm_core.prompts import build_system_prompt
from rlm_core.results import Event

__all__ = ["RunConfig"]


@dataclass(frozen=True)
class RunConfig:
    """What every node of one run shares: models, limits, system prompt and event hook."""

    root: LM
    sub: LM
    limits: Limits
    system_prompt: str | None = None
    on_event: Callable[[Event], None] | None = None

    def system_prompt_for(
        self,
        functions: Mapping[str, Callable[..., Any]],
        docs: Mapping[str, str] | None,
        depth: int,
        prelude_functions: Sequence[Mapping[str, Any]] = (),
    ) -> str:
        return build_system_prompt(
            functions, function_docs=docs, prelude_functions=prelude_functions, depth=depth,
            max_depth=self.limits.max_depth, template=self.system_prompt,
        )
