"""Who may see a console page: the session cookie, the page's permission, and CSRF on forms.

An anonymous browser is sent to the login page (and back afterwards) instead of getting a JSON
401; everything else about authentication is the gateway's own (:mod:`soma.gateway.auth`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import quote

from fastapi import Request

from soma.errors import Forbidden, SomaError, Unauthorized
from soma.gateway.auth import SESSION_COOKIE, authenticate, services
from soma.gateway.csrf import CSRF_FIELD, SAFE_METHODS, check_csrf
from soma.identity.permissions import Permission
from soma.identity.principal import Principal


class LoginRequired(SomaError):
    """The browser has no valid session: the console answers with a redirect to /login."""

    def __init__(self, next_path: str) -> None:
        super().__init__("log in to use the console")
        self.next_path = next_path


def login_url(next_path: str) -> str:
    return f"/login?next={quote(next_path, safe='/')}"


def safe_next(candidate: str | None) -> str:
    """Where to go after logging in: only a path on this site, never another origin."""
    if candidate and candidate.startswith("/") and not candidate.startswith(("//", "/\\")):
        return candidate
    return "/projects"


def mark_console(request: Request) -> None:
    """Router-wide: errors on console pages are rendered as HTML rather than JSON."""
    request.state.console = True


def page(permission: Permission) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency: the signed-in principal, holding ``permission``. A form post must carry
    the session's CSRF token, read from the form before anything changes."""

    async def dependency(request: Request) -> Principal:
        session = request.cookies.get(SESSION_COOKIE)
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        if not session or request.headers.get("authorization"):
            raise LoginRequired(here if request.method in SAFE_METHODS else "/projects")
        if request.method not in SAFE_METHODS:
            form = await request.form()
            presented = form.get(CSRF_FIELD)
            check_csrf(
                services(request).secret_key,
                session,
                presented if isinstance(presented, str) else None,
            )
            request.state.csrf_ok = True
        try:
            principal = await authenticate(request)
        except Unauthorized:
            raise LoginRequired(here) from None
        if not principal.can(permission):
            raise Forbidden(
                f"your role '{principal.role}' may not {permission.value}",
                hint="ask a tenant admin for a role that grants it",
            )
        return principal

    dependency.required_permission = permission  # type: ignore[attr-defined]
    return dependency
