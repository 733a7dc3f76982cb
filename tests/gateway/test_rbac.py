"""Every route's permission, declared here and enforced for every role.

The expected table is written out by hand on purpose: a new route that is not added here fails
``test_every_route_is_listed``, so nobody can add an endpoint without deciding who may call it.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from soma.gateway.app import create_app
from soma.identity.permissions import ROLE_PERMISSIONS, ROLES, Permission, Role
from tests.gateway.conftest import LiveGateway

P = Permission
PUBLIC = "public"
AUTHENTICATED = "authenticated"

EXPECTED: dict[tuple[str, str], Permission | str] = {
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,
    ("GET", "/auth/oidc/login"): PUBLIC,
    ("GET", "/auth/oidc/callback"): PUBLIC,
    # Authenticated by Slack's request signature with the tenant's signing secret.
    ("POST", "/integrations/slack/{tenant_id}/actions"): PUBLIC,
    ("GET", "/api/v1/me"): AUTHENTICATED,
    ("GET", "/api/v1/keys"): P.KEYS_MANAGE,
    ("POST", "/api/v1/keys"): P.KEYS_MANAGE,
    ("DELETE", "/api/v1/keys/{key_id}"): P.KEYS_MANAGE,
    ("GET", "/api/v1/users"): P.USERS_MANAGE,
    ("POST", "/api/v1/users"): P.USERS_MANAGE,
    ("POST", "/api/v1/projects"): P.PROJECTS_WRITE,
    ("GET", "/api/v1/projects"): P.PROJECTS_READ,
    ("GET", "/api/v1/projects/{project_id}"): P.PROJECTS_READ,
    ("POST", "/api/v1/projects/{project_id}/cancel"): P.PROJECTS_WRITE,
    ("POST", "/api/v1/projects/{project_id}/teardown"): P.PROJECTS_WRITE,
    ("GET", "/api/v1/projects/{project_id}/resources"): P.PROJECTS_READ,
    ("GET", "/api/v1/projects/{project_id}/runs"): P.PROJECTS_READ,
    ("GET", "/api/v1/projects/{project_id}/runs/{node_id}"): P.PROJECTS_READ,
    ("GET", "/api/v1/projects/{project_id}/events"): P.PROJECTS_READ,
    ("GET", "/api/v1/projects/{project_id}/events/stream"): P.PROJECTS_READ,
    ("GET", "/api/v1/reviews"): P.REVIEWS_READ,
    ("POST", "/api/v1/projects/{project_id}/reviews/{node_id}/approve"): P.REVIEWS_DECIDE,
    ("POST", "/api/v1/projects/{project_id}/reviews/{node_id}/reject"): P.REVIEWS_DECIDE,
    ("GET", "/api/v1/capsules"): P.LIBRARY_READ,
    ("GET", "/api/v1/capsules/{ref}"): P.LIBRARY_READ,
    ("GET", "/api/v1/personas"): P.LIBRARY_READ,
    ("GET", "/api/v1/personas/{ref}"): P.LIBRARY_READ,
    ("GET", "/api/v1/audit"): P.AUDIT_READ,
    ("GET", "/api/v1/audit/verify"): P.AUDIT_READ,
    ("GET", "/api/v1/usage"): P.USAGE_READ,
    ("GET", "/api/v1/billing/invoice"): P.USAGE_READ,
    ("GET", "/api/v1/billing/budget"): P.USAGE_READ,
    ("PUT", "/api/v1/billing/budget"): P.BILLING_MANAGE,
    ("GET", "/api/v1/analytics"): P.USAGE_READ,
    ("GET", "/api/v1/market/packages"): P.LIBRARY_READ,
    ("POST", "/api/v1/market/packages"): P.MARKET_PUBLISH,
    ("GET", "/api/v1/market/packages/{name}"): P.LIBRARY_READ,
    ("GET", "/api/v1/market/packages/{name}/{version}"): P.LIBRARY_READ,
    ("GET", "/api/v1/market/packages/{name}/{version}/archive"): P.LIBRARY_READ,
    ("POST", "/api/v1/market/packages/{name}/{version}/yank"): P.MARKET_PUBLISH,
    ("POST", "/api/v1/market/packages/{name}/rating"): P.MARKET_PUBLISH,
    ("GET", "/api/v1/market/publishers/{publisher}/keys"): P.LIBRARY_READ,
    ("POST", "/api/v1/market/publishers/{publisher}/keys"): P.MARKET_PUBLISH,
    ("GET", "/api/v1/market/installed"): P.LIBRARY_READ,
    ("POST", "/api/v1/market/installed"): P.MARKET_INSTALL,
    ("DELETE", "/api/v1/market/installed/{name}"): P.MARKET_INSTALL,
    ("GET", "/api/v1/market/trust"): P.LIBRARY_READ,
    ("POST", "/api/v1/market/trust"): P.MARKET_TRUST,
    ("GET", "/api/v1/secrets"): P.SECRETS_MANAGE,
    ("PUT", "/api/v1/secrets/{name}"): P.SECRETS_MANAGE,
    ("DELETE", "/api/v1/secrets/{name}"): P.SECRETS_MANAGE,
    ("GET", "/api/v1/notifications/rules"): P.NOTIFICATIONS_MANAGE,
    ("POST", "/api/v1/notifications/rules"): P.NOTIFICATIONS_MANAGE,
    ("DELETE", "/api/v1/notifications/rules/{rule_id}"): P.NOTIFICATIONS_MANAGE,
    ("POST", "/api/v1/notifications/rules/{rule_id}/test"): P.NOTIFICATIONS_MANAGE,
    ("GET", "/api/v1/notifications/deliveries"): P.NOTIFICATIONS_MANAGE,
    ("GET", "/v1/models"): P.CHAT,
    ("POST", "/v1/chat/completions"): P.CHAT,
}


def app_routes(gateway: LiveGateway) -> list[tuple[str, str]]:
    """Every operation of the app, read from its OpenAPI document (which lists them all: no
    route is excluded from the schema)."""
    paths = create_app(gateway.services).openapi()["paths"]
    return [(method.upper(), path) for path, ops in paths.items() for method in ops]


def test_every_route_is_listed(gateway: LiveGateway) -> None:
    assert sorted(app_routes(gateway)) == sorted(EXPECTED)


def _request(route: tuple[str, str]) -> dict[str, Any]:
    method, path = route
    url = re.sub(r"\{[^}]+\}", "missing", path)
    body: dict[str, Any] | None = {} if method == "POST" else None
    return {"method": method, "url": url, "json": body}


@pytest.mark.parametrize("route", sorted(EXPECTED), ids=lambda r: f"{r[0]} {r[1]}")
def test_route_refuses_anonymous_callers(gateway: LiveGateway, route: tuple[str, str]) -> None:
    if EXPECTED[route] == PUBLIC:
        pytest.skip("public route")
    with httpx.Client(base_url=gateway.url) as client:
        response = client.request(**_request(route))
    assert response.status_code == 401, response.text
    assert response.json()["error"]["type"] == "unauthorized"
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_every_role_gets_exactly_its_permissions(gateway: LiveGateway) -> None:
    keys = {role: gateway.key("acme", role) for role in ROLES}
    problems = []
    with httpx.Client(base_url=gateway.url, timeout=30) as client:
        for route, needed in sorted(EXPECTED.items()):
            if needed in (PUBLIC, AUTHENTICATED) or route[1].endswith("/stream"):
                continue
            for role in ROLES:
                response = client.request(
                    **_request(route), headers={"Authorization": f"Bearer {keys[role]}"}
                )
                allowed = needed in ROLE_PERMISSIONS[role]
                refused = response.status_code == 403
                if allowed == refused or response.status_code in (401, 500):
                    problems.append(f"{role:9} {route}: {response.status_code} {response.text}")
    assert not problems, "\n".join(problems)


def test_stream_route_checks_permission_before_streaming(gateway: LiveGateway) -> None:
    key = gateway.key("acme", "viewer", scopes=[P.LIBRARY_READ])
    with httpx.Client(base_url=gateway.url) as client:
        response = client.get(
            "/api/v1/projects/missing/events/stream", headers={"Authorization": f"Bearer {key}"}
        )
    assert response.status_code == 403


@pytest.mark.parametrize("role", ROLES)
def test_key_scopes_narrow_the_role(gateway: LiveGateway, role: Role) -> None:
    key = gateway.key("acme", role, scopes=[P.LIBRARY_READ])
    with httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {key}"}) as c:
        assert c.get("/api/v1/capsules").status_code == 200
        me = c.get("/api/v1/me").json()
        assert me["permissions"] == ["library:read"]
        assert c.get("/api/v1/projects").status_code == 403
