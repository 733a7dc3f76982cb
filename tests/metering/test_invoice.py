"""Invoices: lines per model and tool plus storage, and a total that is the usage's sum."""

from __future__ import annotations

from datetime import UTC, datetime

from soma.metering.invoice import build_invoice
from soma.metering.prices import PriceTable, builtin_prices
from soma.store import Store

NOV = datetime(2026, 11, 10, tzinfo=UTC)
OCT = datetime(2026, 10, 31, 23, 59, tzinfo=UTC)


def test_invoice_totals_match_the_recorded_usage(store: Store) -> None:
    prices = builtin_prices()
    store.create_project("p1", "one")
    store.create_project("p2", "two")
    recorded = 0
    for i, (model, tokens_in, tokens_out) in enumerate(
        [("openai:gpt-4o-mini", 12_000, 3_000), ("openai:gpt-4o", 1_000, 500), ("local", 9, 9)] * 3
    ):
        cost = prices.model_cost_micros(model, tokens_in, tokens_out)
        recorded += cost
        store.record_usage(
            "default",
            f"m{i}",
            "model",
            project_id="p1",
            model=model,
            input_tokens=tokens_in,
            output_tokens=tokens_out,
            cost_micros=cost,
            at=NOV,
        )
    for i in range(4):
        cost = prices.tool_cost_micros(2.5)
        recorded += cost
        store.record_usage(
            "default",
            f"t{i}",
            "tool",
            project_id="p2",
            tool="shell.exec",
            quantity=2.5,
            cost_micros=cost,
            at=NOV,
        )
    store.record_usage("default", "s1", "storage", project_id="p1", quantity=1e9, at=NOV)
    store.record_usage("default", "s2", "storage", project_id="p1", quantity=3e9, at=NOV)
    store.record_usage(
        "default",
        "old",
        "model",
        project_id="p1",
        model="openai:gpt-4o",
        input_tokens=10**6,
        cost_micros=10**7,
        at=OCT,
    )

    invoice = build_invoice(store, "default", "2026-11", prices)
    storage = prices.storage_cost_micros(3e9)  # the project's latest size, one month
    assert invoice.total_micros == recorded + storage
    assert invoice.total_micros == sum(line.cost_micros for line in invoice.lines)
    by_item = {line.item: line for line in invoice.lines}
    mini = by_item["openai:gpt-4o-mini"]
    assert (mini.quantity, mini.input_tokens, mini.output_tokens) == (3, 36_000, 9_000)
    assert by_item["shell.exec"].seconds == 10.0
    assert by_item["workspaces (1 projects)"].quantity == 3.0
    assert invoice.unpriced_models == []
    assert build_invoice(store, "default", "2026-10", prices).total_micros == 10**7


def test_models_without_a_price_are_listed(store: Store) -> None:
    store.record_usage("default", "k", "model", model="mystery", input_tokens=5, at=NOV)
    invoice = build_invoice(store, "default", "2026-11", PriceTable())
    assert invoice.unpriced_models == ["mystery"]
    assert invoice.total_micros == 0
