"""Secrets over HTTP: admins set, list (names only) and delete; no response carries a value."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from soma.gateway.app import build_services, create_app
from soma.gateway.routes import secrets
from soma.identity.permissions import Role
from soma.secrets import Vault
from soma.settings import Settings
from tests.gateway.conftest import LiveGateway, serve_in_thread

TOKEN = "ghp_api-secret-VALUE-7f3a9c"


@pytest.fixture
def live(gateway_settings: Settings) -> Iterator[LiveGateway]:
    """A gateway with the secrets router, included here so the test does not depend on
    app.py registering it."""
    services = build_services(gateway_settings)
    app = create_app(services)
    if not any(getattr(r, "path", "") == "/api/v1/secrets" for r in app.routes):
        app.include_router(secrets.router)
    url, stop = serve_in_thread(app)
    try:
        yield LiveGateway(url, services)
    finally:
        stop()


def test_lifecycle_never_returns_the_value(live: LiveGateway) -> None:
    admin = live.headers("acme", "admin")
    seen: list[str] = []
    with httpx.Client(base_url=live.url) as client:
        put = client.put("/api/v1/secrets/github.token", json={"value": TOKEN}, headers=admin)
        assert put.status_code == 204, put.text
        seen.append(put.text)

        listed = client.get("/api/v1/secrets", headers=admin)
        assert listed.status_code == 200, listed.text
        seen.append(listed.text)
        (info,) = listed.json()
        assert info["name"] == "github.token"
        assert info["tenant_id"] == "acme"
        assert info["updated_by"].startswith("user:")
        assert set(info) == {"tenant_id", "name", "created_at", "updated_at", "updated_by"}

        vault = Vault(live.services.store, live.services.secret_key)
        assert vault.get("acme", "github.token") == TOKEN

        deleted = client.delete("/api/v1/secrets/github.token", headers=admin)
        assert deleted.status_code == 204, deleted.text
        seen.append(deleted.text)
        again = client.delete("/api/v1/secrets/github.token", headers=admin)
        assert again.status_code == 404
        seen.append(again.text)
        assert client.get("/api/v1/secrets", headers=admin).json() == []
    for text in seen:
        assert TOKEN not in text


def test_bad_input_is_refused_without_echoing_it(live: LiveGateway) -> None:
    admin = live.headers("acme", "admin")
    with httpx.Client(base_url=live.url) as client:
        bad_name = client.put("/api/v1/secrets/Bad.Name", json={"value": TOKEN}, headers=admin)
        assert bad_name.status_code == 400
        assert "invalid secret name" in bad_name.json()["error"]["message"]
        assert TOKEN not in bad_name.text
        empty = client.put("/api/v1/secrets/x", json={"value": ""}, headers=admin)
        assert empty.status_code == 400
        big = "v" * (64 * 1024 + 1)
        too_big = client.put("/api/v1/secrets/x", json={"value": big}, headers=admin)
        assert too_big.status_code in (400, 413)
        assert "vvvvvvvv" not in too_big.text
        extra = client.put(
            "/api/v1/secrets/x", json={"value": TOKEN, "other": TOKEN}, headers=admin
        )
        assert extra.status_code == 422
        assert TOKEN not in extra.text


@pytest.mark.parametrize("role", ["viewer", "developer", "reviewer"])
def test_only_admins(live: LiveGateway, role: Role) -> None:
    headers = live.headers("acme", role)
    with httpx.Client(base_url=live.url) as client:
        assert client.get("/api/v1/secrets", headers=headers).status_code == 403
        put = client.put("/api/v1/secrets/x", json={"value": TOKEN}, headers=headers)
        assert put.status_code == 403
        assert client.delete("/api/v1/secrets/x", headers=headers).status_code == 403
        assert client.get("/api/v1/secrets").status_code == 401


def test_tenants_are_isolated(live: LiveGateway) -> None:
    acme = live.headers("acme", "admin")
    globex = live.headers("globex", "admin")
    with httpx.Client(base_url=live.url) as client:
        assert (
            client.put("/api/v1/secrets/github.token", json={"value": TOKEN}, headers=acme)
        ).status_code == 204
        assert client.get("/api/v1/secrets", headers=globex).json() == []
        assert client.delete("/api/v1/secrets/github.token", headers=globex).status_code == 404
        assert (
            client.put("/api/v1/secrets/github.token", json={"value": "globex"}, headers=globex)
        ).status_code == 204
    vault = Vault(live.services.store, live.services.secret_key)
    assert vault.get("acme", "github.token") == TOKEN
    assert vault.get("globex", "github.token") == "globex"
