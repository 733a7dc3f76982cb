"""Spawning, feeding, timing and killing one sandboxed process tree; shared by both sandboxes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from soma.errors import SandboxError
from soma.tools.sandbox.base import OUTPUT_LIMIT_BYTES, SandboxResult
from soma.tools.sandbox.cgroup import PidsCgroup, create_pids_cgroup
from soma.tools.sandbox.limits import Limits
from soma.tools.sandbox.output import BoundedBuffer, drain

log = logging.getLogger(__name__)

# After the main process ends, how long leftover children holding our pipes may keep them.
_PIPE_GRACE_S = 0.5
_CGROUP_CLEANUP_S = 2.0


async def run_confined(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    stdin: bytes | None,
    limits: Limits,
    output_limit: int = OUTPUT_LIMIT_BYTES,
) -> SandboxResult:
    """Run ``argv`` in its own session with ``limits``; kill its whole tree when it ends.

    Background processes never outlive the call: after the main process exits (or times out)
    its process group, and its cgroup when there is one, are killed.
    """
    cgroup = create_pids_cgroup(limits.max_procs)
    start = time.perf_counter()
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=limits.preexec(cgroup),
        )
    except (OSError, subprocess.SubprocessError) as exc:
        if cgroup is not None:
            cgroup.try_remove()
        raise SandboxError(f"could not start {argv[0]!r}: {exc}") from exc

    out, err = BoundedBuffer(output_limit), BoundedBuffer(output_limit)
    readers = asyncio.gather(drain(proc.stdout, out), drain(proc.stderr, err), _feed(proc, stdin))
    timed_out = False
    try:
        await asyncio.wait_for(proc.wait(), timeout=limits.timeout_s)
    except TimeoutError:
        timed_out = True
    finally:
        _kill_tree(proc.pid, cgroup)
        with contextlib.suppress(ProcessLookupError, TimeoutError):
            await asyncio.wait_for(proc.wait(), timeout=_CGROUP_CLEANUP_S)
        try:
            await asyncio.wait_for(asyncio.shield(readers), timeout=_PIPE_GRACE_S)
        except TimeoutError:
            readers.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await readers
        limit_hit = await _cleanup(cgroup)
    duration = time.perf_counter() - start

    code = proc.returncode if proc.returncode is not None else -signal.SIGKILL
    exit_code = 128 - code if code < 0 else code
    stderr = err.text()
    if limit_hit:
        stderr += f"\n[sandbox: process limit of {limits.max_procs} reached; fork() failed]\n"
    return SandboxResult(
        exit_code=exit_code,
        stdout=out.text(),
        stderr=stderr,
        timed_out=timed_out,
        killed_reason=_killed_reason(exit_code, timed_out, limits),
        duration_s=duration,
    )


async def _feed(proc: asyncio.subprocess.Process, data: bytes | None) -> None:
    if data is None or proc.stdin is None:
        return
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        proc.stdin.write(data)
        await proc.stdin.drain()
        proc.stdin.close()


def _kill_tree(pgid: int, cgroup: PidsCgroup | None) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    if cgroup is not None:
        cgroup.kill_all()


async def _cleanup(cgroup: PidsCgroup | None) -> bool:
    if cgroup is None:
        return False
    limit_hit = cgroup.limit_hit()
    deadline = time.monotonic() + _CGROUP_CLEANUP_S
    while not cgroup.try_remove():
        if time.monotonic() > deadline:
            log.warning("sandbox cgroup %s still busy; leaving it behind", cgroup.path)
            break
        cgroup.kill_all()
        await asyncio.sleep(0.01)
    return limit_hit


def _killed_reason(exit_code: int, timed_out: bool, limits: Limits) -> str | None:
    if timed_out:
        return f"timeout: still running after {limits.timeout_s:g}s, killed"
    if exit_code <= 128 or exit_code > 128 + 64:
        return None
    try:
        name = signal.Signals(exit_code - 128).name
    except ValueError:
        return None
    if name in {"SIGKILL", "SIGSEGV", "SIGABRT", "SIGBUS"}:
        return f"killed by {name} (memory limit is {limits.memory_mb} MB)"
    if name == "SIGXCPU":
        return f"killed by {name} (CPU time limit)"
    if name == "SIGXFSZ":
        return f"killed by {name} (file size limit is {limits.max_file_mb} MB)"
    return f"killed by {name}"
