"""A live table of a project's DAG: one row per node with status, tokens and elapsed time."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.markup import escape
from rich.table import Table

from soma.errors import NotFound
from soma.orchestrator.types import NodeState, ProjectState
from soma.specs.library import Library

STATUS_STYLE = {
    "pending": "dim",
    "running": "cyan",
    "waiting_review": "yellow",
    "succeeded": "green",
    "failed": "red",
    "skipped": "dim red",
    "cancelled": "magenta",
}


def persona_of(library: Library, capsule_ref: str) -> str:
    try:
        return library.capsule(capsule_ref).persona
    except NotFound:
        return "?"


def elapsed(node: NodeState, now: datetime | None = None) -> str:
    if node.started_at is None:
        return ""
    end = node.finished_at or now or datetime.now(UTC)
    seconds = max(0.0, (end - node.started_at).total_seconds())
    return f"{seconds:.1f}s"


def dag_table(state: ProjectState, library: Library, title: str | None = None) -> Table:
    table = Table(title=title or f"project {state.project_id} — {state.status}")
    for column in ("node", "capsule", "persona", "status", "tokens", "elapsed", "last event"):
        table.add_column(column, overflow="fold" if column == "last event" else "ellipsis")
    for node in state.nodes.values():
        style = STATUS_STYLE.get(node.status, "")
        table.add_row(
            node.node_id,
            node.capsule,
            persona_of(library, node.capsule),
            f"[{style}]{node.status}[/]",
            str(node.usage.total_tokens or ""),
            elapsed(node),
            escape(node.last_event[:80]),
        )
    return table
