"""Rendering console pages: one Jinja environment, autoescaped, with the page's common context
(who is signed in, their CSRF token, what the navigation may offer them)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from soma import __version__
from soma.gateway.auth import SESSION_COOKIE, services
from soma.gateway.csrf import csrf_token
from soma.identity.permissions import Permission
from soma.identity.principal import Principal

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"

# Pages load only their own stylesheet and script, talk only to this gateway, post only here.
PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)

NAV: tuple[tuple[str, str, Permission], ...] = (
    ("/projects", "Projects", Permission.PROJECTS_READ),
    ("/reviews", "Reviews", Permission.REVIEWS_READ),
    ("/market", "Marketplace", Permission.LIBRARY_READ),
    ("/audit", "Audit", Permission.AUDIT_READ),
    ("/usage", "Usage", Permission.USAGE_READ),
)


def _when(value: datetime | None) -> str:
    if value is None:
        return "—"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _tokens(value: int | None) -> str:
    return f"{value or 0:,}"


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)


@cache
def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(when=_when, tokens=_tokens, pretty=_pretty)
    env.globals.update(version=__version__)
    return env


def render(
    request: Request,
    template: str,
    who: Principal | None = None,
    *,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    session = request.cookies.get(SESSION_COOKIE)
    csrf = csrf_token(services(request).secret_key, session) if session and who else ""
    nav = [(href, label) for href, label, needed in NAV if who is not None and who.can(needed)]
    html = (
        environment()
        .get_template(template)
        .render(request=request, who=who, csrf=csrf, nav=nav, path=request.url.path, **context)
    )
    return HTMLResponse(
        html, status_code=status_code, headers={"content-security-policy": PAGE_POLICY}
    )
