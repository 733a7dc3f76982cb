from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator

import pytest

from soma.models.openai_compat import OpenAICompatModel

from .fake_openai_server import FakeOpenAI, serve

API_KEY = "sk-test-SECRET-0123456789"


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    yield from serve()


@pytest.fixture
async def model(fake_openai: FakeOpenAI) -> AsyncIterator[OpenAICompatModel]:
    m = OpenAICompatModel("fake-model", fake_openai.base_url, api_key=API_KEY, timeout_s=5)
    yield m
    await m.aclose()


@pytest.fixture
def closed_port() -> int:
    """A port nothing listens on, so connecting is refused immediately."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
