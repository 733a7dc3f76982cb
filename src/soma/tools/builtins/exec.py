"""Tools that run code: always through ctx.sandbox, never on the host directly."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from soma.tools.base import ToolArgs, ToolContext, ToolResult, tool
from soma.tools.sandbox import SandboxResult


class ShellArgs(ToolArgs):
    command: str = Field(description="Shell command line, run with sh -c in the workspace root.")
    timeout_s: float | None = Field(
        default=None, gt=0, description="Wall-clock limit; capped by the agent's budget."
    )


class PythonArgs(ToolArgs):
    code: str = Field(description="Python 3 source to run in the workspace root.")
    timeout_s: float | None = Field(
        default=None, gt=0, description="Wall-clock limit; capped by the agent's budget."
    )


def _timeout(requested: float | None, ctx: ToolContext) -> float:
    return min(requested, ctx.timeout_s) if requested else ctx.timeout_s


def _render(result: SandboxResult) -> ToolResult:
    lines = [f"exit_code: {result.exit_code}"]
    if result.killed_reason:
        lines.append(f"killed: {result.killed_reason}")
    lines += ["stdout:", result.stdout.rstrip("\n"), "stderr:", result.stderr.rstrip("\n")]
    data: dict[str, Any] = {
        "exit_code": result.exit_code,
        "stdout": result.stdout,
        "stderr": result.stderr,
        "timed_out": result.timed_out,
        "killed_reason": result.killed_reason,
        "duration_s": result.duration_s,
    }
    ok = result.exit_code == 0 and not result.timed_out
    return ToolResult(ok=ok, output="\n".join(lines), data=data)


@tool("shell.exec", "Run a shell command in the sandboxed workspace (no network).", ShellArgs)
async def shell_exec(args: ShellArgs, ctx: ToolContext) -> ToolResult:
    result = await ctx.sandbox.run(
        ["sh", "-c", args.command],
        cwd=ctx.workspace.path,
        timeout_s=_timeout(args.timeout_s, ctx),
        memory_mb=ctx.memory_mb,
    )
    return _render(result)


@tool("python.run", "Run Python 3 code in the sandboxed workspace (no network).", PythonArgs)
async def python_run(args: PythonArgs, ctx: ToolContext) -> ToolResult:
    # The code goes in on stdin: argv strings are capped at 128 KiB by the kernel, and nothing
    # has to be written into the workspace. -I keeps PYTHON* variables and user site out.
    result = await ctx.sandbox.run(
        ["python3", "-I", "-"],
        cwd=ctx.workspace.path,
        timeout_s=_timeout(args.timeout_s, ctx),
        memory_mb=ctx.memory_mb,
        stdin=args.code.encode("utf-8"),
    )
    return _render(result)
