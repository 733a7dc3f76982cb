"""History tools. The author always comes from ctx.agent, never from the arguments."""

from __future__ import annotations

import asyncio

from pydantic import Field

from soma.tools.base import ToolArgs, ToolContext, ToolResult, tool
from soma.tools.sandbox import OUTPUT_LIMIT_BYTES


class CommitArgs(ToolArgs):
    message: str = Field(min_length=1, description="Commit message: what changed and why.")


class DiffArgs(ToolArgs):
    rev: str | None = Field(
        default=None, description="Compare the working tree against this revision (default HEAD)."
    )


class LogArgs(ToolArgs):
    n: int = Field(default=10, ge=1, le=200, description="How many commits, newest first.")


class StatusArgs(ToolArgs):
    pass


@tool(
    "git.commit",
    "Commit every change in the workspace, with you as the author.",
    CommitArgs,
    quick=True,
)
async def git_commit(args: CommitArgs, ctx: ToolContext) -> ToolResult:
    sha = await asyncio.to_thread(ctx.workspace.commit, args.message, ctx.agent)
    assert sha is not None  # allow_empty=True always commits
    return ToolResult(
        ok=True,
        output=f"committed {sha[:12]} as {ctx.agent.git_name} <{ctx.agent.git_email}>",
        data={"sha": sha},
    )


@tool(
    "git.diff",
    "Show changes in the workspace (new files included) since a revision, default the last commit.",
    DiffArgs,
    quick=True,
)
async def git_diff(args: DiffArgs, ctx: ToolContext) -> ToolResult:
    diff = await asyncio.to_thread(ctx.workspace.diff, args.rev)
    output = diff or "(no changes)"
    if len(output) > OUTPUT_LIMIT_BYTES:
        output = output[:OUTPUT_LIMIT_BYTES] + "\n[... diff truncated ...]"
    return ToolResult(ok=True, output=output, data={"bytes": len(diff)})


@tool("git.log", "List the latest commits: sha, author and message.", LogArgs, quick=True)
async def git_log(args: LogArgs, ctx: ToolContext) -> ToolResult:
    commits = await asyncio.to_thread(ctx.workspace.log, args.n)
    lines = [
        f"{c.sha[:12]} {c.author_name} <{c.author_email}>: {c.message.splitlines()[0]}"
        for c in commits
    ]
    return ToolResult(ok=True, output="\n".join(lines), data={"count": len(commits)})


@tool("git.status", "Show which files changed since the last commit.", StatusArgs, quick=True)
async def git_status(args: StatusArgs, ctx: ToolContext) -> ToolResult:
    status = await asyncio.to_thread(ctx.workspace.status)
    return ToolResult(ok=True, output=status or "(clean)", data={"clean": not status.strip()})
