"""What every sandbox promises, so tools can run commands without knowing how they are confined."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

# Agents read command output through a model context window, so more than this is waste; the
# head and the tail are kept because errors tend to be at the end and context at the start.
OUTPUT_LIMIT_BYTES = 64 * 1024


@dataclass(frozen=True)
class SandboxResult:
    """How a sandboxed command ended.

    ``exit_code`` follows the shell convention: 128+N when killed by signal N. ``killed_reason``
    is set when the command did not end on its own (timeout, signal), in words for the agent.
    """

    exit_code: int
    stdout: str
    stderr: str
    timed_out: bool
    killed_reason: str | None
    duration_s: float


@runtime_checkable
class Sandbox(Protocol):
    """Runs one command confined to a workspace with a wall-clock and memory budget."""

    name: str
    isolated: bool
    """True when the command cannot reach the network or write outside the workspace."""

    async def run(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        timeout_s: float,
        memory_mb: int,
        env: Mapping[str, str] | None = None,
        stdin: bytes | None = None,
    ) -> SandboxResult: ...
