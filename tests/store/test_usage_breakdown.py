"""Usage by persona and by model, summed in the database for the console and /api/v1/usage."""

from __future__ import annotations

from datetime import UTC, datetime

from soma.store import Store


def test_usage_is_broken_down_by_persona_and_model_per_tenant(store: Store) -> None:
    store.create_project("p1", "one", tenant_id="default", model="scripted")
    store.create_project("p2", "two", tenant_id="default", model="openai:gpt")
    store.create_project("p3", "three", tenant_id="default")
    store.create_project("other", "elsewhere", tenant_id="globex", model="scripted")
    for project, node, persona, tokens in (
        ("p1", "a", "developer", 100),
        ("p1", "b", "architect", 10),
        ("p2", "a", "developer", 50),
        ("p3", "a", None, 5),
        ("other", "a", "developer", 1000),
    ):
        tenant = "globex" if project == "other" else "default"
        store.upsert_node(
            project, node, tenant_id=tenant, persona=persona, input_tokens=tokens, output_tokens=1
        )
        store.add_usage(project, tokens, 1, tenant_id=tenant)

    by_persona = store.usage_by_persona("default")
    assert [(s.name, s.runs, s.input_tokens, s.output_tokens) for s in by_persona] == [
        ("developer", 2, 150, 2),
        ("architect", 1, 10, 1),
        (None, 1, 5, 1),
    ]
    by_model = store.usage_by_model("default")
    assert [(s.name, s.runs, s.input_tokens) for s in by_model] == [
        ("scripted", 1, 110),
        ("openai:gpt", 1, 50),
        (None, 1, 5),
    ]
    assert store.usage_by_model("nobody") == []


def test_audit_filters_narrow_by_node_effect_and_tool(store: Store) -> None:
    store.create_project("p1", "one")
    for node, tool, effect in (
        ("a", "fs.write", "allow"),
        ("a", "shell.exec", "deny"),
        ("b", "fs.write", "deny"),
    ):
        store.append_audit(
            tenant_id="default",
            project_id="p1",
            node_id=node,
            actor="agent",
            action_kind="tool_call",
            tool=tool,
            arguments_digest="0" * 64,
            rule_id=None,
            effect=effect,
            reason="r",
        )
    assert [r.tool for r in store.list_audit("p1", node_id="a")] == ["fs.write", "shell.exec"]
    assert [r.node_id for r in store.list_audit(effect="deny")] == ["a", "b"]
    assert [r.effect for r in store.list_audit(tool="fs.write", effect="deny")] == ["deny"]


def test_usage_events_are_recorded_once_per_tenant_and_key(store: Store) -> None:
    store.create_project("p1", "one")
    assert store.record_usage("default", "k", "model", project_id="p1", model="m", input_tokens=5)
    assert not store.record_usage("default", "k", "model", project_id="p1", input_tokens=99)
    assert store.record_usage("globex", "k", "model", input_tokens=7), "keys are per tenant"
    start, end = datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)
    (event,) = store.usage_events("default", start, end)
    assert (event.key, event.input_tokens) == ("k", 5)
    assert store.period_usage("default", start, end).tokens == 5
