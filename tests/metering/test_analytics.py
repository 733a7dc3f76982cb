"""Analytics per capsule, persona and model: success rates, durations, tokens and cost."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from soma.metering.analytics import analytics
from soma.store import Store


def test_success_rate_cost_and_duration_per_group(store: Store) -> None:
    t0 = datetime.now(UTC) - timedelta(hours=1)
    store.create_project("p1", "one", model="scripted")
    store.create_project("p2", "two", model="openai:gpt-4o")
    runs = [
        ("p1", "a", "write-spec@^1", "pm", "succeeded", 10),
        ("p1", "b", "write-code@^1", "dev", "failed", 20),
        ("p2", "a", "write-spec@^1", "pm", "succeeded", 30),
        ("p2", "b", "write-code@^1", "dev", "running", 0),
    ]
    for project, node, capsule, persona, status, seconds in runs:
        store.upsert_node(
            project,
            node,
            capsule=capsule,
            persona=persona,
            status=status,
            input_tokens=100,
            output_tokens=10,
            started_at=t0,
            finished_at=t0 + timedelta(seconds=seconds) if status != "running" else None,
        )
        store.record_usage(
            "default",
            f"{project}/{node}",
            "model",
            project_id=project,
            node_id=node,
            model="m",
            input_tokens=100,
            cost_micros=250,
        )

    by_capsule = {r.name: r for r in analytics(store, "default", by="capsule", since=t0)}
    spec, code = by_capsule["write-spec"], by_capsule["write-code"]
    assert (spec.runs, spec.succeeded, spec.success_rate, spec.avg_duration_s) == (2, 2, 1.0, 20.0)
    assert (code.runs, code.failed, code.success_rate) == (2, 1, 0.0)
    assert spec.tokens == 220
    assert spec.cost_micros == 500
    assert spec.cost_usd == "$0.0005"

    by_model = {r.name: r for r in analytics(store, "default", by="model", since=t0)}
    assert by_model["scripted"].success_rate == 0.5
    assert by_model["openai:gpt-4o"].runs == 2

    daily = analytics(store, "default", by="persona", since=t0, bucket="day")
    assert all(len(r.period) == 10 and r.period[4] == "-" for r in daily)
    assert sum(r.runs for r in daily) == 4
    assert analytics(store, "other-tenant", by="persona", since=t0) == []
