from __future__ import annotations

from typing import Any

import pytest
from pydantic import Field

from soma.errors import ToolError, UnknownTool, WorkspaceError
from soma.specs.library import Library
from soma.tools import ToolArgs, ToolContext, ToolRegistry, ToolResult, default_registry, tool


class EchoArgs(ToolArgs):
    text: str
    times: int = Field(default=1, ge=1, le=5)
    tags: list[str] = Field(default_factory=list)


@tool("test.echo", "Echo text.", EchoArgs)
async def echo(args: EchoArgs, ctx: ToolContext) -> ToolResult:
    return ToolResult(ok=True, output=args.text * args.times)


class NoArgs(ToolArgs):
    pass


@tool("test.ws_fail", "Raise a workspace error.", NoArgs)
async def ws_fail(args: NoArgs, ctx: ToolContext) -> ToolResult:
    raise WorkspaceError("path 'x' escapes the workspace")


@tool("test.bug", "Raise a bug.", NoArgs)
async def bug(args: NoArgs, ctx: ToolContext) -> ToolResult:
    raise RuntimeError("a bug")


@pytest.fixture
def reg() -> ToolRegistry:
    return ToolRegistry([echo, ws_fail, bug])


def test_builtin_names() -> None:
    names = default_registry().names()
    assert [n for n in names if n.split(".")[0] in {"fs", "python", "shell"} or n in CORE_GIT] == [
        "fs.list",
        "fs.read",
        "fs.write",
        "git.commit",
        "git.diff",
        "git.log",
        "git.status",
        "python.run",
        "shell.exec",
    ]


CORE_GIT = {"git.commit", "git.diff", "git.log", "git.status"}


def test_adapters_are_registered_but_offered_only_when_granted() -> None:
    names = default_registry().names()
    for adapter in ("git.push", "github.merge_pr", "slack.request_approval", "aws.s3_put_object"):
        assert adapter in names
    assert "http.fetch" in names
    assert not any(
        grant.name.split(".")[0] in {"github", "slack", "aws", "http"} or grant.name == "git.push"
        for capsule in Library.builtin().capsules()
        for grant in capsule.tools
    ), "built-in capsules must not silently gain network tools"


def test_specs_by_pattern() -> None:
    reg = default_registry()
    assert [s.name for s in reg.specs(["fs.*"])] == ["fs.list", "fs.read", "fs.write"]
    assert [s.name for s in reg.specs(["git.diff", "python.*"])] == ["git.diff", "python.run"]
    assert reg.specs([]) == []


def test_spec_schema_from_model() -> None:
    schema = echo.spec.parameters
    assert schema["required"] == ["text"]
    assert schema["properties"]["times"]["maximum"] == 5
    assert schema["additionalProperties"] is False
    assert "title" not in schema
    assert "title" not in schema["properties"]["text"]


def test_unknown_tool_suggests(reg: ToolRegistry) -> None:
    with pytest.raises(UnknownTool, match=r"did you mean test\.echo"):
        reg.get("test.ecco")


def test_duplicate_registration(reg: ToolRegistry) -> None:
    with pytest.raises(ToolError, match="already registered"):
        reg.register(echo)


@pytest.mark.parametrize(
    ("args", "field", "problem"),
    [
        ({}, "<arguments>", "'text' is a required property"),
        ({"text": 3}, "text", "is not of type 'string'"),
        ({"text": "a", "times": 9}, "times", "greater than the maximum"),
        ({"text": "a", "tags": ["ok", 1]}, "tags.1", "is not of type 'string'"),
        ({"text": "a", "colour": "red"}, "<arguments>", "'colour' was unexpected"),
    ],
)
def test_validation_names_field(
    reg: ToolRegistry, args: dict[str, Any], field: str, problem: str
) -> None:
    with pytest.raises(ToolError) as info:
        reg.validate("test.echo", args)
    assert f"at {field}:" in str(info.value)
    assert problem in str(info.value)


async def test_call_returns_errors_to_agent(reg: ToolRegistry, any_ctx: ToolContext) -> None:
    bad = await reg.call("test.echo", {"text": "a", "times": 0}, any_ctx)
    assert not bad.ok
    assert bad.output.startswith("error: invalid arguments for test.echo: at times")
    unknown = await reg.call("nope", {}, any_ctx)
    assert not unknown.ok
    assert "unknown tool 'nope'" in unknown.output
    ws = await reg.call("test.ws_fail", {}, any_ctx)
    assert not ws.ok
    assert ws.output == "error: path 'x' escapes the workspace"
    assert ws.data == {"error": "WorkspaceError", "message": "path 'x' escapes the workspace"}
    good = await reg.call("test.echo", {"text": "ab", "times": 2}, any_ctx)
    assert good.ok
    assert good.output == "abab"


async def test_bugs_propagate(reg: ToolRegistry, any_ctx: ToolContext) -> None:
    with pytest.raises(RuntimeError, match="a bug"):
        await reg.call("test.bug", {}, any_ctx)
