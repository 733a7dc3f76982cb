from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from yarl import URL

from soma.errors import ModelError, ModelHTTPError, ModelOutputError, ModelTimeout
from soma.models import (
    Message,
    Model,
    ModelRequest,
    ModelResponse,
    OpenAICompatModel,
    OutputSchema,
    StreamChunk,
    ToolCall,
    ToolSpec,
)
from soma.models.openai_compat import _env_proxy, _lines

from .conftest import API_KEY
from .fake_openai_server import (
    FakeOpenAI,
    Reply,
    chunk,
    completion,
    openai_call,
    usage_chunk,
)

READ_FILE = ToolSpec(
    name="read_file",
    description="Read a file from the workspace.",
    parameters={"type": "object", "properties": {"path": {"type": "string"}}},
)


def ask(text: str = "hi", **kwargs: Any) -> ModelRequest:
    return ModelRequest(messages=[Message.system("be brief"), Message.user(text)], **kwargs)


async def collect(model: OpenAICompatModel, request: ModelRequest) -> list[StreamChunk]:
    return [c async for c in model.stream(request)]


def test_satisfies_model_protocol(model: OpenAICompatModel) -> None:
    assert isinstance(model, Model)
    assert model.name == "openai:fake-model"
    assert API_KEY not in repr(model)


async def test_plain_completion_with_usage(
    model: OpenAICompatModel, fake_openai: FakeOpenAI
) -> None:
    fake_openai.reply_json(completion("Hello there", usage=(12, 3)))

    response = await model.complete(ask("hi", temperature=0.2, max_tokens=50))

    assert response.message == Message.assistant("Hello there")
    assert response.usage.input_tokens == 12
    assert response.usage.output_tokens == 3
    assert response.finish_reason == "stop"
    assert response.model == "fake-model"
    sent = fake_openai.last
    assert sent.path == "/v1/chat/completions"
    assert sent.body == {
        "model": "fake-model",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hi"},
        ],
        "temperature": 0.2,
        "max_tokens": 50,
    }


async def test_api_key_sent_as_bearer(model: OpenAICompatModel, fake_openai: FakeOpenAI) -> None:
    fake_openai.reply_json(completion())
    await model.complete(ask())
    assert fake_openai.last.headers["authorization"] == f"Bearer {API_KEY}"


async def test_no_authorization_header_without_key(fake_openai: FakeOpenAI) -> None:
    fake_openai.reply_json(completion())
    async with aiohttp.ClientSession() as client:
        await OpenAICompatModel("m", fake_openai.base_url, client=client).complete(ask())
    assert "authorization" not in fake_openai.last.headers


async def test_tool_calls_round_trip(model: OpenAICompatModel, fake_openai: FakeOpenAI) -> None:
    fake_openai.reply_json(
        completion(
            None,
            tool_calls=[
                openai_call("call_a", "read_file", '{"path": "a.txt"}'),
                openai_call("call_b", "list_dir", ""),
            ],
            finish_reason="tool_calls",
        )
    )
    history = [
        Message.user("read a.txt"),
        Message.assistant(
            tool_calls=[ToolCall(id="call_0", name="read_file", arguments={"path": "x"})]
        ),
        Message.tool("call_0", "read_file", "contents"),
    ]

    response = await model.complete(ModelRequest(messages=history, tools=[READ_FILE]))

    assert response.finish_reason == "tool_calls"
    assert response.message.tool_calls == [
        ToolCall(id="call_a", name="read_file", arguments={"path": "a.txt"}),
        ToolCall(id="call_b", name="list_dir", arguments={}),
    ]
    body = fake_openai.last.body
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "read_file",
                "description": "Read a file from the workspace.",
                "parameters": READ_FILE.parameters,
            },
        }
    ]
    assistant, tool = body["messages"][1], body["messages"][2]
    assert assistant["tool_calls"] == [
        {
            "id": "call_0",
            "type": "function",
            "function": {"name": "read_file", "arguments": json.dumps({"path": "x"})},
        }
    ]
    assert tool == {"role": "tool", "tool_call_id": "call_0", "content": "contents"}


