"""The model planner: ask a model for a plan, check it statically, and let it repair its mistakes.

A plan that fails ``validate_plan`` would otherwise fail minutes into a run, after paid model
calls, so every answer is validated here and the exact error is sent back to the model, which
fixes most mistakes (a cycle, a typo in an output name, a forgotten dependency) in one more turn.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from soma.errors import ModelError, SpecError
from soma.models.protocol import Model
from soma.models.types import Message, ModelRequest, ModelResponse, OutputSchema, Usage
from soma.planner.catalogue import (
    MAX_NODES,
    capsule_index,
    plan_schema,
    render_catalogue,
    wiring_example,
)
from soma.specs.library import Library
from soma.specs.models import Capsule, Plan
from soma.specs.plans import REFERENCE_RE, validate_plan

EXCERPT_CHARS = 400
_MAX_ERRORS_SHOWN = 5
_PLACEHOLDER_RE = re.compile(r"\$\{[^{}]*\}?")
"""Anything that looks like a ``${...}`` reference, well-formed or not."""
_FENCE_RE = re.compile(r"^\s*```[a-zA-Z]*\s*\n?(.*?)\n?\s*```\s*$", re.DOTALL)

_RULES = """\
Rules:
- Use only the capsules listed above; "capsule" is the capsule name.
- Node ids are short, unique, lower-case words (letters, digits, '-'), e.g. "spec", "design".
- Give every required input, either as a literal string taken from the goal or as a reference
  "${<node id>.outputs.<output name>}" to an output of another node.
