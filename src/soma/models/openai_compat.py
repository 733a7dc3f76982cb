"""A model provider for any server speaking the OpenAI Chat Completions protocol.

One wire format covers OpenAI itself and the many servers that mimic it (vLLM, llama.cpp server,
Ollama, LM Studio, gateways), so this is the provider for every remote model. Everything
provider-specific stays in this module: the rest of Soma only sees :mod:`soma.models.types`.

The API key is a secret: it only ever travels in the ``Authorization`` header, is left out of
``repr`` and is scrubbed from every error message, including ones echoed back by the server.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import ssl
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from yarl import URL

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

# A gateway holds one connection per in-flight upstream call, and a stream holds its connection
# for the whole generation; aiohttp's default of 100 would queue the 101st stream in the pool,
# where the wait counts against the connect timeout.
_POOL_LIMIT = 256
# Below the 5 s idle timeout of uvicorn (vLLM) and llama.cpp's server, so that we close idle
# connections before they do, instead of racing a POST against their close (never retried).
_KEEPALIVE_S = 4.0


class OpenAICompatModel:
    """Chat Completions over HTTP, with streaming, tool calls and JSON-schema structured output.

    Pass ``client`` (an :class:`aiohttp.ClientSession`) to share a connection pool; otherwise a
    session is created lazily per event loop, because aiohttp sessions are bound to the loop
    that created them and callers such as the CLI may run several ``asyncio.run`` in one
    process. Nothing in Soma closes models, so an own session closes itself when its loop shuts
    down (``asyncio.run`` cancels every task at the end) instead of warning about an unclosed
    session.
    """

    def __init__(
        self,
        model: str,
        base_url: str,
        api_key: str | None = None,
        timeout_s: float = 120,
        client: aiohttp.ClientSession | None = None,
    ) -> None:
        self.model = model
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self._api_key = api_key or None
        self._client = client
        self._own_client: aiohttp.ClientSession | None = None
        self._own_client_loop: asyncio.AbstractEventLoop | None = None
        self._closer: asyncio.Task[None] | None = None
        self._proxy: URL | None = None
        self._proxy_headers: dict[str, str] | None = None
        # Built once: these are the same for every call, which is the gateway's hot path.
        self._target = URL(f"{self.base_url}/chat/completions")
        # Like httpx's ``timeout=``: a bound on connecting and on each wait for data, not on the
        # whole call, so a long stream that keeps producing tokens is never cut off.
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=timeout_s, sock_connect=timeout_s, sock_read=timeout_s
        )
        self._base_headers = {"Accept": "application/json", "Content-Type": "application/json"}
        if self._api_key:
            self._base_headers["Authorization"] = f"Bearer {self._api_key}"
        self._request_headers = self._base_headers

    @property
    def name(self) -> str:
        return f"openai:{self.model}"

    def __repr__(self) -> str:
        return f"OpenAICompatModel(model={self.model!r}, base_url={self.base_url!r})"

    async def aclose(self) -> None:
        """Close the session this model created; a session passed in belongs to the caller."""
        session, closer = self._own_client, self._closer
        self._own_client = self._own_client_loop = self._closer = None
        if closer is not None:
            closer.cancel()
        if session is not None:
            await session.close()

    async def complete(self, request: ModelRequest) -> ModelResponse:
        body = _encode(build_payload(self.model, request, stream=False))
        with self._translate_errors():
            async with self._post(body) as response:
                raw = await response.read()
                if response.status >= 400:
                    raise self._http_error(response.status, _text(raw))
        return parse_completion(_decode_json(raw, what="response body"), default_model=self.model)

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamChunk]:
        body = _encode(build_payload(self.model, request, stream=True))
        assembler = StreamAssembler(default_model=self.model)
        with self._translate_errors():
            async with self._post(body) as response:
                if response.status >= 400:
                    raise self._http_error(response.status, _text(await response.read()))
                if response.headers.get("Content-Type", "").startswith("application/json"):
                    # Some compatible servers ignore ``stream: true``; accept their whole reply.
                    for whole in await self._whole_reply(response):
                        yield whole
                    return
                async for data in _sse_events(_lines(response.content.iter_any())):
                    text = assembler.feed(_decode_json(data, what="stream event"))
                    if text:
                        yield StreamChunk(text=text)
        yield StreamChunk(response=assembler.result())

    async def _whole_reply(self, response: aiohttp.ClientResponse) -> list[StreamChunk]:
        raw = await response.read()
        whole = parse_completion(_decode_json(raw, what="response body"), default_model=self.model)
        text = [StreamChunk(text=whole.message.content)] if whole.message.content else []
        return [*text, StreamChunk(response=whole)]

    def _post(self, body: bytes) -> AbstractAsyncContextManager[aiohttp.ClientResponse]:
        """``allow_redirects=False`` as httpx did: following a redirect would turn the POST into
        a GET on some other URL and hide a misconfigured base URL."""
        return self._http().post(
            self._target,
            data=body,
            headers=self._request_headers,
            timeout=self._timeout,
            allow_redirects=False,
            proxy=self._proxy,
            proxy_headers=self._proxy_headers,
        )

    def _http(self) -> aiohttp.ClientSession:
        if self._client is not None:
            return self._client
        loop = asyncio.get_running_loop()
        if self._own_client is None or self._own_client_loop is not loop:
            self._own_client = self._new_session()
            self._own_client_loop = loop
            self._closer = loop.create_task(_close_with_loop(self._own_client))
        return self._own_client

    def _new_session(self) -> aiohttp.ClientSession:
        """Configured as httpx was by default, so switching transports changed no deployment:
        proxies from ``HTTP(S)_PROXY``/``ALL_PROXY``/``NO_PROXY`` and the CA bundle from
        ``SSL_CERT_FILE``/``SSL_CERT_DIR`` or certifi. Both are read here, once per session:
        aiohttp's ``trust_env`` would read the environment and ``~/.netrc`` on every request."""
        self._proxy, proxy_auth = _env_proxy(self._target)
        self._proxy_headers = None
        self._request_headers = self._base_headers
        if proxy_auth is not None and self._target.scheme == "https":
            # Only the CONNECT that opens the tunnel carries the proxy's credentials.
            self._proxy_headers = {"Proxy-Authorization": proxy_auth}
        elif proxy_auth is not None:
            # Plain HTTP goes to the proxy as it is, so the credentials travel with it.
            self._request_headers = {**self._base_headers, "Proxy-Authorization": proxy_auth}
        connector = aiohttp.TCPConnector(
            limit=_POOL_LIMIT,
            keepalive_timeout=_KEEPALIVE_S,
            ssl=_ssl_context() if self._target.scheme == "https" else True,
        )
        return aiohttp.ClientSession(connector=connector)

    def _headers(self) -> dict[str, str]:
        return self._request_headers

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
        """Turn transport failures into Soma errors so callers never need to know about aiohttp.

        aiohttp's timeouts (connect and read alike) are ``TimeoutError`` subclasses; a caller's
        own ``asyncio.timeout`` reaches this code as a cancellation instead, so it passes."""
        try:
            yield
        except TimeoutError as exc:
            raise ModelTimeout(
                f"{self.name} did not answer within {self.timeout_s:g}s",
                hint="raise SOMA_MODEL_TIMEOUT_S or use a faster model",
            ) from exc
        except aiohttp.ClientConnectorError as exc:
            raise ModelError(
                f"cannot connect to {self.name}: {self._redact(str(exc)) or type(exc).__name__}",
                hint=f"is an OpenAI-compatible server running at {self.base_url}? "
                "(set SOMA_OPENAI_BASE_URL)",
            ) from exc
        except aiohttp.ClientError as exc:
            raise ModelError(
                f"{self.name} request failed: {self._redact(str(exc)) or type(exc).__name__}"
            ) from exc


