"""Runs an :class:`AgentLoop` in-process: performs the effects the loop asks for.

Model and tool calls are the only side effects; they are injected, so the same driver serves
the CLI, tests (with a scripted model) and benchmarks. The durable driver lives in the orchestrator.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from pydantic import BaseModel

from soma.agents.loop import AgentLoop, AgentState, CallModel, CallTools, Fail, Finish, ToolOutcome
from soma.errors import ModelError, ModelOutputError
from soma.models.protocol import Model
from soma.models.types import ModelResponse, ToolCall, Usage

ToolExecutor = Callable[[ToolCall], Awaitable[ToolOutcome]]


class AgentEvent(BaseModel):
    """Progress of a run, for consoles and logs. ``detail`` is short and already redacted."""

    kind: Literal["model", "tool", "invalid_output", "finished", "failed"]
    step: int
    detail: str = ""
    data: dict[str, Any] = {}


EventSink = Callable[[AgentEvent], None]


class AgentResult(BaseModel):
    ok: bool
    output: Any = None
    text: str | None = None
    error: str | None = None
    failure_kind: str | None = None
    steps: int
    usage: Usage
    state: AgentState


async def drive(
    loop: AgentLoop,
    model: Model,
    execute_tool: ToolExecutor,
    *,
    on_event: EventSink | None = None,
    state: AgentState | None = None,
) -> AgentResult:
    """Drive ``loop`` to completion. Tool calls of one model turn run concurrently."""
    emit = on_event or _ignore
    state = state if state is not None else loop.start()
    while True:
        action = loop.next_action(state)
        if isinstance(action, CallModel):
            state = await _call_model(loop, model, action, state, emit)
        elif isinstance(action, CallTools):
            outcomes = await _call_tools(action, execute_tool)
            for outcome in outcomes:
                emit(_tool_event(action.step, outcome))
            state = loop.on_tool_results(state, outcomes)
        elif isinstance(action, Finish):
            emit(AgentEvent(kind="finished", step=state.steps, detail=excerpt(action.text)))
            return AgentResult(
                ok=True,
                output=action.output,
                text=action.text,
                steps=state.steps,
                usage=state.usage,
                state=state,
            )
        else:
            assert isinstance(action, Fail)
            emit(AgentEvent(kind="failed", step=state.steps, detail=action.reason))
            return AgentResult(
                ok=False,
                error=action.reason,
                failure_kind=action.failure_kind,
                steps=state.steps,
                usage=state.usage,
                state=state,
            )


async def _call_model(
    loop: AgentLoop, model: Model, action: CallModel, state: AgentState, emit: EventSink
) -> AgentState:
    try:
        response: ModelResponse = await model.complete(action.request)
    except ModelOutputError as exc:
        emit(AgentEvent(kind="invalid_output", step=action.step, detail=excerpt(str(exc))))
        return loop.on_invalid_reply(state, str(exc))
    except ModelError as exc:
        return loop.on_model_error(state, f"model {model.name} failed: {exc}")
    invalid_before = state.invalid_outputs
    state = loop.on_model_response(state, response)
    message = response.message
    if message.tool_calls:
        detail = ", ".join(call.name for call in message.tool_calls)
    else:
        detail = excerpt(message.content or "")
    emit(
        AgentEvent(
            kind="model",
            step=action.step,
            detail=detail,
            data={"tokens": response.usage.total_tokens, "tool_calls": len(message.tool_calls)},
        )
    )
    if state.invalid_outputs > invalid_before and state.failure is None:
        emit(
            AgentEvent(kind="invalid_output", step=action.step, detail="asked the model to repair")
        )
    return state


async def _call_tools(action: CallTools, execute_tool: ToolExecutor) -> list[ToolOutcome]:
    if len(action.calls) == 1:
        return [await execute_tool(action.calls[0])]
    return list(await asyncio.gather(*(execute_tool(call) for call in action.calls)))


def _tool_event(step: int, outcome: ToolOutcome) -> AgentEvent:
    status = "ok" if outcome.ok else "error"
    return AgentEvent(
        kind="tool",
        step=step,
        detail=f"{outcome.name} → {status}: {excerpt(outcome.output)}",
        data={"tool": outcome.name, "ok": outcome.ok},
    )


def excerpt(text: str, limit: int = 120) -> str:
    """One line of at most ``limit`` characters, for progress output and event logs."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _ignore(_: AgentEvent) -> None:
    return None
