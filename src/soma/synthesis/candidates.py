"""Ask a generator model for candidate personas, as schema-constrained JSON, repairing bad answers.

The generator sees what the persona is for (the user's description), the capsule it must do well
(its description, instructions and eval names) and, from the second round on, feedback: the best
candidate so far with its score and the checks the others failed. Answers are validated here and
the exact problem is sent back to the model, as the model planner does, because weak models often
get the shape almost right (a missing field, a string where a list belongs).
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel, Field, ValidationError, ValidationInfo, field_validator

from soma.errors import ModelOutputError
from soma.models.protocol import Model
from soma.models.types import Message, ModelRequest, OutputSchema, Usage
from soma.specs.models import Capsule

MAX_SKILLS = 12
_MAX_INSTRUCTIONS_CHARS = 4000
_FENCE_RE = re.compile(r"^\s*```[a-zA-Z]*\s*\n?(.*?)\n?\s*```\s*$", re.DOTALL)


class CandidateDraft(BaseModel):
    """What the generator proposes: the persona's words, without name, version or tools."""

    role: str = Field(min_length=1, max_length=200)
    goal: str = Field(min_length=1, max_length=2000)
    backstory: str = Field(default="", max_length=4000)
    skills: list[str] = Field(default_factory=list, max_length=MAX_SKILLS)

    @field_validator("role", "goal", "backstory")
    @classmethod
    def _strip(cls, value: str, info: ValidationInfo) -> str:
        text = " ".join(value.split())
        if not text and info.field_name != "backstory":
            raise ValueError("must not be blank")
        return text

    @field_validator("skills")
    @classmethod
    def _clean_skills(cls, value: list[str]) -> list[str]:
        cleaned = [" ".join(skill.split()) for skill in value]
        return list(dict.fromkeys(skill for skill in cleaned if skill))


class CandidateFeedback(BaseModel):
    """How one scored candidate did, as the generator is shown it in the next round."""

    candidate: CandidateDraft
    score: float
    passed: int
    total: int
    failures: list[str] = Field(
        default_factory=list, description="'eval: check detail' for every failed check."
    )


class Feedback(BaseModel):
    """Round feedback: the best candidate so far and the others of the last round."""

    round: int
    best: CandidateFeedback
    others: list[CandidateFeedback] = Field(default_factory=list)


class Generation(BaseModel):
    """The generator's accepted candidates, how many answers it took and the tokens it used."""

    candidates: list[CandidateDraft]
    attempts: int
    usage: Usage = Field(default_factory=Usage)


def candidates_schema(count: int) -> dict[str, Any]:
    """The JSON Schema of the generator's answer: exactly ``count`` candidates."""
    text = {"type": "string", "minLength": 1}
    return {
        "type": "object",
        "properties": {
            "candidates": {
                "type": "array",
                "minItems": count,
                "maxItems": count,
                "items": {
                    "type": "object",
                    "properties": {
                        "role": text,
                        "goal": text,
                        "backstory": {"type": "string"},
                        "skills": {
                            "type": "array",
                            "items": text,
                            "maxItems": MAX_SKILLS,
                        },
                    },
                    "required": ["role", "goal", "backstory", "skills"],
                    "additionalProperties": False,
                },
            }
        },
        "required": ["candidates"],
        "additionalProperties": False,
    }


SYSTEM_PROMPT = """\
You design personas for AI agents. A persona is who the agent is: a role (a job title), a goal
(what it strives for), a backstory (how it works, in a few sentences) and skills (short phrases).
The persona is put at the top of the agent's system prompt, before the task. Good personas are
specific about the habits that make the task succeed; they never promise what the agent cannot do.
Each candidate you propose will be scored by running the task's evals with it, so make the
candidates genuinely different from one another, each a plausible way to do the task well.
Answer with one JSON object {"candidates": [...]} and nothing else."""


def generation_request(
    description: str, capsule: Capsule, count: int, feedback: Feedback | None = None
) -> ModelRequest:
    """The request for ``count`` candidates, with the previous round's feedback when given."""
    parts = [
        f"Describe {count} candidate persona(s) for: {description.strip()}",
        _capsule_text(capsule),
    ]
    if feedback is not None:
        parts.append(feedback_text(feedback))
    parts.append(
        f"Answer with exactly {count} candidate(s), each with role, goal, backstory and skills."
    )
    return ModelRequest(
        messages=[Message.system(SYSTEM_PROMPT), Message.user("\n\n".join(parts))],
        output=OutputSchema(name="persona_candidates", json_schema=candidates_schema(count)),
        temperature=0.7,
    )


