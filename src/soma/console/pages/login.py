"""Signing in to the console: with an API key, or through the tenant's OIDC provider.

The login form has its own CSRF defence (a random cookie echoed in the form), since there is no
session yet to derive a token from; a successful login swaps the key for a session cookie, so
the key itself is never stored in the browser.
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from soma.console.access import safe_next
from soma.console.templating import render
from soma.errors import Forbidden, SomaError, Unauthorized
from soma.gateway.auth import SESSION_COOKIE, services
from soma.gateway.csrf import CSRF_FIELD
from soma.identity.keys import KEY_PREFIX
from soma.identity.permissions import permissions_for

router = APIRouter()
LOGIN_CSRF_COOKIE = "soma_login_csrf"


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request, next: str | None = None) -> Response:
    token = secrets.token_urlsafe(24)
    response = _form(request, next, token)
    response.set_cookie(
        LOGIN_CSRF_COOKIE, token, max_age=3600, httponly=True, samesite="strict", path="/login"
    )
    return response


@router.post("/login", response_class=HTMLResponse)
async def login(
    request: Request,
    api_key: Annotated[str, Form(max_length=500)] = "",
    csrf: Annotated[str, Form(alias=CSRF_FIELD, max_length=100)] = "",
    next: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    svc = services(request)
    expected = request.cookies.get(LOGIN_CSRF_COOKIE)
    try:
        if not expected or not secrets.compare_digest(expected, csrf):
            raise Forbidden("the login form expired; it has been reloaded, try again")
        key = api_key.strip()
        if not key.startswith(KEY_PREFIX):
            raise Unauthorized(f"that is not an API key (they start with '{KEY_PREFIX}')")
        principal = svc.identity.authenticate(key)
        if principal.permissions != permissions_for(principal.role):
            raise Forbidden(
                "this key is narrowed by scopes, and a console session would have the user's "
                "whole role: sign in with an unscoped key or through SSO"
            )
    except SomaError as exc:
        return _form(request, next, expected or "", error=str(exc), status_code=401)
    session = svc.identity.issue_session(principal.tenant_id, principal.user_id)
    response = RedirectResponse(safe_next(next), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        session,
        max_age=svc.settings.session_ttl_s,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


@router.post("/logout")
async def logout() -> RedirectResponse:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response


def _form(
    request: Request,
    next_path: str | None,
    token: str,
    *,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    return render(
        request,
        "login.html",
        title="Sign in",
        next=safe_next(next_path),
        login_csrf=token,
        sso=services(request).oidc is not None,
        error=error,
        status_code=status_code,
    )
