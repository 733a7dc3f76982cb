"""Price tables: what a model's tokens, a tool's time and a workspace's bytes cost.

Costs are integers in micro-dollars (1e-6 USD) from the moment they are computed, so sums over
millions of events are exact and invoices add up to the cent they show.
"""

from __future__ import annotations

import fnmatch
from functools import cache
from importlib import resources
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from soma.errors import SpecError

MICROS_PER_USD = 1_000_000


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelPrice(_Strict):
    match: str = Field(min_length=1, description="fnmatch pattern on the model spec")
    input_per_million: float = Field(ge=0)
    output_per_million: float = Field(ge=0)


class ToolPrice(_Strict):
    per_call: float = Field(default=0, ge=0)
    per_second: float = Field(default=0, ge=0)


class StoragePrice(_Strict):
    per_gb_month: float = Field(default=0, ge=0)


class PriceTable(_Strict):
    models: list[ModelPrice] = Field(default_factory=list)
    tools: ToolPrice = ToolPrice()
    storage: StoragePrice = StoragePrice()

    def model_price(self, model: str) -> ModelPrice | None:
        return next((p for p in self.models if fnmatch.fnmatchcase(model, p.match)), None)

    def model_cost_micros(self, model: str, input_tokens: int, output_tokens: int) -> int:
        """The tokens' cost; a model with no price costs 0 (and is listed as unpriced on
        invoices, so a missing price is visible rather than silently free)."""
        price = self.model_price(model)
        if price is None:
            return 0
        # (USD per million tokens) * tokens / 1e6 = USD, and USD * 1e6 = micro-dollars.
        micros = input_tokens * price.input_per_million + output_tokens * price.output_per_million
        return round(micros)

    def tool_cost_micros(self, seconds: float) -> int:
        return round((self.tools.per_call + self.tools.per_second * seconds) * MICROS_PER_USD)

    def storage_cost_micros(self, byte_months: float) -> int:
        return round(self.storage.per_gb_month * byte_months / 1e9 * MICROS_PER_USD)


def load_prices(path: Path | None = None) -> PriceTable:
    """The price table at ``path``, else the built-in one."""
    if path is None:
        return builtin_prices()
    return _parse(path.read_text(encoding="utf-8"), str(path))


@cache
def builtin_prices() -> PriceTable:
    text = resources.files("soma.metering").joinpath("prices.yaml").read_text(encoding="utf-8")
    return _parse(text, "soma/metering/prices.yaml")


def _parse(text: str, source: str) -> PriceTable:
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise SpecError(f"{source}: not valid YAML: {exc}") from None
    try:
        return PriceTable.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise SpecError(f"{source}: {field}: {first['msg']}", field=field) from None


def usd(micros: int) -> str:
    return f"${micros / MICROS_PER_USD:,.4f}"
