"""The tool contract: what a tool gets (context, validated arguments) and gives back (result)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, ConfigDict, ValidationError

from soma.errors import ToolError
from soma.models.types import ToolSpec
from soma.tools.sandbox import Sandbox
from soma.workspace import AgentIdentity, Workspace

if TYPE_CHECKING:  # memory depends on the constitution and the store; tools only hold it
    from soma.memory.gateway import Memory


class SecretReader(Protocol):
    """A tenant's secrets as adapters read them (credentials): by name, None when unset.

    Values never go into a ``ToolResult``'s output or data; adapters mask them if an upstream
    echoes them back."""

    def get(self, name: str) -> str | None: ...


@dataclass
class ToolContext:
    """Everything a tool may touch for one agent: its project, its sandbox, its identity, and
    its tenant's secrets (for adapters that call external services)."""

    workspace: Workspace
    sandbox: Sandbox
    agent: AgentIdentity
    timeout_s: float = 60.0
    memory_mb: int = 1024
    tenant_id: str = "default"
    secrets: SecretReader | None = None
    memory: Memory | None = None
    """The memory gateway, for ``memory.*`` tools; None where the process has none."""
    project_id: str | None = None


class ToolResult(BaseModel):
    """``output`` is exactly what the model sees; ``data`` is for programs (UI, traces, tests)."""

    ok: bool
    output: str
    data: dict[str, Any] | None = None


@runtime_checkable
class Tool(Protocol):
    spec: ToolSpec

    async def __call__(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult: ...


class ToolArgs(BaseModel):
    """Base for argument models: unknown arguments are errors, so typos reach the agent."""

    model_config = ConfigDict(extra="forbid")


ArgsT = TypeVar("ArgsT", bound=BaseModel)
ToolFn = Callable[[ArgsT, ToolContext], Awaitable[ToolResult]]


def _strip_titles(schema: Any) -> Any:
    """Drop pydantic's generated ``title`` keys: tokens the model pays for and never needs."""
    if isinstance(schema, list):
        return [_strip_titles(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "title":
            continue
        if key in {"properties", "$defs"} and isinstance(value, dict):
            out[key] = {name: _strip_titles(sub) for name, sub in value.items()}
        else:
            out[key] = _strip_titles(value)
    return out


class FunctionTool(Generic[ArgsT]):
    """A tool made of an async function and a pydantic model that types its arguments."""

    def __init__(
        self,
        name: str,
        description: str,
        args_model: type[ArgsT],
        fn: ToolFn[ArgsT],
        *,
        quick: bool = False,
    ):
        self.args_model = args_model
        self.fn = fn
        self.quick = quick
        self.spec = ToolSpec(
            name=name,
            description=description,
            parameters=_strip_titles(args_model.model_json_schema()),
        )

    async def __call__(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        try:
            parsed = self.args_model.model_validate(args)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "<root>"
            msg = f"invalid arguments for {self.spec.name}: {where}: {first['msg']}"
            raise ToolError(msg) from None
        return await self.fn(parsed, ctx)

    def __repr__(self) -> str:
        return f"FunctionTool({self.spec.name!r})"


def tool(
    name: str, description: str, args_model: type[ArgsT], *, quick: bool = False
) -> Callable[[ToolFn[ArgsT]], FunctionTool[ArgsT]]:
    """Decorator: ``@tool("fs.read", "Read a file", ReadArgs)`` on ``async def f(args, ctx)``.

    ``quick`` tools finish in milliseconds in-process (file and git reads and writes); the
    orchestrator runs them as local activities. Anything that may run long, or runs a process,
    keeps the default so it heartbeats and can move to another worker when one dies.
    """

    def wrap(fn: ToolFn[ArgsT]) -> FunctionTool[ArgsT]:
        return FunctionTool(name, description, args_model, fn, quick=quick)

    return wrap
