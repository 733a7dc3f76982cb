"""``soma secrets``: a tenant's adapter credentials, straight against the store.

Like ``soma admin`` these act as the operator of the installation. Values are read from a
hidden prompt or from stdin by default, never from an argument, so they stay out of shell
history and process listings; nothing here ever prints one.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from soma.cli.admin_cmds import _cli_actor
from soma.cli.common import console, friendly_errors
from soma.identity import load_secret_key
from soma.secrets import Vault
from soma.settings import Settings
from soma.store import Store

secrets_app = typer.Typer(
    help="A tenant's secrets (adapter credentials), encrypted at rest.", no_args_is_help=True
)


@contextmanager
def _open() -> Iterator[Vault]:
    settings = Settings()
    with Store.open(settings.store_url) as store:
        yield Vault(store, load_secret_key(settings))


def _read_value() -> str:
    if sys.stdin.isatty():
        value: str = typer.prompt("Value", hide_input=True)
        return value
    # Piped in (`pass show x | soma secrets set ...`): one trailing newline is the pipe's, not
    # the secret's.
    data = sys.stdin.read()
    return data.removesuffix("\n").removesuffix("\r")


@secrets_app.command("set")
@friendly_errors
def set_secret(
    tenant: Annotated[str, typer.Argument(help="Tenant id.")],
    name: Annotated[str, typer.Argument(help="Secret name, e.g. github.token.")],
    value: Annotated[
        str | None,
        typer.Option(
            help="The value. Avoid it: it lands in shell history. By default the value is read"
            " from a hidden prompt, or from stdin when piped."
        ),
    ] = None,
) -> None:
    """Create or replace a secret."""
    secret = value if value is not None else _read_value()
    with _open() as vault:
        info = vault.set(tenant, name, secret, actor=_cli_actor())
    console.print(f"set secret [bold]{escape(info.name)}[/] of tenant {escape(info.tenant_id)}")


@secrets_app.command("list")
@friendly_errors
def list_secrets(tenant: Annotated[str, typer.Argument(help="Tenant id.")]) -> None:
    """List a tenant's secrets: names and dates, never values."""
    with _open() as vault:
        infos = vault.names(tenant)
    table = Table("name", "created", "updated", "updated by")
    for info in infos:
        table.add_row(
            escape(info.name),
            info.created_at.strftime("%Y-%m-%d %H:%M"),
            info.updated_at.strftime("%Y-%m-%d %H:%M"),
            escape(info.updated_by),
        )
    console.print(table)


@secrets_app.command("delete")
@friendly_errors
def delete_secret(
    tenant: Annotated[str, typer.Argument(help="Tenant id.")],
    name: Annotated[str, typer.Argument(help="Secret name.")],
) -> None:
    """Delete a secret."""
    with _open() as vault:
        vault.delete(tenant, name, actor=_cli_actor())
    console.print(f"deleted secret [bold]{escape(name)}[/] of tenant {escape(tenant)}")
