"""`soma memory`: look into, add to and clear a tenant's memory from the command line."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from soma.cli.common import console, friendly_errors, load_library
from soma.constitution import Constitution
from soma.identity.secret import load_secret_key
from soma.memory.factory import build_memory
from soma.memory.gateway import Memory
from soma.memory.types import TENANT_SCOPE, MemoryKind
from soma.secrets import Vault
from soma.settings import Settings
from soma.store import Store

memory_app = typer.Typer(
    help="The tenants' memory: notes, facts and lessons agents recall by meaning.",
    no_args_is_help=True,
)

Tenant = Annotated[str, typer.Option("--tenant", "-t", help="The tenant.")]
Scope = Annotated[str, typer.Option(help="tenant, project:<id>, capsule:<name> or persona:<name>.")]


def open_memory(settings: Settings) -> Memory:
    """The memory gateway as workers build it: the default constitution, the vault's values."""
    store = Store.open(settings.store_url)
    constitution = Constitution.compile(load_library(settings).constitution("default"))
    vault = Vault(store, load_secret_key(settings))
    return build_memory(
        store,
        settings,
        constitution_for=lambda tenant: constitution,
        secret_values=lambda tenant: vault.reader(tenant).values(),
    )


@memory_app.command("search")
@friendly_errors
def search(
    query: Annotated[str, typer.Argument(help="What to look for, in plain words.")],
    tenant: Tenant = "default",
    scope: Annotated[list[str] | None, typer.Option(help="Scopes to search (repeatable).")] = None,
    limit: Annotated[int, typer.Option(min=1, max=50)] = 5,
) -> None:
    """The items nearest in meaning to the query."""
    hits = open_memory(Settings()).search(
        tenant, query, scopes=scope or [TENANT_SCOPE], limit=limit
    )
    table = Table("score", "kind", "scope", "text")
    for hit in hits:
        item = hit.item
        table.add_row(f"{hit.score:.3f}", item.kind, item.scope, escape(item.text))
    console.print(table if hits else "nothing remembered matches")


@memory_app.command("add")
@friendly_errors
def add(
    text: Annotated[str, typer.Argument(help="The note to keep.")],
    tenant: Tenant = "default",
    scope: Scope = TENANT_SCOPE,
    kind: Annotated[str, typer.Option(help="note, fact or lesson.")] = "note",
    key: Annotated[str | None, typer.Option(help="Idempotency key (default: the text).")] = None,
) -> None:
    """Keep a note (checked by the constitution: credentials are refused)."""
    if kind not in ("note", "fact", "lesson"):
        raise typer.BadParameter("use note, fact or lesson", param_hint="--kind")
    chosen: MemoryKind = kind  # type: ignore[assignment]
    item = open_memory(Settings()).remember(
        tenant, text, key=key or f"cli:{text}", scope=scope, kind=chosen
    )
    console.print(f"remembered {item.id} in {item.scope}")


@memory_app.command("forget")
@friendly_errors
def forget(
    tenant: Tenant = "default",
    scope: Annotated[str | None, typer.Option(help="Only this scope; default: all.")] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete the tenant's memory (of one scope)."""
    what = f"scope {scope}" if scope else "all memory"
    if not yes and not typer.confirm(f"Forget {what} of tenant {tenant}?"):
        raise typer.Exit(1)
    removed = open_memory(Settings()).forget(tenant, scope=scope)
    console.print(f"forgot {removed} items")


@memory_app.command("count")
@friendly_errors
def count(tenant: Tenant = "default") -> None:
    """How many items the tenant's memory holds."""
    console.print(str(open_memory(Settings()).index.count(tenant)))
