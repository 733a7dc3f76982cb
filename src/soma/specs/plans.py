"""Static checks of a plan against the capsules it uses, before any agent spends a token.

A plan is a DAG of capsule runs wired with ``${node.outputs.field}`` references. Every mistake we
can find here (a cycle, a typo in a field name, an input nobody provides) would otherwise surface
minutes into a run, after model calls were paid for, so the checks are strict and precise.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Mapping
from typing import Any

import jsonschema
from referencing.exceptions import Unresolvable

from soma.errors import PlanError, SpecError
from soma.specs.models import Capsule, Plan, PlanNode
from soma.specs.sources import DocPath, SourceMap, format_path, origin_of
from soma.specs.versions import Version, parse_range, split_ref

REFERENCE_RE = re.compile(r"\$\{\s*([^{}\s]+?)\.outputs\.([^{}\s.]+)\s*\}")
"""``${node_id.outputs.field}``: the value of another node's output field, once it has run."""


def output_references(value: Any) -> Iterator[tuple[DocPath, str, str]]:
    """Yield ``(path inside value, node id, field)`` for every reference nested in ``value``."""
    if isinstance(value, str):
        for match in REFERENCE_RE.finditer(value):
            yield (), match.group(1), match.group(2)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            for path, node, name in output_references(item):
                yield (key, *path), node, name
    elif isinstance(value, list):
        for index, item in enumerate(value):
            for path, node, name in output_references(item):
                yield (index, *path), node, name


def validate_plan(plan: Plan, capsules: Mapping[str, Capsule]) -> None:
    """Raise :class:`PlanError` at the first problem; ``capsules`` may hold several versions."""
    where = origin_of(plan) or SourceMap(None)
    ids = _check_ids(plan, where)
    _check_dependencies(plan, ids, where)
    _check_cycles(plan, ids, where)
    resolved = {
        node.id: _resolve(node, index, capsules, where) for index, node in enumerate(plan.nodes)
    }
    for index, node in enumerate(plan.nodes):
        _check_inputs(node, index, resolved[node.id], where)
        _check_references(node, index, ids, resolved, where)


def _fail(where: SourceMap, message: str, path: DocPath, hint: str | None = None) -> PlanError:
    line = where.line_of(path)
    return PlanError(message, file=where.file, line=line, field=format_path(path), hint=hint)


def _suggest(name: str, choices: list[str]) -> str | None:
    close = difflib.get_close_matches(name, choices, n=1)
    return f"did you mean '{close[0]}'?" if close else None


def _check_ids(plan: Plan, where: SourceMap) -> dict[str, int]:
    ids: dict[str, int] = {}
    for index, node in enumerate(plan.nodes):
        if node.id in ids:
            raise _fail(
                where,
                f"duplicate node id '{node.id}' (first used by nodes[{ids[node.id]}])",
                ("nodes", index, "id"),
                "every node needs its own id so references and dependencies are unambiguous",
            )
        ids[node.id] = index
    return ids


def _check_dependencies(plan: Plan, ids: Mapping[str, int], where: SourceMap) -> None:
    for index, node in enumerate(plan.nodes):
        for number, dependency in enumerate(node.depends_on):
            if dependency not in ids:
                raise _fail(
                    where,
                    f"node '{node.id}' depends on unknown node '{dependency}'",
                    ("nodes", index, "depends_on", number),
                    _suggest(dependency, list(ids)),
                )


def _check_cycles(plan: Plan, ids: Mapping[str, int], where: SourceMap) -> None:
    """Depth-first search; the first back edge found is reported as the full cycle path."""
    done: set[str] = set()
    for node in plan.nodes:
        if node.id not in done:
            _visit(plan, node.id, [], done, ids, where)


def _visit(
    plan: Plan,
    node_id: str,
    stack: list[str],
    done: set[str],
    ids: Mapping[str, int],
    where: SourceMap,
) -> None:
    stack.append(node_id)
    node = plan.nodes[ids[node_id]]
    for number, dependency in enumerate(node.depends_on):
        if dependency in stack:
            cycle = [*stack[stack.index(dependency) :], dependency]
            raise _fail(
                where,
                f"dependency cycle: {' → '.join(cycle)}",
                ("nodes", ids[node_id], "depends_on", number),
                "a plan must be a DAG; remove one of these dependencies",
            )
        if dependency not in done:
            _visit(plan, dependency, stack, done, ids, where)
    stack.pop()
    done.add(node_id)


