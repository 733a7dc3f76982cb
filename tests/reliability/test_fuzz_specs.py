"""Property tests: whatever text, bytes or data a spec document holds, loading it and validating
a plan either succeeds or raises :class:`SpecError` that says where (file:line, field path).

Bounded and derandomized (fixed examples per property, no example database) so CI runs the same
cases every time, in a few seconds; the number of cases tried is printed at the end of the module.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from soma.errors import PlanError, SomaError, SpecError
from soma.specs.loader import load_spec, parse_spec
from soma.specs.models import Capsule, Plan, PlanNode, Spec
from soma.specs.plans import validate_plan

BOUNDED = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
KINDS: list[str | None] = [None, "capsule", "persona", "constitution", "plan"]
TRIED: Counter[str] = Counter()

VALID: dict[str, dict[str, Any]] = {
    "capsule": {
        "kind": "capsule",
        "name": "demo",
        "version": "1.0.0",
        "description": "A demo capsule.",
        "persona": "developer",
        "inputs": {
            "type": "object",
            "properties": {"goal": {"type": "string"}},
            "required": ["goal"],
        },
        "outputs": {
            "type": "object",
            "properties": {"result": {"type": "string"}},
            "required": ["result"],
        },
        "tools": ["fs.read", {"name": "fs.write", "constraints": {"path": "out/*"}}],
        "knowledge": [{"file": "README.md"}],
        "instructions": "Do {{ goal }}.",
        "budget": {"max_steps": 5},
        "artifacts": [{"from": "result", "path": "out.md"}],
        "evals": [
            {
                "name": "smoke",
                "input": {"goal": "x"},
                "checks": [{"kind": "contains", "field": "result", "value": "x"}],
            }
        ],
    },
    "persona": {
        "kind": "persona",
        "name": "developer",
        "version": "1.0.0",
        "role": "Developer",
        "goal": "Write code.",
        "skills": ["python"],
        "model": {"prefer": ["local"], "temperature": 0.1},
        "tools": ["fs.*"],
    },
    "constitution": {
        "kind": "constitution",
        "name": "base",
        "version": "1.0.0",
        "principles": [{"id": "honest", "text": "Be honest."}],
        "rules": [
            {
                "id": "no-rm",
                "effect": "deny",
                "reason": "Destructive.",
                "action": {"tool": "shell.*"},
                "when": {"command_matches": "rm -rf *"},
            }
        ],
    },
    "plan": {
        "kind": "plan",
        "goal": "Ship it.",
        "nodes": [
            {"id": "spec", "capsule": "demo@^1", "inputs": {"goal": "x"}},
            {
                "id": "build",
                "capsule": "demo",
                "inputs": {"goal": "${spec.outputs.result}"},
                "depends_on": ["spec"],
            },
        ],
    },
}

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True)
    | st.text(max_size=20)
    | st.sampled_from(["1.0.0", "demo", "fs.read", "${a.outputs.b}", "", "object", "*"])
)
json_like = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
keys = st.sampled_from(
    ["kind", "name", "version", "inputs", "outputs", "nodes", "tools", "from", "id", "x", ""]
)


def dump(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def check_error(error: SpecError, source: str = "<string>") -> None:
    """The location contract: a line for text input, the field path when one field is wrong."""
    text = str(error)
    assert isinstance(error, SpecError), repr(error)
    if "larger than" not in error.message:
        assert error.line is not None, text
        assert text.startswith(f"{source}:{error.line}"), text
    if error.field is not None:
        assert f" at {error.field}: " in text, text
    assert error.message
    assert "Traceback" not in text


def try_parse(text: str, kind: str | None) -> Spec | None:
    try:
        return parse_spec(text, kind)
    except SpecError as error:
        check_error(error)
        return None


@pytest.fixture(scope="module", autouse=True)
def _report(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    summary = ", ".join(f"{name}={count}" for name, count in sorted(TRIED.items()))
    line = f"\nfuzz cases tried: {summary} (total {sum(TRIED.values())})"
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if capture is not None:
        with capture.global_and_fixture_disabled():
            print(line)
    else:  # pragma: no cover - run without the capture plugin
        print(line)


@BOUNDED
@given(text=st.text(max_size=300), kind=st.sampled_from(KINDS))
def test_arbitrary_text(text: str, kind: str | None) -> None:
    TRIED["arbitrary_text"] += 1
    try_parse(text, kind)


yaml_ish = st.lists(
    st.sampled_from(
        [
            "kind: capsule",
            "kind: plan",
            "name: demo",
            "version: 1.0.0",
            "  - a",
            "- b",
            "nodes:",
            "  - id: a",
            "    depends_on: [a]",
            "&x [*x]",
            "a: &a [1, 2]",
            "b: [*a, *a]",
            "<<: *a",
            "? [a]",
            ": b",
            "x: {y: [",
            "'unclosed",
            '"\\x",',
            "\tkey: 1",
            "!!python/object:os.system {}",
            "!!binary AAAA",
            "---",
            "...",
            "%YAML 1.1",
            "key: value # comment",
            "|",
            "  literal",
            "\x00",
            "\ufeff",
        ]
    )
    | st.text(max_size=15),
    max_size=12,
).map("\n".join)


@BOUNDED
@given(text=yaml_ish, kind=st.sampled_from(KINDS))
def test_yaml_ish_text(text: str, kind: str | None) -> None:
    TRIED["yaml_ish_text"] += 1
    try_parse(text, kind)


@BOUNDED
@given(data=st.binary(max_size=200) | yaml_ish.map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_arbitrary_bytes_from_a_file(data: bytes, tmp_path_factory: pytest.TempPathFactory) -> None:
    TRIED["arbitrary_bytes"] += 1
    path = tmp_path_factory.mktemp("bytes") / "capsule.yaml"
    path.write_bytes(data)
    try:
        load_spec(path)
    except SpecError as error:
        check_error(error, str(path))


@BOUNDED
@given(data=json_like, kind=st.sampled_from(KINDS))
def test_json_like_documents(data: Any, kind: str | None) -> None:
    TRIED["json_like_documents"] += 1
    try_parse(dump(data), kind)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*prefix, index))


def _parent(doc: Any, path: tuple[Any, ...]) -> Any:
    for part in path[:-1]:
        doc = doc[part]
    return doc


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """A valid document of some kind with 1-3 edits: replace, delete, add or rename a field."""
    kind = draw(st.sampled_from(sorted(VALID)))
    doc = copy.deepcopy(VALID[kind])
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(doc) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = _parent(doc, path)
        op = draw(st.sampled_from(["replace", "delete", "add", "rename"]))
        if op == "replace":
            parent[path[-1]] = draw(json_like)
        elif op == "delete":
            del parent[path[-1]]
        elif op == "add" and isinstance(parent, dict):
            parent[draw(keys)] = draw(json_like)
        elif op == "add":
            parent.append(draw(json_like))
        elif isinstance(parent, dict) and isinstance(path[-1], str):
            parent[path[-1] + draw(st.sampled_from(["s", "_", "X"]))] = parent.pop(path[-1])
    return kind, doc


@BOUNDED
@given(case=mutated(), pass_kind=st.booleans())
def test_mutations_of_valid_documents(case: tuple[str, dict[str, Any]], pass_kind: bool) -> None:
    TRIED["mutated_documents"] += 1
    kind, doc = case
    text = dump(doc)
    spec = try_parse(text, kind if pass_kind else None)
    if spec is None:
        with pytest.raises(SpecError) as info:
            parse_spec(text, kind if pass_kind else None)
        error = info.value
        if error.field is not None and error.line is not None:
            # The reported line is the one of the field (or of its nearest written parent).
            assert 1 <= error.line <= text.count("\n") + 1


def test_every_valid_document_loads() -> None:
    for kind, doc in VALID.items():
        assert type(parse_spec(dump(doc))).__name__.lower() == kind


# --- plan validation ----------------------------------------------------------------------------

CAPSULES = {
    f"{c.name}@{c.version}": c
    for c in (
        Capsule.model_validate(VALID["capsule"]),
        Capsule.model_validate({**VALID["capsule"], "version": "2.0.0", "evals": []}),
        Capsule.model_validate(
            {
                **VALID["capsule"],
                "name": "strict",
                "inputs": {
                    "type": "object",
                    "$defs": {"n": {"type": "integer"}},
                    "properties": {"count": {"$ref": "#/$defs/n"}, "goal": {"type": "string"}},
                    "additionalProperties": False,
                },
                "evals": [],
            }
        ),
    )
}
node_ids = st.sampled_from(["a", "b", "c", "d", "e"])
input_values = (
    st.builds(
        "${{{}.outputs.{}}}".format,
        node_ids | st.sampled_from(["zz", "a.b"]),
        st.sampled_from(["result", "resullt", "goal"]),
    )
    | json_like
)
plan_nodes = st.lists(
    st.fixed_dictionaries(
        {
            "id": node_ids,
            "capsule": st.sampled_from(
                ["demo", "demo@^1", "demo@>=2", "demo@^3", "strict", "nope", "demo@not-a-range"]
            ),
            "inputs": st.dictionaries(
                st.sampled_from(["goal", "count", "extra"]), input_values, max_size=3
            ),
            "depends_on": st.lists(node_ids, max_size=3),
        }
    ),
    min_size=1,
    max_size=5,
)


def check_plan_error(error: PlanError, *, from_text: bool) -> None:
    assert error.field is not None, str(error)
    assert error.field.startswith("nodes["), str(error)
    if from_text:
        check_error(error)
    else:
        assert error.line is None
        assert f" at {error.field}: " in str(error)


@BOUNDED
@given(nodes=plan_nodes)
def test_plan_validation_from_text(nodes: list[dict[str, Any]]) -> None:
    TRIED["plans_from_text"] += 1
    plan = try_parse(dump({"kind": "plan", "goal": "fuzz", "nodes": nodes}), "plan")
    if plan is None:
        return
    assert isinstance(plan, Plan)
    try:
        validate_plan(plan, CAPSULES)
    except PlanError as error:
        check_plan_error(error, from_text=True)


@BOUNDED
@given(nodes=plan_nodes)
def test_plan_validation_built_in_code(nodes: list[dict[str, Any]]) -> None:
    TRIED["plans_in_code"] += 1
    try:
        plan = Plan(goal="fuzz", nodes=[PlanNode.model_validate(node) for node in nodes])
    except ValueError:  # pydantic refused the node itself; not plan validation's business
        return
    try:
        validate_plan(plan, CAPSULES)
    except PlanError as error:
        check_plan_error(error, from_text=False)
    except SomaError as error:  # pragma: no cover - would be a contract break
        pytest.fail(f"plan validation raised {type(error).__name__}, not PlanError: {error}")
