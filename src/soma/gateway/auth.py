"""Authentication, authorisation and request-rate limits, as FastAPI dependencies.

Every route declares the permission it needs with ``Depends(require(Permission.X))``; the
route-matrix test walks the app's routes and fails if one has no such dependency.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer

from soma.errors import Forbidden, RateLimited, Unauthorized
from soma.gateway.csrf import CSRF_HEADER, SAFE_METHODS, check_csrf
from soma.gateway.ratelimit import Limit
from soma.gateway.services import Services
from soma.identity.permissions import Permission
from soma.identity.principal import Principal

SESSION_COOKIE = "soma_session"
# Declared for the OpenAPI document (security schemes); the checks themselves are below.
bearer_scheme = HTTPBearer(auto_error=False, description="An API key (soma_…) or session token")
cookie_scheme = APIKeyCookie(name=SESSION_COOKIE, auto_error=False)


def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


def _credential(request: Request) -> tuple[str, bool]:
    """The bearer token, else the session cookie (then ``True``: authenticated by cookie)."""
    header = request.headers.get("authorization")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized(
                "the Authorization header must be 'Bearer <API key or session token>'"
            )
        return token.strip(), False
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        return cookie, True
    raise Unauthorized(
        "no credentials: send 'Authorization: Bearer <API key>'",
        hint="create a key with `soma admin create-key <tenant> <email> --name <name>`",
    )


async def enforce(svc: Services, limit: Limit, key: str, cost: float = 1.0) -> None:
    decision = await svc.limiter.take(key, limit, cost)
    if not decision.allowed:
        raise RateLimited(
            f"rate limit exceeded: {limit.name} is {limit.per_min:g}",
            retry_after_s=decision.retry_after_s,
            hint=f"retry after {decision.retry_after_s:.1f} s",
        )


async def authenticate(request: Request) -> Principal:
    """Who is calling, with their request rate counted against their key and their tenant."""
    cached = getattr(request.state, "principal", None)
    if isinstance(cached, Principal):
        return cached
    svc = services(request)
    credential, by_cookie = _credential(request)
    principal = svc.identity.authenticate(credential)
    # A browser sends the cookie on any site's behalf: a change needs the page's CSRF token too.
    vouched = getattr(request.state, "csrf_ok", False)  # a console form checked its own token
    if by_cookie and request.method not in SAFE_METHODS and not vouched:
        check_csrf(svc.secret_key, credential, request.headers.get(CSRF_HEADER))
    await enforce(svc, svc.key_limit, principal.rate_key)
    await enforce(
        svc, svc.tenant_limits(principal.tenant_id).requests, f"tenant:{principal.tenant_id}"
    )
    request.state.principal = principal
    return principal


def require(permission: Permission) -> Callable[..., Awaitable[Principal]]:
    """A dependency that authenticates the caller and checks one permission."""

    async def dependency(
        request: Request,
        _bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)] = None,
    ) -> Principal:
        principal = await authenticate(request)
        if not principal.can(permission):
            raise Forbidden(
                f"role '{principal.role}' may not {permission.value}"
                + (" with this API key's scopes" if principal.key_id else ""),
                hint="ask a tenant admin for a role or key that grants it",
            )
        return principal

    dependency.required_permission = permission  # type: ignore[attr-defined]
    return dependency
