"""The ``soma`` command line."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.markup import escape
from rich.table import Table

from soma import __version__
from soma.agents.capsule_runner import run_capsule
from soma.agents.evals import run_eval
from soma.cli import market_pack_cmds, market_registry_cmds, project_cmds, serve_cmd
from soma.cli.admin_cmds import admin_app
from soma.cli.billing_cmds import billing_app
from soma.cli.common import console, err_console, friendly_errors, load_library
from soma.cli.governance_cmds import audit_app, policy_app
from soma.cli.market_cmds import market_app
from soma.cli.mcp_cmds import mcp_app
from soma.cli.memory_cmds import memory_app, open_memory
from soma.cli.notify_cmds import notify_app
from soma.cli.progress import ProgressPrinter, summary_table
from soma.cli.project_cmds import review_app, server_app
from soma.cli.secrets_cmds import secrets_app
from soma.cli.synthesis_cmds import synthesize
from soma.cli.tools_cmds import tools_app
from soma.errors import NotFound, SpecError
from soma.memory.improve import eval_and_learn
from soma.models.registry import resolve_model
from soma.orchestrator.launch import new_project_id
from soma.settings import Settings
from soma.specs.loader import load_spec, spec_json_schema
from soma.tools import default_registry
from soma.tools.sandbox import make_sandbox
from soma.workspace import Workspace

app = typer.Typer(
    name="soma",
    help="SomaAgentHub: teams of AI agents, governed by a constitution, deliver whole projects.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
capsule_app = typer.Typer(help="Inspect and validate Task Capsules.", no_args_is_help=True)
persona_app = typer.Typer(help="Inspect personas.", no_args_is_help=True)
agent_app = typer.Typer(help="Run a single agent on one capsule.", no_args_is_help=True)
app.add_typer(capsule_app, name="capsule")
app.add_typer(persona_app, name="persona")
persona_app.command("synthesize")(synthesize)
app.add_typer(agent_app, name="agent")
app.add_typer(review_app, name="review")
app.add_typer(server_app, name="server")
app.add_typer(audit_app, name="audit")
app.add_typer(policy_app, name="policy")
app.add_typer(admin_app, name="admin")
app.add_typer(market_app, name="market")
app.add_typer(mcp_app, name="mcp")
app.add_typer(notify_app, name="notify")
app.add_typer(secrets_app, name="secrets")
app.add_typer(tools_app, name="tools")
app.add_typer(billing_app, name="billing")
app.add_typer(memory_app, name="memory")
# Imported for their side effect: they register their commands on market_app.
_MARKET_COMMANDS = (market_pack_cmds, market_registry_cmds)
app.command()(project_cmds.run)
app.command()(project_cmds.status)
app.command()(project_cmds.logs)
app.command()(project_cmds.cancel)
app.command()(project_cmds.teardown)
app.command()(project_cmds.worker)
app.command()(serve_cmd.serve)


def _version(value: bool) -> None:
    if value:
        console.print(f"soma {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """SomaAgentHub command line."""


def _parse_inputs(pairs: list[str]) -> dict[str, Any]:
    inputs: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise SpecError(
                f"--input {pair!r} is not key=value",
                field="inputs",
                hint="write -i goal='Build a CLI', or -i spec=@docs/SPEC.md to read a file",
            )
        inputs[key] = _read_file_value(key, raw[1:]) if raw.startswith("@") else _coerce(raw)
    return inputs


def _read_file_value(key: str, path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"cannot read {path}: {exc.strerror}", field=f"inputs.{key}") from exc


def _coerce(raw: str) -> Any:
    """Values that parse as JSON objects, lists, numbers or booleans are taken as such."""
    if raw[:1] in "[{" or raw in ("true", "false", "null") or re.fullmatch(r"-?\d+(\.\d+)?", raw):
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            return raw
    return raw


def _run_one(
    capsule_ref: str, inputs: dict[str, Any], project: str | None, model_name: str | None
) -> None:
    settings = Settings()
    library = load_library(settings)
    capsule = library.capsule(capsule_ref)
    persona = library.persona(capsule.persona)
    model = resolve_model(model_name or settings.model, settings)
    workspace = Workspace.open(settings.workspaces_dir, project or new_project_id(capsule.name))
    sandbox = make_sandbox(settings.sandbox)
    console.print(
        f"[bold]{capsule.ref}[/] as [bold]{persona.name}[/] on [bold]{model.name}[/] "
        f"in {workspace.path}"
    )
    with console.status("step 1: waiting for the model…") as status:
        result = asyncio.run(
            run_capsule(
                capsule,
                persona,
                inputs,
                model=model,
                registry=default_registry(),
                workspace=workspace,
                sandbox=sandbox,
                on_event=ProgressPrinter(console, status),
                tool_timeout_s=settings.sandbox_timeout_s,
                tool_memory_mb=settings.sandbox_memory_mb,
            )
        )
    console.print(summary_table(result, str(workspace.path)))
    if not result.ok:
        raise typer.Exit(1)


@agent_app.command("run")
@friendly_errors
def agent_run(
    capsule: Annotated[str, typer.Argument(help="Capsule name, optionally name@range.")],
    input: Annotated[
        list[str] | None,
        typer.Option(
            "--input", "-i", help="Input as key=value, or key=@file to read a file (repeatable)."
        ),
    ] = None,
    project: Annotated[str | None, typer.Option(help="Workspace/project id to reuse.")] = None,
    model: Annotated[str | None, typer.Option(help="Model: 'local' or 'openai:<name>'.")] = None,
) -> None:
    """Run one capsule with its persona, without orchestration."""
    _run_one(capsule, _parse_inputs(input or []), project, model)


@capsule_app.command("list")
@friendly_errors
def capsule_list() -> None:
    """List the capsules in the library."""
    table = Table("name", "version", "persona", "review", "description")
    for item in load_library(Settings()).capsules():
        table.add_row(item.name, item.version, item.persona, item.review, item.description)
    console.print(table)


@capsule_app.command("show")
@friendly_errors
def capsule_show(name: Annotated[str, typer.Argument(help="Capsule name or name@range.")]) -> None:
    """Show a capsule as YAML."""
    item = load_library(Settings()).capsule(name)
    console.print(yaml.safe_dump(item.model_dump(by_alias=True), sort_keys=False), markup=False)


@capsule_app.command("eval")
@friendly_errors
def capsule_eval(
    name: Annotated[str, typer.Argument(help="Capsule name or name@range.")],
    case: Annotated[str | None, typer.Option("--eval", help="Run only this eval.")] = None,
    model: Annotated[str | None, typer.Option(help="Model: 'local' or 'openai:<name>'.")] = None,
    learn: Annotated[
        bool,
        typer.Option(
            help="Recall lessons before each eval and keep lessons from failed checks after it."
        ),
    ] = False,
    rounds: Annotated[int, typer.Option(min=1, help="Run the evals this many times.")] = 1,
    tenant: Annotated[str, typer.Option(help="Whose memory --learn uses.")] = "default",
) -> None:
    """Run a capsule's evals with a model and show which checks pass; with --learn and
    --rounds, watch the success rate as lessons accumulate."""
    settings = Settings()
    library = load_library(settings)
    capsule = library.capsule(name)
    persona = library.persona(capsule.persona)
    cases = [c for c in capsule.evals if case is None or c.name == case]
    if not cases:
        known = ", ".join(c.name for c in capsule.evals) or "(none)"
        raise NotFound(f"capsule {capsule.ref} has no eval {case!r}", hint=f"evals: {known}")
    resolved = resolve_model(model or settings.model, settings)
    memory = open_memory(settings) if learn else None
    failed = 0
    for number in range(1, rounds + 1):
        table = Table("eval", "check", "field", "result", "detail")
        failed = 0
        for item in cases:
            with console.status(f"eval {item.name}: running {capsule.ref} on {resolved.name}…"):
                registry, sandbox = default_registry(), make_sandbox(settings.sandbox)
                root = settings.workspaces_dir
                run = (
                    eval_and_learn(
                        memory,
                        tenant,
                        capsule,
                        persona,
                        item,
                        model=resolved,
                        registry=registry,
                        sandbox=sandbox,
                        workspaces_root=root,
                    )
                    if memory is not None
                    else run_eval(
                        capsule,
                        persona,
                        item,
                        model=resolved,
                        registry=registry,
                        sandbox=sandbox,
                        workspaces_root=root,
                    )
                )
                outcome = asyncio.run(run)
            failed += not outcome.passed
            for check in outcome.checks:
                mark = "[green]pass[/]" if check.passed else "[red]fail[/]"
                table.add_row(item.name, check.kind, check.field or "", mark, escape(check.detail))
        if rounds > 1:
            console.print(f"[bold]round {number}[/]")
        console.print(table)
        console.print(f"{len(cases) - failed}/{len(cases)} evals passed")
    if failed:
        raise typer.Exit(1)


@capsule_app.command("validate")
@friendly_errors
def capsule_validate(
    paths: Annotated[list[Path], typer.Argument(help="capsule.yaml files or folders.")],
) -> None:
    """Validate capsule files; print every problem with file:line and field path."""
    problems = 0
    for path in _expand(paths):
        try:
            spec = load_spec(path)
        except SpecError as exc:
            problems += 1
            err_console.print(f"[red]✗[/] {escape(str(exc))}")
        else:
            console.print(f"[green]✓[/] {path} ({getattr(spec, 'kind', '?')})")
    if problems:
        raise typer.Exit(1)


def _expand(paths: list[Path]) -> list[Path]:
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(path.rglob("*.yaml")))
        else:
            found.append(path)
    return found


@persona_app.command("list")
@friendly_errors
def persona_list() -> None:
    """List the personas in the library."""
    table = Table("name", "version", "role", "tools")
    for item in load_library(Settings()).personas():
        table.add_row(item.name, item.version, item.role, ", ".join(item.tools))
    console.print(table)


@persona_app.command("show")
@friendly_errors
def persona_show(name: Annotated[str, typer.Argument(help="Persona name.")]) -> None:
    """Show a persona as YAML."""
    item = load_library(Settings()).persona(name)
    console.print(yaml.safe_dump(item.model_dump(), sort_keys=False), markup=False)


@app.command()
@friendly_errors
def schema(
    kind: Annotated[str, typer.Argument(help="capsule, persona, constitution or plan.")],
) -> None:
    """Print the JSON Schema of a spec kind (for editors and CI validation)."""
    sys.stdout.write(json.dumps(spec_json_schema(kind), indent=2) + "\n")


if __name__ == "__main__":
    app()
