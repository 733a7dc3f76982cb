from __future__ import annotations

from pathlib import Path

import pytest

from soma.tools import ToolContext, ToolRegistry, default_registry
from soma.tools.sandbox import BwrapSandbox, Sandbox, SubprocessSandbox, bwrap_works
from soma.workspace import AgentIdentity, Workspace

AGENT = AgentIdentity(persona="developer", capsule="implement-feature", run_id="r-1")


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    return Workspace.open(tmp_path / "workspaces", "proj")


@pytest.fixture(scope="session")
def registry() -> ToolRegistry:
    return default_registry()


@pytest.fixture(scope="session")
def bwrap_sandbox() -> Sandbox:
    if not bwrap_works():
        pytest.skip("bubblewrap is not usable here")
    return BwrapSandbox()


@pytest.fixture(scope="session")
def plain_sandbox() -> Sandbox:
    return SubprocessSandbox()


@pytest.fixture
def bwrap_ctx(workspace: Workspace, bwrap_sandbox: Sandbox) -> ToolContext:
    return ToolContext(workspace, bwrap_sandbox, AGENT, timeout_s=10, memory_mb=512)


@pytest.fixture
def plain_ctx(workspace: Workspace, plain_sandbox: Sandbox) -> ToolContext:
    return ToolContext(workspace, plain_sandbox, AGENT, timeout_s=10, memory_mb=512)


@pytest.fixture(params=["bwrap", "subprocess"])
def any_ctx(request: pytest.FixtureRequest, workspace: Workspace) -> ToolContext:
    """Both sandboxes, for the guarantees the subprocess fallback also gives."""
    if request.param == "bwrap":
        sandbox: Sandbox = request.getfixturevalue("bwrap_sandbox")
    else:
        sandbox = request.getfixturevalue("plain_sandbox")
    return ToolContext(workspace, sandbox, AGENT, timeout_s=10, memory_mb=512)
