"""The tools an agent can call, looked up by name and offered by pattern."""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Iterable
from typing import Any

from soma.errors import ToolError, UnknownTool, WorkspaceError
from soma.models.types import ToolSpec
from soma.tools.base import Tool, ToolContext, ToolResult
from soma.tools.validation import ArgsValidator


class ToolRegistry:
    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        self._validators: dict[str, ArgsValidator] = {}
        for item in tools:
            self.register(item)

    def register(self, tool: Tool) -> None:
        name = tool.spec.name
        if name in self._tools:
            raise ToolError(f"tool {name!r} is already registered")
        self._validators[name] = ArgsValidator(name, tool.spec.parameters)
        self._tools[name] = tool

    def get(self, name: str) -> Tool:
        try:
            return self._tools[name]
        except KeyError:
            close = difflib.get_close_matches(name, self._tools, n=3, cutoff=0.5)
            hint = f"did you mean {', '.join(close)}?" if close else None
            raise UnknownTool(f"unknown tool {name!r}", hint=hint) from None

    def names(self) -> list[str]:
        return sorted(self._tools)

    def is_quick(self, name: str) -> bool:
        """Whether the tool declared itself quick (in-process, milliseconds); see ``tool``."""
        return bool(getattr(self._tools.get(name), "quick", False))

    def specs(self, patterns: Iterable[str] = ("*",)) -> list[ToolSpec]:
        """Specs of tools matching any fnmatch pattern (``fs.*``), in name order."""
        pats = list(patterns)
        return [
            self._tools[name].spec
            for name in self.names()
            if any(fnmatch.fnmatchcase(name, pat) for pat in pats)
        ]

    def validate(self, name: str, args: Any) -> None:
        """Raise UnknownTool or ToolError (naming the field) if the call is malformed."""
        self.get(name)
        self._validators[name].validate(args)

    async def call(self, name: str, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        """Validate and run a tool call; anything the agent could fix comes back as ok=False.

        That covers unknown tools, invalid arguments and Tool/Sandbox/Workspace errors raised by
        the tool: the agent reads ``error: ...`` and adapts. Other exceptions are bugs and
        propagate.
        """
        try:
            self.validate(name, args)
            return await self._tools[name](args, ctx)
        except (ToolError, WorkspaceError) as exc:  # SandboxError and UnknownTool included
            return ToolResult(
                ok=False,
                output=f"error: {exc}",
                data={"error": type(exc).__name__, "message": exc.message},
            )

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __len__(self) -> int:
        return len(self._tools)
