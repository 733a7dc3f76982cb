"""The agent loop as pure decision logic.

The loop never performs I/O. It looks at a serialisable :class:`AgentState` and says what to do
next (:class:`CallModel`, :class:`CallTools`, :class:`Finish` or :class:`Fail`); a driver performs
the effect and feeds the result back. That split is what lets the same loop run in-process today
and inside a deterministic Temporal workflow later, where each effect becomes an activity with an
idempotency key.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError as SchemaViolation
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from soma.models.types import (
    Message,
    ModelRequest,
    ModelResponse,
    OutputSchema,
    ToolCall,
    ToolSpec,
    Usage,
)

STEP_BUDGET_NOTE = (
    "You have reached your step budget. Do not call tools any more: give your final answer now."
)
REPEAT_NOTE = (
    "You made the same tool call {count} times in a row and got the same result. Tools are "
    "withdrawn for this turn: give your final answer now, or change your approach."
)


class AgentTask(BaseModel):
    """Everything fixed for one run: prompts, the tools offered and the rules of the loop.

    A plain pydantic model so it can cross a process boundary (a Temporal activity prepares it,
    the workflow runs the loop).
    """

    model_config = ConfigDict(frozen=True)

    run_id: str
    system_prompt: str
    user_prompt: str
    tools: tuple[ToolSpec, ...] = ()
    output_schema: dict[str, Any] | None = None
    max_steps: int = 12
    max_invalid_outputs: int = 2
    max_repeated_calls: int = 3
    max_tokens: int | None = None
    temperature: float | None = None
    _validator: Draft202012Validator | None = PrivateAttr(default=None)

    def model_post_init(self, context: Any, /) -> None:
        if self.output_schema is not None:
            self._validator = Draft202012Validator(self.output_schema)

    def output_problem(self, value: Any) -> str | None:
        """Why ``value`` is not a valid final answer, or None when it is."""
        if self._validator is None:
            return None
        error: SchemaViolation | None = next(iter(self._validator.iter_errors(value)), None)
        if error is None:
            return None
        where = "/".join(str(p) for p in error.absolute_path) or "(root)"
        return f"at {where}: {error.message}"


FailureKind = Literal["max_steps", "invalid_output", "budget", "model"]


class ToolOutcome(BaseModel):
    """What a tool call produced, as the model will see it."""

    call_id: str
    name: str
    ok: bool = True
    output: str = ""


class AgentState(BaseModel):
    """The loop's whole memory. Plain data so it can be checkpointed or replayed."""

    messages: list[Message]
    steps: int = 0
    invalid_outputs: int = 0
    usage: Usage = Field(default_factory=Usage)
    pending_tool_calls: list[ToolCall] = Field(default_factory=list)
    force_answer: bool = False
    last_call_signature: str | None = None
    repeated_calls: int = 0
    output: Any = None
    final_text: str | None = None
    failure: str | None = None
    failure_kind: FailureKind | None = None

    @property
    def finished(self) -> bool:
        return self.final_text is not None or self.failure is not None


class CallModel(BaseModel):
    kind: Literal["model"] = "model"
    step: int
    key: str
    request: ModelRequest


class CallTools(BaseModel):
    kind: Literal["tools"] = "tools"
    step: int
    calls: list[ToolCall]

    def key(self, call: ToolCall) -> str:
        return f"tool:{self.step}:{call.id}"


class Finish(BaseModel):
    kind: Literal["finish"] = "finish"
    output: Any
    text: str


class Fail(BaseModel):
    kind: Literal["fail"] = "fail"
    reason: str
    failure_kind: FailureKind


Action = CallModel | CallTools | Finish | Fail