async def test_tool_calls_win_over_stop_finish_reason(
    model: OpenAICompatModel, fake_openai: FakeOpenAI
) -> None:
    fake_openai.reply_json(completion(None, tool_calls=[openai_call("c", "t", "{}")]))
    response = await model.complete(ask())
    assert response.finish_reason == "tool_calls"


async def test_structured_output_sends_response_format(
    model: OpenAICompatModel, fake_openai: FakeOpenAI
) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    fake_openai.reply_json(completion('{"answer": "42"}'))

    response = await model.complete(ask(output=OutputSchema(name="verdict", json_schema=schema)))

    assert json.loads(response.message.content or "") == {"answer": "42"}
    assert fake_openai.last.body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "verdict", "schema": schema, "strict": False},
    }


@pytest.mark.parametrize(
    ("reason", "expected"), [("length", "length"), ("content_filter", "error"), (None, "stop")]
)
async def test_finish_reason_mapping(
    model: OpenAICompatModel, fake_openai: FakeOpenAI, reason: str | None, expected: str
) -> None:
    body = completion("x")
    body["choices"][0]["finish_reason"] = reason
    fake_openai.reply_json(body)
    assert (await model.complete(ask())).finish_reason == expected


async def test_stream_text_deltas_and_usage(
    model: OpenAICompatModel, fake_openai: FakeOpenAI
) -> None:
    fake_openai.reply_sse(
        [
            chunk({"role": "assistant", "content": ""}),
            chunk({"content": "Hel"}),
            chunk({"content": "lo"}),
            ": keep-alive comment lines are not data",
            chunk({}, finish_reason="stop"),
            usage_chunk(7, 2),
        ]
    )

    chunks = await collect(model, ask())

    assert [c.text for c in chunks[:-1]] == ["Hel", "lo"]
    final = chunks[-1].response
    assert final is not None
    assert final.message == Message.assistant("Hello")
    assert (final.usage.input_tokens, final.usage.output_tokens) == (7, 2)
    assert final.finish_reason == "stop"
    body = fake_openai.last.body
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


async def test_stream_assembles_tool_call_deltas(
    model: OpenAICompatModel, fake_openai: FakeOpenAI
) -> None:
    def call_delta(index: int, **fields: Any) -> dict[str, Any]:
        return chunk({"tool_calls": [{"index": index, **fields}]})

    fake_openai.reply_sse(
        [
            chunk({"role": "assistant", "content": "Let me look."}),
            call_delta(
                0, id="call_1", type="function", function={"name": "read_file", "arguments": ""}
            ),
            call_delta(0, function={"arguments": '{"pa'}),
            call_delta(
                1, id="call_2", type="function", function={"name": "grep", "arguments": '{"q"'}
            ),
            call_delta(0, function={"arguments": 'th": "a.txt"}'}),
            call_delta(1, function={"arguments": ': "TODO"}'}),
            chunk({}, finish_reason="tool_calls"),
            usage_chunk(20, 9),
        ],
        split_bytes=7,  # lines split across TCP writes too
    )

    chunks = await collect(model, ask(tools=[READ_FILE]))

    assert "".join(c.text for c in chunks) == "Let me look."
    final = chunks[-1].response
    assert final is not None
    assert final.message.content == "Let me look."
    assert final.message.tool_calls == [
        ToolCall(id="call_1", name="read_file", arguments={"path": "a.txt"}),
        ToolCall(id="call_2", name="grep", arguments={"q": "TODO"}),
    ]
    assert final.finish_reason == "tool_calls"
    assert final.usage.total_tokens == 29


async def test_stream_final_response_matches_complete(
    model: OpenAICompatModel, fake_openai: FakeOpenAI
) -> None:
    fake_openai.reply_json(completion("same", usage=(3, 1)))
    fake_openai.reply_sse(
        [chunk({"content": "sa"}), chunk({"content": "me"}, "stop"), usage_chunk(3, 1)]
    )
    completed = await model.complete(ask())
    streamed = (await collect(model, ask()))[-1].response
    assert streamed == completed


