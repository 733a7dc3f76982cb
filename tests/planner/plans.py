"""Plan answers and DAG helpers shared by the planner tests."""

from __future__ import annotations

import copy
from typing import Any

from soma.specs.models import Plan

SPEC = "${spec.outputs.spec}"


def node(node_id: str, capsule: str, inputs: dict[str, Any], *deps: str) -> dict[str, Any]:
    return {"id": node_id, "capsule": capsule, "inputs": inputs, "depends_on": list(deps)}


def good_answer(goal: str = "a word counter") -> dict[str, Any]:
    """A small valid plan, the way a model would write it."""
    return {
        "goal": goal,
        "nodes": [
            node("spec", "write-spec", {"goal": goal}),
            node(
                "implement", "implement-feature", {"feature": "R1 counting", "spec": SPEC}, "spec"
            ),
            node("tests", "write-tests", {"spec": SPEC}, "spec", "implement"),
        ],
    }


def broken(change: str) -> dict[str, Any]:
    """``good_answer`` with one typical mistake."""
    answer = copy.deepcopy(good_answer())
    nodes = answer["nodes"]
    if change == "cycle":
        nodes[0]["depends_on"] = ["tests"]
    elif change == "unknown_capsule":
        nodes[1]["capsule"] = "implement-feature-x"
    elif change == "unwired":
        del nodes[2]["inputs"]["spec"]
    elif change == "missing_dependency":
        nodes[2]["depends_on"] = ["implement"]
    elif change == "bad_output":
        nodes[2]["inputs"]["spec"] = "${spec.outputs.specification}"
    elif change == "bad_syntax":
        nodes[2]["inputs"]["spec"] = "${spec.output.spec}"
    else:  # pragma: no cover - a typo in a test
        raise ValueError(change)
    return answer


def layers(plan: Plan) -> list[set[str]]:
    """Topological layers: a node's layer is one more than its deepest dependency's."""
    deps = {n.id: n.depends_on for n in plan.nodes}
    depth: dict[str, int] = {}

    def level(node_id: str) -> int:
        if node_id not in depth:
            depth[node_id] = 1 + max((level(d) for d in deps[node_id]), default=-1)
        return depth[node_id]

    for node_id in deps:
        level(node_id)
    result: list[set[str]] = [set() for _ in range(max(depth.values()) + 1)]
    for node_id, value in depth.items():
        result[value].add(node_id)
    return result
