"""Invoices, budgets and analytics over HTTP."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from soma.metering.periods import month_of
from soma.metering.prices import builtin_prices
from soma.store.tables import utcnow
from tests.gateway.conftest import LiveGateway


def _headers(gateway: LiveGateway, role: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {gateway.key('acme', role)}"}


def test_the_invoice_adds_up_the_tenants_usage(gateway: LiveGateway) -> None:
    store = gateway.services.store
    admin = _headers(gateway, "admin")
    store.create_project("p1", "one", tenant_id="acme")
    prices = builtin_prices()
    costs = []
    for i in range(5):
        cost = prices.model_cost_micros("openai:gpt-4o-mini", 10_000 * (i + 1), 2_000)
        costs.append(cost)
        store.record_usage(
            "acme",
            f"k{i}",
            "model",
            project_id="p1",
            model="openai:gpt-4o-mini",
            input_tokens=10_000 * (i + 1),
            output_tokens=2_000,
            cost_micros=cost,
        )
    store.record_usage("globex", "k0", "model", model="openai:gpt-4o", cost_micros=10**9)
    with httpx.Client(base_url=gateway.url, headers=admin) as client:
        invoice = client.get("/api/v1/billing/invoice").json()
        assert invoice["month"] == month_of(utcnow())
        assert invoice["total_micros"] == sum(costs), "another tenant's usage is not billed"
        (line,) = invoice["lines"]
        assert (line["quantity"], line["input_tokens"]) == (5, 150_000)
        assert client.get("/api/v1/billing/invoice?month=2026-13").status_code == 422
        older = client.get("/api/v1/billing/invoice", params={"month": "2001-01"}).json()
        assert older["total_micros"] == 0


def test_budgets_are_set_by_admins_and_shown_to_all(gateway: LiveGateway) -> None:
    store = gateway.services.store
    store.create_project("p1", "one", tenant_id="acme")
    with httpx.Client(base_url=gateway.url) as client:
        refused = client.put(
            "/api/v1/billing/budget",
            json={"monthly_tokens": 100},
            headers=_headers(gateway, "developer"),
        )
        assert refused.status_code == 403
        body = {"monthly_tokens": 100, "monthly_usd": 2.5, "warn_fraction": 0.5}
        admin = _headers(gateway, "admin")
        budget = client.put("/api/v1/billing/budget", json=body, headers=admin).json()
        assert (budget["monthly_tokens"], budget["monthly_usd"]) == (100, 2.5)
        assert budget["exhausted"] is False
        store.record_usage("acme", "k", "model", project_id="p1", model="m", input_tokens=120)
        seen = client.get("/api/v1/billing/budget", headers=_headers(gateway, "viewer")).json()
        assert seen["used_tokens"] == 120
        assert seen["exhausted"] is True
        bad = client.put("/api/v1/billing/budget", json={"warn_fraction": 2}, headers=admin)
        assert bad.status_code == 422
        assert bad.json()["error"]["field"] == "warn_fraction"


@pytest.mark.slow
def test_a_tenant_over_budget_cannot_start_projects(
    engine_gateway: LiveGateway, model_table: dict[str, Any]
) -> None:
    store = engine_gateway.services.store
    dev = _headers(engine_gateway, "developer")
    store.set_budget("acme", monthly_tokens=10, monthly_cost_micros=None)
    store.create_project("used", "earlier work", tenant_id="acme")
    store.record_usage("acme", "k", "model", project_id="used", model="m", input_tokens=11)
    with httpx.Client(base_url=engine_gateway.url, headers=dev, timeout=60) as client:
        response = client.post("/api/v1/projects", json={"goal": "more", "planner": "template"})
        assert response.status_code == 402, response.text
        error = response.json()["error"]
        assert error["type"] == "quota_exceeded"
        assert "11 of 10 tokens" in error["message"]
        assert [p["id"] for p in client.get("/api/v1/projects").json()] == ["used"]


def test_analytics_group_runs(gateway: LiveGateway) -> None:
    store = gateway.services.store
    store.create_project("p1", "one", tenant_id="acme", model="scripted")
    store.upsert_node("p1", "a", tenant_id="acme", capsule="write-spec@^1", status="succeeded")
    store.upsert_node("p1", "b", tenant_id="acme", capsule="write-spec@^1", status="failed")
    with httpx.Client(base_url=gateway.url, headers=_headers(gateway, "viewer")) as client:
        (row,) = client.get("/api/v1/analytics", params={"by": "capsule"}).json()
        assert (row["name"], row["runs"], row["success_rate"]) == ("write-spec", 2, 0.5)
        (model,) = client.get("/api/v1/analytics", params={"by": "model"}).json()
        assert model["name"] == "scripted"
        assert client.get("/api/v1/analytics", params={"by": "nope"}).status_code == 422