@pytest.mark.parametrize(("status", "transient"), [(401, False), (429, True), (500, True)])
async def test_http_errors(
    model: OpenAICompatModel, fake_openai: FakeOpenAI, status: int, transient: bool
) -> None:
    message = f"Incorrect API key provided: {API_KEY}" if status == 401 else "slow down"
    fake_openai.reply_json({"error": {"message": message, "type": "x"}}, status=status)

    with pytest.raises(ModelHTTPError) as caught:
        await model.complete(ask())

    assert caught.value.status == status
    assert caught.value.transient is transient
    text = str(caught.value)
    assert str(status) in text
    assert (message if status != 401 else "Incorrect API key provided") in text
    assert API_KEY not in text


async def test_http_error_while_streaming(
    model: OpenAICompatModel, fake_openai: FakeOpenAI
) -> None:
    fake_openai.reply_json({"error": {"message": "overloaded"}}, status=503)
    with pytest.raises(ModelHTTPError, match="overloaded") as caught:
        await collect(model, ask())
    assert caught.value.transient


async def test_non_json_error_body_is_quoted(
    model: OpenAICompatModel, fake_openai: FakeOpenAI
) -> None:
    fake_openai.reply(Reply(status=502, raw=b"<html>Bad Gateway</html>"))
    with pytest.raises(ModelHTTPError, match="Bad Gateway"):
        await model.complete(ask())


async def test_timeout(fake_openai: FakeOpenAI) -> None:
    fake_openai.reply_json(completion(), delay_s=3)
    model = OpenAICompatModel("m", fake_openai.base_url, api_key=API_KEY, timeout_s=0.2)
    try:
        with pytest.raises(ModelTimeout, match=r"0\.2s"):
            await model.complete(ask())
    finally:
        await model.aclose()


async def test_connection_refused_names_base_url(closed_port: int) -> None:
    base_url = f"http://127.0.0.1:{closed_port}/v1"
    model = OpenAICompatModel("m", base_url, api_key=API_KEY, timeout_s=5)
    try:
        with pytest.raises(ModelError) as caught:
            await model.complete(ask())
    finally:
        await model.aclose()
    assert base_url in str(caught.value)
    assert API_KEY not in str(caught.value)
    assert not isinstance(caught.value, ModelTimeout)


async def test_malformed_json_body(model: OpenAICompatModel, fake_openai: FakeOpenAI) -> None:
    fake_openai.reply(Reply(raw=b"{not json"))
    with pytest.raises(ModelOutputError, match="not JSON"):
        await model.complete(ask())


async def test_missing_choices(model: OpenAICompatModel, fake_openai: FakeOpenAI) -> None:
    fake_openai.reply_json({"object": "chat.completion", "choices": []})
    with pytest.raises(ModelOutputError, match="no choices"):
        await model.complete(ask())


@pytest.mark.parametrize("arguments", ['{"path": ', "[1, 2]"])
async def test_bad_tool_arguments(
    model: OpenAICompatModel, fake_openai: FakeOpenAI, arguments: str
) -> None:
    fake_openai.reply_json(completion(None, tool_calls=[openai_call("c", "read_file", arguments)]))
    with pytest.raises(ModelOutputError, match="read_file"):
        await model.complete(ask())


async def test_bad_streamed_tool_arguments(
    model: OpenAICompatModel, fake_openai: FakeOpenAI
) -> None:
    fake_openai.reply_sse(
        [
            chunk(
                {
                    "tool_calls": [
                        {"index": 0, "id": "c", "function": {"name": "t", "arguments": "{"}}
                    ]
                }
            )
        ]
    )
    with pytest.raises(ModelOutputError, match="not valid JSON"):
        await collect(model, ask())


async def test_malformed_stream_event(model: OpenAICompatModel, fake_openai: FakeOpenAI) -> None:
    fake_openai.reply_sse([chunk({"content": "a"}), "{oops"])
    with pytest.raises(ModelOutputError, match="stream event"):
        await collect(model, ask())


async def test_shared_client_is_not_closed(fake_openai: FakeOpenAI) -> None:
    fake_openai.reply_json(completion())
    async with aiohttp.ClientSession() as client:
        model = OpenAICompatModel("m", fake_openai.base_url, client=client)
        assert isinstance(await model.complete(ask()), ModelResponse)
        await model.aclose()
        assert not client.closed


