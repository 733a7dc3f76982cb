"""What a planner needs to know about the library: the capsule index, the answer schema and the
catalogue text a model reads.

Both planners validate against the same index, and the model planner's prompt and schema are
derived from the library rather than written by hand, so adding a capsule to a library makes it
plannable without touching this package.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from soma.specs.library import Library
from soma.specs.models import Capsule

MAX_NODES = 40
"""Upper bound on plan size: far above any sensible plan, and it keeps a runaway answer (or a
garbage one) from reaching recursive validation with thousands of nodes."""

_SCALAR_TYPES = ("string", "integer", "number", "boolean")
_ID_SCHEMA = {"type": "string", "pattern": "^[a-z][a-z0-9-]{0,31}$"}
"""Node ids: a subset of the spec's name rule that grammar converters handle, so a constrained
decoder cannot produce an id that fails validation (tiny models otherwise write file paths)."""


def capsule_index(library: Library) -> dict[str, Capsule]:
    """Every capsule version by ``name@version``, the mapping ``validate_plan`` expects, so a
    node's version range can pick any release the library holds."""
    return {capsule.ref: capsule for capsule in library.capsules(all_versions=True)}


def plan_schema(library: Library) -> dict[str, Any]:
    """The JSON Schema of a plan answer, kept small so grammar-constrained decoding stays cheap.

    ``capsule`` is an enum of the library's names: a constrained decoder can then never invent a
    capsule. Input values are limited to the scalar types the library's inputs actually use.
    """
    capsules = library.capsules()
    node = {
        "type": "object",
        "properties": {
            "id": _ID_SCHEMA,
            "capsule": {"enum": [capsule.name for capsule in capsules]},
            "inputs": {"type": "object", "additionalProperties": _value_schema(capsules)},
            "depends_on": {"type": "array", "items": _ID_SCHEMA},
        },
        "required": ["id", "capsule", "inputs", "depends_on"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {
            "goal": {"type": "string"},
            "nodes": {"type": "array", "items": node, "minItems": 1, "maxItems": MAX_NODES},
        },
        "required": ["goal", "nodes"],
        "additionalProperties": False,
    }


def _value_schema(capsules: Iterable[Capsule]) -> dict[str, Any]:
    """Strings always (references are strings); other scalars only if some input declares them."""
    used = {"string"}
    for capsule in capsules:
        for prop in capsule.inputs.get("properties", {}).values():
            kinds = prop.get("type") if isinstance(prop, Mapping) else None
            used.update(k for k in _as_list(kinds) if k in _SCALAR_TYPES)
    ordered = [kind for kind in _SCALAR_TYPES if kind in used]
    return {"type": ordered[0]} if len(ordered) == 1 else {"type": ordered}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def render_catalogue(library: Library) -> str:
    """One block per capsule: what it does, its inputs (and where required ones can come from)
    and its outputs, because wiring mistakes are the most common planning error."""
    capsules = library.capsules()
    producers = _producers(capsules)
    return "\n".join(_render_capsule(capsule, producers) for capsule in capsules)


def _producers(capsules: Iterable[Capsule]) -> dict[str, list[str]]:
    """Output field name -> the capsules that produce it, to suggest sources for inputs."""
    found: dict[str, list[str]] = {}
    for capsule in capsules:
        for field in capsule.outputs.get("properties", {}):
            found.setdefault(field, []).append(capsule.name)
    return found


def _render_capsule(capsule: Capsule, producers: Mapping[str, list[str]]) -> str:
    properties: Mapping[str, Any] = capsule.inputs.get("properties", {})
    required = list(capsule.inputs.get("required", []))
    optional = [name for name in properties if name not in required]
    lines = [f"- {capsule.name}: {' '.join(capsule.description.split())}"]
    for name in required:
        source = _source_of(name, capsule.name, properties.get(name, {}), producers)
        lines.append(f"    required input {name}: {source}")
    if optional:
        lines.append(f"    optional inputs: {', '.join(optional)}")
    outputs = ", ".join(capsule.outputs.get("properties", {})) or "(none)"
    lines.append(f"    outputs: {outputs}")
    return "\n".join(lines)


def _source_of(
    name: str, owner: str, schema: Mapping[str, Any], producers: Mapping[str, list[str]]
) -> str:
    """Where a required input can come from: an upstream output of the same name, or a literal
    (with the constraints a literal must meet, so the model gets it right the first time)."""
    sources = [f"output '{name}' of {p}" for p in producers.get(name, []) if p != owner]
    return ", or ".join([*sources, "a literal" + _constraints(schema)])


def _constraints(schema: Mapping[str, Any]) -> str:
    parts = []
    if "type" in schema and schema["type"] != "string":
        parts.append(f"type {schema['type']}")
    if "pattern" in schema:
        parts.append(f"matching {schema['pattern']}")
    if "minLength" in schema:
        parts.append(f"at least {schema['minLength']} characters")
    if "enum" in schema:
        parts.append("one of " + ", ".join(map(str, schema["enum"])))
    return f" ({'; '.join(parts)})" if parts else ""


def wiring_example(library: Library, goal: str = "...") -> str:
    """A two-node plan built from the library itself, so the example never names a capsule the
    model cannot use. Small models copy examples closely, so literals are filled with ``goal``:
    a copied example is then a small but real plan rather than one full of placeholders."""
    capsules = library.capsules()
    for consumer in capsules:
        for name in consumer.inputs.get("required", []):
            for producer in capsules:
                if producer is not consumer and name in producer.outputs.get("properties", {}):
                    return _example(producer, consumer, name, goal)
    return _example_placeholder()


def _example(producer: Capsule, consumer: Capsule, field: str, goal: str) -> str:
    first = {
        "id": "first",
        "capsule": producer.name,
        "inputs": dict.fromkeys(producer.inputs.get("required", []), goal),
        "depends_on": [],
    }
    second_inputs = dict.fromkeys(consumer.inputs.get("required", []), goal)
    second_inputs[field] = f"${{first.outputs.{field}}}"
    second = {
        "id": "second",
        "capsule": consumer.name,
        "inputs": second_inputs,
        "depends_on": ["first"],
    }
    return _render_example(goal, first, second)


def _example_placeholder() -> str:
    first = {"id": "first", "capsule": "<capsule>", "inputs": {}, "depends_on": []}
    second = {
        "id": "second",
        "capsule": "<capsule>",
        "inputs": {"<input>": "${first.outputs.<output>}"},
        "depends_on": ["first"],
    }
    return _render_example("...", first, second)


def _render_example(goal: str, *nodes: dict[str, Any]) -> str:
    """One node per line: readable, and short enough not to crowd a small model's context."""
    lines = ",\n".join(f"  {json.dumps(node, ensure_ascii=False)}" for node in nodes)
    return f'{{"goal": {json.dumps(goal, ensure_ascii=False)}, "nodes": [\n{lines}\n]}}'
