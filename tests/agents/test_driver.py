"""The agent loop driven by a scripted model: tools, output repair, step and token limits."""

from __future__ import annotations

from typing import Any

import pytest

from soma.agents.driver import AgentEvent, drive
from soma.agents.loop import STEP_BUDGET_NOTE, AgentLoop, AgentTask, ToolOutcome
from soma.errors import ModelError, ModelOutputError
from soma.models.scripted import ScriptedModel, final, tool_call, tool_calls
from soma.models.types import ModelResponse, ToolCall, ToolSpec, Usage

OUTPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"answer": {"type": "string"}},
    "required": ["answer"],
}
ECHO = ToolSpec(
    name="echo", parameters={"type": "object", "properties": {"text": {"type": "string"}}}
)


def make_task(**overrides: Any) -> AgentTask:
    fields: dict[str, Any] = {
        "run_id": "run1",
        "system_prompt": "You are a test agent.",
        "user_prompt": "Do the thing.",
        "tools": (ECHO,),
        "output_schema": OUTPUT_SCHEMA,
        "max_steps": 5,
    }
    fields.update(overrides)
    return AgentTask(**fields)


class EchoTools:
    def __init__(self) -> None:
        self.calls: list[ToolCall] = []

    async def __call__(self, call: ToolCall) -> ToolOutcome:
        self.calls.append(call)
        return ToolOutcome(
            call_id=call.id, name=call.name, output=f"echo:{call.arguments.get('text')}"
        )


@pytest.fixture
def tools() -> EchoTools:
    return EchoTools()


async def test_tool_result_reaches_the_model_and_final_answer_is_parsed(tools: EchoTools) -> None:
    model = ScriptedModel([tool_call("echo", text="hi"), final({"answer": "done"})])
    result = await drive(AgentLoop(make_task()), model, tools)

    assert result.ok, result.error
    assert result.output == {"answer": "done"}
    assert result.steps == 2
    assert [c.arguments for c in tools.calls] == [{"text": "hi"}]
    second_request = model.requests[1]
    tool_message = second_request.messages[-1]
    assert tool_message.role == "tool"
    assert tool_message.content == "echo:hi"
    assert tool_message.tool_call_id == "call_1"
    assert model.remaining == 0


async def test_parallel_tool_calls_all_run_and_are_answered_in_order(tools: EchoTools) -> None:
    model = ScriptedModel(
        [tool_calls(("echo", {"text": "a"}), ("echo", {"text": "b"})), final({"answer": "x"})]
    )
    result = await drive(AgentLoop(make_task()), model, tools)

    assert result.ok
    answers = [m.content for m in model.requests[1].messages if m.role == "tool"]
    assert answers == ["echo:a", "echo:b"]


async def test_failed_tool_is_reported_to_the_model_so_it_can_adapt() -> None:
    async def failing(call: ToolCall) -> ToolOutcome:
        return ToolOutcome(call_id=call.id, name=call.name, ok=False, output="no such file")

    model = ScriptedModel([tool_call("echo", text="x"), final({"answer": "adapted"})])
    result = await drive(AgentLoop(make_task()), model, failing)

    assert result.ok
    assert model.requests[1].messages[-1].content == "ERROR: no such file"


async def test_invalid_final_answer_is_sent_back_with_the_reason(tools: EchoTools) -> None:
    model = ScriptedModel(["not json at all", final({"wrong": 1}), final({"answer": "ok"})])
    events: list[AgentEvent] = []
    result = await drive(AgentLoop(make_task()), model, tools, on_event=events.append)

    assert result.ok
    assert result.output == {"answer": "ok"}
    first_repair = model.requests[1].messages[-1].content or ""
    assert "not valid JSON" in first_repair
    second_repair = model.requests[2].messages[-1].content or ""
    assert "'answer' is a required property" in second_repair
    assert [e.kind for e in events].count("invalid_output") == 2


async def test_gives_up_after_bounded_invalid_outputs(tools: EchoTools) -> None:
    model = ScriptedModel([final({"wrong": i}) for i in range(3)])
    result = await drive(AgentLoop(make_task(max_invalid_outputs=2)), model, tools)

    assert not result.ok
    assert result.failure_kind == "invalid_output"
    assert "'answer' is a required property" in (result.error or "")
    assert model.remaining == 0