async def test_timeout_while_streaming(fake_openai: FakeOpenAI) -> None:
    fake_openai.reply(Reply(sse=[chunk({"content": "late"})], delay_s=3))
    model = OpenAICompatModel("m", fake_openai.base_url, timeout_s=0.2)
    try:
        with pytest.raises(ModelTimeout):
            await collect(model, ask())
    finally:
        await model.aclose()


async def test_stream_accepts_server_that_ignores_stream_flag(
    model: OpenAICompatModel, fake_openai: FakeOpenAI
) -> None:
    fake_openai.reply_json(completion("whole reply", usage=(4, 2)))
    chunks = await collect(model, ask())
    assert [c.text for c in chunks[:-1]] == ["whole reply"]
    assert chunks[-1].response is not None
    assert chunks[-1].response.usage.total_tokens == 6


def test_session_per_event_loop_is_closed_with_its_loop(
    fake_openai: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    """The CLI runs several ``asyncio.run`` with one model and never closes it."""
    fake_openai.reply_json(completion("one"))
    fake_openai.reply_json(completion("two"))
    model = OpenAICompatModel("m", fake_openai.base_url)

    async def call() -> tuple[str | None, aiohttp.ClientSession]:
        reply = await model.complete(ask())
        return reply.message.content, model._http()

    first, first_session = asyncio.run(call())
    second, second_session = asyncio.run(call())

    assert (first, second) == ("one", "two")
    assert first_session is not second_session
    assert first_session.closed
    assert second_session.closed
    assert "Unclosed" not in caplog.text


async def test_stream_event_longer_than_aiohttp_line_limit(
    model: OpenAICompatModel, fake_openai: FakeOpenAI
) -> None:
    big = "x" * 300_000  # aiohttp's readline() gives up at 128 KiB
    fake_openai.reply_sse([chunk({"content": big}, "stop")], split_bytes=65_536)
    chunks = await collect(model, ask())
    assert chunks[-1].response is not None
    assert chunks[-1].response.message.content == big


async def test_sse_lines_accept_every_line_ending() -> None:
    async def pieces() -> AsyncIterator[bytes]:
        for piece in (b"data: a\r", b"\ndata: b\rdata: c", b"\n\ndata: \xc3", b"\xa9\r\n", b"x"):
            yield piece

    lines = [line async for line in _lines(pieces())]
    assert [line for line in lines if line] == ["data: a", "data: b", "data: c", "data: é", "x"]


def test_proxy_from_environment_like_httpx(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    target = URL("https://api.example.com/v1/chat/completions")
    assert _env_proxy(target) == (None, None)

    monkeypatch.setenv("HTTPS_PROXY", "http://user:pw@proxy.corp:3128")
    proxy, auth = _env_proxy(target)
    assert proxy == URL("http://proxy.corp:3128")
    assert auth == "Basic dXNlcjpwdw=="  # user:pw

    monkeypatch.setenv("NO_PROXY", "example.com")
    assert _env_proxy(target) == (None, None)


async def test_requests_go_through_the_environment_proxy(
    fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    proxy = URL(fake_openai.base_url).with_path("").with_user("user").with_password("pw")
    monkeypatch.setenv("HTTP_PROXY", str(proxy))
    fake_openai.reply_json(completion("via proxy"))
    model = OpenAICompatModel("m", "http://models.invalid/v1")
    try:
        assert (await model.complete(ask())).message.content == "via proxy"
    finally:
        await model.aclose()
    assert fake_openai.last.path == "http://models.invalid/v1/chat/completions"
    assert fake_openai.last.headers["proxy-authorization"] == "Basic dXNlcjpwdw=="


async def test_invalid_utf8_in_body_is_replaced_not_fatal(
    model: OpenAICompatModel, fake_openai: FakeOpenAI
) -> None:
    body = json.dumps(completion("caf@")).encode().replace(b"@", b"\xc3")
    fake_openai.reply(Reply(raw=body))
    assert (await model.complete(ask())).message.content == "caf\ufffd"
