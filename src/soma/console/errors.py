"""Errors on console pages, as pages: a login redirect for an anonymous browser, else the same
message the API would give (what went wrong, and the hint) in the console's own layout."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import RedirectResponse, Response

from soma.console.access import LoginRequired, login_url
from soma.console.templating import render
from soma.identity.principal import Principal


def render_error(request: Request, exc: Exception, status: int, message: str) -> Response:
    if isinstance(exc, LoginRequired):
        return RedirectResponse(login_url(exc.next_path), status_code=303)
    who = getattr(request.state, "principal", None)
    return render(
        request,
        "error.html",
        who if isinstance(who, Principal) else None,
        status_code=status,
        title=f"Error {status}",
        status=status,
        message=message,
    )
