"""The agents' side: memory.search and memory.remember through the tool registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from soma.errors import ToolError
from soma.memory.gateway import Memory
from soma.tools import default_registry
from soma.tools.base import ToolContext
from soma.tools.sandbox import make_sandbox
from soma.workspace import AgentIdentity, Workspace


def _context(tmp_path: Path, memory: Memory | None, tenant: str = "acme") -> ToolContext:
    return ToolContext(
        workspace=Workspace.open(tmp_path / "ws", "p1"),
        sandbox=make_sandbox("subprocess"),
        agent=AgentIdentity(persona="developer", capsule="implement-feature", run_id="r1"),
        tenant_id=tenant,
        memory=memory,
        project_id="p1",
    )


async def test_an_agent_remembers_and_finds_it_again(memory: Memory, tmp_path: Path) -> None:
    registry = default_registry()
    ctx = _context(tmp_path, memory)
    remember = registry.get("memory.remember")
    search = registry.get("memory.search")
    kept = await remember({"text": "The CLI entry point is todo/__main__.py"}, ctx)
    assert kept.ok, kept.output
    found = await search({"query": "where does the command line program start"}, ctx)
    assert found.ok
    assert "todo/__main__.py" in found.output
    assert "<untrusted" in found.output, "memory comes back as data, not instructions"

    refused = await remember({"text": "token = ghp_" + "a" * 36}, ctx)
    assert not refused.ok
    assert "deny-secrets-in-memory" in refused.output

    other = await search({"query": "entry point"}, _context(tmp_path, memory, tenant="globex"))
    assert other.output == "nothing remembered matches"


async def test_without_memory_the_tools_say_so(tmp_path: Path) -> None:
    with pytest.raises(ToolError, match="memory is not available"):
        await default_registry().get("memory.search")({"query": "x"}, _context(tmp_path, None))
