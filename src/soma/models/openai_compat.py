"""A model provider for any server speaking the OpenAI Chat Completions protocol.

One wire format covers OpenAI itself and the many servers that mimic it (vLLM, llama.cpp server,
Ollama, LM Studio, gateways), so this is the provider for every remote model. Everything
provider-specific stays in this module: the rest of Soma only sees :mod:`soma.models.types`.

The API key is a secret: it only ever travels in the ``Authorization`` header, is left out of
``repr`` and is scrubbed from every error message, including ones echoed back by the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from soma.errors import ModelError, ModelHTTPError, ModelOutputError, ModelTimeout
from soma.models.types import (
    FinishReason,
    Message,
    ModelRequest,
    ModelResponse,
    OutputSchema,
    StreamChunk,
    ToolCall,
    ToolSpec,
    Usage,
)

_FINISH_REASONS: dict[str, FinishReason] = {
    "stop": "stop",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "length": "length",
    "content_filter": "error",
}

# Server error bodies can be whole HTML pages; a few hundred characters is enough to diagnose.
_MAX_ERROR_TEXT = 500


class OpenAICompatModel:
    """Chat Completions over HTTP, with streaming, tool calls and JSON-schema structured output.

    Pass ``client`` to share a connection pool (or to inject a transport in tests); otherwise a
    client is created lazily per event loop, because httpx connections cannot cross loops and
    callers such as the CLI may run several ``asyncio.run`` in one process.
    """

    def __init__(
        self,
        model: str,
        base_url: str,
        api_key: str | None = None,
        timeout_s: float = 120,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.model = model
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self._api_key = api_key or None
        self._client = client
        self._own_client: httpx.AsyncClient | None = None
        self._own_client_loop: asyncio.AbstractEventLoop | None = None

    @property
    def name(self) -> str:
        return f"openai:{self.model}"

    def __repr__(self) -> str:
        return f"OpenAICompatModel(model={self.model!r}, base_url={self.base_url!r})"

    async def aclose(self) -> None:
        """Close the client this model created; a client passed in belongs to the caller."""
        if self._own_client is not None:
            await self._own_client.aclose()
            self._own_client = None
            self._own_client_loop = None

    async def complete(self, request: ModelRequest) -> ModelResponse:
        payload = build_payload(self.model, request, stream=False)
        with self._translate_errors():
            response = await self._http().post(
                self._url(), json=payload, headers=self._headers(), timeout=self.timeout_s
            )
            if response.status_code >= 400:
                raise self._http_error(response.status_code, response.text)
        data = _decode_json(response.text, what="response body")
        return parse_completion(data, default_model=self.model)

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamChunk]:
        payload = build_payload(self.model, request, stream=True)
        assembler = StreamAssembler(default_model=self.model)
        with self._translate_errors():
            async with self._http().stream(
                "POST", self._url(), json=payload, headers=self._headers(), timeout=self.timeout_s
            ) as response:
                if response.status_code >= 400:
                    body = (await response.aread()).decode("utf-8", errors="replace")
                    raise self._http_error(response.status_code, body)
                if response.headers.get("content-type", "").startswith("application/json"):
                    # Some compatible servers ignore ``stream: true``; accept their whole reply.
                    for whole in await self._whole_reply(response):
                        yield whole
                    return
                async for data in _sse_events(response.aiter_lines()):
                    text = assembler.feed(_decode_json(data, what="stream event"))
                    if text:
                        yield StreamChunk(text=text)
        yield StreamChunk(response=assembler.result())

    async def _whole_reply(self, response: httpx.Response) -> list[StreamChunk]:
        body = (await response.aread()).decode("utf-8", errors="replace")
        whole = parse_completion(_decode_json(body, what="response body"), default_model=self.model)
        text = [StreamChunk(text=whole.message.content)] if whole.message.content else []
        return [*text, StreamChunk(response=whole)]

    def _http(self) -> httpx.AsyncClient:
        if self._client is not None:
            return self._client
        loop = asyncio.get_running_loop()
        if self._own_client is None or self._own_client_loop is not loop:
            self._own_client = httpx.AsyncClient()
            self._own_client_loop = loop
        return self._own_client

    def _url(self) -> str:
        return f"{self.base_url}/chat/completions"

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key else text

    def _http_error(self, status: int, body: str) -> ModelHTTPError:
        detail = self._redact(_error_detail(body))
        hint = "check SOMA_OPENAI_API_KEY" if status in {401, 403} else None
        return ModelHTTPError(
            f"{self.name} at {self.base_url} answered HTTP {status}: {detail}",
            status=status,
            hint=hint,
        )

    @contextlib.contextmanager
    def _translate_errors(self) -> Iterator[None]:
        """Turn transport failures into Soma errors so callers never need to know about httpx."""
        try:
            yield
        except httpx.TimeoutException as exc:
            raise ModelTimeout(
                f"{self.name} did not answer within {self.timeout_s:g}s",
                hint="raise SOMA_MODEL_TIMEOUT_S or use a faster model",
            ) from exc
        except httpx.ConnectError as exc:
            raise ModelError(
                f"cannot connect to {self.name}: {self._redact(str(exc)) or type(exc).__name__}",
                hint=f"is an OpenAI-compatible server running at {self.base_url}? "
                "(set SOMA_OPENAI_BASE_URL)",
            ) from exc
        except httpx.HTTPError as exc:
            raise ModelError(
                f"{self.name} request failed: {self._redact(str(exc)) or type(exc).__name__}"
            ) from exc


def build_payload(model: str, request: ModelRequest, *, stream: bool) -> dict[str, Any]:
    """The JSON body of a Chat Completions call; optional knobs are omitted, not sent as null,
    because several compatible servers reject nulls they do not understand."""
    payload: dict[str, Any] = {
        "model": model,
        "messages": [message_to_openai(m) for m in request.messages],
    }
    if request.tools:
        payload["tools"] = [tool_to_openai(t) for t in request.tools]
    if request.output is not None:
        payload["response_format"] = output_to_openai(request.output)
    if request.temperature is not None:
        payload["temperature"] = request.temperature
    if request.max_tokens is not None:
        payload["max_tokens"] = request.max_tokens
    if stream:
        payload["stream"] = True
        payload["stream_options"] = {"include_usage": True}
    return payload


def message_to_openai(message: Message) -> dict[str, Any]:
    """OpenAI wants tool arguments as JSON *strings* and only accepts ``name`` on non-tool roles."""
    out: dict[str, Any] = {"role": message.role}
    if message.role == "tool":
        out["tool_call_id"] = message.tool_call_id
        out["content"] = message.content or ""
        return out
    out["content"] = message.content if message.role == "assistant" else (message.content or "")
    if message.name:
        out["name"] = message.name
    if message.tool_calls:
        out["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
            }
            for call in message.tool_calls
        ]
    return out


def tool_to_openai(tool: ToolSpec) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": tool.name,
            "description": tool.description,
            "parameters": tool.parameters,
        },
    }


def output_to_openai(output: OutputSchema) -> dict[str, Any]:
    """``strict: false`` because strict mode rejects ordinary schemas (optional fields, formats);
    the agent loop validates the answer against the schema itself."""
    return {
        "type": "json_schema",
        "json_schema": {"name": output.name, "schema": output.json_schema, "strict": False},
    }


def parse_completion(data: Any, *, default_model: str) -> ModelResponse:
    """Validate the shape as we read it, so a quirky server yields a clear ModelOutputError."""
    choice = _first_choice(data)
    message = choice.get("message")
    if not isinstance(message, dict):
        raise ModelOutputError(f"completion choice has no message object: {_preview(choice)}")
    content = message.get("content")
    if content is not None and not isinstance(content, str):
        raise ModelOutputError(f"message content is not a string: {_preview(content)}")
    raw_calls = message.get("tool_calls") or []
    if not isinstance(raw_calls, list):
        raise ModelOutputError(f"tool_calls is not a list: {_preview(raw_calls)}")
    calls = [_parse_tool_call(raw, index) for index, raw in enumerate(raw_calls)]
    return ModelResponse(
        message=Message.assistant(content, calls),
        usage=parse_usage(data.get("usage")),
        model=str(data.get("model") or default_model),
        finish_reason=map_finish_reason(choice.get("finish_reason"), has_tool_calls=bool(calls)),
    )


def parse_usage(raw: Any) -> Usage:
    if not isinstance(raw, dict):
        return Usage()
    return Usage(
        input_tokens=_as_int(raw.get("prompt_tokens")),
        output_tokens=_as_int(raw.get("completion_tokens")),
    )


def map_finish_reason(raw: Any, *, has_tool_calls: bool) -> FinishReason:
    """Tool calls win over the reported reason: some servers say ``stop`` even when they call."""
    if has_tool_calls:
        return "tool_calls"
    reason = _FINISH_REASONS.get(str(raw), "stop")
    # "tool_calls" without a parsable call would send the agent looking for calls that are absent.
    return "stop" if reason == "tool_calls" else reason


def parse_tool_arguments(raw: Any, *, tool: str) -> dict[str, Any]:
    """Arguments arrive as a JSON string (some servers send an object); empty means no arguments."""
    if isinstance(raw, dict):
        return raw
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return {}
    if not isinstance(raw, str):
        raise ModelOutputError(f"arguments of tool call {tool!r} are not a JSON string")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ModelOutputError(
            f"arguments of tool call {tool!r} are not valid JSON ({exc.msg}): {_preview(raw)}",
            hint="the model produced malformed JSON; retry or use a stronger model",
        ) from exc
    if not isinstance(value, dict):
        raise ModelOutputError(
            f"arguments of tool call {tool!r} must be a JSON object, got {_preview(raw)}"
        )
    return value


@dataclass
class _PartialCall:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


class StreamAssembler:
    """Rebuilds the full reply from streamed deltas, so ``stream`` ends with the same
    ModelResponse that ``complete`` would have returned."""

    def __init__(self, *, default_model: str) -> None:
        self._model = default_model
        self._text: list[str] = []
        self._calls: dict[int, _PartialCall] = {}
        self._last_index = 0
        self._finish: Any = None
        self._usage = Usage()

    def feed(self, event: Any) -> str:
        """Absorb one event; returns its text delta, the only part worth showing as it arrives."""
        if not isinstance(event, dict):
            raise ModelOutputError(f"stream event is not a JSON object: {_preview(event)}")
        if event.get("model"):
            self._model = str(event["model"])
        if event.get("usage"):
            self._usage = parse_usage(event["usage"])
        text = ""
        for choice in event.get("choices") or []:
            text += self._feed_choice(choice)
        return text

    def result(self) -> ModelResponse:
        calls = [
            ToolCall(
                id=partial.id or f"call_{index}",
                name=partial.name,
                arguments=parse_tool_arguments("".join(partial.arguments), tool=partial.name),
            )
            for index, partial in sorted(self._calls.items())
        ]
        content = "".join(self._text) if self._text else None
        return ModelResponse(
            message=Message.assistant(content, calls),
            usage=self._usage,
            model=self._model,
            finish_reason=map_finish_reason(self._finish, has_tool_calls=bool(calls)),
        )

    def _feed_choice(self, choice: Any) -> str:
        if not isinstance(choice, dict):
            return ""
        if choice.get("finish_reason"):
            self._finish = choice["finish_reason"]
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            return ""
        for raw_call in delta.get("tool_calls") or []:
            self._feed_call(raw_call)
        text = delta.get("content")
        if isinstance(text, str) and text:
            self._text.append(text)
            return text
        return ""

    def _feed_call(self, raw: Any) -> None:
        if not isinstance(raw, dict):
            raise ModelOutputError(f"streamed tool call is not an object: {_preview(raw)}")
        partial = self._calls.setdefault(self._call_index(raw), _PartialCall())
        partial.id = partial.id or str(raw.get("id") or "")
        function = raw.get("function") or {}
        # OpenAI sends the name whole in the first delta; keeping the first guards against
        # servers that repeat it on every delta.
        partial.name = partial.name or str(function.get("name") or "")
        arguments = function.get("arguments")
        if isinstance(arguments, str):
            partial.arguments.append(arguments)
        elif isinstance(arguments, dict):
            partial.arguments.append(json.dumps(arguments))

    def _call_index(self, raw: dict[str, Any]) -> int:
        """Deltas are keyed by ``index``; servers that omit it start a call by sending an id."""
        index = raw.get("index")
        if isinstance(index, int):
            self._last_index = index
        elif raw.get("id") and all(p.id != raw["id"] for p in self._calls.values()):
            self._last_index = len(self._calls)
        return self._last_index


async def _sse_events(lines: AsyncIterator[str]) -> AsyncIterator[str]:
    """The ``data:`` payloads of a server-sent-event stream, up to the ``[DONE]`` sentinel."""
    async for line in lines:
        if not line.startswith("data:"):
            continue  # blank separators, ``: keep-alive`` comments, event/id fields
        data = line[5:].strip()
        if data == "[DONE]":
            return
        if data:
            yield data


def _decode_json(text: str, *, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ModelOutputError(
            f"model server sent a {what} that is not JSON ({exc.msg}): {_preview(text)}",
            hint="is the base URL pointing at an OpenAI-compatible /v1 endpoint?",
        ) from exc


def _first_choice(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ModelOutputError(f"completion is not a JSON object: {_preview(data)}")
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise ModelOutputError(f"completion has no choices: {_preview(data)}")
    return choices[0]


def _parse_tool_call(raw: Any, index: int) -> ToolCall:
    if not isinstance(raw, dict) or not isinstance(raw.get("function"), dict):
        raise ModelOutputError(f"malformed tool call: {_preview(raw)}")
    function = raw["function"]
    name = function.get("name")
    if not isinstance(name, str) or not name:
        raise ModelOutputError(f"tool call without a function name: {_preview(raw)}")
    return ToolCall(
        id=str(raw.get("id") or f"call_{index}"),
        name=name,
        arguments=parse_tool_arguments(function.get("arguments"), tool=name),
    )


def _error_detail(body: str) -> str:
    """The server's own explanation: OpenAI nests it in ``error.message``, others vary."""
    with contextlib.suppress(json.JSONDecodeError):
        data = json.loads(body)
        if isinstance(data, dict):
            error = data.get("error")
            if isinstance(error, dict) and error.get("message"):
                return str(error["message"])
            if isinstance(error, str) and error:
                return error
            if data.get("message"):
                return str(data["message"])
            if data.get("detail"):
                return str(data["detail"])
    return body.strip()[:_MAX_ERROR_TEXT] or "(empty body)"


def _as_int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _preview(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= 200 else text[:200] + "..."
