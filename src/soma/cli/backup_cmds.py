"""``soma admin backup`` and ``soma admin restore`` (registered on the ``admin`` group)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from soma.admin import create_backup, restore_backup
from soma.cli.common import console, err_console, friendly_errors
from soma.settings import Settings

_SECRETS_WARNING = (
    "[yellow]The archive contains secrets: the instance secret key (it decrypts every tenant's"
    " vault and signs sessions) and the marketplace signing keys. It is written 0600; keep it"
    " encrypted and apart from the servers.[/]"
)


def register(app: typer.Typer) -> None:
    app.command("backup")(backup)
    app.command("restore")(restore)


@friendly_errors
def backup(
    file: Annotated[Path, typer.Argument(help="The archive to write, e.g. soma-backup.tar.gz.")],
) -> None:
    """Back up the store, workspaces, libraries and keys into one .tar.gz archive."""
    result = create_backup(Settings(), file)
    manifest = result.manifest
    rows = sum(manifest.counts.values())
    files = sum(1 for member in manifest.members.values() if member.kind == "file")
    console.print(
        f"backed up {rows} rows in {len(manifest.counts)} tables ({manifest.store_format},"
        f" migration {manifest.alembic_revision}) and {files} files to"
        f" [bold]{escape(str(result.path))}[/] ({result.size_bytes / 2**20:.1f} MiB,"
        f" {result.seconds:.1f}s)"
    )
    if manifest.secret_key == "environment":
        err_console.print(
            "[yellow]SOMA_SECRET_KEY is set, so the secret key is not in the archive: keep it"
            " with the backup, a restore needs it to read the vault.[/]"
        )
    err_console.print(_SECRETS_WARNING)


@friendly_errors
def restore(
    file: Annotated[Path, typer.Argument(help="An archive written by `soma admin backup`.")],
    force: Annotated[
        bool, typer.Option("--force", help="Replace the data already in SOMA_HOME and the store.")
    ] = False,
) -> None:
    """Restore a backup into SOMA_HOME and the store (stop gateways and workers first)."""
    result = restore_backup(Settings(), file, force=force)
    manifest = result.manifest
    console.print(
        f"restored {sum(manifest.counts.values())} rows and"
        f" {len(manifest.members)} archive members from backup of"
        f" {manifest.created_at:%Y-%m-%d %H:%M} UTC in {result.seconds:.1f}s; audit chains of"
        f" {len(result.tenants_verified)} tenants verify ({result.audit_records} records)"
    )
    for warning in result.warnings:
        err_console.print(f"[yellow]warning:[/] {escape(warning)}")
