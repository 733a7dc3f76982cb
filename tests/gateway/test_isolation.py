"""Tenant isolation: a user of tenant A walks every route against tenant B's objects.

Tenant B's objects are made through the store directly (a project with a run, events, a
pending review, an audit record, a user and a key), so this test needs no engine; the routes
must refuse before they would reach it.

The marketplace catalogue is shared by every tenant by design: tenant A may read, download and
rate tenant B's published package. What B owns there is its publisher name (A may neither yank
B's versions nor add keys to B's publisher), and its installs and trusted keys, which no route
may show to A.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from soma.constitution.audit import record_decision
from soma.gateway.app import create_app
from soma.marketplace.archive import read_manifest
from soma.marketplace.signing import PublisherKey
from soma.secrets import Vault
from tests.gateway.conftest import LiveGateway
from tests.gateway.test_rbac import EXPECTED, PUBLIC, app_routes
from tests.marketplace._build import capsule_dir, signed

B_PROJECT = "beta-secret-project"
B_NODE = "build"
B_PUBLISHER = "beta-pub"
B_PACKAGE = "beta-widget"
B_PRIVATE = "beta-private"
B_SECRET = "beta.token"
# Secret names are per tenant: A's PUT of a name B also uses writes A's own secret.
OWN_NAMESPACE = {("PUT", "/api/v1/secrets/{name}")}
"""Marks what B installed and from where: tenant-owned, so never in an answer to A."""
# Shared by design (see the module docstring): A reaches B's package through these.
SHARED_MARKET = {
    ("GET", "/api/v1/market/packages/{name}"),
    ("GET", "/api/v1/market/packages/{name}/{version}"),
    ("GET", "/api/v1/market/packages/{name}/{version}/archive"),
    ("POST", "/api/v1/market/packages/{name}/rating"),
    ("GET", "/api/v1/market/publishers/{publisher}/keys"),
}


@pytest.fixture
def beta(gateway: LiveGateway, tmp_path: Path) -> dict[str, str]:
    """Tenant B's objects; returns the ids a curious tenant-A user might try."""
    gateway.key("beta", "admin")
    store = gateway.services.store
    store.create_project(B_PROJECT, "beta's confidential goal", tenant_id="beta", status="running")
    store.upsert_node(B_PROJECT, B_NODE, tenant_id="beta", capsule="write-code", status="running")
    store.add_event(B_PROJECT, "model", "beta's event", node_id=B_NODE, tenant_id="beta")
    Vault(store, gateway.services.secret_key).set(
        "beta", B_SECRET, f"{B_PRIVATE}-secret-value", actor="test"
    )
    store.open_review(B_PROJECT, B_NODE, 0, tenant_id="beta")
    rule = store.create_notification_rule(
        "beta", "review.needed", "webhook", f"https://{B_PRIVATE}.test/hook"
    )
    store.enqueue_notification("beta", rule.id, "event:1", "review.needed", {"summary": "beta's"})
    record_decision(
        store,
        tenant_id="beta",
        project_id=B_PROJECT,
        node_id=B_NODE,
        actor="developer (write-code)",
        action_kind="tool_call",
        tool="fs.write",
        arguments={"path": "x"},
        rule_id=None,
        effect="allow",
        reason="beta's decision",
        key="beta-audit-1",
    )
    beta_user = store.list_users("beta")[0]
    beta_key = gateway.services.identity.list_keys("beta", beta_user.id)[0]
    publisher = PublisherKey.generate(B_PUBLISHER)
    store.add_publisher_key("beta", B_PUBLISHER, publisher.key_id, publisher.public_text)
    data, signature = signed(capsule_dir(tmp_path, B_PACKAGE), publisher)
    store.add_package_version(
        read_manifest(data), signature.digest, signature, data, tenant_id="beta", user_id="b"
    )
    private = read_manifest(signed(capsule_dir(tmp_path, B_PRIVATE), publisher)[0])
    store.record_install("beta", private, "0" * 64, f"https://{B_PRIVATE}.test")
    store.trust_publisher_key("beta", B_PRIVATE, publisher.key_id, publisher.public_text)
    return {
        "project_id": B_PROJECT,
        "node_id": B_NODE,
        "key_id": beta_key.id,
        "ref": "write-code",
        "name": B_PACKAGE,
        "version": "1.0.0",
        "publisher": B_PUBLISHER,
        "rule_id": rule.id,
    }


