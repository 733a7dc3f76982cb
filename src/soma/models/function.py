"""A model whose answers are computed by a Python function.

Scripts suit fixed conversations; when the answer must depend on what the agent sent (echo a tool
result, branch on the step count, fail on the third call), a function is clearer than a script.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable

from soma.models.scripted import CallIds, Reply, stream_chunks, to_response
from soma.models.types import ModelRequest, ModelResponse, StreamChunk

ReplyFn = Callable[[ModelRequest], Reply | Awaitable[Reply]]


class FunctionModel:
    """Calls ``fn(request)`` for each request; ``fn`` may be sync or async and may raise.

    Replies are normalised exactly like :class:`~soma.models.scripted.ScriptedModel` ones (text
    becomes an assistant message, word-count usage, numbered tool-call ids) and every request is
    kept in ``requests``.
    """

    def __init__(self, fn: ReplyFn, *, name: str = "function") -> None:
        self._fn = fn
        self._name = name
        self._ids = CallIds()
        self.requests: list[ModelRequest] = []

    @property
    def name(self) -> str:
        return self._name

    async def complete(self, request: ModelRequest) -> ModelResponse:
        self.requests.append(request)
        reply = self._fn(request)
        if inspect.isawaitable(reply):
            reply = await reply
        return to_response(reply, request, model=self._name, ids=self._ids)

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamChunk]:
        response = await self.complete(request)
        for chunk in stream_chunks(response):
            yield chunk
