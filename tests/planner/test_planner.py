from __future__ import annotations

import json
from typing import Any

import pytest

from soma.errors import ModelError, ModelTimeout, PlanError
from soma.models import ScriptedModel, final
from soma.planner import PlanResult, make_plan, template_plan
from soma.specs.library import Library

from .plans import broken, good_answer

GOAL = "a word counter"


@pytest.fixture(scope="module")
def library() -> Library:
    return Library.builtin()


async def test_model_plan_is_used(library: Library) -> None:
    model = ScriptedModel([final(good_answer())])
    result = await make_plan(GOAL, library, model)
    assert result.planner == "model"
    assert result.reason is None
    assert [n.id for n in result.plan.nodes] == ["spec", "implement", "tests"]
    assert len(result.attempts) == 1
    assert result.usage.total_tokens > 0


async def test_repaired_plan_counts_as_model_plan(library: Library) -> None:
    model = ScriptedModel([final(broken("cycle")), final(good_answer())])
    result = await make_plan(GOAL, library, model)
    assert result.planner == "model"
    assert len(result.attempts) == 2
    assert "dependency cycle" in (model.requests[1].messages[-1].content or "")


async def test_no_model_uses_template(library: Library) -> None:
    result = await make_plan(GOAL, library, None)
    assert result.planner == "template"
    assert result.reason == "no model"
    assert result.plan == template_plan(GOAL, library)
    assert result.attempts == []
    assert result.usage.total_tokens == 0


async def test_template_mode_never_asks_the_model(library: Library) -> None:
    model = ScriptedModel([])
    result = await make_plan(GOAL, library, model, mode="template")
    assert result.planner == "template"
    assert result.reason == "mode=template"
    assert model.requests == []


async def test_always_invalid_falls_back_with_last_error(library: Library) -> None:
    answers = [final(broken("cycle")), final(broken("unknown_capsule")), final(broken("unwired"))]
    model = ScriptedModel(answers)
    result = await make_plan(GOAL, library, model, max_attempts=3)
    assert result.planner == "template"
    assert result.reason is not None
    assert result.reason.startswith("model failed after 3 attempts: ")
    assert "its required input 'spec'" in result.reason  # the last error, not the first
    assert len(result.attempts) == 3
    assert result.usage.total_tokens > 0
    assert result.plan == template_plan(GOAL, library)


async def test_model_mode_raises_with_last_error(library: Library) -> None:
    model = ScriptedModel([final(broken("unknown_capsule"))] * 2)
    with pytest.raises(PlanError) as caught:
        await make_plan(GOAL, library, model, mode="model", max_attempts=2)
    message = str(caught.value)
    assert "the model could not produce a valid plan" in message
    assert "after 2 attempts" in message
    assert "unknown capsule 'implement-feature-x'" in message


async def test_model_mode_without_model_raises(library: Library) -> None:
    with pytest.raises(PlanError, match="mode=model needs a model"):
        await make_plan(GOAL, library, None, mode="model")


@pytest.mark.parametrize("error", [ModelError("boom"), ModelTimeout("too slow")])
async def test_model_error_falls_back(library: Library, error: ModelError) -> None:
    result = await make_plan(GOAL, library, ScriptedModel([error]))
    assert result.planner == "template"
    assert result.reason == f"model failed after 1 attempt: the model failed: {error}"


async def test_model_error_in_model_mode_raises(library: Library) -> None:
    with pytest.raises(PlanError, match="the model failed: boom"):
        await make_plan(GOAL, library, ScriptedModel([ModelError("boom")]), mode="model")


async def test_malformed_json_falls_back(library: Library) -> None:
    result = await make_plan(GOAL, library, ScriptedModel(["{nope"]), max_attempts=1)
    assert result.planner == "template"
    assert "not valid JSON" in (result.reason or "")


async def test_empty_goal_is_refused_before_the_model(library: Library) -> None:
    model = ScriptedModel([final(good_answer())])
    with pytest.raises(PlanError, match="goal is empty"):
        await make_plan("  ", library, model)
    assert model.requests == []


async def test_goal_is_stripped(library: Library) -> None:
    result = await make_plan(f"  {GOAL}\n", library, ScriptedModel([final(good_answer())]))
    assert result.plan.goal == GOAL


GARBAGE: list[Any] = [
    {"nodes": [{"id": 3}]},
    {"goal": None, "nodes": {"spec": {}}},
    {"nodes": [{"id": "x", "capsule": "write-spec", "inputs": {"goal": None}, "depends_on": []}]},
    {"nodes": [{"id": "x", "capsule": "write-spec", "inputs": {"goal": "${x.outputs.spec}"}}]},
    ["not", "an", "object"],
    "plain text",
]


@pytest.mark.parametrize("garbage", GARBAGE, ids=range(len(GARBAGE)))
@pytest.mark.parametrize("mode", ["auto", "model"])
async def test_garbage_gives_fallback_or_plan_error(
    library: Library, garbage: Any, mode: Any
) -> None:
    text = garbage if isinstance(garbage, str) else json.dumps(garbage)
    model = ScriptedModel([text] * 2)
    try:
        result = await make_plan(GOAL, library, model, mode=mode, max_attempts=2)
    except PlanError:
        assert mode == "model"
        return
    assert isinstance(result, PlanResult)
    assert mode == "auto"
    assert result.planner == "template"
    assert (result.reason or "").startswith("model failed after 2 attempts")
