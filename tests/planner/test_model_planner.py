from __future__ import annotations

import json
from typing import Any

import pytest

from soma.errors import ModelError
from soma.models import FunctionModel, ModelRequest, ScriptedModel, final
from soma.planner import plan_schema, plan_with_model, system_prompt
from soma.planner.model_planner import EXCERPT_CHARS
from soma.specs.library import Library

from .plans import broken, good_answer

GOAL = "a word counter"


@pytest.fixture(scope="module")
def library() -> Library:
    return Library.builtin()


def last_user_text(request: ModelRequest) -> str:
    message = request.messages[-1]
    assert message.role == "user"
    return message.content or ""


async def test_valid_answer_is_accepted_first_time(library: Library) -> None:
    model = ScriptedModel([final(good_answer())])
    result = await plan_with_model(GOAL, library, model)
    assert result.plan is not None
    assert [n.id for n in result.plan.nodes] == ["spec", "implement", "tests"]
    assert len(result.attempts) == 1
    assert result.attempts[0].error is None
    assert result.usage.output_tokens > 0
    assert model.remaining == 0


async def test_request_carries_schema_and_catalogue(library: Library) -> None:
    model = ScriptedModel([final(good_answer())])
    await plan_with_model(GOAL, library, model)
    request = model.requests[0]
    assert request.output is not None
    assert request.output.json_schema == plan_schema(library)
    system = request.messages[0].content or ""
    assert request.messages[0].role == "system"
    assert "write-spec" in system
    assert "${" in system
    assert GOAL in last_user_text(request)


async def test_plan_keeps_the_users_goal(library: Library) -> None:
    answer = good_answer()
    answer["goal"] = "something the model made up"
    result = await plan_with_model(GOAL, library, ScriptedModel([final(answer)]))
    assert result.plan is not None
    assert result.plan.goal == GOAL


@pytest.mark.parametrize(
    ("mistake", "error_text"),
    [
        ("cycle", "dependency cycle: spec → tests → spec"),
        ("unknown_capsule", "unknown capsule 'implement-feature-x'"),
        ("unwired", "does not give capsule 'write-tests' its required input 'spec'"),
        ("missing_dependency", "uses the outputs of 'spec' but does not depend on it"),
        ("bad_output", "has no output 'specification'"),
        ("bad_syntax", "'${spec.output.spec}' is not a valid reference"),
    ],
)
async def test_mistake_is_repaired(library: Library, mistake: str, error_text: str) -> None:
    model = ScriptedModel([final(broken(mistake)), final(good_answer())])
    result = await plan_with_model(GOAL, library, model)
    assert result.plan is not None
    assert len(result.attempts) == 2
    assert result.attempts[0].error is not None
    assert error_text in result.attempts[0].error
    assert result.attempts[1].error is None
    repair = model.requests[1]
    assert error_text in last_user_text(repair)
    assert repair.messages[-2].role == "assistant"
    assert repair.messages[-2].content == json.dumps(broken(mistake))
    assert repair.output == model.requests[0].output


async def test_always_invalid_stops_after_max_attempts(library: Library) -> None:
    model = ScriptedModel([final(broken("cycle"))] * 5)
    result = await plan_with_model(GOAL, library, model, max_attempts=3)
    assert result.plan is None
    assert len(result.attempts) == 3
    assert model.remaining == 2
    assert result.last_error is not None
    assert "dependency cycle" in result.last_error
    assert len(model.requests[2].messages) == 6  # system, goal, then two answer+repair pairs


@pytest.mark.parametrize(
    "answer",
    [
        "this is not json",
        '{"goal": "x", "nodes": [',
        "",
        "[1, 2, 3]",
        "null",
    ],
)
async def test_malformed_answer_is_reported_and_repaired(library: Library, answer: str) -> None:
    model = ScriptedModel([answer, final(good_answer())])
    result = await plan_with_model(GOAL, library, model)
    assert result.plan is not None
    first = result.attempts[0].error
    assert first is not None
    assert first in last_user_text(model.requests[1])


async def test_code_fenced_answer_is_accepted(library: Library) -> None:
    fenced = "```json\n" + json.dumps(good_answer()) + "\n```"
    result = await plan_with_model(GOAL, library, ScriptedModel([fenced]))
    assert result.plan is not None


async def test_shape_errors_name_the_field(library: Library) -> None:
    answer = good_answer()
    answer["nodes"][1]["id"] = "Not A Name"
    answer["nodes"][2]["extra"] = 1
    model = ScriptedModel([final(answer), final(good_answer())])
    result = await plan_with_model(GOAL, library, model)
    error = result.attempts[0].error or ""
    assert "nodes[1].id" in error
    assert "nodes[2].extra" in error


