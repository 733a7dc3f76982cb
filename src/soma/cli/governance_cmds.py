"""Commands for the constitution: the audit log and policy tests."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from soma.cli.common import console, friendly_errors
from soma.constitution import run_policy_tests
from soma.errors import NotFound
from soma.settings import Settings
from soma.store import DEFAULT_TENANT, Store

audit_app = typer.Typer(
    help="The tamper-evident audit log of policy decisions.", no_args_is_help=True
)
policy_app = typer.Typer(
    help="Constitutions: test them against example actions.", no_args_is_help=True
)

EFFECT_STYLE = {
    "allow": "green",
    "deny": "red",
    "require_approval": "yellow",
    "redact": "magenta",
}


@audit_app.command("verify")
@friendly_errors
def audit_verify(
    tenant: Annotated[str, typer.Option(help="Tenant whose chain to check.")] = "default",
) -> None:
    """Recompute the audit chain's hashes; exit 1 and name the first bad record if tampered."""
    result = Store.open(Settings().store_url).verify_audit(tenant_id=tenant)
    if result.ok:
        console.print(f"[green]audit chain intact[/]: {result.checked} records verified")
        return
    problem = escape(result.problem or "")
    console.print(f"[red]audit chain broken[/] at record {result.first_bad_id}: {problem}")
    raise typer.Exit(1)


@audit_app.command("show")
@friendly_errors
def audit_show(
    project: Annotated[
        str | None, typer.Argument(help="Project id; omit for the tenant's whole log.")
    ] = None,
    tenant: Annotated[
        str | None,
        typer.Option(help="Tenant whose log to show (default: the project's, else 'default')."),
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many records.")] = 200,
) -> None:
    """List policy decisions and identity changes: who, what, rule, effect, why."""
    store = Store.open(Settings().store_url)
    if tenant is None:
        tenant = _tenant_of(store, project)
    records = store.list_audit(project_id=project, tenant_id=tenant, limit=limit)
    table = Table("#", "time", "actor", "action", "tool", "effect", "rule", "reason")
    for record in records:
        style = EFFECT_STYLE.get(record.effect, "")
        table.add_row(
            str(record.id),
            f"{record.created_at:%H:%M:%S}",
            record.actor,
            record.action_kind,
            record.tool or "",
            f"[{style}]{record.effect}[/]",
            record.rule_id or "",
            escape(record.reason[:80]),
        )
    console.print(table)


def _tenant_of(store: Store, project: str | None) -> str:
    """The project's tenant; the default one when there is no project row (decisions can be
    recorded before it, and outlive it)."""
    if project is None:
        return DEFAULT_TENANT
    try:
        return store.project_tenant(project)
    except NotFound:
        return DEFAULT_TENANT


@policy_app.command("test")
@friendly_errors
def policy_test(
    cases: Annotated[
        Path, typer.Argument(help="YAML file of example actions and expected effects.")
    ],
    constitution: Annotated[
        Path | None, typer.Option(help="Constitution YAML (default: the built-in default).")
    ] = None,
) -> None:
    """Run a constitution against example actions; exit 1 if any expectation fails."""
    results = run_policy_tests(constitution if constitution is not None else "default", cases)
    table = Table("case", "expected", "got", "rule", "result")
    failed = 0
    for case in results:
        failed += not case.passed
        mark = "[green]pass[/]" if case.passed else "[red]fail[/]"
        table.add_row(case.name, case.expected, case.actual, case.rule_id or "", mark)
        if not case.passed and case.message:
            console.print(f"[red]{escape(case.name)}[/]: {escape(case.message)}")
    console.print(table)
    console.print(f"{len(results) - failed}/{len(results)} cases passed")
    if failed:
        raise typer.Exit(1)
