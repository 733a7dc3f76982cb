"""``soma notify``: a tenant's notification rules and their deliveries, straight against the
store, as the operator of the installation (like ``soma secrets``).

Secrets (a webhook's signing key, a Slack incoming-webhook URL) are never arguments here: they
live in the vault (``soma secrets set``) and rules name them with ``--secret``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from soma.cli.common import console, err_console, friendly_errors
from soma.errors import SomaError
from soma.identity import load_secret_key
from soma.notify import DeliveryError, Notifier
from soma.secrets import check_name
from soma.settings import Settings
from soma.store import DEFAULT_TENANT, Store
from soma.store.notifications import NOTIFICATION_TYPES, NotificationRuleRecord

notify_app = typer.Typer(
    help="Notification rules: review, project and budget events to webhooks, Slack, email.",
    no_args_is_help=True,
)

TenantOption = Annotated[str, typer.Option("--tenant", "-t", help="Tenant id.")]


@contextmanager
def _open() -> Iterator[tuple[Store, Settings]]:
    settings = Settings()
    with Store.open(settings.store_url) as store:
        yield store, settings


def _where(rule: NotificationRuleRecord) -> str:
    if rule.channel == "slack" and rule.secret_name and not rule.target:
        return f"(URL in secret {rule.secret_name})"
    return rule.target


@notify_app.command("add")
@friendly_errors
def add_rule(
    event: Annotated[
        str, typer.Option("--event", "-e", help=f"One of: {', '.join(NOTIFICATION_TYPES)}.")
    ],
    tenant: TenantOption = DEFAULT_TENANT,
    webhook: Annotated[
        str | None, typer.Option(help="POST signed JSON to this http(s) URL.")
    ] = None,
    slack: Annotated[
        bool,
        typer.Option(
            "--slack", help="Post to Slack; the incoming-webhook URL is the --secret's value."
        ),
    ] = False,
    slack_url: Annotated[
        str | None,
        typer.Option(help="Post to this Slack incoming-webhook URL (prefer --slack --secret)."),
    ] = None,
    email: Annotated[
        str | None, typer.Option(help="Email these addresses (comma-separated) via SMTP.")
    ] = None,
    secret: Annotated[
        str | None,
        typer.Option(
            help="Vault secret of the tenant: the webhook's HMAC signing key, or the Slack URL."
        ),
    ] = None,
) -> None:
    """Add a rule: events of one type go to one webhook, Slack channel or email list."""
    chosen = [
        name
        for name, given in (
            ("webhook", webhook is not None),
            ("slack", slack or slack_url is not None),
            ("email", email is not None),
        )
        if given
    ]
    if len(chosen) != 1:
        raise SomaError(
            "choose exactly one destination",
            hint="pass one of --webhook URL, --slack --secret NAME, --slack-url URL, --email ADDR",
        )
    if secret is not None:
        check_name(secret)
    channel = chosen[0]
    if channel == "webhook":
        target = webhook or ""
    elif channel == "email":
        target = email or ""
        if secret is not None:
            raise SomaError("--secret does not apply to email rules", hint="drop --secret")
    else:
        if slack_url is None and secret is None:
            raise SomaError(
                "a Slack rule needs the incoming-webhook URL",
                hint="store it with `soma secrets set TENANT slack.url` and pass"
                " --slack --secret slack.url",
            )
        target = slack_url or ""
    with _open() as (store, _):
        rule = store.create_notification_rule(tenant, event, channel, target, secret_name=secret)
    console.print(
        f"added rule [bold]{rule.id}[/]: {rule.event_type} → {rule.channel}"
        f" {escape(_where(rule))} (tenant {escape(rule.tenant_id)})"
    )
    if channel == "webhook" and secret is None:
        err_console.print(
            "[yellow]warning:[/] this webhook is unsigned; pass --secret NAME so receivers can"
            " check requests come from Soma"
        )


@notify_app.command("list")
@friendly_errors
def list_rules(tenant: TenantOption = DEFAULT_TENANT) -> None:
    """List a tenant's rules."""
    with _open() as (store, _):
        rules = store.list_notification_rules(tenant)
    table = Table("id", "event", "channel", "target", "secret", "enabled", "created")
    for rule in rules:
        table.add_row(
            rule.id,
            rule.event_type,
            rule.channel,
            escape(_where(rule)),
            escape(rule.secret_name or "-"),
            "yes" if rule.enabled else "no",
            rule.created_at.strftime("%Y-%m-%d %H:%M"),
        )
    console.print(table)


