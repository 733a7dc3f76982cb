"""The plan graph's layout: layers by dependency depth, edges left to right."""

from __future__ import annotations

from soma.console.dag import GAP_X, MARGIN, NODE_W, layout


def _plan(*nodes: tuple[str, list[str]]) -> dict[str, object]:
    return {"nodes": [{"id": n, "capsule": f"c-{n}", "depends_on": d} for n, d in nodes]}


def test_nodes_sit_in_the_column_of_their_longest_dependency_chain() -> None:
    placed = layout(_plan(("a", []), ("b", ["a"]), ("c", ["a"]), ("d", ["b", "c"]), ("e", [])))
    column = {n.id: (n.x - MARGIN) // (NODE_W + GAP_X) for n in placed.nodes}
    assert column == {"a": 0, "b": 1, "c": 1, "d": 2, "e": 0}
    assert [n.id for n in placed.nodes] == ["a", "b", "c", "d", "e"]
    rows = {n.id: n.y for n in placed.nodes}
    assert rows["b"] < rows["c"], "plan order is kept within a column"
    assert rows["a"] < rows["e"]


def test_every_edge_runs_from_a_dependency_to_its_dependent() -> None:
    placed = layout(_plan(("a", []), ("b", ["a"]), ("c", ["a", "b"])))
    assert {(e.source, e.target) for e in placed.edges} == {("a", "b"), ("a", "c"), ("b", "c")}
    by_id = {n.id: n for n in placed.nodes}
    for edge in placed.edges:
        start_x = int(edge.path[1:].split(",")[0])
        assert start_x == by_id[edge.source].x + NODE_W
        assert start_x < by_id[edge.target].x
    assert placed.width >= max(n.x for n in placed.nodes) + NODE_W


def test_unknown_dependencies_and_cycles_do_not_break_the_layout() -> None:
    placed = layout(_plan(("a", ["ghost"]), ("b", ["c"]), ("c", ["b"])))
    assert {n.id for n in placed.nodes} == {"a", "b", "c"}
    assert all(e.source != "ghost" for e in placed.edges)


def test_an_empty_or_missing_plan_is_an_empty_drawing() -> None:
    for plan in (None, {}, {"nodes": []}):
        placed = layout(plan)
        assert placed.nodes == []
        assert placed.edges == []
        assert placed.width > 0
        assert placed.height > 0
