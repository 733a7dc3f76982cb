"""What every command module shares: consoles, error display and the library."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from soma.errors import SomaError
from soma.settings import Settings
from soma.specs.library import Library

P = ParamSpec("P")
R = TypeVar("R")

console = Console()
err_console = Console(stderr=True)


def friendly_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Show a SomaError as one clear message and exit 2, never as a traceback."""

    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except SomaError as exc:
            err_console.print(f"[red]error:[/] {escape(str(exc))}")
            raise typer.Exit(2) from exc

    return wrapper


def load_library(settings: Settings) -> Library:
    """The built-in library plus the user's own specs under ``$SOMA_HOME/library``."""
    extra = settings.home / "library"
    return Library.from_dirs(extra, builtin=True) if extra.is_dir() else Library.builtin()
