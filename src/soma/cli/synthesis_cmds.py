"""`soma persona synthesize`: search for the persona that does a capsule best, on its evals."""

from __future__ import annotations

import asyncio
import contextlib
import re
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from soma.cli.admin_cmds import _cli_actor
from soma.cli.common import console, err_console, friendly_errors
from soma.errors import NotFound
from soma.marketplace.installer import load_tenant_library
from soma.models.registry import resolve_model
from soma.settings import Settings
from soma.specs.library import Library
from soma.specs.models import NAME_PATTERN, Capsule, ModelPreference
from soma.store import DEFAULT_TENANT, Store
from soma.synthesis.optimizer import (
    CandidateReused,
    CaseScored,
    RoundFinished,
    RoundStarted,
    Stopped,
    SynthesisError,
    SynthesisEvent,
    SynthesisSpec,
    check_request,
    persona_tools,
)
from soma.synthesis.optimizer import (
    synthesize as run_synthesis,
)
from soma.synthesis.publish import (
    PublishTarget,
    default_output,
    persona_yaml,
    prepare_publish,
    publish_persona,
    score_tags,
    write_persona,
)
from soma.synthesis.scoring import CandidateScore
from soma.tools import default_registry
from soma.tools.sandbox import make_sandbox

_STOP_WORDS = {"a", "an", "the", "who", "that", "and", "of", "for", "with", "to", "in", "on"}
_MAX_NAME_WORDS = 4
_NAME_RE = re.compile(NAME_PATTERN)


def default_name(description: str, capsule: Capsule) -> str:
    """A name from the description's first words ("a careful QA engineer" → careful-qa-engineer)."""
    words = [w for w in re.findall(r"[a-z0-9]+", description.lower()) if w not in _STOP_WORDS]
    name = "-".join(words[:_MAX_NAME_WORDS])[:48].strip("-")
    return name if _NAME_RE.match(name) else f"{capsule.name}-persona"[:64]


def _check_name(name: str) -> None:
    if len(name) > 64 or not _NAME_RE.match(name):
        raise SynthesisError(
            f"{name!r} is not a valid persona name",
            hint="use lower-case letters, digits and single '-', '_' or '.', e.g. test-writer",
        )
    if name in {p.name for p in Library.builtin().personas()}:
        raise SynthesisError(
            f"'{name}' is a built-in persona; a synthesized one must not replace it",
            hint="choose another --name",
        )


class _Printer:
    """One progress line per eval run, and a table of candidates x evals after each round."""

    def __init__(self, capsule: Capsule) -> None:
        self.capsule = capsule

    def __call__(self, event: SynthesisEvent) -> None:
        if isinstance(event, RoundStarted):
            console.rule(f"round {event.round}/{event.rounds}")
        elif isinstance(event, CaseScored):
            mark = "[green]pass[/]" if event.case.passed else "[red]fail[/]"
            console.print(
                f"  {event.candidate} eval {event.number}/{event.total} "
                f"{escape(event.case.eval)}: {mark} ({event.case.checks_passed}/"
                f"{event.case.checks_total} checks, {event.case.tokens} tokens)"
            )
        elif isinstance(event, CandidateReused):
            console.print(f"  {event.candidate} is {event.earlier} again: not run again")
        elif isinstance(event, RoundFinished):
            console.print(round_table(self.capsule, event.round, event.candidates, event.best))
        elif isinstance(event, Stopped):
            console.print(f"search ended: {escape(event.reason)}")


def round_table(
    capsule: Capsule, number: int, candidates: list[CandidateScore], best: CandidateScore
) -> Table:
    table = Table(title=f"round {number}: candidates x evals (best so far: {best.id})")
    table.add_column("candidate")
    table.add_column("role")
    table.add_column("skills")
    for case in capsule.evals:
        table.add_column(case.name, justify="center")
    table.add_column("score", justify="right")
    table.add_column("tokens", justify="right")
    for candidate in sorted(candidates, key=lambda c: c.rank_key):
        marks = ["[green]✓[/]" if c.passed else "[red]✗[/]" for c in candidate.cases]
        star = " ★" if candidate.id == best.id else ""
        table.add_row(
            candidate.id + star,
            escape(candidate.draft.role),
            escape(", ".join(candidate.draft.skills)),
            *marks,
            f"{candidate.passed}/{candidate.total}",
            str(candidate.tokens),
        )
    return table