async def test_max_steps_withdraws_tools_then_stops(tools: EchoTools) -> None:
    model = ScriptedModel([tool_call("echo", text=str(i)) for i in range(3)])
    result = await drive(AgentLoop(make_task(max_steps=3)), model, tools)

    assert not result.ok
    assert result.failure_kind == "max_steps"
    assert result.steps == 3
    assert len(tools.calls) == 2
    last_request = model.requests[-1]
    assert last_request.tools == []
    assert last_request.messages[-1].content == STEP_BUDGET_NOTE
    assert model.requests[0].tools == [ECHO]


async def test_last_step_can_still_finish(tools: EchoTools) -> None:
    model = ScriptedModel([tool_call("echo", text="1"), final({"answer": "in time"})])
    result = await drive(AgentLoop(make_task(max_steps=2)), model, tools)
    assert result.ok
    assert result.output == {"answer": "in time"}


async def test_token_budget_stops_the_run(tools: EchoTools) -> None:
    big = ModelResponse(
        message=tool_call("echo", text="x"), usage=Usage(input_tokens=900, output_tokens=200)
    )
    model = ScriptedModel([big, final({"answer": "never"})])
    result = await drive(AgentLoop(make_task(max_tokens=1000)), model, tools)

    assert not result.ok
    assert result.failure_kind == "budget"
    assert "1100" in (result.error or "")
    assert tools.calls == []


async def test_usage_is_summed_over_steps(tools: EchoTools) -> None:
    responses = [
        ModelResponse(
            message=tool_call("echo", text="x"), usage=Usage(input_tokens=10, output_tokens=2)
        ),
        ModelResponse(
            message=final({"answer": "y"}), usage=Usage(input_tokens=20, output_tokens=3)
        ),
    ]
    result = await drive(AgentLoop(make_task()), ScriptedModel(responses), tools)
    assert result.usage == Usage(input_tokens=30, output_tokens=5)


async def test_model_error_fails_the_run_with_the_provider_message(tools: EchoTools) -> None:
    model = ScriptedModel([ModelError("upstream said 500")])
    result = await drive(AgentLoop(make_task()), model, tools)
    assert not result.ok
    assert result.failure_kind == "model"
    assert "upstream said 500" in (result.error or "")


async def test_without_output_schema_plain_text_is_the_answer(tools: EchoTools) -> None:
    model = ScriptedModel(["just text"])
    result = await drive(AgentLoop(make_task(output_schema=None)), model, tools)
    assert result.ok
    assert result.output == "just text"


async def test_fenced_json_is_accepted(tools: EchoTools) -> None:
    model = ScriptedModel(['```json\n{"answer": "fenced"}\n```'])
    result = await drive(AgentLoop(make_task()), model, tools)
    assert result.output == {"answer": "fenced"}


def test_loop_state_round_trips_through_json() -> None:
    loop = AgentLoop(make_task())
    state = loop.start()
    restored = type(state).model_validate_json(state.model_dump_json())
    assert restored == state
    action = loop.next_action(restored)
    assert action.kind == "model"
    assert action.key == "run1:model:1"


async def test_repeating_the_same_call_withdraws_tools(tools: EchoTools) -> None:
    model = ScriptedModel([tool_call("echo", text="same")] * 3 + [final({"answer": "unstuck"})])
    result = await drive(AgentLoop(make_task(max_steps=10, max_repeated_calls=3)), model, tools)

    assert result.ok
    assert len(tools.calls) == 3
    stuck_request = model.requests[3]
    assert stuck_request.tools == []
    assert "same tool call 3 times" in (stuck_request.messages[-1].content or "")


async def test_varied_calls_are_not_treated_as_a_loop(tools: EchoTools) -> None:
    model = ScriptedModel(
        [tool_call("echo", text=str(i)) for i in range(4)] + [final({"answer": "x"})]
    )
    result = await drive(AgentLoop(make_task(max_steps=10, max_repeated_calls=3)), model, tools)
    assert result.ok
    assert all(r.tools == [ECHO] for r in model.requests[:5])


async def test_unusable_reply_is_sent_back_and_tools_withdrawn(tools: EchoTools) -> None:
    model = ScriptedModel(
        [ModelOutputError("tool arguments break the schema"), final({"answer": "recovered"})]
    )
    result = await drive(AgentLoop(make_task()), model, tools)

    assert result.ok
    retry = model.requests[1]
    assert retry.tools == []
    assert "tool arguments break the schema" in (retry.messages[-1].content or "")


async def test_unusable_replies_are_bounded(tools: EchoTools) -> None:
    model = ScriptedModel([ModelOutputError("bad")] * 3)
    result = await drive(AgentLoop(make_task(max_invalid_outputs=2)), model, tools)
    assert not result.ok
    assert result.failure_kind == "invalid_output"