async def _close_with_loop(session: aiohttp.ClientSession) -> None:
    """Wait for the loop's shutdown, which cancels this task, then close the session on it:
    after the loop has closed, nothing could close the sockets and aiohttp logs an error."""
    try:
        await asyncio.get_running_loop().create_future()
    finally:
        await session.close()


def _env_proxy(target: URL) -> tuple[URL | None, str | None]:
    """The proxy httpx would have used for ``target`` (environment variables only), and the
    ``Proxy-Authorization`` its URL's credentials call for: a header we set ourselves, because
    aiohttp deprecates ``proxy_auth``."""
    proxies = urllib.request.getproxies_environment()
    if not proxies or urllib.request.proxy_bypass(target.host or ""):
        return None, None
    value = proxies.get(target.scheme) or proxies.get("all")
    if not value:
        return None, None
    proxy = URL(value if "://" in value else f"http://{value}")
    if proxy.user is None:
        return proxy, None
    credentials = f"{proxy.user}:{proxy.password or ''}".encode()
    basic = f"Basic {base64.b64encode(credentials).decode()}"
    return proxy.with_user(None), basic


def _ssl_context() -> ssl.SSLContext:
    """The CA bundle httpx trusted: ``SSL_CERT_FILE``, else ``SSL_CERT_DIR``, else certifi's
    (not the system store, which slim containers may lack)."""
    if os.environ.get("SSL_CERT_FILE"):
        return ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"])
    if os.environ.get("SSL_CERT_DIR"):
        return ssl.create_default_context(capath=os.environ["SSL_CERT_DIR"])
    import certifi  # an httpx dependency, always installed with Soma

    return ssl.create_default_context(cafile=certifi.where())


def _encode(payload: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON, as httpx sent it: smaller than ``json.dumps``' default spacing."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")


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


async def _lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[str]:
    """Lines of a byte stream, ended by LF, CRLF or CR as SSE allows, however the chunks split
    them. Our own splitting, not aiohttp's ``readline``, which fails on lines over 128 KiB (a
    tool call that writes a file may stream its arguments as one event). A CRLF split between
    two chunks yields one extra blank line, which SSE ignores."""
    pending: list[bytes] = []  # the unfinished line, joined once it ends: no quadratic copying
    async for chunk in chunks:
        if b"\r" in chunk:
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if b"\n" not in chunk:
            pending.append(chunk)
            continue
        first, *lines, rest = chunk.split(b"\n")
        pending.append(first)
        yield _text(b"".join(pending))
        for line in lines:
            yield _text(line)
        pending = [rest] if rest else []
    if pending:
        yield _text(b"".join(pending))


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


def _decode_json(raw: str | bytes, *, what: str) -> Any:
    """Bytes are parsed as they came (``json.loads`` detects UTF-8); decoding them to text
    first would copy every response body once more on the proxy's hot path. Invalid UTF-8
    (some servers split a multi-byte character between tokens) is replaced, not fatal."""
    try:
        return json.loads(raw)
    except UnicodeDecodeError:
        assert isinstance(raw, bytes)  # text is never decoded
        return _decode_json(_text(raw), what=what)
    except json.JSONDecodeError as exc:
        text = raw if isinstance(raw, str) else _text(raw)
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
