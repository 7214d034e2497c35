"""Fake model servers for tests: the real SDKs talk to them over HTTP on 127.0.0.1.

Use them as context managers::

    with FakeAnthropicServer(["hello"]) as server:
        lm = AnthropicLM("claude-haiku-4-5", api_key="test", base_url=server.url)

or as pytest fixtures (``fake_anthropic``, ``fake_openai``): a started server with an empty
script, stopped after the test. A conftest makes them available to every test with
``from fakes import fake_anthropic, fake_openai``.

Rules this package keeps: servers bind only 127.0.0.1 on a free port; each test that starts
one stops it; nothing here touches the network beyond the loopback interface.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ._http import RecordedRequest, Reply, ReplyLike
from .anthropic_server import (
    FakeAnthropicServer,
    bad_request,
    last_user_text,
    overloaded,
    rate_limited,
    server_error,
)
from .openai_server import FakeOpenAIServer

__all__ = [
    "FakeAnthropicServer",
    "FakeOpenAIServer",
    "RecordedRequest",
    "Reply",
    "ReplyLike",
    "bad_request",
    "fake_anthropic",
    "fake_openai",
    "last_user_text",
    "overloaded",
    "rate_limited",
    "server_error",
]


@pytest.fixture()
def fake_anthropic() -> Iterator[FakeAnthropicServer]:
    """A running fake Anthropic Messages API with an empty script (``add`` replies to it)."""
    with FakeAnthropicServer() as server:
        yield server


@pytest.fixture()
def fake_openai() -> Iterator[FakeOpenAIServer]:
    """A running fake OpenAI-compatible chat-completions server with an empty script."""
    with FakeOpenAIServer() as server:
        yield server