def _resolve(
    node: PlanNode, index: int, capsules: Mapping[str, Capsule], where: SourceMap
) -> Capsule:
    """Pick the highest capsule version that satisfies the node's ``name@range``."""
    path = ("nodes", index, "capsule")
    name, text = split_ref(node.capsule)
    candidates = [c for c in capsules.values() if c.name == name]
    if not candidates:
        direct = capsules.get(node.capsule) or capsules.get(name)
        if direct is not None:
            return direct
        names = sorted({c.name for c in capsules.values()})
        raise _fail(where, f"unknown capsule '{name}'", path, _suggest(name, names))
    try:
        version_range = parse_range(text)
    except SpecError as exc:
        raise _fail(where, exc.message, path, exc.hint) from None
    best = version_range.best(candidates, lambda c: c.version)
    if best is None:
        available = ", ".join(sorted((c.version for c in candidates), key=Version.parse))
        raise _fail(
            where,
            f"no version of capsule '{name}' matches '{version_range.text}'",
            path,
            f"available versions: {available}",
        )
    return best


def _check_inputs(node: PlanNode, index: int, capsule: Capsule, where: SourceMap) -> None:
    path: DocPath = ("nodes", index, "inputs")
    properties: Mapping[str, Any] = capsule.inputs.get("properties", {})
    for required in capsule.inputs.get("required", []):
        if required not in node.inputs:
            raise _fail(
                where,
                f"node '{node.id}' does not give capsule '{capsule.name}' its required input "
                f"'{required}'",
                path,
                f"add `{required}:` under inputs, as a value or a '${{node.outputs.field}}' "
                "reference",
            )
    for name, value in node.inputs.items():
        if name not in properties:
            if capsule.inputs.get("additionalProperties") is False:
                raise _fail(
                    where,
                    f"capsule '{capsule.name}' has no input '{name}'",
                    (*path, name),
                    _suggest(name, list(properties)),
                )
            continue
        _check_literal(value, properties[name], capsule.inputs, (*path, name), where)


def _check_literal(
    value: Any, schema: Mapping[str, Any], root: Mapping[str, Any], path: DocPath, where: SourceMap
) -> None:
    """Type-check values that are fully known now; wired references are checked at run time.

    ``root`` is the capsule's whole inputs schema, so ``$ref``s to its ``$defs`` resolve.
    """
    if any(True for _ in output_references(value)):
        return
    validator = jsonschema.Draft202012Validator(root).evolve(schema=schema)
    try:
        error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    except Unresolvable as exc:
        raise _fail(
            where,
            f"the capsule's input schema has an unresolvable $ref: {exc}",
            path,
            "fix the capsule's `inputs:` schema; only local refs such as '#/$defs/x' resolve",
        ) from None
    if error is not None:
        raise _fail(where, f"invalid input: {error.message}", (*path, *error.absolute_path))


def _check_references(
    node: PlanNode,
    index: int,
    ids: Mapping[str, int],
    resolved: Mapping[str, Capsule],
    where: SourceMap,
) -> None:
    for name, value in node.inputs.items():
        for inner, source, output in output_references(value):
            path = ("nodes", index, "inputs", name, *inner)
            if source not in ids:
                raise _fail(
                    where,
                    f"reference to unknown node '{source}'",
                    path,
                    _suggest(source, list(ids)),
                )
            if source not in node.depends_on:
                raise _fail(
                    where,
                    f"node '{node.id}' uses the outputs of '{source}' but does not depend on it",
                    path,
                    f"add '{source}' to depends_on of '{node.id}' so it runs first",
                )
            declared = list(resolved[source].outputs.get("properties", {}))
            if output not in declared:
                raise _fail(
                    where,
                    f"capsule '{resolved[source].name}' (node '{source}') has no output '{output}'",
                    path,
                    _suggest(output, declared) or f"its outputs are: {', '.join(declared)}",
                )
