"""The fallback when bubblewrap is unavailable: limits without isolation.

It still bounds time, memory, processes and output, scrubs the environment and kills the whole
process group, but the command can read the host filesystem, write wherever the Soma user can
and use the network. It says so, loudly, once.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from soma.errors import SandboxError
from soma.tools.sandbox.base import OUTPUT_LIMIT_BYTES, SandboxResult
from soma.tools.sandbox.cgroup import create_pids_cgroup, default_pids_cgroup
from soma.tools.sandbox.env import base_env, check_extra_env
from soma.tools.sandbox.limits import Limits
from soma.tools.sandbox.runner import run_confined

log = logging.getLogger(__name__)

_warned = False


def _warn_once() -> None:
    global _warned
    if not _warned:
        _warned = True
        log.warning(
            "using the subprocess sandbox: commands run with resource limits but WITHOUT "
            "filesystem or network isolation; install bubblewrap for real isolation"
        )


class SubprocessSandbox:
    """Runs commands as plain child processes in the workspace, with rlimits and a timeout."""

    name = "subprocess"
    isolated = False

    def __init__(
        self,
        *,
        max_procs: int = 256,
        output_limit: int = OUTPUT_LIMIT_BYTES,
        pids_cgroup: bool | None = None,
    ) -> None:
        self.max_procs = max_procs
        self.pids_cgroup = default_pids_cgroup() if pids_cgroup is None else pids_cgroup
        self.output_limit = output_limit
        _warn_once()

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
        if not argv:
            raise SandboxError("empty command")
        full_env = {**base_env(str(cwd)), **check_extra_env(env)}
        return await run_confined(
            argv,
            cwd=cwd,
            env=full_env,
            stdin=stdin,
            limits=Limits(memory_mb=memory_mb, timeout_s=timeout_s, max_procs=self.max_procs),
            output_limit=self.output_limit,
            cgroup=create_pids_cgroup(self.max_procs) if self.pids_cgroup else None,
        )
