"""A zero-knowledge model that always produces schema-valid answers, for tests and benchmarks.

Orchestration tests and benchmarks need agents that behave plausibly on any capsule: call a few
tools, then answer with JSON that satisfies the capsule's output schema. This model does exactly
that, deterministically, with an optional simulated latency.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from soma.models.scripted import count_usage, stream_chunks
from soma.models.types import (
    Message,
    ModelRequest,
    ModelResponse,
    StreamChunk,
    ToolCall,
    ToolSpec,
)

ToolPicker = Callable[[ModelRequest, int], ToolCall | None]


def value_for(schema: dict[str, Any], name: str = "value") -> Any:
    """The simplest value valid against ``schema`` (the subset capsules use)."""
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type", "string")
    if isinstance(kind, list):
        kind = kind[0]
    if kind == "object":
        props = schema.get("properties", {})
        return {key: value_for(sub, key) for key, sub in props.items()}
    if kind == "array":
        count = max(1, int(schema.get("minItems", 1)))
        return [value_for(schema.get("items", {}), name) for _ in range(count)]
    if kind in ("integer", "number"):
        return schema.get("minimum", 1)
    if kind == "boolean":
        return True
    text = f"{name}: synthetic answer."
    need = int(schema.get("minLength", 0))
    return text + " lorem" * max(0, -(-(need - len(text)) // 6))


def _default_tool(request: ModelRequest, turn: int) -> ToolCall | None:
    """First turn writes a note into the workspace when fs.write is offered; then answer."""
    if turn > 0:
        return None
    writer = next((t for t in request.tools if t.name == "fs.write"), None)
    if writer is None:
        return None
    return ToolCall(
        id=f"call_{turn + 1}",
        name="fs.write",
        arguments={"path": "notes/agent.md", "content": _prompt_digest(request)},
    )


def _prompt_digest(request: ModelRequest) -> str:
    first_user = next((m.content for m in request.messages if m.role == "user"), "") or ""
    return first_user[:200] + "\n"


class SyntheticModel:
    """Calls tools chosen by ``pick_tool`` (default: one fs.write), then answers validly."""

    def __init__(
        self,
        *,
        latency_s: float = 0.0,
        pick_tool: ToolPicker = _default_tool,
        name: str = "synthetic",
    ) -> None:
        self.latency_s = latency_s
        self.pick_tool = pick_tool
        self._name = name
        self.calls = 0

    @property
    def name(self) -> str:
        return self._name

    async def complete(self, request: ModelRequest) -> ModelResponse:
        self.calls += 1
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        turn = sum(1 for m in request.messages if m.role == "assistant" and m.tool_calls)
        call = self.pick_tool(request, turn) if request.tools else None
        if call is not None:
            message = Message.assistant(tool_calls=[call])
        else:
            schema = request.output.json_schema if request.output else {"type": "string"}
            answer = value_for(schema, "answer")
            message = Message.assistant(answer if isinstance(answer, str) else json.dumps(answer))
        return ModelResponse(
            message=message,
            usage=count_usage(request, message),
            model=self._name,
            finish_reason="tool_calls" if message.tool_calls else "stop",
        )

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamChunk]:
        response = await self.complete(request)
        for chunk in stream_chunks(response):
            yield chunk


def tool_named(name: str, arguments: dict[str, Any], turns: int = 1) -> ToolPicker:
    """A picker calling tool ``name`` with ``arguments`` for the first ``turns`` turns."""

    def pick(request: ModelRequest, turn: int) -> ToolCall | None:
        offered: list[ToolSpec] = [t for t in request.tools if t.name == name]
        if turn >= turns or not offered:
            return None
        return ToolCall(id=f"call_{turn + 1}", name=name, arguments=arguments)

    return pick