- A node that references another node must list that node in its "depends_on".
- The plan must be a DAG: no node may depend on itself, directly or indirectly.
- Nodes that do not depend on each other run in parallel.
- Answer with one JSON object and nothing else."""


class PlanAttempt(BaseModel):
    """One model answer and why it was rejected (``error`` is None for the accepted one)."""

    answer: str = Field(description=f"The first {EXCERPT_CHARS} characters of the answer.")
    error: str | None = None


class PlanAttempts(BaseModel):
    """What the model planner produced: the plan (None if no attempt was valid) and the trail."""

    plan: Plan | None = None
    attempts: list[PlanAttempt] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)

    @property
    def last_error(self) -> str | None:
        return self.attempts[-1].error if self.attempts else None


class _Rejected(Exception):
    """An answer that is not a valid plan; the message is what the model is shown."""


async def plan_with_model(
    goal: str, library: Library, model: Model, *, max_attempts: int = 3
) -> PlanAttempts:
    """Ask ``model`` for a plan of ``goal`` up to ``max_attempts`` times, repairing in between.

    Never raises for a bad answer or a failing model: the caller decides whether to fall back,
    so the result says what went wrong in each attempt. A :class:`ModelError` ends the attempts
    at once, since a provider that cannot answer will not be helped by a repair prompt.
    """
    capsules = capsule_index(library)
    request = ModelRequest(
        messages=[Message.system(system_prompt(library, goal)), Message.user(_goal_prompt(goal))],
        output=OutputSchema(name="plan", json_schema=plan_schema(library)),
    )
    result = PlanAttempts()
    for _ in range(max(1, max_attempts)):
        try:
            response = await model.complete(request)
        except ModelError as exc:
            result.attempts.append(PlanAttempt(answer="", error=f"the model failed: {exc}"))
            break
        result.usage = result.usage + response.usage
        answer = _answer_text(response)
        try:
            result.plan = parse_plan(answer, goal, capsules)
        except _Rejected as exc:
            result.attempts.append(PlanAttempt(answer=_excerpt(answer), error=str(exc)))
            request = _with_repair(request, answer, str(exc))
            continue
        result.attempts.append(PlanAttempt(answer=_excerpt(answer)))
        break
    return result


def system_prompt(library: Library, goal: str = "...") -> str:
    """The catalogue, the wiring syntax and an example: all a model needs to write a plan."""
    return (
        "You plan software work as a DAG of capsule runs. A capsule is a reusable task done by "
        "an AI agent; a plan lists nodes, each running one capsule with its inputs.\n\n"
        f"Capsules:\n{render_catalogue(library)}\n\n{_RULES}\n\n"
        f"Example of wiring one node's output into another's input:\n"
        f"{wiring_example(library, goal)}"
    )


def _goal_prompt(goal: str) -> str:
    return f"Goal: {goal}\n\nWrite the plan that achieves this goal."


def parse_plan(answer: str, goal: str, capsules: dict[str, Capsule]) -> Plan:
    """The answer as a validated Plan, or :class:`_Rejected` with a message for the model.

    The plan keeps the user's goal rather than the model's restatement of it.
    """
    data = _load_json(answer)
    if not isinstance(data, dict):
        raise _Rejected(f"the answer must be a JSON object, not {type(data).__name__}")
    nodes = data.get("nodes")
    if isinstance(nodes, list) and len(nodes) > MAX_NODES:
        raise _Rejected(f"the plan has {len(nodes)} nodes; use at most {MAX_NODES}")
    try:
        plan = Plan.model_validate({"goal": goal, "nodes": nodes})
    except ValidationError as exc:
        raise _Rejected(_describe_validation(exc)) from None
    _check_reference_syntax(plan)  # first: validate_plan would call a near-miss a bad literal
    try:
        validate_plan(plan, capsules)
    except SpecError as exc:  # PlanError, or a SpecError such as a bad version range
        raise _Rejected(str(exc)) from None
    return plan


def _check_reference_syntax(plan: Plan) -> None:
    """Reject near-miss references such as ``${spec.output.spec}``.

    ``validate_plan`` only sees strings that match the reference syntax exactly; anything else
    is a literal to it, so a typo would silently hand the capsule the text ``${spec.spec}``
    instead of the spec. Models make exactly this kind of typo, so it is checked here.
    """
    for node in plan.nodes:
        for name, text in _strings(node.inputs):
            for match in _PLACEHOLDER_RE.finditer(text):
                if not REFERENCE_RE.fullmatch(match.group(0)):
                    raise _Rejected(
                        f"node '{node.id}' input '{name}': {match.group(0)!r} is not a valid "
                        "reference; write it as ${<node id>.outputs.<output name>}"
                    )


def _strings(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Every string nested in ``value`` with its dotted path."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, f"{path}[{index}]")


def _load_json(answer: str) -> Any:
    """Parse the answer, tolerating a Markdown code fence around it (unconstrained models)."""
    match = _FENCE_RE.match(answer)
    text = match.group(1) if match else answer
    if not text.strip():
        raise _Rejected("the answer is empty; expected a JSON object with 'goal' and 'nodes'")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise _Rejected(f"the answer is not valid JSON: {exc}") from None
    except RecursionError:
        raise _Rejected("the answer is nested too deeply to be a plan") from None


def _describe_validation(exc: ValidationError) -> str:
    """Pydantic's errors as ``nodes[1].id: message`` lines, the form plan errors use."""
    errors = exc.errors()
    lines = [f"{_format_loc(e['loc'])}: {e['msg']}" for e in errors[:_MAX_ERRORS_SHOWN]]
    if len(errors) > _MAX_ERRORS_SHOWN:
        lines.append(f"... and {len(errors) - _MAX_ERRORS_SHOWN} more")
    return "the plan does not have the required shape:\n" + "\n".join(lines)


def _format_loc(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text or "(plan)"


def _answer_text(response: ModelResponse) -> str:
    return response.message.content or ""


def _excerpt(answer: str) -> str:
    return answer if len(answer) <= EXCERPT_CHARS else answer[:EXCERPT_CHARS] + "..."


def _with_repair(request: ModelRequest, answer: str, error: str) -> ModelRequest:
    """The conversation plus the rejected answer and the exact error, asking for a fix."""
    feedback = (
        f"That plan is invalid:\n{error}\n\n"
        "Fix this problem and answer with the whole corrected plan as one JSON object."
    )
    messages = [*request.messages, Message.assistant(answer), Message.user(feedback)]
    return request.model_copy(update={"messages": messages})
