"""The synthesis loop: candidates are scored on the capsule's evals and the best one wins."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from soma.errors import ModelOutputError
from soma.models.function import FunctionModel
from soma.models.types import ModelRequest
from soma.specs.library import Library
from soma.specs.models import Capsule
from soma.synthesis import (
    SynthesisError,
    SynthesisResult,
    SynthesisSpec,
    check_request,
    persona_tools,
    synthesize,
)
from soma.synthesis.candidates import _Rejected, parse_candidates
from soma.synthesis.optimizer import (
    CandidateReused,
    CaseScored,
    RoundFinished,
    Stopped,
    SynthesisEvent,
)
from soma.tools import default_registry
from soma.tools.sandbox import make_sandbox
from tests.synthesis.conftest import (
    EDGES,
    WRITES,
    agent_model,
    candidate,
    fixed_generator,
    learning_generator,
)


async def run(
    capsule: Capsule,
    generator: FunctionModel,
    tmp_path: Path,
    *,
    candidates: int = 3,
    rounds: int = 1,
    events: list[SynthesisEvent] | None = None,
) -> SynthesisResult:
    spec = SynthesisSpec(
        description="a QA engineer who writes thorough pytest suites",
        capsule=capsule,
        name="thorough-tester",
        candidates=candidates,
        rounds=rounds,
        tools=persona_tools(capsule, Library.builtin().persona("qa-engineer")),
    )
    return await synthesize(
        spec,
        generator=generator,
        agent=agent_model(),
        registry=default_registry(),
        sandbox=make_sandbox("auto"),
        workspaces_root=tmp_path / "workspaces",
        on_event=None if events is None else events.append,
    )


async def test_selects_the_candidate_with_the_best_eval_score(
    capsule: Capsule, tmp_path: Path
) -> None:
    generator = fixed_generator(
        [
            candidate("writer", WRITES),
            candidate("plain"),
            candidate("ace", WRITES, f"finds {EDGES}"),
        ]
    )
    events: list[SynthesisEvent] = []

    result = await run(capsule, generator, tmp_path, events=events)

    scores = {c.id: (c.passed, c.total) for c in result.candidates}
    assert scores == {"r1c1": (2, 3), "r1c2": (1, 3), "r1c3": (3, 3)}
    assert result.best.id == "r1c3"
    assert result.best.persona.name == "thorough-tester"
    assert result.best.persona.skills == [WRITES, f"finds {EDGES}"]
    assert result.best.persona.tools == Library.builtin().persona("qa-engineer").tools
    assert result.best.score == 1.0
    # one progress event per eval run, then the round's table
    cases = [e for e in events if isinstance(e, CaseScored)]
    assert [(e.candidate, e.number, e.case.eval) for e in cases[:3]] == [
        ("r1c1", 1, "writes-file"),
        ("r1c1", 2, "covers-edges"),
        ("r1c1", 3, "answers"),
    ]
    assert len(cases) == 9
    assert isinstance(events[-2], RoundFinished)
    assert isinstance(events[-1], Stopped)


async def test_the_generator_is_given_the_capsule_and_asked_for_structured_output(
    capsule: Capsule, tmp_path: Path
) -> None:
    generator = fixed_generator([candidate("plain")])
    await run(capsule, generator, tmp_path, candidates=2)

    request = generator.requests[0]
    assert request.output is not None
    schema = request.output.json_schema["properties"]["candidates"]
    assert schema["minItems"] == schema["maxItems"] == 2
    prompt = request.messages[-1].content or ""
    assert "Write tests for {{ topic }}." in prompt
    assert "writes-file" in prompt
    assert "covers-edges" in prompt
    assert "answers" in prompt
    assert "a QA engineer who writes thorough pytest suites" in prompt


async def test_equal_scores_are_broken_by_fewer_tokens(capsule: Capsule, tmp_path: Path) -> None:
    wordy = candidate("wordy", WRITES, backstory="I explain everything at great length. " * 20)
    terse = candidate("terse", WRITES)
    result = await run(capsule, fixed_generator([wordy, terse]), tmp_path, candidates=2)

    first, second = result.rounds[0]
    assert first.score == second.score
    assert first.tokens > second.tokens
    assert result.best.id == "r1c2"


async def test_rounds_improve_the_best_score_from_the_feedback(
    capsule: Capsule, tmp_path: Path
) -> None:
    generator = learning_generator()
    events: list[SynthesisEvent] = []
    result = await run(capsule, generator, tmp_path, candidates=2, rounds=4, events=events)

    best_per_round = [max(c.score for c in round_) for round_ in result.rounds]
    assert best_per_round[0] < best_per_round[1] == 1.0
    assert result.best.id == "r2c1"
    assert f"covers {EDGES}" in result.best.persona.skills
    # a perfect score ends the search before the fourth round
    assert len(result.rounds) == 2
    assert "passed every eval in round 2" in result.stopped
    feedback = generator.requests[1].messages[-1].content or ""
    assert "Feedback after round 1" in feedback
    assert '"role":"writer"' in feedback  # the best candidate so far
    assert "covers-edges: contains summary: lacks 'edge cases'" in feedback
    assert "tests/test_slugify.py is missing" in feedback  # the other candidate's failure
    # the candidate proposed again in round 2 was not run again
    assert result.rounds[1][1].cases == result.rounds[0][0].cases
    assert CandidateReused("r2c2", "r1c1") in events
    assert not [e for e in events if isinstance(e, CaseScored) and e.candidate == "r2c2"]


async def test_the_global_best_is_kept_when_a_later_round_is_worse(
    capsule: Capsule, tmp_path: Path
) -> None:
    generator = fixed_generator([candidate("writer", WRITES)], [candidate("plain")])
    result = await run(capsule, generator, tmp_path, candidates=1, rounds=2)
    assert [c.id for c in result.candidates] == ["r1c1", "r2c1"]
    assert result.best.id == "r1c1"


async def test_synthesis_is_deterministic(capsule: Capsule, tmp_path: Path) -> None:
    first = await run(capsule, learning_generator(), tmp_path / "a", candidates=2, rounds=2)
    second = await run(capsule, learning_generator(), tmp_path / "b", candidates=2, rounds=2)

    def summary(result: SynthesisResult) -> list[tuple[str, int, int, str]]:
        return [(c.id, c.passed, c.tokens, c.draft.model_dump_json()) for c in result.candidates]

    assert summary(first) == summary(second)
    assert first.best.id == second.best.id


async def test_an_invalid_generator_answer_is_repaired(capsule: Capsule, tmp_path: Path) -> None:
    answers = iter(
        [
            '{"candidates": [{"role": "x"}]}',
            '{"candidates": [{"role": "r", '
            '"goal": "g", "backstory": "", "skills": ["writes tests"]}]}',
        ]
    )

    def reply(request: ModelRequest) -> str:
        return next(answers)

    generator = FunctionModel(reply)
    result = await run(capsule, generator, tmp_path, candidates=1)

    assert result.best.passed == 2
    repair = generator.requests[1].messages[-1].content or ""
    assert "candidates[0].goal: Field required" in repair


async def test_a_generator_that_never_answers_validly_is_a_clear_error(
    capsule: Capsule, tmp_path: Path
) -> None:
    with pytest.raises(ModelOutputError, match="no valid persona candidates in 3 attempt"):
        await run(capsule, FunctionModel(lambda request: "I would suggest a tester."), tmp_path)


def test_bad_requests_are_refused_before_any_model_call(capsule: Capsule) -> None:
    no_evals = capsule.model_copy(update={"evals": []})
    with pytest.raises(SynthesisError, match="has no evals") as caught:
        check_request("a tester", no_evals, 3, 2)
    assert caught.value.hint is not None
    assert "evals:" in caught.value.hint
    with pytest.raises(SynthesisError, match="--candidates must be between 1 and 10, not 0"):
        check_request("a tester", capsule, 0, 2)
    with pytest.raises(SynthesisError, match="--rounds must be between 1 and 10, not 0"):
        check_request("a tester", capsule, 3, 0)
    with pytest.raises(SynthesisError, match="description is empty"):
        check_request("  ", capsule, 3, 2)


def test_candidate_tools_come_from_the_base_persona_or_the_capsule(capsule: Capsule) -> None:
    assert persona_tools(capsule, None) == ["fs.write"]
    assert "fs.*" in persona_tools(capsule, Library.builtin().persona("qa-engineer"))


def test_answers_are_validated_before_they_become_personas() -> None:
    with pytest.raises(_Rejected, match=r"candidates\[1\]\.role: Value error, must not be blank"):
        parse_candidates(json.dumps({"candidates": [candidate("a"), candidate("  ")]}), 3)
    with pytest.raises(_Rejected, match="not valid JSON"):
        parse_candidates("```json\n{oops\n```", 3)
    fenced = "```json\n" + json.dumps({"candidates": [candidate("a")] * 3}) + "\n```"
    assert [d.role for d in parse_candidates(fenced, 2)] == ["a"]  # cut to 2, duplicates dropped