async def test_model_error_stops_at_once(library: Library) -> None:
    model = ScriptedModel([ModelError("server down"), final(good_answer())])
    result = await plan_with_model(GOAL, library, model)
    assert result.plan is None
    assert len(result.attempts) == 1
    assert result.last_error == "the model failed: server down"
    assert model.remaining == 1


async def test_answer_excerpt_is_bounded(library: Library) -> None:
    long = "x" * (EXCERPT_CHARS * 3)
    result = await plan_with_model(GOAL, library, ScriptedModel([long]), max_attempts=1)
    assert len(result.attempts[0].answer) <= EXCERPT_CHARS + 3


async def test_usage_adds_up_over_attempts(library: Library) -> None:
    model = ScriptedModel([final(broken("cycle")), final(good_answer())])
    result = await plan_with_model(GOAL, library, model)
    single = await plan_with_model(GOAL, library, ScriptedModel([final(good_answer())]))
    assert result.usage.output_tokens == 2 * single.usage.output_tokens
    assert result.usage.input_tokens > 2 * single.usage.input_tokens


GARBAGE: list[Any] = [
    {},
    {"nodes": None},
    {"nodes": "spec"},
    {"nodes": []},
    {"nodes": [1, "two", None]},
    {"nodes": [{}]},
    {"nodes": [{"id": "a", "capsule": 5, "inputs": [], "depends_on": "b"}]},
    {"nodes": [{"id": "a", "capsule": "write-spec@not-a-range", "inputs": {"goal": "xyz"}}]},
    {"nodes": [{"id": "a", "capsule": "@", "inputs": {}}]},
    {"nodes": [{"id": "a", "capsule": "write-spec", "inputs": {"goal": "${a.outputs.spec}"}}]},
    {"nodes": [{"id": "a", "capsule": "write-spec", "inputs": {"goal": 7}, "depends_on": ["a"]}]},
    {"nodes": [{"id": "a", "capsule": "write-spec", "inputs": {"goal": "${}"}}]},
    {"nodes": [{"id": "a", "capsule": "write-spec", "inputs": {"goal": {"x": ["${b.outputs"]}}}]},
    {"nodes": [node for node in good_answer()["nodes"] for _ in range(2)]},
    {"nodes": [{"id": f"n{i}", "capsule": "run-tests-and-fix"} for i in range(5000)]},
    "[" * 100_000 + "]" * 100_000,
    '{"nodes": ' * 3000,
    "\x00\ud800",
    12,
    True,
]


@pytest.mark.parametrize("garbage", GARBAGE, ids=range(len(GARBAGE)))
async def test_garbage_never_crashes(library: Library, garbage: Any) -> None:
    text = garbage if isinstance(garbage, str) else json.dumps(garbage)
    result = await plan_with_model(GOAL, library, ScriptedModel([text]), max_attempts=1)
    assert result.plan is None
    assert result.last_error


async def test_function_model_sees_previous_error(library: Library) -> None:
    """The model can branch on what it was told: the repair turn quotes the error."""

    def reply(request: ModelRequest) -> str:
        if len(request.messages) == 2:
            return json.dumps(broken("unwired"))
        assert "required input 'spec'" in last_user_text(request)
        return json.dumps(good_answer())

    result = await plan_with_model(GOAL, library, FunctionModel(reply))
    assert result.plan is not None


def test_system_prompt_lists_every_capsule_and_its_wiring(library: Library) -> None:
    prompt = system_prompt(library)
    for capsule in library.capsules():
        assert f"- {capsule.name}:" in prompt
    assert "required input spec: output 'spec' of write-spec" in prompt
    assert "required input project_name: a literal (matching ^[a-z][a-z0-9_-]*$)" in prompt
    assert '"${first.outputs.' in prompt


def test_schema_restricts_capsules_to_the_library(library: Library) -> None:
    schema = plan_schema(library)
    item = schema["properties"]["nodes"]["items"]
    assert item["properties"]["capsule"]["enum"] == [c.name for c in library.capsules()]
    assert item["required"] == ["id", "capsule", "inputs", "depends_on"]


def test_schema_converts_to_a_llama_cpp_grammar(library: Library) -> None:
    grammar_module = pytest.importorskip("llama_cpp.llama_grammar")
    grammar_module.LlamaGrammar.from_json_schema(json.dumps(plan_schema(library)), verbose=False)


def test_good_answer_matches_schema(library: Library) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(good_answer(), plan_schema(library))