@friendly_errors
def synthesize(
    description: Annotated[str, typer.Argument(help="What the persona is for, in words.")],
    evals: Annotated[
        str, typer.Option("--evals", help="The capsule (name or name@range) whose evals score.")
    ],
    candidates: Annotated[
        int, typer.Option("--candidates", "-n", help="Candidates proposed per round.")
    ] = 3,
    rounds: Annotated[
        int, typer.Option("--rounds", "-r", help="Rounds at most (a perfect score stops early).")
    ] = 2,
    model: Annotated[
        str | None, typer.Option(help="Generator model (default: SOMA_MODEL).")
    ] = None,
    agent_model: Annotated[
        str | None,
        typer.Option("--agent-model", help="Model the evals run with (default: SOMA_MODEL)."),
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="The persona's name (default: from the description).")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="YAML file to write (default: personas/<name>.yaml in the library)."),
    ] = None,
    force: Annotated[bool, typer.Option(help="Replace an existing output file.")] = False,
    publish: Annotated[
        bool, typer.Option(help="Also publish it, signed, to this instance's registry.")
    ] = False,
    publisher: Annotated[
        str | None,
        typer.Option(help="Publisher to sign as (key from `soma market keygen`); with --publish."),
    ] = None,
    tenant: Annotated[
        str, typer.Option(help="Tenant whose library and publisher names to use.")
    ] = DEFAULT_TENANT,
) -> None:
    """Synthesize a persona for a capsule: propose candidates, score them on its evals, improve.

    Writes the best persona as YAML to the tenant's library (or --out); with --publish it is also
    packed, signed with --publisher's key and published with its eval scores as tags.
    """
    settings = Settings()
    library = load_tenant_library(settings, tenant)
    capsule = library.capsule(evals)
    check_request(description, capsule, candidates, rounds)
    persona_name = name or default_name(description, capsule)
    _check_name(persona_name)
    target_path = out or default_output(settings, tenant, persona_name)
    if target_path.exists() and not force:
        raise SynthesisError(
            f"{target_path} already exists",
            hint="pass --force to replace it, or choose another --name or --out",
        )
    if publisher is not None and not publish:
        raise SynthesisError("--publisher is used only with --publish", hint="add --publish")
    if publish and publisher is None:
        raise SynthesisError(
            "--publish needs --publisher, the publisher to sign as",
            hint="create a key with `soma market keygen <publisher>`, then pass --publisher",
        )
    try:
        base = library.persona(capsule.persona)
    except NotFound:
        base = None
    spec = SynthesisSpec(
        description=description,
        capsule=capsule,
        name=persona_name,
        candidates=candidates,
        rounds=rounds,
        tools=persona_tools(capsule, base),
        model=base.model if base is not None else ModelPreference(),
    )
    with contextlib.ExitStack() as stack:
        store: Store | None = None
        target: PublishTarget | None = None
        if publish and publisher is not None:
            store = stack.enter_context(Store.open(settings.store_url))
            target = prepare_publish(store, settings, persona_name, publisher, tenant)
        generator = resolve_model(model or settings.model, settings)
        agent = resolve_model(agent_model or settings.model, settings)
        console.print(
            f"synthesizing [bold]{escape(persona_name)}[/] for [bold]{capsule.ref}[/] "
            f"({len(capsule.evals)} eval(s)): {candidates} candidate(s) x up to {rounds} "
            f"round(s), generator {escape(generator.name)}, agent {escape(agent.name)}"
        )
        result = asyncio.run(
            run_synthesis(
                spec,
                generator=generator,
                agent=agent,
                registry=default_registry(),
                sandbox=make_sandbox(settings.sandbox),
                workspaces_root=settings.workspaces_dir,
                on_event=_Printer(capsule),
            )
        )
        best = result.best
        version = target.version if target is not None else best.persona.version
        persona = best.persona.model_copy(update={"version": version})
        text = persona_yaml(persona, capsule, description, result)
        written = write_persona(target_path, text, force=force)
        console.print(
            f"[green]best[/] {best.id}: [bold]{escape(persona.role)}[/], {best.passed}/"
            f"{best.total} evals passed, {best.tokens} tokens; wrote {escape(str(written))}"
        )
        if best.passed == 0:
            err_console.print(
                "[yellow]warning:[/] no candidate passed any eval; check the capsule with "
                f"`soma capsule eval {capsule.name}` and the agent model"
            )
        if store is not None and target is not None:
            published = publish_persona(
                store, target, persona, text, score_tags(capsule, result), user_id=_cli_actor()
            )
            console.print(
                f"[green]published[/] {escape(published.manifest.ref)} as "
                f"{escape(target.publisher)} (sha256 {published.digest[:12]}…) with tags "
                f"{escape(', '.join(published.manifest.tags))}"
            )
