from __future__ import annotations

import json

import pytest
from pydantic import BaseModel

from soma.errors import ModelError, ModelTimeout
from soma.models import (
    FunctionModel,
    Message,
    Model,
    ModelRequest,
    ModelResponse,
    ScriptedModel,
    ToolCall,
    Usage,
    final,
    tool_call,
    tool_calls,
)


def ask(text: str = "one two three") -> ModelRequest:
    return ModelRequest(messages=[Message.system("be brief"), Message.user(text)])


async def test_replays_script_in_order_and_records_requests() -> None:
    model = ScriptedModel(["first answer", Message.assistant("second")])
    first, second = ask("a"), ask("b")

    assert (await model.complete(first)).message == Message.assistant("first answer")
    assert (await model.complete(second)).message == Message.assistant("second")
    assert model.requests == [first, second]
    assert model.remaining == 0
    assert isinstance(model, Model)


async def test_usage_counts_words_deterministically() -> None:
    response = await ScriptedModel(["four words of output"]).complete(ask("one two three"))
    # input: "be brief" (2) + "one two three" (3)
    assert response.usage == Usage(input_tokens=5, output_tokens=4)
    assert response.model == "scripted"
    assert response.finish_reason == "stop"


async def test_explicit_response_keeps_its_usage_and_reason() -> None:
    given = ModelResponse(
        message=Message.assistant("cut"), usage=Usage(input_tokens=99), finish_reason="length"
    )
    response = await ScriptedModel([given]).complete(ask())
    assert response.usage == Usage(input_tokens=99)
    assert response.finish_reason == "length"


async def test_exception_step_is_raised_and_script_continues() -> None:
    model = ScriptedModel([ModelTimeout("slow"), "recovered"])
    with pytest.raises(ModelTimeout):
        await model.complete(ask())
    assert (await model.complete(ask())).message.content == "recovered"
    assert len(model.requests) == 2


async def test_exhausted_script_raises_clear_error() -> None:
    model = ScriptedModel(["only"])
    await model.complete(ask())
    with pytest.raises(ModelError, match=r"script exhausted after 1 response"):
        await model.complete(ask())


def test_bad_script_step_fails_at_construction() -> None:
    with pytest.raises(TypeError, match="step 1"):
        ScriptedModel(["ok", 42])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="assistant"):
        ScriptedModel([Message.user("wrong role")])


async def test_tool_call_helpers_get_numbered_ids() -> None:
    model = ScriptedModel(
        [tool_call("read_file", path="a.txt"), tool_calls(("ls", {}), ("grep", {"q": "x"}))]
    )
    one = await model.complete(ask())
    two = await model.complete(ask())

    assert one.message.tool_calls == [
        ToolCall(id="call_1", name="read_file", arguments={"path": "a.txt"})
    ]
    assert [c.id for c in two.message.tool_calls] == ["call_2", "call_3"]
    assert two.finish_reason == "tool_calls"
    assert two.usage.output_tokens == 2


async def test_ids_are_identical_across_runs_and_script_is_not_mutated() -> None:
    step = tool_call("t", name="arg named name")
    runs = [await ScriptedModel([step]).complete(ask()) for _ in range(2)]
    assert runs[0] == runs[1]
    assert step.tool_calls[0].id == ""
    assert step.tool_calls[0].arguments == {"name": "arg named name"}


async def test_explicit_tool_call_ids_are_kept() -> None:
    message = Message.assistant(tool_calls=[ToolCall(id="mine", name="t")])
    response = await ScriptedModel([message]).complete(ask())
    assert response.message.tool_calls[0].id == "mine"


class Verdict(BaseModel):
    ok: bool
    reason: str


def test_final_builds_json_answers() -> None:
    assert json.loads(final({"a": [1, 2]}).content or "") == {"a": [1, 2]}
    assert Verdict.model_validate_json(final(Verdict(ok=True, reason="fine")).content or "").ok


async def test_stream_yields_text_pieces_then_same_response() -> None:
    text = "a reasonably long answer to split"
    model = ScriptedModel([text, text])
    chunks = [c async for c in model.stream(ask())]
    completed = await model.complete(ask())

    assert len(chunks) > 2
    assert "".join(c.text for c in chunks) == text
    assert all(c.response is None for c in chunks[:-1])
    assert chunks[-1].response == completed


async def test_stream_of_tool_call_has_only_final_chunk() -> None:
    chunks = [c async for c in ScriptedModel([tool_call("t")]).stream(ask())]
    assert len(chunks) == 1
    assert chunks[0].response is not None
    assert chunks[0].response.message.tool_calls[0].name == "t"


async def test_function_model_sync_and_async() -> None:
    def echo(request: ModelRequest) -> str:
        return f"you said {request.messages[-1].content}"

    async def call_tool(request: ModelRequest) -> Message:
        return tool_call("lookup", q=request.messages[-1].content)

    sync_model, async_model = FunctionModel(echo), FunctionModel(call_tool, name="fn")

    assert (await sync_model.complete(ask("hi"))).message.content == "you said hi"
    response = await async_model.complete(ask("x"))
    assert response.message.tool_calls == [
        ToolCall(id="call_1", name="lookup", arguments={"q": "x"})
    ]
    assert response.model == "fn"
    assert len(sync_model.requests) == len(async_model.requests) == 1
    assert isinstance(sync_model, Model)


async def test_function_model_stream_and_errors() -> None:
    def fn(request: ModelRequest) -> str:
        if len(request.messages) > 2:
            raise ModelError("boom")
        return "streamed reply"

    model = FunctionModel(fn)
    chunks = [c async for c in model.stream(ask())]
    assert "".join(c.text for c in chunks) == "streamed reply"
    with pytest.raises(ModelError, match="boom"):
        await model.complete(ModelRequest(messages=[Message.user("a")] * 3))
    assert len(model.requests) == 2