def _capsule_text(capsule: Capsule) -> str:
    instructions = capsule.instructions.strip()
    if len(instructions) > _MAX_INSTRUCTIONS_CHARS:
        instructions = instructions[:_MAX_INSTRUCTIONS_CHARS] + " ..."
    evals = "\n".join(
        f"- {case.name}: checks "
        + ", ".join(_check_text(c.kind, c.field, c.value) for c in case.checks)
        for case in capsule.evals
    )
    return (
        f"The persona must do the task '{capsule.name}': {capsule.description.strip()}\n\n"
        f"Task instructions:\n{instructions}\n\nEvals the persona is scored on:\n{evals}"
    )


def _check_text(kind: str, field: str | None, value: Any) -> str:
    if kind == "schema":
        return "the output matches its schema"
    if kind == "file_exists":
        return f"file {value} exists"
    return f"{field} {kind.replace('_', ' ')} {value!r}"


def feedback_text(feedback: Feedback) -> str:
    """What the generator learns from a round: build on the best, avoid the others' failures."""
    best = feedback.best
    lines = [
        f"Feedback after round {feedback.round}.",
        f"The best candidate so far passed {best.passed}/{best.total} evals:",
        best.candidate.model_dump_json(),
    ]
    if best.failures:
        lines.append("It still fails: " + "; ".join(best.failures))
    for other in feedback.others:
        if not other.failures:
            continue
        lines.append(
            f"Candidate '{other.candidate.role}' passed {other.passed}/{other.total} and failed: "
            + "; ".join(other.failures)
        )
    lines.append(
        "Propose improved candidates: keep what makes the best one work and change what makes "
        "the failed checks fail."
    )
    return "\n".join(lines)


class _Rejected(Exception):
    """An answer that is not a valid list of candidates; the message is what the model sees."""


def parse_candidates(answer: str, count: int) -> list[CandidateDraft]:
    """The answer's candidates (at most ``count``, duplicates dropped), or ``_Rejected``."""
    match = _FENCE_RE.match(answer)
    text = match.group(1) if match else answer
    if not text.strip():
        raise _Rejected('the answer is empty; expected a JSON object {"candidates": [...]}')
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _Rejected(f"the answer is not valid JSON: {exc}") from None
    except RecursionError:
        raise _Rejected("the answer is nested too deeply") from None
    items = data.get("candidates") if isinstance(data, dict) else data
    if not isinstance(items, list) or not items:
        raise _Rejected('the answer must be a JSON object {"candidates": [...]} with candidates')
    drafts: list[CandidateDraft] = []
    for index, item in enumerate(items[:count]):
        try:
            drafts.append(CandidateDraft.model_validate(item))
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(part) for part in error["loc"]) or "(candidate)"
            raise _Rejected(f"candidates[{index}].{where}: {error['msg']}") from None
    unique = {draft.model_dump_json(): draft for draft in drafts}
    return list(unique.values())


async def generate_candidates(
    model: Model,
    description: str,
    capsule: Capsule,
    count: int,
    *,
    feedback: Feedback | None = None,
    max_attempts: int = 3,
) -> Generation:
    """Ask ``model`` for ``count`` candidates, sending each invalid answer back with its error.

    Raises :class:`ModelOutputError` when no attempt gives a valid answer (the last error is in
    the message); a failing provider's own ModelError propagates.
    """
    request = generation_request(description, capsule, count, feedback)
    usage = Usage()
    error = "no answer"
    for attempt in range(1, max(1, max_attempts) + 1):
        response = await model.complete(request)
        usage = usage + response.usage
        answer = response.message.content or ""
        try:
            drafts = parse_candidates(answer, count)
        except _Rejected as exc:
            error = str(exc)
            repair = (
                f"That answer is invalid: {error}\n\nAnswer again with the whole JSON object "
                f'{{"candidates": [...]}} holding {count} candidate(s).'
            )
            messages = [*request.messages, Message.assistant(answer), Message.user(repair)]
            request = request.model_copy(update={"messages": messages})
            continue
        return Generation(candidates=drafts, attempts=attempt, usage=usage)
    raise ModelOutputError(
        f"the generator model {model.name} gave no valid persona candidates in "
        f"{max(1, max_attempts)} attempt(s): {error}",
        hint="use a model that supports structured output (--model), or retry",
    )
