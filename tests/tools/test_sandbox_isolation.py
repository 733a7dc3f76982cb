"""What only bubblewrap guarantees: no writes outside the workspace, no network, no fork bombs."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from soma.tools import ToolContext, ToolRegistry
from soma.tools.sandbox import bwrap_works
from soma.tools.sandbox.cgroup import pids_cgroup_parent

needs_bwrap = pytest.mark.skipif(not bwrap_works(), reason="bubblewrap is not usable here")
pytestmark = [needs_bwrap, pytest.mark.timeout(60)]


@pytest.mark.parametrize(
    ("command", "host_path"),
    [
        ("echo x > /tmp/../root/soma-escape", "/root/soma-escape"),
        ("touch /usr/soma-escape", "/usr/soma-escape"),
        ("touch $HOME/../soma-escape", "/soma-escape"),
        ("touch /soma-escape", "/soma-escape"),
        ("ln -s / root && touch root/soma-escape", "/soma-escape"),
        ("touch /etc/soma-escape", "/etc/soma-escape"),
    ],
)
async def test_shell_cannot_write_outside(
    registry: ToolRegistry, bwrap_ctx: ToolContext, command: str, host_path: str
) -> None:
    res = await registry.call("shell.exec", {"command": command}, bwrap_ctx)
    assert not res.ok, res.output
    assert not os.path.lexists(host_path)  # noqa: ASYNC240
    assert not (bwrap_ctx.workspace.path.parent / "soma-escape").exists()


async def test_shell_writes_workspace_and_private_tmp(
    registry: ToolRegistry, bwrap_ctx: ToolContext, tmp_path: Path
) -> None:
    marker = f"soma-tmp-{os.getpid()}"
    res = await registry.call(
        "shell.exec", {"command": f"echo hi > out.txt && touch /tmp/{marker} && pwd"}, bwrap_ctx
    )
    assert res.ok
    assert "/workspace" in res.output
    assert (bwrap_ctx.workspace.path / "out.txt").read_text() == "hi\n"
    assert not (Path("/tmp") / marker).exists()


async def test_git_dir_is_read_only(registry: ToolRegistry, bwrap_ctx: ToolContext) -> None:
    config = bwrap_ctx.workspace.path / ".git" / "config"
    before = config.read_text()
    cmd = "printf '[core]\\n\\tfsmonitor = touch /tmp/pwned\\n' >> .git/config"
    res = await registry.call("shell.exec", {"command": cmd}, bwrap_ctx)
    assert not res.ok
    assert "Read-only file system" in res.output
    assert config.read_text() == before


async def test_host_home_and_secrets_not_mounted(
    registry: ToolRegistry, bwrap_ctx: ToolContext
) -> None:
    cmd = (
        "ls /root /home 2>&1; cat /etc/shadow 2>&1; "
        "cat /proc/*/environ 2>/dev/null | tr '\\0' '\\n'"
    )
    os.environ["SOMA_TEST_SECRET"] = "sk-proc-secret"
    try:
        res = await registry.call("shell.exec", {"command": cmd}, bwrap_ctx)
    finally:
        del os.environ["SOMA_TEST_SECRET"]
    assert "No such file" in res.output
    assert "sk-proc-secret" not in res.output
    assert "root:" not in res.output


@pytest.fixture
def host_listener() -> Iterator[tuple[socket.socket, int]]:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.setblocking(False)
    yield server, server.getsockname()[1]
    server.close()


async def test_no_network_even_to_host_loopback(
    registry: ToolRegistry, bwrap_ctx: ToolContext, host_listener: tuple[socket.socket, int]
) -> None:
    server, port = host_listener
    code = f"""
import socket
try:
    socket.create_connection(("127.0.0.1", {port}), timeout=2)
    print("CONNECTED")
except OSError as exc:
    print("BLOCKED", exc)
"""
    res = await registry.call("python.run", {"code": code}, bwrap_ctx)
    assert res.ok
    assert res.data is not None
    assert res.data["stdout"].startswith("BLOCKED"), res.output
    with pytest.raises(BlockingIOError):
        server.accept()


async def test_no_dns(registry: ToolRegistry, bwrap_ctx: ToolContext) -> None:
    code = """
import socket
for host in ("example.com", "pypi.org"):
    try:
        socket.getaddrinfo(host, 443)
        print("RESOLVED", host)
    except OSError as exc:
        print("FAILED", host)
"""
    res = await registry.call("python.run", {"code": code}, bwrap_ctx)
    assert res.data is not None
    assert "RESOLVED" not in res.data["stdout"]
    ifaces = await registry.call("shell.exec", {"command": "cat /proc/net/dev"}, bwrap_ctx)
    assert ifaces.data is not None
    lines = ifaces.data["stdout"].splitlines()
    assert [ln.split(":")[0].strip() for ln in lines if ":" in ln] == ["lo"]


@pytest.mark.skipif(
    os.geteuid() == 0 and pids_cgroup_parent() is None,
    reason="as root without a pids cgroup only the timeout stops a fork bomb; unsafe to run here",
)
async def test_fork_bomb_is_stopped(registry: ToolRegistry, bwrap_ctx: ToolContext) -> None:
    start = time.monotonic()
    res = await registry.call(
        "shell.exec", {"command": "f() { f | f & }; f; sleep 30", "timeout_s": 3}, bwrap_ctx
    )
    elapsed = time.monotonic() - start
    assert not res.ok
    assert res.data is not None
    assert res.data["timed_out"]
    assert elapsed < 10
    # The host can still fork, and nothing from the bomb survives.
    assert await asyncio.to_thread(_host_can_fork)
    await asyncio.sleep(0.2)
    assert await asyncio.to_thread(_bomb_processes) == []


def _host_can_fork() -> bool:
    return subprocess.run(["true"], check=False).returncode == 0


def _bomb_processes() -> list[Path]:
    procs = (p for p in Path("/proc").iterdir() if p.name.isdigit())
    return [p for p in procs if _cmdline(p).startswith("sh -c f()")]


def _cmdline(proc_dir: Path) -> str:
    try:
        return (proc_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""
