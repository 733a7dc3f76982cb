"""`soma tools`: what tools exist, what they take, which rules govern them, and a dry run.

`soma tools test` runs one call the way a worker would — the constitution first, then the tool
with the tenant's secrets, outputs masked — in a scratch workspace, so an operator can check an
adapter's credentials and allow-lists before an agent depends on them.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from soma.cli.common import console, friendly_errors, load_library
from soma.constitution import Action, Constitution, Subject
from soma.errors import SpecError
from soma.identity.secret import load_secret_key
from soma.secrets import Vault, mask
from soma.settings import Settings
from soma.store import DEFAULT_TENANT, Store
from soma.tools import ToolContext, default_registry, make_sandbox
from soma.workspace import AgentIdentity, Workspace

tools_app = typer.Typer(help="Tools agents can call: list, show, test.", no_args_is_help=True)


@tools_app.command("list")
@friendly_errors
def list_tools(
    pattern: Annotated[str, typer.Argument(help="fnmatch pattern, e.g. 'github.*'.")] = "*",
) -> None:
    """Registered tools: built-ins and adapters (offered to an agent only when its capsule
    grants the tool and its persona allows it)."""
    table = Table("tool", "runs", "description")
    for spec in default_registry().specs([pattern]):
        quick = default_registry().is_quick(spec.name)
        table.add_row(spec.name, "in-process" if quick else "activity", spec.description)
    console.print(table)


@tools_app.command("show")
@friendly_errors
def show_tool(name: Annotated[str, typer.Argument(help="Tool name.")]) -> None:
    """A tool's argument schema and the default constitution's rules about it."""
    registry = default_registry()
    spec = registry.get(name).spec
    console.print(f"[bold]{spec.name}[/] — {escape(spec.description)}")
    console.print_json(json.dumps(spec.parameters))
    constitution = load_library(Settings()).constitution("default")
    rules = [
        rule
        for rule in constitution.rules
        if rule.action.kind == "tool_call"
        and (rule.action.tool is None or fnmatch.fnmatchcase(name, rule.action.tool))
    ]
    table = Table("rule", "effect", "when", "reason")
    for rule in rules:
        when = json.dumps(rule.when) if rule.when else "always"
        table.add_row(rule.id, rule.effect, escape(when), escape(rule.reason.strip()))
    console.print(table if rules else "no rule of the default constitution names this tool")


@tools_app.command("test")
@friendly_errors
def dry_run(
    name: Annotated[str, typer.Argument(help="Tool name.")],
    args: Annotated[str, typer.Option("--args", help="Arguments as a JSON object.")] = "{}",
    tenant: Annotated[str, typer.Option(help="Whose secrets the tool reads.")] = DEFAULT_TENANT,
    persona: Annotated[str, typer.Option(help="Acting persona, for the policy check.")] = (
        "developer"
    ),
) -> None:
    """Run one call: the constitution's decision, then (if allowed) the tool's result."""
    try:
        arguments: Any = json.loads(args)
    except json.JSONDecodeError as exc:
        raise SpecError(f"--args is not JSON: {exc.msg}", field="args") from exc
    if not isinstance(arguments, dict):
        raise SpecError("--args must be a JSON object", field="args")
    settings = Settings()
    library = load_library(settings)
    registry = default_registry()
    registry.validate(name, arguments)
    acting = library.persona(persona)
    decision = Constitution.compile(library.constitution("default")).check(
        Subject(persona=acting.name, role=acting.role, tenant=tenant),
        Action(kind="tool_call", tool=name, arguments=arguments),
    )
    console.print(f"constitution: [bold]{decision.effect}[/] — {escape(decision.explanation)}")
    if decision.effect in ("deny", "require_approval"):
        console.print("not run: an agent's call would stop here too")
        raise typer.Exit(1)
    store = Store.open(settings.store_url)
    secrets = Vault(store, load_secret_key(settings)).reader(tenant)
    with tempfile.TemporaryDirectory(prefix="soma-tool-test-") as scratch:
        context = ToolContext(
            workspace=Workspace.open(Path(scratch), "tool-test"),
            sandbox=make_sandbox(settings.sandbox),
            agent=AgentIdentity(persona=acting.name, capsule="tools-test", run_id="cli"),
            timeout_s=settings.sandbox_timeout_s,
            memory_mb=settings.sandbox_memory_mb,
            tenant_id=tenant,
            secrets=secrets,
        )
        result = asyncio.run(registry.call(name, dict(decision.arguments or arguments), context))
    output = mask(result.output, secrets.values())
    style = "green" if result.ok else "red"
    console.print(f"[{style}]{'ok' if result.ok else 'failed'}[/]")
    console.print(escape(output))
    if not result.ok:
        raise typer.Exit(1)
