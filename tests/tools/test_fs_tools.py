from __future__ import annotations

import os
from pathlib import Path

import pytest

from soma.tools import ToolContext, ToolRegistry


async def test_write_read_list(registry: ToolRegistry, plain_ctx: ToolContext) -> None:
    res = await registry.call("fs.write", {"path": "src/pkg/m.py", "content": "x = 1\n"}, plain_ctx)
    assert res.ok
    assert res.output == "wrote 6 bytes to src/pkg/m.py"
    assert (plain_ctx.workspace.path / "src/pkg/m.py").read_text() == "x = 1\n"
    read = await registry.call("fs.read", {"path": "src/pkg/m.py"}, plain_ctx)
    assert read.ok
    assert read.output == "x = 1\n"
    top = await registry.call("fs.list", {}, plain_ctx)
    assert top.output == "src/"
    deep = await registry.call("fs.list", {"path": ".", "recursive": True}, plain_ctx)
    assert deep.output.splitlines() == ["src/", "src/pkg/", "src/pkg/m.py"]


async def test_read_truncates(registry: ToolRegistry, plain_ctx: ToolContext) -> None:
    (plain_ctx.workspace.path / "big").write_text("a" * 100)
    res = await registry.call("fs.read", {"path": "big", "max_bytes": 10}, plain_ctx)
    assert res.ok
    assert res.output.startswith("a" * 10 + "\n[... truncated: showed 10 of 100")


async def test_read_missing(registry: ToolRegistry, plain_ctx: ToolContext) -> None:
    res = await registry.call("fs.read", {"path": "nope.txt"}, plain_ctx)
    assert not res.ok
    assert res.output == "error: nope.txt does not exist"


@pytest.mark.parametrize(
    "path", ["../x", "../../x", "/tmp/soma-escape", "a/../../x", ".git/config"]
)
async def test_write_outside_fails(
    registry: ToolRegistry, plain_ctx: ToolContext, path: str
) -> None:
    res = await registry.call("fs.write", {"path": path, "content": "pwned"}, plain_ctx)
    assert not res.ok
    assert res.output.startswith("error: ")
    assert not os.path.exists("/tmp/soma-escape")  # noqa: ASYNC240
    assert not (plain_ctx.workspace.path.parent / "x").exists()
    assert "pwned" not in (plain_ctx.workspace.path / ".git" / "config").read_text()


async def test_write_through_symlink_fails(
    registry: ToolRegistry, plain_ctx: ToolContext, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (plain_ctx.workspace.path / "out").symlink_to(outside)
    (plain_ctx.workspace.path / "file-link").symlink_to(outside / "target")
    for path in ("out/x", "file-link"):
        res = await registry.call("fs.write", {"path": path, "content": "pwned"}, plain_ctx)
        assert not res.ok
        assert "escapes the workspace" in res.output
    assert list(outside.iterdir()) == []
