"""`soma market install|uninstall|list|trust|search|info|publish|yank|register-key`.

Without ``--registry`` a command works on this instance's own registry and store, as its
operator (like ``soma admin``): whoever can read ``SOMA_HOME`` or the database. With
``--registry URL`` it talks to another Soma gateway's registry over HTTP, as the owner of
``--token`` (or ``$SOMA_REGISTRY_TOKEN``, which keeps the key off the command line and out of
shell history). Installs always land in the local tenant's library (``--tenant``, default
``default``, whose library ``soma`` commands read), checked against that tenant's trusted keys.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from soma.cli.admin_cmds import _cli_actor
from soma.cli.common import console, err_console, friendly_errors
from soma.cli.market_cmds import market_app
from soma.errors import NotFound, SomaError
from soma.marketplace.catalogue import publish_builtin_catalogue
from soma.marketplace.installer import Installer, StoreTrust
from soma.marketplace.manifest import PackageKind, PackageSummary, PublishedVersion
from soma.marketplace.registry import LocalSource, Registry
from soma.marketplace.signing import PublisherKey, load_signature, publisher_key_path
from soma.marketplace.sources import HttpSource, PackageSource
from soma.settings import Settings
from soma.specs.versions import Version, split_ref
from soma.store import DEFAULT_TENANT, Store

__all__ = ["market_app"]

_SIGNATURE_SUFFIX = ".sig"

Registry_ = Annotated[
    str | None,
    typer.Option(
        "--registry",
        help="Another Soma gateway's base URL (http://host:8765); default: this instance.",
    ),
]
Token = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="SOMA_REGISTRY_TOKEN",
        help="API key for --registry (or set SOMA_REGISTRY_TOKEN).",
    ),
]
Tenant = Annotated[str, typer.Option("--tenant", help="The local tenant whose library to use.")]


@contextmanager
def _store() -> Iterator[tuple[Settings, Store]]:
    """This instance's store, with the built-in catalogue published in it, as `soma serve`
    does at start (idempotent and quick once done), so the local registry is never empty."""
    settings = Settings()
    with Store.open(settings.store_url) as store:
        publish_builtin_catalogue(store, settings)
        yield settings, store


@asynccontextmanager
async def _source(
    store: Store, registry: str | None, token: str | None
) -> AsyncIterator[PackageSource]:
    if registry is None:  # a token (say, from SOMA_REGISTRY_TOKEN) has nothing to do here
        yield LocalSource(store)
        return
    async with HttpSource(registry, token) as source:
        yield source


def _installer(store: Store, settings: Settings, tenant: str) -> Installer:
    return Installer(
        store,
        settings,
        tenant,
        StoreTrust(store, tenant),
        progress=lambda line: console.print(f"  {escape(line)}"),
        actor=_cli_actor(),
    )


# --- installing ---------------------------------------------------------------------------------


@market_app.command("install")
@friendly_errors
def install(
    ref: Annotated[str, typer.Argument(help="name or name@range, e.g. report@^1.2 (=1.2.3 pins).")],
    registry: Registry_ = None,
    token: Token = None,
    tenant: Tenant = DEFAULT_TENANT,
) -> None:
    """Install a package and its dependencies into a tenant's library, verifying each one.

    Every archive must match the registry's digest and be signed by a key the tenant trusts
    (`soma market trust`); nothing is written unless all of them pass.
    """
    name, range_text = split_ref(ref)
    if not name:
        raise SomaError(f"{ref!r} names no package", hint="e.g. `soma market install report@^1`")

    async def run(store: Store, settings: Settings) -> None:
        async with _source(store, registry, token) as source:
            console.print(
                f"installing [bold]{escape(ref)}[/] from {escape(source.url)} into tenant "
                f"{escape(tenant)}"
            )
            records = await _installer(store, settings, tenant).install(
                source, name, range_text or "*"
            )
        if records:
            done = ", ".join(f"{r.name}@{r.version}" for r in records)
            console.print(f"[green]installed[/] {escape(done)}")
        else:
            console.print(f"nothing to do: {escape(ref)} is already installed")

    with _store() as (settings, store):
        asyncio.run(run(store, settings))


@market_app.command("uninstall")
@friendly_errors
def uninstall(
    name: Annotated[str, typer.Argument(help="The installed package's name.")],
    tenant: Tenant = DEFAULT_TENANT,
) -> None:
    """Remove an installed package (refused while another installed package needs it)."""
    with _store() as (settings, store):
        record = _installer(store, settings, tenant).uninstall(name)
    console.print(f"[green]uninstalled[/] {escape(record.name)}@{escape(record.version)}")


@market_app.command("list")
@friendly_errors
def list_installed(tenant: Tenant = DEFAULT_TENANT) -> None:
    """The packages installed in a tenant's library."""
    with _store() as (settings, store):
        records = _installer(store, settings, tenant).installed()
    if not records:
        console.print(f"no packages installed in tenant {escape(tenant)}")
        return
    table = Table("name", "version", "kind", "publisher", "from", "installed")
    for r in records:
        table.add_row(
            escape(r.name),
            r.version,
            r.kind,
            escape(r.publisher),
            escape(r.source),
            r.installed_at.strftime("%Y-%m-%d %H:%M"),
        )
    console.print(table)