@notify_app.command("remove")
@friendly_errors
def remove_rule(
    rule_id: Annotated[str, typer.Argument(help="Rule id (see `soma notify list`).")],
    tenant: TenantOption = DEFAULT_TENANT,
) -> None:
    """Remove a rule; its delivery history stays."""
    with _open() as (store, _):
        store.delete_notification_rule(tenant, rule_id)
    console.print(f"removed rule [bold]{rule_id}[/] of tenant {escape(tenant)}")


def _set_enabled(tenant: str, rule_id: str, enabled: bool) -> None:
    with _open() as (store, _):
        store.set_notification_rule_enabled(tenant, rule_id, enabled)
    state = "enabled" if enabled else "disabled"
    console.print(f"{state} rule [bold]{rule_id}[/] of tenant {escape(tenant)}")


@notify_app.command("disable")
@friendly_errors
def disable_rule(
    rule_id: Annotated[str, typer.Argument(help="Rule id.")],
    tenant: TenantOption = DEFAULT_TENANT,
) -> None:
    """Pause a rule: no new deliveries, and those still owed are given up."""
    _set_enabled(tenant, rule_id, False)


@notify_app.command("enable")
@friendly_errors
def enable_rule(
    rule_id: Annotated[str, typer.Argument(help="Rule id.")],
    tenant: TenantOption = DEFAULT_TENANT,
) -> None:
    """Resume a paused rule (for events from now on)."""
    _set_enabled(tenant, rule_id, True)


@notify_app.command("deliveries")
@friendly_errors
def list_deliveries(
    tenant: TenantOption = DEFAULT_TENANT,
    rule: Annotated[str | None, typer.Option(help="Only this rule's deliveries.")] = None,
    status: Annotated[
        str | None, typer.Option(help="pending, sending, delivered or failed.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
) -> None:
    """List a tenant's deliveries, newest first, with their last error."""
    with _open() as (store, _):
        deliveries = store.list_notification_deliveries(
            tenant, rule_id=rule, status=status, limit=limit
        )
    table = Table("id", "rule", "event", "key", "status", "attempts", "updated", "last error")
    for d in deliveries:
        when = d.delivered_at or d.next_attempt_at
        table.add_row(
            str(d.id),
            d.rule_id,
            d.event_type,
            escape(d.event_key),
            d.status,
            str(d.attempts),
            when.strftime("%Y-%m-%d %H:%M:%S"),
            escape(d.last_error or ""),
        )
    console.print(table)


@notify_app.command("test")
@friendly_errors
def send_test_notification(
    rule_id: Annotated[str, typer.Argument(help="Rule id.")],
    tenant: TenantOption = DEFAULT_TENANT,
) -> None:
    """Send a sample notification through a rule now and say whether it got through."""
    with _open() as (store, settings):
        notifier = Notifier(store, settings, load_secret_key(settings))

        async def send() -> None:
            try:
                await notifier.send_test(tenant, rule_id)
            finally:
                await notifier.aclose()

        try:
            asyncio.run(send())
        except DeliveryError as exc:
            kind = "temporary" if exc.retryable else "permanent"
            err_console.print(f"[red]not delivered ({kind}):[/] {escape(str(exc))}")
            raise typer.Exit(1) from exc
    console.print(f"delivered a test notification through rule [bold]{rule_id}[/]")
