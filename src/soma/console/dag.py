"""Laying out a project's plan DAG for the console: layers by dependency depth, drawn as SVG.

Pure geometry, no HTML: a node's layer is the length of the longest dependency chain that leads
to it, so every edge points rightwards, and nodes keep plan order within their layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

NODE_W = 150
NODE_H = 48
GAP_X = 40
GAP_Y = 20
MARGIN = 12


@dataclass(frozen=True)
class PlacedNode:
    id: str
    capsule: str
    x: int
    y: int


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    path: str
    """SVG path data: a cubic curve from the source's right edge to the target's left edge."""


@dataclass(frozen=True)
class Layout:
    nodes: list[PlacedNode]
    edges: list[Edge]
    width: int
    height: int


def layout(plan: dict[str, Any] | None) -> Layout:
    """The layout of a stored plan (``ProjectRecord.plan``); dependencies on unknown nodes are
    ignored, and a cycle (never stored: plans are validated) cannot loop forever."""
    raw = (plan or {}).get("nodes") or []
    order = [str(n["id"]) for n in raw]
    deps = {str(n["id"]): [str(d) for d in n.get("depends_on") or []] for n in raw}
    capsules = {str(n["id"]): str(n.get("capsule", "")) for n in raw}
    depth: dict[str, int] = {}

    def depth_of(node: str, seen: frozenset[str] = frozenset()) -> int:
        if node not in depth:
            parents = [d for d in deps.get(node, []) if d in deps and d not in seen]
            depth[node] = 1 + max((depth_of(p, seen | {node}) for p in parents), default=-1)
        return depth[node]

    layers: dict[int, list[str]] = {}
    for node in order:
        layers.setdefault(depth_of(node), []).append(node)
    placed: dict[str, PlacedNode] = {}
    for column, members in sorted(layers.items()):
        for row, node in enumerate(members):
            x = MARGIN + column * (NODE_W + GAP_X)
            y = MARGIN + row * (NODE_H + GAP_Y)
            placed[node] = PlacedNode(node, capsules[node], x, y)
    edges = [
        _edge(placed[source], placed[target])
        for target in order
        for source in deps[target]
        if source in placed
    ]
    width = max((p.x for p in placed.values()), default=0) + NODE_W + MARGIN
    height = max((p.y for p in placed.values()), default=0) + NODE_H + MARGIN
    return Layout([placed[n] for n in order], edges, width, height)


def _edge(source: PlacedNode, target: PlacedNode) -> Edge:
    x1, y1 = source.x + NODE_W, source.y + NODE_H // 2
    x2, y2 = target.x, target.y + NODE_H // 2
    bend = (x2 - x1) // 2
    path = f"M{x1},{y1} C{x1 + bend},{y1} {x2 - bend},{y2} {x2},{y2}"
    return Edge(source.id, target.id, path)
