"""``memory.search`` and ``memory.remember``: an agent reads and adds to its tenant's memory.

Reads are scoped to what the run may see (its project, capsule, persona and the tenant's shared
notes) and come back as untrusted data; writes go through the memory gateway, so the
constitution judges them (no credentials are ever kept) and the audit log records them.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Literal

from pydantic import Field

from soma.agents.untrusted import wrap_untrusted
from soma.constitution import Subject
from soma.errors import ToolError
from soma.memory.gateway import Memory, MemoryDenied
from soma.memory.types import (
    TENANT_SCOPE,
    capsule_scope,
    persona_scope,
    project_scope,
)
from soma.tools.base import Tool, ToolArgs, ToolContext, ToolResult, tool

SearchScope = Literal["all", "project", "capsule", "persona", "tenant"]


class SearchArgs(ToolArgs):
    query: str = Field(min_length=1, max_length=2000, description="What to look for.")
    scope: SearchScope = Field(
        default="all",
        description="project, capsule, persona, tenant (shared notes), or all of them.",
    )
    limit: int = Field(default=5, ge=1, le=10)


class RememberArgs(ToolArgs):
    text: str = Field(min_length=1, max_length=4000, description="The note to keep.")
    scope: Literal["project", "tenant"] = Field(
        default="project", description="project: this project only; tenant: every project."
    )


def _memory(ctx: ToolContext) -> Memory:
    if ctx.memory is None:
        raise ToolError("memory is not available here", hint="memory tools run in a worker")
    return ctx.memory


def _scopes(ctx: ToolContext, scope: SearchScope) -> list[str]:
    by_name = {
        "capsule": capsule_scope(ctx.agent.capsule or "unknown"),
        "persona": persona_scope(ctx.agent.persona),
        "tenant": TENANT_SCOPE,
    }
    if ctx.project_id:
        by_name["project"] = project_scope(ctx.project_id)
    if scope == "all":
        return list(by_name.values())
    if scope not in by_name:
        raise ToolError("this run belongs to no project", hint="search another scope")
    return [by_name[scope]]


@tool(
    "memory.search",
    "Search what earlier runs and teammates remembered (notes, facts, lessons), by meaning.",
    SearchArgs,
    quick=True,
)
async def memory_search(args: SearchArgs, ctx: ToolContext) -> ToolResult:
    memory = _memory(ctx)
    hits = await asyncio.to_thread(
        memory.search, ctx.tenant_id, args.query, scopes=_scopes(ctx, args.scope), limit=args.limit
    )
    if not hits:
        return ToolResult(ok=True, output="nothing remembered matches", data={"hits": []})
    lines = [f"{n}. [{h.item.kind}, {h.score:.2f}] {h.item.text}" for n, h in enumerate(hits, 1)]
    return ToolResult(
        ok=True,
        output=wrap_untrusted("memory", "\n".join(lines)),
        data={"hits": [{"id": h.item.id, "score": h.score} for h in hits]},
    )


@tool(
    "memory.remember",
    "Keep a note for later runs (this project's, or the whole tenant's). Never credentials.",
    RememberArgs,
    quick=True,
)
async def memory_remember(args: RememberArgs, ctx: ToolContext) -> ToolResult:
    memory = _memory(ctx)
    if args.scope == "project" and not ctx.project_id:
        raise ToolError("this run belongs to no project", hint="use scope tenant")
    scope = (
        project_scope(ctx.project_id)
        if args.scope == "project" and ctx.project_id
        else (TENANT_SCOPE)
    )
    digest = hashlib.sha256(args.text.encode()).hexdigest()[:16]
    subject = Subject(persona=ctx.agent.persona, capsule=ctx.agent.capsule, tenant=ctx.tenant_id)
    try:
        item = await asyncio.to_thread(
            lambda: memory.remember(
                ctx.tenant_id,
                args.text,
                key=f"{ctx.project_id}/{ctx.agent.run_id}/{digest}",
                scope=scope,
                subject=subject,
                project_id=ctx.project_id,
            )
        )
    except MemoryDenied as exc:
        return ToolResult(ok=False, output=str(exc))
    return ToolResult(ok=True, output=f"remembered ({item.scope})", data={"id": item.id})


MEMORY_TOOLS: tuple[Tool, ...] = (memory_search, memory_remember)
