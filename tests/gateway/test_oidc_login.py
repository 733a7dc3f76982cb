"""Browser login through the gateway against a real OIDC provider (authlib's) on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from soma.gateway.app import build_services, create_app
from soma.identity.oidc import OIDCClient
from soma.settings import Settings
from tests.gateway.conftest import LiveGateway, serve_in_thread
from tests.identity.oidc_provider import CLIENT_ID, CLIENT_SECRET, Provider, serve


@pytest.fixture
def provider() -> Iterator[Provider]:
    with serve(Provider()) as running:
        yield running


@pytest.fixture
def oidc_gateway(gateway_settings: Settings, provider: Provider) -> Iterator[LiveGateway]:
    oidc = OIDCClient(provider.issuer, CLIENT_ID, CLIENT_SECRET)
    services = build_services(gateway_settings, oidc=oidc)
    url, stop = serve_in_thread(create_app(services))
    provider.client.redirect_uris = (f"{url}/auth/oidc/callback",)
    try:
        yield LiveGateway(url, services)
    finally:
        stop()


def _to_callback(
    browser: httpx.Client, gateway: LiveGateway, next_path: str | None = None
) -> httpx.URL:
    """What a browser does: start at the gateway, consent at the provider, come back."""
    params = {"next": next_path} if next_path else None
    login = browser.get(f"{gateway.url}/auth/oidc/login", params=params)
    assert login.status_code == 302, login.text
    authorize = browser.get(login.headers["location"])
    assert authorize.status_code == 302, authorize.text
    callback = httpx.URL(authorize.headers["location"])
    assert str(callback).startswith(f"{gateway.url}/auth/oidc/callback?")
    return callback


def test_oidc_login_gives_a_working_session(oidc_gateway: LiveGateway, provider: Provider) -> None:
    with httpx.Client(follow_redirects=False, timeout=30) as browser:
        callback = _to_callback(browser, oidc_gateway)
        session = browser.get(callback)
        assert session.status_code == 200, session.text
        body = session.json()
        assert body["tenant_id"] == "default"
        assert "soma_session" in session.cookies
        me = browser.get(
            f"{oidc_gateway.url}/api/v1/me",
            headers={"Authorization": f"Bearer {body['token']}"},
        )
        assert me.status_code == 200, me.text
        assert me.json()["role"] == "viewer"
        assert me.json()["user_id"] == body["user_id"]
        # The browser's cookie alone is a credential too.
        assert browser.get(f"{oidc_gateway.url}/api/v1/me").status_code == 200
    user = oidc_gateway.services.store.get_user("default", body["user_id"])
    assert user.email == provider.user.email


def test_a_console_login_returns_to_the_console_page(oidc_gateway: LiveGateway) -> None:
    with httpx.Client(follow_redirects=False, timeout=30) as browser:
        callback = _to_callback(browser, oidc_gateway, "/reviews?x=1")
        back = browser.get(callback)
        assert back.status_code == 303, back.text
        assert back.headers["location"] == "/reviews?x=1"
        assert browser.get(f"{oidc_gateway.url}/reviews").status_code == 200
        hostile = _to_callback(browser, oidc_gateway, "//evil.example/")
        assert browser.get(hostile).headers["location"] == "/projects"


def test_callback_with_forged_state_is_refused(oidc_gateway: LiveGateway) -> None:
    with httpx.Client(follow_redirects=False, timeout=30) as browser:
        callback = _to_callback(browser, oidc_gateway)
        query = parse_qs(urlsplit(str(callback)).query)
        forged = browser.get(
            f"{oidc_gateway.url}/auth/oidc/callback",
            params={"code": query["code"][0], "state": "attacker-state"},
        )
    assert forged.status_code == 401
    assert "state" in forged.json()["error"]["message"]


def test_callback_without_a_started_login_is_refused(oidc_gateway: LiveGateway) -> None:
    response = httpx.get(
        f"{oidc_gateway.url}/auth/oidc/callback", params={"code": "x", "state": "y"}
    )
    assert response.status_code == 401


def test_login_when_oidc_is_not_configured(gateway: LiveGateway) -> None:
    response = httpx.get(f"{gateway.url}/auth/oidc/login", follow_redirects=False)
    assert response.status_code == 404
    assert "SOMA_OIDC_ISSUER" in response.json()["error"]["message"]