def test_tenant_a_cannot_see_or_touch_tenant_b(gateway: LiveGateway, beta: dict[str, str]) -> None:
    headers = {"Authorization": f"Bearer {gateway.key('acme', 'admin')}"}
    assert sorted(app_routes(gateway)) == sorted(EXPECTED)
    leaks = []
    with httpx.Client(base_url=gateway.url, headers=headers, timeout=30) as client:
        for method, path in sorted(EXPECTED):
            if EXPECTED[(method, path)] == PUBLIC:
                continue
            ids = {**beta, "name": B_SECRET} if path.startswith("/api/v1/secrets/") else beta
            url = re.sub(r"\{([^}]+)\}", lambda m, ids=ids: ids[m.group(1)], path)
            body = _body(method, path)
            response = client.request(method, url, json=body)
            text = response.text
            owns_object = (
                "{" in path
                and "{ref}" not in path
                and (method, path) not in SHARED_MARKET
                and (method, path) not in OWN_NAMESPACE
            )
            if owns_object and response.status_code not in (403, 404):
                leaks.append(f"{method} {url}: {response.status_code} {text[:200]}")
            markers = (B_PROJECT, "beta's", beta["key_id"], "@beta.test", B_PRIVATE)
            if response.status_code < 400 and any(m in text for m in markers):
                leaks.append(f"{method} {url} shows tenant B's data: {text[:200]}")
    assert not leaks, "\n".join(leaks)
    store = gateway.services.store
    assert store.get_project(B_PROJECT, "beta").status == "running"
    assert [r.status for r in store.list_reviews("pending", "beta")] == ["pending"]
    key = gateway.services.identity.list_keys("beta", None)[0]
    assert key.revoked_at is None
    assert not store.get_package_version(B_PACKAGE, "1.0.0").yanked
    assert [k.tenant_id for k in store.publisher_keys(B_PUBLISHER)] == ["beta"]
    vault = Vault(store, gateway.services.secret_key)
    assert vault.get("beta", B_SECRET) == f"{B_PRIVATE}-secret-value"
    assert vault.get("acme", B_SECRET) == "probe"  # A's PUT wrote A's own secret of that name
    assert [r.id for r in store.list_notification_rules("beta")] == [beta["rule_id"]]


def _body(method: str, path: str) -> dict[str, object] | None:
    if method == "PUT" and path.startswith("/api/v1/secrets/"):
        return {"value": "probe"}
    if method != "POST":
        return None
    if path == "/v1/chat/completions":
        return {"model": "persona:developer", "messages": [{"role": "user", "content": "hi"}]}
    if path == "/api/v1/keys":
        return {"name": "probe"}
    if path == "/api/v1/users":
        return {"email": "probe@acme.test", "role": "viewer"}
    if path == "/api/v1/projects":
        return None  # creating in one's own tenant is not a cross-tenant probe
    if path.endswith("/yank"):
        return {"reason": "probe"}
    if path.endswith("/rating"):
        return {"stars": 1}
    if path.endswith("/keys") and path.startswith("/api/v1/market/"):
        return {"public_key": PublisherKey.generate("probe").public_text}
    return {"comment": "probe"}


def test_lists_hold_only_the_callers_tenant(gateway: LiveGateway, beta: dict[str, str]) -> None:
    headers = {"Authorization": f"Bearer {gateway.key('acme', 'admin')}"}
    with httpx.Client(base_url=gateway.url, headers=headers) as client:
        assert client.get("/api/v1/projects").json() == []
        assert client.get("/api/v1/reviews", params={"status": "any"}).json() == []
        audit = client.get("/api/v1/audit").json()
        assert audit, "creating the caller's own user and key is audited"
        assert {r["action_kind"] for r in audit} == {"identity"}
        assert client.get("/api/v1/usage").json()["projects"] == []
        users = client.get("/api/v1/users").json()
        assert all(u["email"].endswith("@acme.test") for u in users)
        keys = client.get("/api/v1/keys").json()
        assert beta["key_id"] not in {k["id"] for k in keys}


def test_app_factory_is_reusable(gateway: LiveGateway) -> None:
    assert create_app(gateway.services).routes
