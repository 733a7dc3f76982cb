"""The one interface every model provider implements."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable

from soma.models.types import ModelRequest, ModelResponse, StreamChunk


@runtime_checkable
class Model(Protocol):
    """A chat model: messages in, an assistant message (text or tool calls) out.

    ``complete`` returns the whole reply; ``stream`` yields text as it arrives and ends with a chunk
    whose ``response`` is the same object ``complete`` would have returned. When the request has
    an ``output`` schema and the model answers without tool calls, the content is JSON valid
    against it.
    """

    @property
    def name(self) -> str: ...

    async def complete(self, request: ModelRequest) -> ModelResponse: ...

    def stream(self, request: ModelRequest) -> AsyncIterator[StreamChunk]: ...
