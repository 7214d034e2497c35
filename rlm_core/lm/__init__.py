"""Language-model clients behind one small protocol: the public face of the LM seam.

Rules this package keeps:

* An ``LM`` takes a list of chat messages (``{"role": "user"|"assistant", "content": str}``),
  an optional system prompt and an optional ``max_tokens``, and returns an ``LMResponse``:
  the text, token ``Usage``, the stop reason and the cost in USD (0.0 when unknown).
* Every client has a sync ``complete`` and an async ``acomplete``. Clients are passed in as
  objects; nothing here looks a backend up by name.
* Where things live: the value types in ``lm.types``, the one request path every client
  takes (``BaseLM``: usage accounting, pricing, async) in ``lm.base``, the fakes users test with
  (``ScriptedLM``, ``FunctionLM``) in ``lm.fakes``, the real clients in ``lm.anthropic`` and
  ``lm.openai``, prices in ``lm.pricing``. Every name is re-exported here and loads on first
  use (PEP 562), so code that needs only the fakes (the sandbox, tests) never imports an SDK.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from memory.lazy import lazy_exports

if TYPE_CHECKING:
    from rlm_core.lm.anthropic import AnthropicLM
    from rlm_core.lm.base import BaseLM
    from rlm_core.lm.fakes import FunctionLM, ScriptedLM
    from rlm_core.lm.openai import OpenAICompatibleLM
    from rlm_core.lm.pricing import DEFAULT_PRICES, ModelPrice, PriceTable, UnknownModelPriceWarning
    from rlm_core.lm.types import (
        LM,
        ChatMessage,
        LMRequest,
        LMResponse,
        ToolCall,
        Usage,
        content_text,
        count_tokens,
    )

__all__ = [
    "DEFAULT_PRICES",
    "LM",
    "AnthropicLM",
    "BaseLM",
    "ChatMessage",
    "FunctionLM",
    "LMRequest",
    "LMResponse",
    "ModelPrice",
    "OpenAICompatibleLM",
    "PriceTable",
    "ScriptedLM",
    "ToolCall",
    "UnknownModelPriceWarning",
    "Usage",
    "content_text",
    "count_tokens",
]

_WHERE = {
    **dict.fromkeys(("LM", "ChatMessage", "LMRequest", "LMResponse", "ToolCall", "Usage",
                     "content_text", "count_tokens"), "rlm_core.lm.types"),
    **dict.fromkeys(("DEFAULT_PRICES", "ModelPrice", "PriceTable", "UnknownModelPriceWarning"),
                    "rlm_core.lm.pricing"),
    "FunctionLM": "rlm_core.lm.fakes",
    "ScriptedLM": "rlm_core.lm.fakes",
    "AnthropicLM": "rlm_core.lm.anthropic",
    "BaseLM": "rlm_core.lm.base",
    "OpenAICompatibleLM": "rlm_core.lm.openai",
}  # fmt: skip

__getattr__, __dir__ = lazy_exports(__name__, _WHERE, __all__)
