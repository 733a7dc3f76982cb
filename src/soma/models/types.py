"""Provider-neutral chat types shared by every model provider and the agent loop."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

Role = Literal["system", "user", "assistant", "tool"]


class ToolSpec(BaseModel):
    """A tool offered to the model: its name, what it is for and a JSON Schema of its arguments."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})


class ToolCall(BaseModel):
    """One tool invocation requested by the model."""

    id: str
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class Message(BaseModel):
    """A chat message: ``tool_calls`` on assistant messages, ``tool_call_id`` on tool ones."""

    role: Role
    content: str | None = None
    tool_calls: list[ToolCall] = Field(default_factory=list)
    tool_call_id: str | None = None
    name: str | None = None

    @classmethod
    def system(cls, content: str) -> Message:
        return cls(role="system", content=content)

    @classmethod
    def user(cls, content: str) -> Message:
        return cls(role="user", content=content)

    @classmethod
    def assistant(
        cls, content: str | None = None, tool_calls: list[ToolCall] | None = None
    ) -> Message:
        return cls(role="assistant", content=content, tool_calls=tool_calls or [])

    @classmethod
    def tool(cls, tool_call_id: str, name: str, content: str) -> Message:
        return cls(role="tool", tool_call_id=tool_call_id, name=name, content=content)


class Usage(BaseModel):
    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
        )


class OutputSchema(BaseModel):
    """Structured output: the final answer must be JSON valid against ``json_schema``."""

    name: str = "final_answer"
    json_schema: dict[str, Any]


class ModelRequest(BaseModel):
    messages: list[Message]
    tools: list[ToolSpec] = Field(default_factory=list)
    output: OutputSchema | None = None
    temperature: float | None = None
    max_tokens: int | None = None


FinishReason = Literal["stop", "tool_calls", "length", "error"]


class ModelResponse(BaseModel):
    """The model's reply: an assistant message (text and/or tool calls) plus accounting."""

    message: Message
    usage: Usage = Field(default_factory=Usage)
    model: str = ""
    finish_reason: FinishReason = "stop"


class StreamChunk(BaseModel):
    """One piece of a streamed reply. The last chunk carries ``response`` (the assembled reply)."""

    text: str = ""
    response: ModelResponse | None = None
