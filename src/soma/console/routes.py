"""The console's routes: its pages under one router (kept out of the API's OpenAPI document),
its static assets, and HTML rendering for errors raised on its pages."""

from __future__ import annotations

from fastapi import APIRouter, Depends, FastAPI
from fastapi.staticfiles import StaticFiles

from soma.console.access import mark_console
from soma.console.errors import render_error
from soma.console.pages import governance, login, market, projects, reviews
from soma.console.templating import STATIC

PAGES = (login, projects, reviews, market, governance)


def install_console(app: FastAPI) -> None:
    router = APIRouter(include_in_schema=False, dependencies=[Depends(mark_console)])
    for module in PAGES:
        router.include_router(module.router)
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.state.console_errors = render_error
