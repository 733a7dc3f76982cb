"""Rich rendering of agent progress, so long runs on a slow local model show signs of life."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.status import Status
from rich.table import Table

from soma.agents.capsule_runner import CapsuleRunResult
from soma.agents.driver import AgentEvent

_ICONS = {
    "model": "[cyan]model[/]",
    "tool": "[magenta]tool [/]",
    "invalid_output": "[yellow]retry[/]",
    "finished": "[green]done [/]",
    "failed": "[red]fail [/]",
}


class ProgressPrinter:
    """Prints one line per agent event and keeps a spinner saying what is awaited now.

    A local model on two cores can think for many seconds per step; the spinner shows the run
    is alive and which step it is on.
    """

    def __init__(self, console: Console, status: Status | None = None) -> None:
        self.console = console
        self.status = status

    def __call__(self, event: AgentEvent) -> None:
        icon = _ICONS.get(event.kind, event.kind)
        self.console.print(f"  step {event.step:>2} {icon} {escape(event.detail)}")
        if self.status is not None:
            waiting = "running tools" if event.data.get("tool_calls") else "waiting for the model"
            self.status.update(f"step {event.step + 1}: {waiting}…")


def summary_table(result: CapsuleRunResult, workspace: str) -> Table:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row(
        "status", "[green]succeeded[/]" if result.ok else f"[red]failed[/]: {result.error}"
    )
    table.add_row("capsule", result.capsule)
    table.add_row("persona", result.persona)
    table.add_row("model", result.model)
    table.add_row("steps", str(result.steps))
    table.add_row("tokens", f"{result.usage.input_tokens} in / {result.usage.output_tokens} out")
    table.add_row("artifacts", ", ".join(result.artifacts) or "-")
    table.add_row("commit", result.commit or "-")
    table.add_row("workspace", workspace)
    return table
