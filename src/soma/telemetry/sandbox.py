"""A sandbox wrapper that counts commands which did not end on their own.

A wrapper rather than counters inside each sandbox: every implementation (bubblewrap,
subprocess, a test double) gets the same accounting, and the sandboxes stay free of metrics.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from soma.errors import SandboxError
from soma.telemetry.metrics import record_sandbox_failure
from soma.tools.sandbox.base import Sandbox, SandboxResult


class MeteredSandbox:
    """Delegates to ``inner``; counts timeouts, limit kills and sandbox errors by reason."""

    def __init__(self, inner: Sandbox) -> None:
        self.inner = inner
        self.name = inner.name
        self.isolated = inner.isolated

    async def run(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        timeout_s: float,
        memory_mb: int,
        env: Mapping[str, str] | None = None,
        stdin: bytes | None = None,
    ) -> SandboxResult:
        try:
            result = await self.inner.run(
                argv, cwd=cwd, timeout_s=timeout_s, memory_mb=memory_mb, env=env, stdin=stdin
            )
        except SandboxError:
            record_sandbox_failure("error")
            raise
        reason = failure_reason(result)
        if reason is not None:
            record_sandbox_failure(reason)
        return result


def failure_reason(result: SandboxResult) -> str | None:
    """A bounded label for why a command was stopped, or None if it ended by itself (whatever
    its exit code: a failing test is the agent's business, not the sandbox's)."""
    if result.timed_out:
        return "timeout"
    killed = result.killed_reason
    if killed is None:
        return None
    if "memory" in killed:
        return "memory"
    if "CPU" in killed:
        return "cpu"
    if "file size" in killed:
        return "file_size"
    return "signal"
