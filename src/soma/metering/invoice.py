"""Monthly invoices: a tenant's usage events for a month, priced and summed into lines.

Model and tool lines sum the costs recorded with each event (priced when the work happened);
storage is billed at invoice time from each project's latest workspace size in the month, as
GB-months. The total is the sum of the lines, in integer micro-dollars.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from pydantic import BaseModel, Field

from soma.metering.periods import month_bounds
from soma.metering.prices import PriceTable, usd
from soma.store import Store
from soma.store.tables import utcnow


class InvoiceLine(BaseModel):
    kind: str = Field(description="model, tool or storage")
    item: str = Field(description="The model spec, tool name, or 'workspaces'.")
    quantity: float = Field(description="Calls (models, tools) or GB-months (storage).")
    unit: str
    input_tokens: int = 0
    output_tokens: int = 0
    seconds: float = 0.0
    cost_micros: int

    @property
    def cost(self) -> str:
        return usd(self.cost_micros)


class Invoice(BaseModel):
    tenant_id: str
    month: str
    period_start: datetime
    period_end: datetime
    lines: list[InvoiceLine]
    total_micros: int
    total_usd: str
    unpriced_models: list[str] = Field(
        default_factory=list, description="Models used with no price in the table (billed $0)."
    )
    generated_at: datetime


def build_invoice(store: Store, tenant_id: str, month: str, prices: PriceTable) -> Invoice:
    start, end = month_bounds(month)
    events = store.usage_events(tenant_id, start, end)
    models: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    tools: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0])
    latest_size: dict[str, float] = {}
    for event in events:
        if event.kind == "model":
            line = models[event.model or "?"]
            line[0] += 1
            line[1] += event.input_tokens
            line[2] += event.output_tokens
            line[3] += event.cost_micros
        elif event.kind == "tool":
            entry = tools[event.tool or "?"]
            entry[0] += 1
            entry[1] += event.quantity
            entry[2] += event.cost_micros
        elif event.kind == "storage" and event.project_id:
            latest_size[event.project_id] = event.quantity
    lines = [
        InvoiceLine(
            kind="model",
            item=model,
            quantity=calls,
            unit="calls",
            input_tokens=tokens_in,
            output_tokens=tokens_out,
            cost_micros=cost,
        )
        for model, (calls, tokens_in, tokens_out, cost) in sorted(models.items())
    ]
    lines += [
        InvoiceLine(
            kind="tool",
            item=tool,
            quantity=calls,
            unit="calls",
            seconds=round(seconds, 3),
            cost_micros=int(cost),
        )
        for tool, (calls, seconds, cost) in sorted(tools.items())
    ]
    if latest_size:
        byte_months = sum(latest_size.values())
        lines.append(
            InvoiceLine(
                kind="storage",
                item=f"workspaces ({len(latest_size)} projects)",
                quantity=round(byte_months / 1e9, 6),
                unit="GB-months",
                cost_micros=prices.storage_cost_micros(byte_months),
            )
        )
    total = sum(line.cost_micros for line in lines)
    return Invoice(
        tenant_id=tenant_id,
        month=month,
        period_start=start,
        period_end=end,
        lines=lines,
        total_micros=total,
        total_usd=usd(total),
        unpriced_models=sorted(m for m in models if prices.model_price(m) is None),
        generated_at=utcnow(),
    )
