"""Where a spec came from: its file and the line of every key, so any later check can point there.

Shared by the loader (schema errors) and plan validation (graph errors), which runs after loading.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from soma.errors import SpecError
from soma.specs.models import Spec

DocPath = tuple[Any, ...]


def format_path(path: Sequence[Any]) -> str | None:
    """Render ``('tools', 2, 'name')`` as ``tools[2].name``, the form editors and users expect."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or None


@dataclass(frozen=True)
class SourceMap:
    """Where each mapping key and sequence item of one document sits in its file."""

    file: str | None
    lines: Mapping[DocPath, int] = field(default_factory=dict)

    def line_of(self, path: Sequence[Any]) -> int | None:
        """Line of ``path``, or of its nearest recorded parent when the field itself is absent."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(tuple(path[:end]))
            if line is not None:
                return line
        return None

    def error(
        self, message: str, path: Sequence[Any] = (), *, hint: str | None = None
    ) -> SpecError:
        return SpecError(
            message, file=self.file, line=self.line_of(path), field=format_path(path), hint=hint
        )


# --- origins ------------------------------------------------------------------------------------

_ORIGINS: dict[int, SourceMap] = {}


def remember(spec: Spec, where: SourceMap) -> None:
    """Keep the source map of a loaded spec so later checks (plans) can point at lines too."""
    if id(spec) not in _ORIGINS:
        _ORIGINS[id(spec)] = where
        weakref.finalize(spec, _ORIGINS.pop, id(spec), None)


def origin_of(spec: Spec) -> SourceMap | None:
    """The file and line table a spec was loaded from, or None for specs built in code."""
    return _ORIGINS.get(id(spec))
