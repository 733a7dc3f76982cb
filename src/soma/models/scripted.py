"""Deterministic stand-ins for a real model, for tests and benchmarks.

Agent behaviour (tool loops, retries, structured answers) must be testable without a network or
a GPU and must give the same result on every run, so these doubles replay a script. They sit on
benchmark hot paths too, hence no sleeps and only cheap bookkeeping per call.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from soma.errors import ModelError
from soma.models.types import Message, ModelRequest, ModelResponse, StreamChunk, ToolCall, Usage

Reply = ModelResponse | Message | str
"""What a script step or a FunctionModel may produce: a full response, a message or plain text."""

ScriptStep = Reply | Exception

_STREAM_PARTS = 3


class ScriptedModel:
    """Replays ``responses`` in order, one per call; an Exception in the script is raised instead.

    Every request is kept in ``requests`` so a test can assert what the agent sent. Tool calls
    with an empty id (as built by :func:`tool_call`) get ``call_1``, ``call_2``... numbered per
    model, so ids are unique within a run yet identical across runs.
    """

    def __init__(self, responses: Sequence[ScriptStep] = (), *, name: str = "scripted") -> None:
        for position, step in enumerate(responses):
            _check_step(step, position)
        self._script: list[ScriptStep] = list(responses)
        self._position = 0
        self._name = name
        self._ids = CallIds()
        self.requests: list[ModelRequest] = []

    @property
    def name(self) -> str:
        return self._name

    @property
    def remaining(self) -> int:
        """Steps not yet played; tests assert it is 0 to catch an agent that stopped early."""
        return len(self._script) - self._position

    async def complete(self, request: ModelRequest) -> ModelResponse:
        self.requests.append(request)
        if self._position >= len(self._script):
            raise ModelError(
                f"{self._name}: script exhausted after {len(self._script)} response(s); "
                f"call {len(self.requests)} had nothing left to answer",
                hint="add more responses to the ScriptedModel, or check why the agent kept going",
            )
        step = self._script[self._position]
        self._position += 1
        if isinstance(step, Exception):
            raise step
        return to_response(step, request, model=self._name, ids=self._ids)

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamChunk]:
        response = await self.complete(request)
        for chunk in stream_chunks(response):
            yield chunk


class CallIds:
    """Per-model counter for tool-call ids, so scripts need not invent ids themselves."""

    def __init__(self) -> None:
        self._next = 0

    def fill(self, message: Message) -> Message:
        if all(call.id for call in message.tool_calls):
            return message
        calls = [call if call.id else self._numbered(call) for call in message.tool_calls]
        return message.model_copy(update={"tool_calls": calls})

    def _numbered(self, call: ToolCall) -> ToolCall:
        self._next += 1
        return call.model_copy(update={"id": f"call_{self._next}"})


def to_response(reply: Reply, request: ModelRequest, *, model: str, ids: CallIds) -> ModelResponse:
    """Normalise a scripted reply into the ModelResponse a real provider would return.

    An explicit ModelResponse keeps the usage and finish reason it was given; everything else gets
    word-count usage, so token accounting in tests is non-zero and reproducible.
    """
    if isinstance(reply, ModelResponse):
        message = ids.fill(reply.message)
        update: dict[str, Any] = {"message": message, "model": reply.model or model}
        if "usage" not in reply.model_fields_set:
            update["usage"] = count_usage(request, message)
        if "finish_reason" not in reply.model_fields_set:
            update["finish_reason"] = "tool_calls" if message.tool_calls else "stop"
        return reply.model_copy(update=update)
    message = ids.fill(reply) if isinstance(reply, Message) else Message.assistant(reply)
    return ModelResponse(
        message=message,
        usage=count_usage(request, message),
        model=model,
        finish_reason="tool_calls" if message.tool_calls else "stop",
    )


def count_usage(request: ModelRequest, reply: Message) -> Usage:
    """Whitespace-separated words stand in for tokens: cheap, deterministic, roughly plausible."""
    return Usage(
        input_tokens=sum(_words(message) for message in request.messages),
        output_tokens=_words(reply),
    )


def stream_chunks(response: ModelResponse) -> list[StreamChunk]:
    """A few text pieces then the final chunk, so consumers exercise real multi-chunk streams."""
    text = response.message.content or ""
    size = max(1, -(-len(text) // _STREAM_PARTS))
    pieces = [StreamChunk(text=text[i : i + size]) for i in range(0, len(text), size)]
    pieces.append(StreamChunk(response=response))
    return pieces


def tool_call(name: str, /, **arguments: Any) -> Message:
    """An assistant message calling one tool: ``tool_call("read_file", path="a.txt")``."""
    return Message.assistant(tool_calls=[ToolCall(id="", name=name, arguments=arguments)])


def tool_calls(*calls: tuple[str, Mapping[str, Any]]) -> Message:
    """An assistant message with parallel tool calls: ``tool_calls(("a", {}), ("b", {"x": 1}))``."""
    return Message.assistant(
        tool_calls=[ToolCall(id="", name=name, arguments=dict(args)) for name, args in calls]
    )


def final(obj: Any) -> Message:
    """An assistant message whose content is ``obj`` as JSON: the shape of a structured answer."""
    content = obj.model_dump_json() if isinstance(obj, BaseModel) else json.dumps(obj)
    return Message.assistant(content)


def _words(message: Message) -> int:
    count = len(message.content.split()) if message.content else 0
    return count + len(message.tool_calls)


def _check_step(step: object, position: int) -> None:
    """Fail when the script is built, not mid-run, so a typo points at the test that wrote it."""
    if not isinstance(step, ModelResponse | Message | str | Exception):
        raise TypeError(
            f"script step {position} is a {type(step).__name__}; "
            "expected ModelResponse, Message, str or Exception"
        )
    if isinstance(step, Message) and step.role != "assistant":
        raise TypeError(
            f"script step {position} is a {step.role!r} message; models answer as assistant"
        )
