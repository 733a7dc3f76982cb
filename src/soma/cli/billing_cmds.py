"""`soma billing`: monthly invoices, tenant budgets and run analytics, from the store."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import typer
from rich.table import Table

from soma.cli.common import console, friendly_errors
from soma.metering.analytics import Bucket, GroupBy, analytics
from soma.metering.budgets import budget_status
from soma.metering.invoice import build_invoice
from soma.metering.periods import month_of
from soma.metering.prices import MICROS_PER_USD, load_prices, usd
from soma.settings import Settings
from soma.store import Store
from soma.store.tables import utcnow

billing_app = typer.Typer(
    help="Metering and billing: invoices, budgets and analytics per tenant.",
    no_args_is_help=True,
)

Tenant = Annotated[str, typer.Option("--tenant", "-t", help="The tenant.")]


@billing_app.command("invoice")
@friendly_errors
def invoice(
    tenant: Tenant = "default",
    month: Annotated[
        str | None, typer.Option(help="YYYY-MM; default: the current month (UTC).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the invoice as JSON.")] = False,
) -> None:
    """The tenant's invoice for a month: model tokens, tool time and storage, priced."""
    settings = Settings()
    chosen = month or month_of(utcnow())
    built = build_invoice(
        Store.open(settings.store_url), tenant, chosen, load_prices(settings.prices_file)
    )
    if as_json:
        typer.echo(built.model_dump_json(indent=2))
        return
    table = Table(title=f"Invoice {tenant} {chosen}", title_justify="left")
    for column in ("kind", "item", "quantity", "tokens in", "tokens out", "seconds"):
        table.add_column(column, justify="left" if column in ("kind", "item") else "right")
    table.add_column("cost", justify="right", style="bold")
    for line in built.lines:
        table.add_row(
            line.kind,
            line.item,
            f"{line.quantity:,.6g} {line.unit}",
            f"{line.input_tokens:,}" if line.kind == "model" else "",
            f"{line.output_tokens:,}" if line.kind == "model" else "",
            f"{line.seconds:,.3f}" if line.kind == "tool" else "",
            line.cost,
        )
    table.add_section()
    table.add_row("total", "", "", "", "", "", built.total_usd)
    console.print(table)
    if built.unpriced_models:
        console.print(
            "[yellow]no price for[/] "
            + ", ".join(built.unpriced_models)
            + " (billed $0; add them to SOMA_PRICES_FILE)"
        )


budget_app = typer.Typer(help="Monthly budgets, checked before work starts.", no_args_is_help=True)
billing_app.add_typer(budget_app, name="budget")


@budget_app.command("show")
@friendly_errors
def budget_show(tenant: Tenant = "default") -> None:
    """The tenant's budget and how much of it this month has used."""
    status = budget_status(Store.open(Settings().store_url), tenant)
    console.print(f"{tenant} {status.month}: {status.describe()} ({status.used_fraction:.0%})")
    if status.exhausted:
        console.print("[red]exhausted[/]: new projects and model calls are refused")


@budget_app.command("set")
@friendly_errors
def budget_set(
    tenant: Tenant = "default",
    tokens: Annotated[
        int | None, typer.Option(min=0, help="Monthly tokens (in + out); omit for no limit.")
    ] = None,
    usd_limit: Annotated[
        float | None, typer.Option("--usd", min=0, help="Monthly cost in USD; omit for no limit.")
    ] = None,
    warn_at: Annotated[
        float, typer.Option(min=0.01, max=1.0, help="Fraction that sends a budget warning.")
    ] = 0.8,
) -> None:
    """Set the tenant's monthly limits (replacing the previous ones)."""
    store = Store.open(Settings().store_url)
    cost = None if usd_limit is None else round(usd_limit * MICROS_PER_USD)
    store.set_budget(tenant, monthly_tokens=tokens, monthly_cost_micros=cost, warn_fraction=warn_at)
    budget_show(tenant)


@billing_app.command("analytics")
@friendly_errors
def run_analytics(
    tenant: Tenant = "default",
    by: Annotated[str, typer.Option(help="capsule, persona or model.")] = "capsule",
    days: Annotated[int, typer.Option(min=1, help="How far back.")] = 30,
    daily: Annotated[bool, typer.Option(help="One row per day instead of totals.")] = False,
) -> None:
    """Success rate, cost and duration of the tenant's runs per capsule, persona or model."""
    if by not in ("capsule", "persona", "model"):
        raise typer.BadParameter("use capsule, persona or model", param_hint="--by")
    group: GroupBy = by  # type: ignore[assignment]
    bucket: Bucket = "day" if daily else "total"
    rows = analytics(
        Store.open(Settings().store_url),
        tenant,
        by=group,
        since=utcnow() - timedelta(days=days),
        bucket=bucket,
    )
    table = Table(title=f"Runs per {by}, last {days} days", title_justify="left")
    for column in (by, "period", "runs", "success", "avg s", "tokens", "cost"):
        table.add_column(column, justify="left" if column in (by, "period") else "right")
    for row in rows:
        rate = "—" if row.success_rate is None else f"{row.success_rate:.0%}"
        duration = "—" if row.avg_duration_s is None else f"{row.avg_duration_s:,.1f}"
        table.add_row(
            row.name,
            row.period,
            str(row.runs),
            rate,
            duration,
            f"{row.tokens:,}",
            usd(row.cost_micros),
        )
    console.print(table)
