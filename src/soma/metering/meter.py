"""The meter the workers record usage through: priced once, stored once per activity key."""

from __future__ import annotations

from soma.metering.prices import MICROS_PER_USD, PriceTable
from soma.models.types import Usage
from soma.store import Store
from soma.telemetry.metrics import record_cost


class Meter:
    """Records model, tool and storage usage under activity keys (see
    :meth:`soma.store.Store.record_usage`): a retried activity is metered exactly once."""

    def __init__(self, store: Store, prices: PriceTable) -> None:
        self.store = store
        self.prices = prices

    def model_call(
        self,
        tenant_id: str,
        key: str,
        *,
        project_id: str,
        node_id: str | None,
        model: str,
        usage: Usage,
    ) -> bool:
        cost = self.prices.model_cost_micros(model, usage.input_tokens, usage.output_tokens)
        recorded = self.store.record_usage(
            tenant_id,
            key,
            "model",
            project_id=project_id,
            node_id=node_id,
            model=model,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cost_micros=cost,
        )
        if recorded:  # counted once, like the usage event itself
            record_cost(model, cost / MICROS_PER_USD)
        return recorded

    def tool_call(
        self,
        tenant_id: str,
        key: str,
        *,
        project_id: str,
        node_id: str | None,
        tool: str,
        seconds: float,
    ) -> bool:
        return self.store.record_usage(
            tenant_id,
            key,
            "tool",
            project_id=project_id,
            node_id=node_id,
            tool=tool,
            quantity=round(seconds, 6),
            cost_micros=self.prices.tool_cost_micros(seconds),
        )

    def storage(
        self, tenant_id: str, key: str, *, project_id: str, node_id: str | None, size_bytes: int
    ) -> bool:
        """A workspace's size after a run: billed as byte-months from the latest size of each
        project in the month (see :mod:`soma.metering.invoice`)."""
        return self.store.record_usage(
            tenant_id,
            key,
            "storage",
            project_id=project_id,
            node_id=node_id,
            quantity=float(size_bytes),
        )