class AgentLoop:
    """Decides the next action of one agent run; see the module docstring for why it is pure."""

    def __init__(self, task: AgentTask) -> None:
        self.task = task
        self._output = (
            OutputSchema(json_schema=task.output_schema) if task.output_schema is not None else None
        )

    def start(self) -> AgentState:
        return AgentState(
            messages=[Message.system(self.task.system_prompt), Message.user(self.task.user_prompt)]
        )

    def next_action(self, state: AgentState) -> Action:
        if state.failure is not None:
            return Fail(reason=state.failure, failure_kind=state.failure_kind or "model")
        if state.final_text is not None:
            return Finish(output=state.output, text=state.final_text)
        if state.pending_tool_calls:
            return CallTools(step=state.steps, calls=list(state.pending_tool_calls))
        last_step = state.steps + 1 >= self.task.max_steps
        stuck = state.repeated_calls >= self.task.max_repeated_calls or state.force_answer
        messages = state.messages
        if last_step and self.task.tools:
            messages = [*messages, Message.user(STEP_BUDGET_NOTE)]
        elif stuck and not state.force_answer:
            note = REPEAT_NOTE.format(count=state.repeated_calls)
            messages = [*messages, Message.user(note)]
        request = ModelRequest(
            messages=messages,
            tools=[] if last_step or stuck else list(self.task.tools),
            output=self._output,
            temperature=self.task.temperature,
        )
        step = state.steps + 1
        return CallModel(step=step, key=f"{self.task.run_id}:model:{step}", request=request)

    def on_model_response(self, state: AgentState, response: ModelResponse) -> AgentState:
        state.steps += 1
        state.force_answer = False
        state.usage = state.usage + response.usage
        message = response.message
        state.messages.append(message)
        if self.task.max_tokens is not None and state.usage.total_tokens > self.task.max_tokens:
            return self._fail(
                state,
                "budget",
                f"token budget exceeded: used {state.usage.total_tokens} of {self.task.max_tokens}",
            )
        if message.tool_calls:
            if state.steps >= self.task.max_steps:
                return self._fail(
                    state,
                    "max_steps",
                    f"no final answer after {state.steps} steps (max_steps={self.task.max_steps})",
                )
            state.pending_tool_calls = list(message.tool_calls)
            return state
        return self._accept_final(state, message.content or "")

    def on_tool_results(self, state: AgentState, outcomes: list[ToolOutcome]) -> AgentState:
        """Record results; count identical consecutive turns so a looping agent is stopped.

        Small models in particular repeat a failing call forever; after ``max_repeated_calls``
        identical turns (same calls, same results) the next turn withdraws the tools.
        """
        signature = _turn_signature(state.pending_tool_calls, outcomes)
        if signature == state.last_call_signature:
            state.repeated_calls += 1
        else:
            state.last_call_signature = signature
            state.repeated_calls = 1
        for outcome in outcomes:
            content = outcome.output if outcome.ok else f"ERROR: {outcome.output}"
            state.messages.append(Message.tool(outcome.call_id, outcome.name, content))
        state.pending_tool_calls = []
        return state

    def on_model_error(self, state: AgentState, error: str) -> AgentState:
        return self._fail(state, "model", error)

    def on_critique(self, state: AgentState, critique: str) -> AgentState:
        """A critic judged the accepted answer against the principles and found problems: the
        answer is withdrawn and the agent revises it (the constitutional critique/revise loop)."""
        state.final_text = None
        state.output = None
        state.messages.append(
            Message.user(
                "A critic reviewed your answer against the constitution's principles and asks "
                f"for a revision:\n{critique}\nRevise and give your final answer again."
            )
        )
        return state

    def on_budget_exceeded(self, state: AgentState, reason: str) -> AgentState:
        """A budget the driver measures (wall time) ran out: stop with the reason."""
        return self._fail(state, "budget", reason)

    def on_invalid_reply(self, state: AgentState, problem: str) -> AgentState:
        """The model answered, but not in a usable shape (e.g. tool arguments that break the
        tool's schema). Small models do this; like an invalid final answer, it is sent back
        (bounded by ``max_invalid_outputs``) and the next turn asks for the answer without tools.
        """
        state.steps += 1
        state.invalid_outputs += 1
        if state.invalid_outputs > self.task.max_invalid_outputs:
            return self._fail(
                state, "invalid_output", f"replies still invalid after retries: {problem}"
            )
        if state.steps >= self.task.max_steps:
            return self._fail(state, "max_steps", f"reply invalid ({problem}) and no steps left")
        state.force_answer = True
        state.messages.append(
            Message.user(f"Your last reply was rejected: {problem}. Give your final answer now.")
        )
        return state

    def _accept_final(self, state: AgentState, text: str) -> AgentState:
        if self.task.output_schema is None:
            state.final_text = text
            state.output = text
            return state
        value, problem = _parse_json(text)
        if problem is None:
            problem = self.task.output_problem(value)
        if problem is None:
            state.final_text = text
            state.output = value
            return state
        state.invalid_outputs += 1
        if state.invalid_outputs > self.task.max_invalid_outputs:
            return self._fail(
                state,
                "invalid_output",
                f"final answer still invalid after {self.task.max_invalid_outputs} retries: "
                f"{problem}",
            )
        if state.steps >= self.task.max_steps:
            return self._fail(
                state, "max_steps", f"final answer invalid ({problem}) and no steps left"
            )
        state.messages.append(Message.user(_repair_prompt(problem, self.task.output_schema)))
        return state

    @staticmethod
    def _fail(state: AgentState, kind: FailureKind, reason: str) -> AgentState:
        state.failure = reason
        state.failure_kind = kind
        return state


def _turn_signature(calls: list[ToolCall], outcomes: list[ToolOutcome]) -> str:
    parts = [
        (call.name, json.dumps(call.arguments, sort_keys=True, default=str), outcome.output)
        for call, outcome in zip(calls, outcomes, strict=False)
    ]
    return json.dumps(parts)


def _parse_json(text: str) -> tuple[Any, str | None]:
    stripped = text.strip()
    if stripped.startswith("```"):
        stripped = stripped.strip("`")
        stripped = stripped.split("\n", 1)[1] if "\n" in stripped else stripped
    try:
        return json.loads(stripped), None
    except json.JSONDecodeError as exc:
        return None, f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"


def _repair_prompt(problem: str, schema: dict[str, Any]) -> str:
    return (
        f"Your final answer was rejected: {problem}. "
        "Reply again with only a JSON value that matches this JSON Schema:\n"
        f"{json.dumps(schema)}"
    )
