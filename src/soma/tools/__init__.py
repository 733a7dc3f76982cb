"""Tools agents call: the registry, the built-ins and the sandbox they run commands in."""

from soma.tools.base import FunctionTool, Tool, ToolArgs, ToolContext, ToolResult, tool
from soma.tools.registry import ToolRegistry
from soma.tools.sandbox import (
    BwrapSandbox,
    Sandbox,
    SandboxResult,
    SubprocessSandbox,
    make_sandbox,
)


def default_registry() -> ToolRegistry:
    """A fresh registry with the built-in tools (fresh so callers may add their own)."""
    from soma.tools.adapters import ADAPTER_TOOLS
    from soma.tools.builtins import BUILTIN_TOOLS
    from soma.tools.memory_tools import MEMORY_TOOLS

    return ToolRegistry([*BUILTIN_TOOLS, *MEMORY_TOOLS, *ADAPTER_TOOLS])


__all__ = [
    "BwrapSandbox",
    "FunctionTool",
    "Sandbox",
    "SandboxResult",
    "SubprocessSandbox",
    "Tool",
    "ToolArgs",
    "ToolContext",
    "ToolRegistry",
    "ToolResult",
    "default_registry",
    "make_sandbox",
    "tool",
]
