"""The console's pages over plain HTTP on a live gateway: sign-in, access, CSRF, and each page
rendering what the store holds (no engine needed; the browser tests drive the live flows)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from soma.console.access import safe_next
from soma.gateway.auth import SESSION_COOKIE
from soma.identity.permissions import Permission
from soma.marketplace.catalogue import trust_catalogue_keys
from tests.console.pages import csrf_of, publish_capsule, sign_in
from tests.gateway.conftest import LiveGateway


@pytest.fixture
def browser_client(gateway: LiveGateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url, timeout=30, follow_redirects=False) as client:
        yield client


def test_anonymous_pages_redirect_to_login_and_back(
    gateway: LiveGateway, browser_client: httpx.Client
) -> None:
    for path in ("/", "/projects", "/reviews", "/market?q=sql", "/audit", "/usage"):
        response = browser_client.get(path)
        assert response.status_code == 303, (path, response.text)
        if path != "/":
            assert response.headers["location"].startswith("/login?next=/")
    signed = sign_in(browser_client, gateway.key("acme", "admin"), "/market?q=sql")
    assert signed.status_code == 303, signed.text
    assert signed.headers["location"] == "/market?q=sql"
    cookie = signed.cookies.get(SESSION_COOKIE)
    assert cookie
    assert not cookie.startswith("soma_"), "the session replaces the key"
    assert "httponly" in signed.headers["set-cookie"].lower()
    assert browser_client.get("/market?q=sql").status_code == 200


def test_login_refuses_bad_keys_and_foreign_redirects(
    gateway: LiveGateway, browser_client: httpx.Client
) -> None:
    wrong = sign_in(browser_client, "soma_notakey_secret")
    assert wrong.status_code == 401
    assert 'role="alert"' in wrong.text
    scoped = gateway.key("acme", "admin", scopes=[Permission.PROJECTS_READ])
    refused = sign_in(browser_client, scoped)
    assert refused.status_code == 401
    assert "scopes" in refused.text
    assert SESSION_COOKIE not in browser_client.cookies
    forged = browser_client.post("/login", data={"api_key": gateway.key(), "csrf": "guess"})
    assert forged.status_code == 401
    assert "expired" in forged.text
    for hostile in ("//evil.example/x", "https://evil.example", "/\\evil.example", ""):
        assert safe_next(hostile) == "/projects"


def test_forms_need_the_sessions_csrf_token(
    gateway: LiveGateway, browser_client: httpx.Client
) -> None:
    sign_in(browser_client, gateway.key("acme", "developer"))
    missing = browser_client.post("/projects", data={"goal": "anything"})
    assert missing.status_code == 403
    assert "CSRF" in missing.text
    assert missing.headers["content-type"].startswith("text/html")
    # With the token the request gets through to the engine, absent in this gateway: 503.
    token = csrf_of(browser_client)
    accepted = browser_client.post("/projects", data={"goal": "anything", "csrf": token})
    assert accepted.status_code == 503, accepted.text
    assert "engine" in accepted.text.lower()


def test_the_api_asks_cookie_sessions_for_the_csrf_header(
    gateway: LiveGateway, browser_client: httpx.Client
) -> None:
    sign_in(browser_client, gateway.key("acme", "developer"))
    assert browser_client.get("/api/v1/me").status_code == 200, "reads need no token"
    body = {"name": "ci"}
    refused = browser_client.post("/api/v1/keys", json=body)
    assert refused.status_code == 403
    assert "CSRF" in refused.json()["error"]["message"]
    token = csrf_of(browser_client)
    created = browser_client.post("/api/v1/keys", json=body, headers={"x-csrf-token": token})
    assert created.status_code == 201, created.text
    bearer = {"Authorization": f"Bearer {gateway.key('acme', 'developer')}"}
    with httpx.Client(base_url=gateway.url) as plain:
        assert plain.post("/api/v1/keys", json=body, headers=bearer).status_code == 201


def test_roles_see_only_their_pages(gateway: LiveGateway, browser_client: httpx.Client) -> None:
    sign_in(browser_client, gateway.key("acme", "viewer"))
    projects = browser_client.get("/projects")
    assert projects.status_code == 200
    assert 'href="/audit"' not in projects.text, "the nav offers only permitted pages"
    assert 'action="/projects"' not in projects.text, "a viewer gets no new-project form"
    audit = browser_client.get("/audit")
    assert audit.status_code == 403
    assert "audit:read" in audit.text
    token = csrf_of(browser_client)
    create = browser_client.post("/projects", data={"goal": "x", "csrf": token})
    assert create.status_code == 403
    assert "projects:write" in create.text


def test_tenants_see_only_their_own_projects(
    gateway: LiveGateway, browser_client: httpx.Client
) -> None:
    store = gateway.services.store
    gateway.key("globex", "admin")
    store.create_project("globex-secret-plan", "globex's goal", tenant_id="globex")
    sign_in(browser_client, gateway.key("acme", "admin"))
    assert "globex" not in browser_client.get("/projects").text
    assert browser_client.get("/projects/globex-secret-plan").status_code == 404


def test_project_and_run_pages_show_the_dag_decisions_and_history(
    gateway: LiveGateway, browser_client: httpx.Client
) -> None:
    store = gateway.services.store
    key = gateway.key("acme", "admin")
    plan = {
        "goal": "ship it",
        "nodes": [
            {"id": "design", "capsule": "design-doc", "depends_on": []},
            {"id": "build", "capsule": "python-cli", "depends_on": ["design"]},
        ],
    }
    store.create_project("p-demo", "ship it", tenant_id="acme", status="running", plan=plan)
    store.upsert_node("p-demo", "design", tenant_id="acme", status="succeeded", persona="architect")
    store.upsert_node("p-demo", "build", tenant_id="acme", status="waiting_review")
    store.add_event("p-demo", "tool", "fs.write notes.md", node_id="build", tenant_id="acme")
    store.add_event("p-demo", "model", "<b>thinking</b>", node_id="build", tenant_id="acme")
    sign_in(browser_client, key)

    page = browser_client.get("/projects/p-demo").text
    assert re.search(r'class="node status-succeeded" data-node="design"', page)
    assert re.search(r'class="node status-waiting_review" data-node="build"', page)
    assert '<path class="edge"' in page
    assert "&lt;b&gt;thinking&lt;/b&gt;" in page, "event text is escaped"

    run = browser_client.get("/projects/p-demo/runs/build").text
    assert "fs.write notes.md" in run
    assert "No decisions recorded" in run
    assert browser_client.get("/projects/p-demo/runs/nope").status_code == 404


def test_marketplace_search_package_page_and_install(
    gateway: LiveGateway, browser_client: httpx.Client, tmp_path: Path
) -> None:
    publish_capsule(gateway, tmp_path, "lint-sql", trust=False)
    sign_in(browser_client, gateway.key("acme", "developer"))
    found = browser_client.get("/market", params={"q": "lint sql"})
    assert found.status_code == 200
    names = re.findall(r'<h2><a href="/market/([^"]+)">', found.text)
    assert names[0] == "lint-sql", found.text
    detail = browser_client.get("/market/lint-sql").text
    assert "ed25519 by acme-tools" in detail
    assert "not trusted by your tenant" in detail
    assert "fs.read" in detail, "the capsule's tools are listed"
    assert 'id="installed-version">no<' in detail

    token = csrf_of(browser_client, "/market/lint-sql")
    refused = browser_client.post("/market/lint-sql/install", data={"csrf": token})
    assert refused.status_code == 422
    assert "trust" in refused.text.lower()

    key = gateway.services.store.publisher_keys("acme-tools")[0]
    gateway.services.store.trust_publisher_key("acme", "acme-tools", key.key_id, key.public_key)
    installed = browser_client.post("/market/lint-sql/install", data={"csrf": token})
    assert installed.status_code == 303
    after = browser_client.get(installed.headers["location"]).text
    assert "Installed lint-sql 1.0.0" in after
    assert 'id="installed-version">1.0.0<' in after
    assert ">trusted by your tenant<" in after


def test_installing_a_built_in_package_says_so(
    gateway: LiveGateway, browser_client: httpx.Client
) -> None:
    sign_in(browser_client, gateway.key("acme", "admin"))
    trust_catalogue_keys(gateway.services.store, "acme")
    name = gateway.services.library.capsules()[0].name
    token = csrf_of(browser_client, f"/market/{name}")
    response = browser_client.post(f"/market/{name}/install", data={"csrf": token})
    after = browser_client.get(response.headers["location"]).text
    assert "already available" in after


def test_audit_and_usage_pages(gateway: LiveGateway, browser_client: httpx.Client) -> None:
    store = gateway.services.store
    key = gateway.key("acme", "admin")
    store.create_project("p-use", "use tokens", tenant_id="acme", model="scripted")
    store.upsert_node(
        "p-use", "n1", tenant_id="acme", persona="coder", input_tokens=120, output_tokens=30
    )
    store.add_usage("p-use", 120, 30, tenant_id="acme")
    sign_in(browser_client, key)

    audit = browser_client.get("/audit").text
    assert "Hash chain verified" in audit
    assert "key.create" in audit, "identity changes are audited and shown"
    filtered = browser_client.get("/audit", params={"effect": "deny"}).text
    assert "key.create" not in filtered
    assert "No records match" in filtered

    usage = browser_client.get("/usage").text
    assert "Tokens per persona" in usage
    assert "coder" in usage
    assert "Tokens per model" in usage
    assert "scripted" in usage
    assert 'aria-label="120 input and 30 output tokens"' in usage
    assert "No budget set" in usage
    store.set_budget("acme", monthly_tokens=100, monthly_cost_micros=None)
    store.record_usage(
        "acme",
        "k1",
        "model",
        project_id="p-use",
        model="openai:gpt-4o",
        input_tokens=120,
        cost_micros=300,
    )
    store.upsert_node("p-use", "n1", tenant_id="acme", capsule="write-code@^1", status="failed")
    billed = browser_client.get("/usage", params={"by": "capsule"}).text
    assert "new projects and model calls are refused" in billed
    assert "openai:gpt-4o" in billed
    assert "$0.0003" in billed
    assert re.search(r'<td class="mono">write-code</td><td>1</td>\s*<td>0%', billed)


def test_every_console_route_declares_who_may_use_it(gateway: LiveGateway) -> None:
    from fastapi.routing import APIRoute

    from soma.gateway.app import create_app

    public = {("GET", "/login"), ("POST", "/login"), ("POST", "/logout"), ("GET", "/")}
    app = create_app(gateway.services)
    undeclared = []
    for route in app.routes:
        if not isinstance(route, APIRoute) or route.include_in_schema:
            continue
        for method in route.methods:
            needed = [
                getattr(d.call, "required_permission", None) for d in route.dependant.dependencies
            ]
            if (method, route.path) not in public and not any(needed):
                undeclared.append((method, route.path))
    assert not undeclared
