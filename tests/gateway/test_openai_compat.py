"""The OpenAI-compatible endpoints, driven by the official ``openai`` SDK against a live gateway.

The SDK is the client that matters: if it parses our replies, streams and errors, so do the
many tools built on it. Model doubles assert what reached the model, so both directions of the
conversion are checked; one test puts a real OpenAI-compatible HTTP server behind the gateway.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI

from soma.gateway.app import build_services, create_app, model_resolver
from soma.gateway.services import Services
from soma.models.function import FunctionModel
from soma.models.scripted import tool_call
from soma.models.types import Message, ModelRequest, ModelResponse, OutputSchema, ToolCall, Usage
from soma.settings import Settings
from soma.specs.library import Library
from tests.gateway.conftest import LiveGateway, serve_in_thread
from tests.models.fake_openai_server import FakeOpenAI, Reply, chunk, completion, serve, usage_chunk

SECRET = "sk-live0123456789abcdefghijklmnopqrstuv"
WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


@pytest.fixture
def gateway_settings(gateway_settings: Settings) -> Settings:
    return gateway_settings.model_copy(update={"gateway_models": ["openai:gpt-4o-mini"]})


def client(gateway: LiveGateway, key: str | None = None) -> OpenAI:
    return OpenAI(
        base_url=f"{gateway.url}/v1",
        api_key=key or gateway.key("acme", "developer"),
        max_retries=0,
        timeout=30,
    )


def answer(model_table: dict[str, Any], fn: Any) -> FunctionModel:
    model = FunctionModel(fn, name="scripted")
    model_table["scripted"] = model
    return model


def start(svc: Services) -> Iterator[LiveGateway]:
    url, stop = serve_in_thread(create_app(svc))
    try:
        yield LiveGateway(url, svc)
    finally:
        stop()


# --- models ------------------------------------------------------------------------------------


def test_models_lists_personas_capsules_and_provider_models(gateway: LiveGateway) -> None:
    models = client(gateway).models.list().data
    ids = [m.id for m in models]
    library = Library.builtin()
    assert {f"persona:{p.name}" for p in library.personas()} <= set(ids)
    assert {f"capsule:{c.name}" for c in library.capsules()} <= set(ids)
    assert "persona:developer" in ids
    assert "capsule:implement-feature" in ids
    assert ids[-2:] == ["scripted", "openai:gpt-4o-mini"]
    assert len(ids) == len(set(ids))
    by_id = {m.id: m for m in models}
    assert by_id["openai:gpt-4o-mini"].owned_by == "openai"
    assert by_id["persona:developer"].owned_by == "soma"
    assert all(m.object == "model" and m.created > 0 for m in models)


# --- plain completions -------------------------------------------------------------------------


def test_persona_completion_prepends_the_persona_prompt(
    gateway: LiveGateway, model_table: dict[str, Any]
) -> None:
    def reply(request: ModelRequest) -> str:
        system, user = request.messages
        assert system.role == "system"
        assert system.content is not None
        assert system.content.startswith("You are the software developer of a software team.")
        assert user == Message.user("Say hello")
        assert request.temperature == 0.1  # the persona's own, since the client gave none
        assert request.tools == []
        assert request.output is None
        return "Hello there, friend"

    model = answer(model_table, reply)
    result = client(gateway).chat.completions.create(
        model="persona:developer", messages=[{"role": "user", "content": "Say hello"}]
    )
    assert len(model.requests) == 1
    assert result.id.startswith("chatcmpl-")
    assert result.object == "chat.completion"
    assert result.model == "persona:developer"
    choice = result.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == "Hello there, friend"
    assert choice.message.tool_calls is None
    assert choice.finish_reason == "stop"
    assert result.usage is not None
    assert result.usage.completion_tokens == 3
    assert result.usage.prompt_tokens > 2  # the persona prompt counts too
    assert result.usage.total_tokens == result.usage.prompt_tokens + 3


def test_capsule_completion_carries_persona_task_and_instructions(
    gateway: LiveGateway, model_table: dict[str, Any]
) -> None:
    capsule = Library.builtin().capsule("write-docs")

    def reply(request: ModelRequest) -> str:
        system = request.messages[0].content or ""
        assert request.messages[0].role == "system"
        assert system.startswith("You are the technical writer of a software team.")
        assert f"You are carrying out the task '{capsule.name}'" in system
        assert capsule.instructions.strip() in system
        return '{"readme": "# Hi"}'

    answer(model_table, reply)
    result = client(gateway).chat.completions.create(
        model="capsule:write-docs", messages=[{"role": "user", "content": "Document the CLI"}]
    )
    assert result.choices[0].message.content == '{"readme": "# Hi"}'
    assert result.model == "capsule:write-docs"


def test_provider_models_pass_through_without_a_system_prompt(
    gateway: LiveGateway, model_table: dict[str, Any]
) -> None:
    def reply(request: ModelRequest) -> str:
        assert [m.role for m in request.messages] == ["system", "user"]
        assert request.messages[0].content == "Be brief."  # the client's own, from 'developer'
        assert request.messages[1].content == "Hello world"  # text parts joined
        assert request.temperature == 0.5
        assert request.max_tokens == 64
        return "Hi"

    answer(model_table, reply)
    result = client(gateway).chat.completions.create(
        model="scripted",
        messages=[
            {"role": "developer", "content": "Be brief."},
            {
                "role": "user",
                "content": [{"type": "text", "text": "Hello "}, {"type": "text", "text": "world"}],
            },
        ],
        temperature=0.5,
        max_completion_tokens=64,
        user="end-user-7",
        seed=3,  # unknown to us: accepted and ignored
        parallel_tool_calls=False,
    )
    assert result.choices[0].message.content == "Hi"
    assert result.model == "scripted"


# --- streaming ---------------------------------------------------------------------------------


def test_streaming_sends_role_deltas_finish_and_usage(
    gateway: LiveGateway, model_table: dict[str, Any]
) -> None:
    text = "The quick brown fox jumps over the lazy dog, twice, for good measure."
    answer(model_table, lambda request: text)
    stream = client(gateway).chat.completions.create(
        model="scripted",
        messages=[{"role": "user", "content": "Tell me about foxes"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    deltas = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert len(deltas) > 1  # really streamed, not one piece
    assert "".join(deltas) == text
    assert len({c.id for c in chunks}) == 1
    assert all(c.object == "chat.completion.chunk" and c.model == "scripted" for c in chunks)
    finishing = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [c.choices[0].finish_reason for c in finishing] == ["stop"]
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.completion_tokens == len(text.split())
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens


def test_streaming_without_usage_option_sends_no_usage_chunk(
    gateway: LiveGateway, model_table: dict[str, Any]
) -> None:
    answer(model_table, lambda request: "short answer")
    chunks = list(
        client(gateway).chat.completions.create(
            model="scripted", messages=[{"role": "user", "content": "hi"}], stream=True
        )
    )
    assert all(c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_raw_stream_is_server_sent_events_ending_with_done(
    gateway: LiveGateway, model_table: dict[str, Any]
) -> None:
    answer(model_table, lambda request: "one two three")
    headers = {"Authorization": f"Bearer {gateway.key('acme', 'developer')}"}
    body = {"model": "scripted", "messages": [{"role": "user", "content": "x"}], "stream": True}
    with httpx.stream(
        "POST", f"{gateway.url}/v1/chat/completions", json=body, headers=headers
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"
    first = json.loads(lines[0].removeprefix("data: "))
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}


# --- tools -------------------------------------------------------------------------------------


def test_tool_calls_come_back_with_json_arguments(
    gateway: LiveGateway, model_table: dict[str, Any]
) -> None:
    def reply(request: ModelRequest) -> Message:
        assert [t.name for t in request.tools] == ["get_weather"]
        assert request.tools[0].description == "Current weather of a city"
        assert request.tools[0].parameters["properties"] == {"city": {"type": "string"}}
        return tool_call("get_weather", city="Paris")

    answer(model_table, reply)
    result = client(gateway).chat.completions.create(
        model="scripted",
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[WEATHER_TOOL],
        tool_choice="auto",
    )
    choice = result.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls
    assert calls is not None
    assert len(calls) == 1
    call = calls[0]
    assert call.type == "function"
    assert call.id == "call_1"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}


def test_streamed_tool_calls_arrive_as_indexed_deltas(
    gateway: LiveGateway, model_table: dict[str, Any]
) -> None:
    answer(
        model_table,
        lambda request: Message.assistant(
            tool_calls=[
                ToolCall(id="call_a", name="get_weather", arguments={"city": "Paris"}),
                ToolCall(id="call_b", name="get_weather", arguments={"city": "Oslo"}),
            ]
        ),
    )
    chunks = list(
        client(gateway).chat.completions.create(
            model="scripted",
            messages=[{"role": "user", "content": "Weather in Paris and Oslo?"}],
            tools=[WEATHER_TOOL],
            stream=True,
        )
    )
    deltas = [d for c in chunks if c.choices for d in c.choices[0].delta.tool_calls or []]
    assert [(d.index, d.id) for d in deltas] == [(0, "call_a"), (1, "call_b")]
    assert all(d.function is not None and d.function.name == "get_weather" for d in deltas)
    arguments = [json.loads(d.function.arguments or "") for d in deltas if d.function]
    assert arguments == [{"city": "Paris"}, {"city": "Oslo"}]
    finish = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finish == ["tool_calls"]


def test_tool_results_go_back_to_the_model(
    gateway: LiveGateway, model_table: dict[str, Any]
) -> None:
    def reply(request: ModelRequest) -> str:
        assert [m.role for m in request.messages] == ["user", "assistant", "tool"]
        asked, result = request.messages[1], request.messages[2]
        assert asked.content is None
        assert asked.tool_calls == [
            ToolCall(id="call_abc", name="get_weather", arguments={"city": "Paris"})
        ]
        assert result.tool_call_id == "call_abc"
        assert result.name == "get_weather"  # looked up from the call it answers
        assert result.content == '{"temp_c": 21}'
        return "It is 21 °C in Paris."

    answer(model_table, reply)
    result = client(gateway).chat.completions.create(
        model="scripted",
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_abc",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_abc", "content": '{"temp_c": 21}'},
        ],
        tools=[WEATHER_TOOL],
    )
    assert result.choices[0].message.content == "It is 21 °C in Paris."


def test_tool_choice_none_withdraws_the_tools(
    gateway: LiveGateway, model_table: dict[str, Any]
) -> None:
    model = answer(model_table, lambda request: "no tools for me")
    client(gateway).chat.completions.create(
        model="scripted",
        messages=[{"role": "user", "content": "hi"}],
        tools=[WEATHER_TOOL],
        tool_choice="none",
    )
    assert model.requests[0].tools == []


# --- structured output -------------------------------------------------------------------------


def test_json_schema_response_format_reaches_the_model(
    gateway: LiveGateway, model_table: dict[str, Any]
) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    model = answer(model_table, lambda request: '{"n": 3}')
    oai = client(gateway)
    result = oai.chat.completions.create(
        model="scripted",
        messages=[{"role": "user", "content": "count"}],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "count", "schema": schema, "strict": True},
        },
    )
    assert json.loads(result.choices[0].message.content or "") == {"n": 3}
    assert model.requests[0].output == OutputSchema(name="count", json_schema=schema)
    oai.chat.completions.create(
        model="scripted",
        messages=[{"role": "user", "content": "count"}],
        response_format={"type": "json_object"},
    )
    assert model.requests[1].output is not None
    assert model.requests[1].output.json_schema == {"type": "object"}


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["gpt-nonexistent", "persona:nobody", "capsule:nothing"])
def test_unknown_model_is_not_found(gateway: LiveGateway, name: str) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client(gateway).chat.completions.create(
            model=name, messages=[{"role": "user", "content": "hi"}]
        )
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["field"] == "model"
    assert name in error["message"]
    assert "GET /v1/models" in error["message"]


def test_wrong_key_is_an_authentication_error(gateway: LiveGateway) -> None:
    bad = client(gateway, key="soma_000000000000_" + "x" * 43)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model="scripted", messages=[{"role": "user", "content": "x"}])


def test_viewers_may_not_chat(gateway: LiveGateway) -> None:
    viewer = client(gateway, key=gateway.key("acme", "viewer"))
    with pytest.raises(openai.PermissionDeniedError):
        viewer.chat.completions.create(
            model="scripted", messages=[{"role": "user", "content": "x"}]
        )
    with pytest.raises(openai.PermissionDeniedError):
        viewer.models.list()


def test_more_than_one_choice_is_refused_naming_the_field(gateway: LiveGateway) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        client(gateway).chat.completions.create(
            model="scripted", messages=[{"role": "user", "content": "x"}], n=2
        )
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["field"] == "n"
    assert "only n=1 is supported" in error["message"]


def test_non_text_content_parts_are_refused(gateway: LiveGateway) -> None:
    image = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        client(gateway).chat.completions.create(
            model="scripted", messages=[{"role": "user", "content": [image]}]
        )
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["field"] == "messages.0.content"


def test_exhausted_token_quota_is_a_rate_limit_error_with_retry_after(
    gateway: LiveGateway, model_table: dict[str, Any]
) -> None:
    identity = gateway.services.identity
    identity.create_tenant("tiny", tokens_per_min=60)
    user = identity.create_user("tiny", "dev@tiny.test", "developer")
    _, key = identity.create_key("tiny", user.id, "dev key")
    answer(
        model_table,
        lambda request: ModelResponse(
            message=Message.assistant("a long answer"), usage=Usage(input_tokens=400)
        ),
    )
    tiny = client(gateway, key=key)
    messages: Any = [{"role": "user", "content": "x"}]
    tiny.chat.completions.create(model="scripted", messages=messages)  # goes into debt
    with pytest.raises(openai.RateLimitError) as caught:
        tiny.chat.completions.create(model="scripted", messages=messages)
    retry_after = int(caught.value.response.headers["retry-after"])
    assert 300 <= retry_after <= 400  # 340 tokens of debt refilled at 1 token/s
    assert "token quota" in caught.value.message
    # The quota is the tenant's: another tenant is unaffected.
    client(gateway).chat.completions.create(model="scripted", messages=messages)


# --- governance --------------------------------------------------------------------------------


def model_decisions(gateway: LiveGateway) -> list[Any]:
    """The tenant's audit records about model output (creating the test's users and keys
    audits identity changes too)."""
    records = gateway.services.store.list_audit(tenant_id="acme")
    return [r for r in records if r.action_kind != "identity"]


def test_secrets_in_persona_replies_are_masked_and_audited(
    gateway: LiveGateway, model_table: dict[str, Any]
) -> None:
    answer(model_table, lambda request: f"Deploy with the key {SECRET} and you are done.")
    result = client(gateway).chat.completions.create(
        model="persona:developer", messages=[{"role": "user", "content": "How do I deploy?"}]
    )
    content = result.choices[0].message.content or ""
    assert SECRET not in content
    assert content.startswith("Deploy with the key ")
    assert content.endswith(" and you are done.")
    records = model_decisions(gateway)
    assert [(r.actor, r.action_kind, r.effect, r.rule_id) for r in records] == [
        ("developer (chat)", "model_output", "redact", "redact-cloud-tokens")
    ]
    assert records[0].project_id is None


def test_streamed_persona_replies_are_governed_too(
    gateway: LiveGateway, model_table: dict[str, Any]
) -> None:
    answer(model_table, lambda request: f"Deploy with the key {SECRET} and you are done.")
    chunks = list(
        client(gateway).chat.completions.create(
            model="persona:developer",
            messages=[{"role": "user", "content": "How do I deploy?"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert SECRET not in text
    assert text.startswith("Deploy with the key ")
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].usage is not None
    records = model_decisions(gateway)
    assert [(r.effect, r.rule_id) for r in records] == [("redact", "redact-cloud-tokens")]


def test_provider_models_are_not_governed(
    gateway: LiveGateway, model_table: dict[str, Any]
) -> None:
    answer(model_table, lambda request: f"key: {SECRET}")
    result = client(gateway).chat.completions.create(
        model="scripted", messages=[{"role": "user", "content": "x"}]
    )
    assert result.choices[0].message.content == f"key: {SECRET}"
    assert model_decisions(gateway) == []


@pytest.fixture
def denying_gateway(
    gateway_settings: Settings, model_table: dict[str, Any], tmp_path: Path
) -> Iterator[LiveGateway]:
    """A gateway whose default constitution denies model outputs that mention launch codes."""
    extra = tmp_path / "library"
    (extra / "constitutions").mkdir(parents=True)
    (extra / "constitutions" / "default.yaml").write_text(
        "kind: constitution\nname: default\nversion: 9.0.0\nrules:\n"
        "  - id: deny-launch-codes\n    effect: deny\n"
        "    reason: Launch codes are never disclosed.\n"
        "    action: {kind: model_output}\n    when: {text_matches: 'launch code'}\n"
    )
    svc = build_services(
        gateway_settings, models=model_table.__getitem__, library=Library.builtin(extra)
    )
    yield from start(svc)


def test_denied_persona_replies_are_withheld(
    denying_gateway: LiveGateway, model_table: dict[str, Any]
) -> None:
    answer(model_table, lambda request: "The launch code is 0000.")
    with pytest.raises(openai.PermissionDeniedError) as caught:
        client(denying_gateway).chat.completions.create(
            model="persona:developer", messages=[{"role": "user", "content": "codes?"}]
        )
    assert "deny-launch-codes" in caught.value.message
    with pytest.raises(openai.PermissionDeniedError):
        client(denying_gateway).chat.completions.create(
            model="persona:developer", messages=[{"role": "user", "content": "codes?"}], stream=True
        )
    records = model_decisions(denying_gateway)
    assert [(r.effect, r.rule_id) for r in records] == [("deny", "deny-launch-codes")] * 2


# --- a real upstream ---------------------------------------------------------------------------


@pytest.fixture
def upstream() -> Iterator[FakeOpenAI]:
    yield from serve()


@pytest.fixture
def proxy(gateway_settings: Settings, upstream: FakeOpenAI) -> Iterator[LiveGateway]:
    """A gateway resolving models for real, with an OpenAI-compatible server behind it."""
    settings = gateway_settings.model_copy(
        update={
            "gateway_models": ["openai:up-model", "bogus:model"],
            "openai_base_url": upstream.base_url,
            "model_timeout_s": 0.5,
        }
    )
    yield from start(build_services(settings, models=model_resolver(settings)))


def test_passthrough_to_a_real_upstream(proxy: LiveGateway, upstream: FakeOpenAI) -> None:
    upstream.reply_json(completion("Hello from upstream", usage=(7, 3), model="up-model"))
    upstream.reply_sse(
        [
            chunk({"role": "assistant", "content": ""}),
            chunk({"content": "Hello "}),
            chunk({"content": "again"}),
            chunk(finish_reason="stop"),
            usage_chunk(5, 2),
        ]
    )
    oai = client(proxy)
    assert "openai:up-model" in [m.id for m in oai.models.list().data]
    messages: Any = [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "hi"}]

    result = oai.chat.completions.create(model="openai:up-model", messages=messages)
    assert result.choices[0].message.content == "Hello from upstream"
    assert result.model == "openai:up-model"
    assert result.usage is not None
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (7, 3)
    sent = upstream.requests[0]
    assert sent.path == "/v1/chat/completions"
    assert sent.body["model"] == "up-model"
    assert sent.body["messages"] == messages

    chunks = list(
        oai.chat.completions.create(
            model="openai:up-model",
            messages=messages,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello again"
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == 7
    assert upstream.requests[1].body["stream"] is True


@pytest.mark.parametrize(
    ("status", "error"),
    [(429, openai.RateLimitError), (500, openai.InternalServerError)],
)
def test_upstream_failures_map_to_clear_http_errors(
    proxy: LiveGateway, upstream: FakeOpenAI, status: int, error: type[openai.APIStatusError]
) -> None:
    upstream.reply(Reply(status=status, body={"error": {"message": "upstream is unhappy"}}))
    with pytest.raises(error) as caught:
        client(proxy).chat.completions.create(
            model="openai:up-model", messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.status_code == (429 if status == 429 else 502)
    assert "upstream is unhappy" in caught.value.message
    assert upstream.base_url not in caught.value.message  # the upstream address stays internal


def test_upstream_failure_of_a_stream_is_an_http_error(
    proxy: LiveGateway, upstream: FakeOpenAI
) -> None:
    upstream.reply(Reply(status=503, body={"error": {"message": "overloaded"}}))
    with pytest.raises(openai.InternalServerError) as caught:
        client(proxy).chat.completions.create(
            model="openai:up-model", messages=[{"role": "user", "content": "hi"}], stream=True
        )
    assert caught.value.status_code == 502


def test_upstream_timeout_is_a_gateway_timeout(proxy: LiveGateway, upstream: FakeOpenAI) -> None:
    upstream.reply_json(completion("too late"), delay_s=3)
    with pytest.raises(openai.InternalServerError) as caught:
        client(proxy).chat.completions.create(
            model="openai:up-model", messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.status_code == 504
    assert "did not answer within" in caught.value.message


def test_a_provider_that_cannot_be_set_up_is_unavailable(proxy: LiveGateway) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        client(proxy).chat.completions.create(
            model="bogus:model", messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.status_code == 503
    assert "unknown model 'bogus:model'" in caught.value.message


def test_a_stream_failing_midway_ends_with_an_error_event(
    proxy: LiveGateway, upstream: FakeOpenAI
) -> None:
    upstream.reply_sse([chunk({"role": "assistant", "content": "Hel"}), "{not json"])
    stream = client(proxy).chat.completions.create(
        model="openai:up-model", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    received = []
    with pytest.raises(openai.APIError) as caught:
        received.extend(stream)
    assert [c.choices[0].delta.content for c in received] == ["", "Hel"]
    assert "not JSON" in caught.value.message
