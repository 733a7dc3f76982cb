"""A tenant's MCP server, configured as a secret, becomes tools its capsules can grant."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from soma.identity.secret import load_secret_key
from soma.models.function import FunctionModel
from soma.models.types import Message, ModelRequest, ToolCall
from soma.secrets import Vault
from soma.specs.models import Plan, PlanNode

from .conftest import Harness
from .test_governance import start

pytestmark = pytest.mark.slow

SERVER = str(Path(__file__).parents[1] / "tools" / "mcp_echo_server.py")
CAPSULE = """\
kind: capsule
name: shout
version: 1.0.0
description: Ask the tenant's echo server to repeat a word.
persona: developer
tools: [mcp.echo.echo]
inputs: {type: object, properties: {word: {type: string}}, required: [word]}
outputs: {type: object, properties: {said: {type: string}}, required: [said]}
instructions: Have {{ word }} echoed three times.
"""
PERSONA_WITH_MCP = """\
kind: persona
name: developer
version: 1.0.1
role: software developer
goal: Use the tools at hand.
tools: ["mcp.*"]
"""


async def test_a_tenants_mcp_server_serves_its_capsules(harness: Harness) -> None:
    library = harness.settings.home / "library"
    (library / "capsules" / "shout").mkdir(parents=True)
    (library / "capsules" / "shout" / "capsule.yaml").write_text(CAPSULE)
    (library / "personas").mkdir()
    (library / "personas" / "developer.yaml").write_text(PERSONA_WITH_MCP)
    config = {"transport": "stdio", "command": [sys.executable, SERVER]}
    Vault(harness.store, load_secret_key(harness.settings)).set(
        "default", "mcp.echo", json.dumps(config), actor="test"
    )
    seen: list[ModelRequest] = []

    def reply(request: ModelRequest) -> Message:
        seen.append(request)
        if not any(m.role == "tool" for m in request.messages):
            assert [t.name for t in request.tools] == ["mcp.echo.echo"]
            call = ToolCall(id="c1", name="mcp.echo.echo", arguments={"text": "hey", "times": 3})
            return Message.assistant(tool_calls=[call])
        return Message.assistant(json.dumps({"said": "done"}))

    harness.models["m"] = FunctionModel(reply)
    plan = Plan(goal="shout", nodes=[PlanNode(id="s", capsule="shout", inputs={"word": "hey"})])
    _, result = await start(harness, plan)
    final = await asyncio.wait_for(result, timeout=90)

    assert final.status == "succeeded", final.error
    answers = [m.content or "" for r in seen for m in r.messages if m.role == "tool"]
    assert any("heyheyhey" in a or "hey hey hey" in a for a in answers), answers
