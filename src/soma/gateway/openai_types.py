"""The OpenAI Chat Completions wire format, as the gateway accepts and answers it.

Requests ignore unknown fields on purpose: the official SDKs add parameters with every release
(``parallel_tool_calls``, ``seed``, ``store``...) and a gateway that refused them would break
clients on their next upgrade. What we do read is validated here, so a bad request is a 422
naming the field before any model is called.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    WithJsonSchema,
    field_validator,
    model_serializer,
    model_validator,
)


def _json_object(value: Any) -> Any:
    """OpenAI sends tool arguments as a JSON *string*; an empty one means no arguments."""
    if isinstance(value, str):
        if not value.strip():
            return {}
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"arguments are not valid JSON ({exc.msg})") from None
        if not isinstance(value, dict):
            raise ValueError("arguments must encode a JSON object")
    return value


JsonArguments = Annotated[
    dict[str, Any],
    BeforeValidator(_json_object),
    WithJsonSchema({"type": "string", "description": "The arguments as a JSON object string."}),
]


class _In(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ContentPart(_In):
    type: str
    text: str | None = None


class FunctionCall(_In):
    name: str = Field(min_length=1)
    arguments: JsonArguments = Field(default_factory=dict)


class ToolCallIn(_In):
    id: str = Field(min_length=1)
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessageIn(_In):
    """One message of the conversation. ``developer`` is the newer SDKs' name for ``system``."""

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCallIn] | None = None
    tool_call_id: str | None = None

    @field_validator("content")
    @classmethod
    def _text_only(cls, value: str | list[ContentPart] | None) -> str | None:
        """Parts are joined into one text: our models take text, and images or audio cannot be
        passed on faithfully, so they are refused rather than silently dropped."""
        if value is None or isinstance(value, str):
            return value
        texts = []
        for part in value:
            if part.type != "text":
                raise ValueError(
                    f"only text content parts are supported, got a {part.type!r} part; "
                    "send images, audio and files to a provider that accepts them"
                )
            if part.text is None:
                raise ValueError("a text content part needs a 'text' string")
            texts.append(part.text)
        return "".join(texts)

    @model_validator(mode="after")
    def _tool_result_has_id(self) -> ChatMessageIn:
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a tool message needs the tool_call_id of the call it answers")
        return self

    @property
    def text(self) -> str | None:
        """The content as text (the validator has already joined any parts)."""
        content = self.content
        return content if isinstance(content, str) or content is None else None


class FunctionDef(_In):
    name: str = Field(min_length=1)
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})


class ToolDef(_In):
    type: Literal["function"] = "function"
    function: FunctionDef


class JsonSchemaFormat(_In):
    name: str = "response"
    description: str | None = None
    json_schema: dict[str, Any] = Field(default_factory=dict, alias="schema")
    strict: bool | None = None


class ResponseFormat(_In):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_given(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("type 'json_schema' needs a json_schema object with a schema")
        return self


class StreamOptions(_In):
    include_usage: bool = False


class ChatCompletionRequest(_In):
    """``POST /v1/chat/completions``. Fields not listed here are accepted and ignored."""

    model: str = Field(min_length=1, description="From GET /v1/models.")
    messages: list[ChatMessageIn] = Field(min_length=1)
    tools: list[ToolDef] | None = None
    tool_choice: str | dict[str, Any] | None = Field(
        default=None, description="'none' withdraws the tools; other values are accepted."
    )
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    response_format: ResponseFormat | None = None
    n: int = Field(default=1, description="Only 1 is supported.")
    user: str | None = None

    @field_validator("n")
    @classmethod
    def _one_choice(cls, value: int) -> int:
        if value != 1:
            raise ValueError(
                f"only n=1 is supported, got {value}; send separate requests for more completions"
            )
        return value


# --- responses --------------------------------------------------------------------------------


class FunctionOut(BaseModel):
    name: str
    arguments: str


class ToolCallOut(BaseModel):
    id: str
    type: Literal["function"] = "function"
    function: FunctionOut


class ChatMessageOut(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    tool_calls: list[ToolCallOut] | None = None


FinishReason = Literal["stop", "tool_calls", "length", "content_filter"]


class Choice(BaseModel):
    index: int = 0
    message: ChatMessageOut
    finish_reason: FinishReason
    logprobs: None = None


class UsageOut(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: UsageOut


class ToolCallDelta(BaseModel):
    index: int
    id: str
    type: Literal["function"] = "function"
    function: FunctionOut


class Delta(BaseModel):
    """Only the fields a delta carries are sent, as OpenAI does (a delta is a patch)."""

    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[ToolCallDelta] | None = None

    @model_serializer(mode="wrap")
    def _without_nulls(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        return {key: value for key, value in data.items() if value is not None}


class ChunkChoice(BaseModel):
    index: int = 0
    delta: Delta
    finish_reason: FinishReason | None = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: UsageOut | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
