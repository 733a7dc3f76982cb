"""What both sandboxes guarantee: time, memory, output and environment limits."""

from __future__ import annotations

import time

import pytest

from soma.tools import ToolContext, ToolRegistry

pytestmark = pytest.mark.timeout(60)


async def test_shell_exec_output(registry: ToolRegistry, any_ctx: ToolContext) -> None:
    res = await registry.call("shell.exec", {"command": "echo out; echo err >&2; exit 3"}, any_ctx)
    assert not res.ok
    assert res.output == "exit_code: 3\nstdout:\nout\nstderr:\nerr"
    assert res.data is not None
    assert res.data["exit_code"] == 3


async def test_python_run_in_workspace(registry: ToolRegistry, any_ctx: ToolContext) -> None:
    code = "import os, sys\nopen('made.txt', 'w').write('yes')\nprint(sys.version_info[0])"
    res = await registry.call("python.run", {"code": code}, any_ctx)
    assert res.ok, res.output
    assert res.data is not None
    assert res.data["stdout"] == "3\n"
    assert (any_ctx.workspace.path / "made.txt").read_text() == "yes"


async def test_infinite_loop_times_out(registry: ToolRegistry, any_ctx: ToolContext) -> None:
    start = time.monotonic()
    res = await registry.call("python.run", {"code": "while True: pass", "timeout_s": 1}, any_ctx)
    assert time.monotonic() - start < 4
    assert not res.ok
    assert res.data is not None
    assert res.data["timed_out"] is True
    assert res.data["killed_reason"].startswith("timeout")
    assert "killed: timeout" in res.output


async def test_memory_hog_is_stopped(registry: ToolRegistry, any_ctx: ToolContext) -> None:
    any_ctx.memory_mb = 256
    start = time.monotonic()
    big = await registry.call("python.run", {"code": "b = bytearray(4 * 1024**3)"}, any_ctx)
    assert not big.ok
    assert "MemoryError" in big.output
    grow = "x = []\nwhile True:\n    x.append(bytearray(10**7))"
    res = await registry.call("python.run", {"code": grow}, any_ctx)
    assert not res.ok
    assert res.data is not None
    assert not res.data["timed_out"]
    assert time.monotonic() - start < 8


async def test_host_secrets_not_visible(
    registry: ToolRegistry, any_ctx: ToolContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOMA_OPENAI_API_KEY", "sk-secret")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret")
    res = await registry.call("shell.exec", {"command": "env"}, any_ctx)
    assert res.ok
    assert "sk-secret" not in res.output
    assert "aws-secret" not in res.output
    assert "SOMA_" not in res.output
    env = dict(line.split("=", 1) for line in res.output.split("\n")[2:-1] if "=" in line)
    assert env["HOME"] in {"/workspace", str(any_ctx.workspace.path)}


async def test_output_is_truncated(registry: ToolRegistry, any_ctx: ToolContext) -> None:
    cmd = "head -c 5000000 /dev/zero | tr '\\0' a; echo END"
    res = await registry.call("shell.exec", {"command": cmd}, any_ctx)
    assert res.ok
    assert res.data is not None
    stdout = res.data["stdout"]
    assert len(stdout) < 70_000
    assert "bytes truncated" in stdout
    assert stdout.endswith("END\n")


async def test_background_children_do_not_outlive_call(
    registry: ToolRegistry, any_ctx: ToolContext
) -> None:
    start = time.monotonic()
    res = await registry.call("shell.exec", {"command": "sleep 30 & echo started"}, any_ctx)
    assert res.ok
    assert "started" in res.output
    assert time.monotonic() - start < 3


async def test_stdin_large_code(registry: ToolRegistry, any_ctx: ToolContext) -> None:
    code = "x = 0\n" + "x += 1\n" * 40_000 + "print(x)"  # > 128 KiB, the argv string limit
    res = await registry.call("python.run", {"code": code}, any_ctx)
    assert res.ok
    assert res.data is not None
    assert res.data["stdout"] == "40000\n"
