"""Price tables: built-in, replaced from a file, and refused with the field that is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from soma.errors import SpecError
from soma.metering.prices import builtin_prices, load_prices, usd


def test_builtin_prices_charge_providers_and_not_the_embedded_models() -> None:
    prices = builtin_prices()
    assert prices.model_cost_micros("local", 10_000, 10_000) == 0
    assert prices.model_cost_micros("scripted", 10_000, 10_000) == 0
    # gpt-4o-mini: $0.15 / $0.60 per million tokens.
    assert prices.model_cost_micros("openai:gpt-4o-mini", 1_000_000, 1_000_000) == 750_000
    assert prices.model_cost_micros("openai:gpt-4o", 1000, 100) == 2500 + 1000
    assert prices.model_price("anthropic:claude") is None
    assert prices.model_cost_micros("anthropic:claude", 5000, 5000) == 0


def test_a_price_file_replaces_the_table(tmp_path: Path) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text(
        "models:\n  - {match: 'acme:*', input_per_million: 1, output_per_million: 2}\n"
        "tools: {per_call: 0.001, per_second: 0.5}\n"
        "storage: {per_gb_month: 1}\n"
    )
    prices = load_prices(path)
    assert prices.model_cost_micros("acme:big", 3, 4) == 3 + 8
    assert prices.tool_cost_micros(2.0) == 1_000 + 1_000_000
    assert prices.storage_cost_micros(2e9) == 2_000_000
    assert usd(1_234_500) == "$1.2345"


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("models:\n  - {match: x, input_per_million: -1, output_per_million: 0}\n", "models.0"),
        ("tools: {per_call: 1, surprise: 2}\n", "tools.surprise"),
    ],
)
def test_a_bad_price_file_names_the_field(tmp_path: Path, text: str, field: str) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as caught:
        load_prices(path)
    assert str(path) in str(caught.value)
    assert caught.value.field is not None
    assert caught.value.field.startswith(field)


def test_malformed_yaml_is_a_spec_error(tmp_path: Path) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text("models: [unclosed\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_prices(path)