@market_app.command("trust")
@friendly_errors
def trust(
    publisher: Annotated[str, typer.Argument(help="The publisher name the key signs for.")],
    public_key: Annotated[
        str | None, typer.Argument(help="ed25519:<base64>; omit to list the trusted keys.")
    ] = None,
    tenant: Tenant = DEFAULT_TENANT,
) -> None:
    """Trust a publisher's public key for a tenant's installs.

    Get the key from the publisher directly (not from the registry you install from): trusting
    a key is what makes its packages installable.
    """
    with _store() as (settings, store):
        installer = _installer(store, settings, tenant)
        if public_key is None:
            keys = [k for k in installer.trusted() if k.publisher == publisher]
            if not keys:
                console.print(f"tenant {escape(tenant)} trusts no key of {escape(publisher)}")
            for k in keys:
                console.print(f"{k.key_id}  {k.public_key}")
            return
        record = installer.trust(publisher, public_key)
    console.print(
        f"tenant [bold]{escape(tenant)}[/] now trusts {escape(record.publisher)}'s key "
        f"{record.key_id}"
    )


# --- the registry -------------------------------------------------------------------------------


@market_app.command("search")
@friendly_errors
def search(
    query: Annotated[
        str, typer.Argument(help="Words to look for; empty lists the most used.")
    ] = "",
    kind: Annotated[
        PackageKind | None, typer.Option(help="Only capsules or only personas.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=100)] = 20,
    registry: Registry_ = None,
    token: Token = None,
) -> None:
    """Search a registry's packages."""

    async def remote(url: str) -> list[PackageSummary]:
        async with HttpSource(url, token) as source:
            return await source.search(query, kind=kind, limit=limit)

    if registry:
        found = asyncio.run(remote(registry))
    else:
        with _store() as (_, store):
            found = Registry(store).search(query, kind, limit)
    if not found:
        console.print("no packages found")
        return
    table = Table("name", "kind", "latest", "publisher", "downloads", "rating", "description")
    for s in found:
        table.add_row(
            escape(s.name),
            s.kind,
            s.latest,
            escape(s.publisher),
            str(s.downloads),
            _rating(s),
            escape(s.description),
        )
    console.print(table)


@market_app.command("info")
@friendly_errors
def info(
    name: Annotated[str, typer.Argument(help="The package's name.")],
    registry: Registry_ = None,
    token: Token = None,
) -> None:
    """A package's versions (yanked or not), downloads, rating and dependencies."""

    async def remote(url: str) -> tuple[list[PublishedVersion], PackageSummary | None]:
        async with HttpSource(url, token) as source:
            versions = await source.versions(name)
            summaries = await source.search(name, limit=100)
        return versions, next((s for s in summaries if s.name == name), None)

    if registry:
        versions, summary = asyncio.run(remote(registry))
    else:
        with _store() as (_, store):
            versions = Registry(store).versions(name)
            summary = next(iter(store.package_summaries([name])), None)
    if not versions:
        raise NotFound(f"no package named '{name}'")
    versions = sorted(versions, key=lambda v: Version.parse(v.manifest.version))
    latest = versions[-1].manifest
    console.print(f"[bold]{escape(latest.name)}[/] ({latest.kind}) by {escape(latest.publisher)}")
    console.print(escape(latest.description))
    if summary is not None:
        console.print(
            f"latest {summary.latest} · {summary.downloads} downloads · rating {_rating(summary)}"
        )
    table = Table("version", "published", "downloads", "sha256", "dependencies", "status")
    for v in versions:
        deps = ", ".join(
            f"{d.kind}:{d.name}" + ("" if d.range == "*" else f" {d.range}")
            for d in v.manifest.dependencies
        )
        status = f"yanked: {v.yank_reason or 'no reason given'}" if v.yanked else ""
        table.add_row(
            v.manifest.version,
            v.published_at.strftime("%Y-%m-%d"),
            str(v.downloads),
            v.digest[:12],
            escape(deps) or "-",
            escape(status),
        )
    console.print(table)


@market_app.command("publish")
@friendly_errors
def publish(
    archive: Annotated[Path, typer.Argument(help="The .soma archive (`soma market pack`).")],
    signature: Annotated[
        Path | None,
        typer.Option("--signature", help="Its signature (default: <archive>.sig)."),
    ] = None,
    registry: Registry_ = None,
    token: Token = None,
    tenant: Annotated[
        str, typer.Option("--tenant", help="Local publishing only: the tenant that publishes.")
    ] = DEFAULT_TENANT,
) -> None:
    """Publish a signed archive; its publisher's key must be registered there first
    (`soma market register-key`)."""
    try:
        data = archive.read_bytes()
    except OSError as exc:
        raise SomaError(
            f"cannot read {archive}: {exc.strerror}",
            hint="create one with `soma market pack <source>`",
        ) from None
    sig = load_signature(signature or archive.with_name(archive.name + _SIGNATURE_SUFFIX))

    async def remote(url: str) -> PublishedVersion:
        async with HttpSource(url, token) as source:
            return await source.publish(data, sig)

    if registry:
        published = asyncio.run(remote(registry))
        where = registry
    else:
        with _store() as (_, store):
            published = Registry(store).publish(data, sig, tenant_id=tenant, user_id=_cli_actor())
        where = "this instance's registry"
    console.print(
        f"[green]published[/] {escape(published.manifest.ref)} ({published.size:,} bytes, sha256 "
        f"{published.digest[:12]}…) to {escape(where)}"
    )


@market_app.command("yank")
@friendly_errors
def yank(
    ref: Annotated[str, typer.Argument(help="name@version to yank.")],
    reason: Annotated[str, typer.Option(help="Why: shown to everyone who looks at it.")],
    registry: Registry_ = None,
    token: Token = None,
    tenant: Annotated[
        str, typer.Option("--tenant", help="Local only: the tenant that owns the publisher.")
    ] = DEFAULT_TENANT,
) -> None:
    """Stop new installs from picking a version (exact pins, name@=1.2.3, still get it)."""
    name, version = split_ref(ref)
    if not name or not version:
        raise SomaError(f"{ref!r} is not name@version", hint="e.g. `soma market yank report@1.2.0`")

    async def remote(url: str) -> PublishedVersion:
        async with HttpSource(url, token) as source:
            return await source.yank(name, version, reason)

    if registry:
        yanked = asyncio.run(remote(registry))
    else:
        with _store() as (_, store):
            yanked = Registry(store).yank(tenant, name, version, reason)
    console.print(f"[yellow]yanked[/] {escape(yanked.manifest.ref)}: {escape(reason)}")


@market_app.command("register-key")
@friendly_errors
def register_key(
    publisher: Annotated[str, typer.Argument(help="The publisher name to register a key for.")],
    public_key: Annotated[
        str | None,
        typer.Argument(help="ed25519:<base64>; default: the key `soma market keygen` made."),
    ] = None,
    registry: Registry_ = None,
    token: Token = None,
    tenant: Annotated[
        str, typer.Option("--tenant", help="Local only: the tenant that will own the publisher.")
    ] = DEFAULT_TENANT,
) -> None:
    """Register a publisher's public key with a registry, so it accepts packages it signed.

    The first key registered for a name claims the name for the registering tenant.
    """
    if public_key is None:
        path = publisher_key_path(Settings().home, publisher)
        public_key = PublisherKey.load(path).public_text

    async def remote(url: str, text: str) -> None:
        async with HttpSource(url, token) as source:
            await source.register_key(publisher, text)

    if registry:
        asyncio.run(remote(registry, public_key))
        where = registry
    else:
        with _store() as (_, store):
            Registry(store).register_key(tenant, publisher, public_key)
        where = "this instance's registry"
    err_console.print(f"registered a key for [bold]{escape(publisher)}[/] with {escape(where)}")


def _rating(summary: PackageSummary) -> str:
    if summary.rating is None:
        return "-"
    return f"{summary.rating:.1f} ({summary.ratings})"
