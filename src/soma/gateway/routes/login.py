"""Browser login through the tenant's OpenID Connect provider (authorization code + PKCE).

The PKCE verifier, state and nonce travel in a short-lived cookie signed with the server's
secret rather than in server memory, so the callback may land on any gateway replica.
"""

from __future__ import annotations

import time
from typing import Annotated

import jwt
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from soma.console.access import safe_next
from soma.errors import NotFound, Unauthorized
from soma.gateway.auth import SESSION_COOKIE, services
from soma.gateway.schemas import SessionOut
from soma.gateway.services import Services
from soma.identity.login import LoginProvider, LoginStart

router = APIRouter(prefix="/auth/oidc", tags=["login"])

Svc = Annotated[Services, Depends(services)]
FLOW_COOKIE = "soma_oidc_flow"
FLOW_TTL_S = 600
_FLOW_AUDIENCE = "soma-oidc-flow"


def _redirect_uri(svc: Services, request: Request) -> str:
    return svc.settings.oidc_redirect_url or str(request.url_for("oidc_callback"))


def _provider(svc: Services) -> LoginProvider:
    if svc.oidc is None:
        raise NotFound(
            "OIDC login is not configured on this server",
            hint="set SOMA_OIDC_ISSUER, SOMA_OIDC_CLIENT_ID and SOMA_OIDC_CLIENT_SECRET",
        )
    return svc.oidc


@router.get(
    "/login",
    summary="Start a login at the OIDC provider (redirects there)",
    response_class=RedirectResponse,
    status_code=302,
)
async def oidc_login(
    request: Request,
    svc: Svc,
    next: Annotated[
        str | None,
        Query(max_length=2000, description="A console path to return to after the login."),
    ] = None,
) -> RedirectResponse:
    start = await _provider(svc).begin(_redirect_uri(svc, request))
    flow = jwt.encode(
        {
            "aud": _FLOW_AUDIENCE,
            "exp": int(time.time()) + FLOW_TTL_S,
            "state": start.state,
            "nonce": start.nonce,
            "verifier": start.code_verifier,
            "next": safe_next(next) if next else None,
        },
        svc.secret_key,
        algorithm="HS256",
    )
    response = RedirectResponse(start.url, status_code=302)
    response.set_cookie(
        FLOW_COOKIE,
        flow,
        max_age=FLOW_TTL_S,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path="/auth/oidc",
    )
    return response


@router.get(
    "/callback",
    name="oidc_callback",
    summary="Finish an OIDC login: returns a session (or, from the console, goes back there)",
)
async def oidc_callback(
    request: Request,
    svc: Svc,
    code: Annotated[str, Query(min_length=1, max_length=4096)],
    state: Annotated[str, Query(min_length=1, max_length=512)],
) -> Response:
    provider = _provider(svc)
    start, next_path = _flow(svc, request, state)
    claims = await provider.complete(code, _redirect_uri(svc, request), start)
    settings = svc.settings
    user = svc.identity.login_oidc(
        claims, tenant_id=settings.oidc_tenant, default_role=settings.oidc_default_role
    )
    token = svc.identity.issue_session(user.tenant_id, user.id)
    body = SessionOut(
        token=token, expires_in=settings.session_ttl_s, user_id=user.id, tenant_id=user.tenant_id
    )
    response: Response = (
        RedirectResponse(next_path, status_code=303)
        if next_path
        else JSONResponse(body.model_dump())
    )
    response.delete_cookie(FLOW_COOKIE, path="/auth/oidc")
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=settings.session_ttl_s,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )
    return response


def _flow(svc: Services, request: Request, state: str) -> tuple[LoginStart, str | None]:
    cookie = request.cookies.get(FLOW_COOKIE)
    if not cookie:
        raise Unauthorized("no login in progress in this browser", hint="start at /auth/oidc/login")
    try:
        flow = jwt.decode(cookie, svc.secret_key, algorithms=["HS256"], audience=_FLOW_AUDIENCE)
    except jwt.PyJWTError as exc:
        raise Unauthorized(f"the login flow cookie is invalid or expired ({exc})") from exc
    if flow.get("state") != state:
        raise Unauthorized("the login state does not match: possible CSRF, start again")
    start = LoginStart(
        url="", state=flow["state"], nonce=flow["nonce"], code_verifier=flow["verifier"]
    )
    return start, flow.get("next")
