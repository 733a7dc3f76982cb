"""``soma admin``: tenants, users and API keys, straight against the store.

These commands act as the operator of the installation (whoever can read ``SOMA_HOME`` or the
database), not as a user, so they need no credentials of their own.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from soma.cli.backup_cmds import register as register_backup
from soma.cli.common import console, err_console, friendly_errors
from soma.identity import Identity, Permission, load_secret_key
from soma.marketplace.catalogue import trust_catalogue_keys
from soma.settings import Settings
from soma.store import ApiKeyRecord, Store
from soma.store.tables import utcnow

admin_app = typer.Typer(help="Tenants, users, API keys; backup and restore.", no_args_is_help=True)
register_backup(admin_app)

_DAY_S = 86_400


@contextmanager
def _open() -> Iterator[tuple[Identity, Store]]:
    settings = Settings()
    with Store.open(settings.store_url) as store:
        secret = load_secret_key(settings)
        yield Identity(store, secret, session_ttl_s=settings.session_ttl_s), store


@admin_app.command("create-tenant")
@friendly_errors
def create_tenant(
    tenant_id: Annotated[str, typer.Argument(help="Slug: lowercase letters, digits, dashes.")],
    name: Annotated[str, typer.Option(help="Display name (default: the id).")] = "",
    requests_per_min: Annotated[
        int | None, typer.Option(min=1, help="Request rate limit (default: the gateway's).")
    ] = None,
    tokens_per_min: Annotated[
        int | None, typer.Option(min=1, help="Model token rate limit (default: the gateway's).")
    ] = None,
) -> None:
    """Create a tenant (an organisation: its own users, keys, projects and audit log)."""
    with _open() as (identity, store):
        tenant = identity.create_tenant(
            tenant_id, name, requests_per_min=requests_per_min, tokens_per_min=tokens_per_min
        )
        # A new tenant trusts the instance's built-in catalogue, like the tenants that existed
        # when it was published.
        trust_catalogue_keys(store, tenant.id)
    console.print(f"created tenant [bold]{escape(tenant.id)}[/] ({escape(tenant.name)})")


@admin_app.command("create-user")
@friendly_errors
def create_user(
    tenant: Annotated[str, typer.Argument(help="Tenant id.")],
    email: Annotated[str, typer.Argument(help="The user's email (unique in the tenant).")],
    role: Annotated[str, typer.Option(help="admin, developer, reviewer or viewer.")],
    name: Annotated[str, typer.Option(help="Display name.")] = "",
) -> None:
    """Create a user with a role in a tenant."""
    with _open() as (identity, _):
        user = identity.create_user(tenant, email, role, name, actor=_cli_actor())
    console.print(
        f"created user [bold]{escape(user.email)}[/] ({user.role}) in tenant"
        f" {escape(user.tenant_id)}: id {user.id}"
    )


@admin_app.command("list-users")
@friendly_errors
def list_users(tenant: Annotated[str, typer.Argument(help="Tenant id.")]) -> None:
    """List a tenant's users."""
    with _open() as (_, store):
        store.get_tenant(tenant)
        users = store.list_users(tenant)
    table = Table("id", "email", "name", "role", "login", "status")
    for user in users:
        login = user.oidc_issuer or ""
        status = "[red]disabled[/]" if user.disabled else "[green]active[/]"
        table.add_row(user.id, escape(user.email), escape(user.name), user.role, login, status)
    console.print(table)


@admin_app.command("create-key")
@friendly_errors
def create_key(
    tenant: Annotated[str, typer.Argument(help="Tenant id.")],
    email: Annotated[str, typer.Argument(help="Email of the user who owns the key.")],
    name: Annotated[str, typer.Option(help="What the key is for, e.g. 'ci'.")],
    scope: Annotated[
        list[Permission] | None,
        typer.Option(
            help="Limit the key to this permission (repeat for several). "
            "Default: everything the user's role allows."
        ),
    ] = None,
    expires_in_days: Annotated[
        int | None, typer.Option(min=1, help="Expire the key after this many days.")
    ] = None,
) -> None:
    """Create an API key for a user and print it. It is shown this once only."""
    expires_in_s = None if expires_in_days is None else expires_in_days * _DAY_S
    with _open() as (identity, store):
        user = store.get_user_by_email(tenant, email.strip().lower())
        record, plaintext = identity.create_key(
            tenant, user.id, name, scopes=scope, expires_in_s=expires_in_s, actor=_cli_actor()
        )
    err_console.print(
        f"created API key [bold]{record.id}[/] ({escape(record.name)}) for {escape(user.email)}"
        f", {_scopes(record)}, {_expiry(record)}"
    )
    err_console.print("[yellow]Copy the key now: it is not stored and will not be shown again.[/]")
    # Alone on stdout, so `KEY=$(soma admin create-key ...)` captures exactly the key.
    print(plaintext)


@admin_app.command("list-keys")
@friendly_errors
def list_keys(
    tenant: Annotated[str, typer.Argument(help="Tenant id.")],
) -> None:
    """List a tenant's API keys (never their secrets)."""
    with _open() as (identity, store):
        store.get_tenant(tenant)
        emails = {user.id: user.email for user in store.list_users(tenant)}
        keys = identity.list_keys(tenant)
    table = Table("key id", "user", "name", "scopes", "created", "expires", "last used", "status")
    now = utcnow()
    for key in keys:
        table.add_row(
            key.id,
            escape(emails.get(key.user_id, key.user_id)),
            escape(key.name),
            " ".join(key.scopes) if key.scopes is not None else "all of role",
            _day(key.created_at),
            _day(key.expires_at),
            _day(key.last_used_at),
            _status(key, now),
        )
    console.print(table)


@admin_app.command("revoke-key")
@friendly_errors
def revoke_key(
    tenant: Annotated[str, typer.Argument(help="Tenant id.")],
    key_id: Annotated[str, typer.Argument(help="The key id (the part after soma_).")],
) -> None:
    """Revoke an API key: requests with it are refused from now on."""
    with _open() as (identity, _):
        key = identity.revoke_key(tenant, key_id, actor=_cli_actor())
    console.print(f"revoked API key [bold]{key.id}[/] ({escape(key.name)})")


def _cli_actor() -> str:
    """The audit actor of an admin command: the operating-system account that ran it."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no login name for this uid (some containers)
        return f"cli:uid-{os.getuid()}"


def _scopes(key: ApiKeyRecord) -> str:
    return "scopes " + " ".join(key.scopes) if key.scopes is not None else "all of the role"


def _expiry(key: ApiKeyRecord) -> str:
    return f"expires {_day(key.expires_at)}" if key.expires_at else "never expires"


def _day(value: datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M}" if value is not None else ""


def _status(key: ApiKeyRecord, now: datetime) -> str:
    if key.revoked_at is not None:
        return "[red]revoked[/]"
    if key.expires_at is not None and key.expires_at <= now:
        return "[red]expired[/]"
    return "[green]active[/]"
