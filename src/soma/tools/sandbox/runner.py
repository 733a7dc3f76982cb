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
from soma.tools.sandbox.cgroup import PidsCgroup, release
from soma.tools.sandbox.limits import Limits
from soma.tools.sandbox.output import BoundedBuffer, drain

log = logging.getLogger(__name__)

# After the main process ends, how long leftover children holding our pipes may keep them.
_PIPE_GRACE_S = 0.5
_REAP_WAIT_S = 2.0


async def run_confined(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    stdin: bytes | None,
    limits: Limits,
    output_limit: int = OUTPUT_LIMIT_BYTES,
    cgroup: PidsCgroup | None = None,
) -> SandboxResult:
    """Run ``argv`` in its own session with ``limits``; kill its whole tree when it ends.

    ``cgroup`` (owned from here on) caps the process count; the child joins it before exec.
    Background processes never outlive the call: after the main process exits (or times out)
    its process group and its cgroup are killed.
    """
    command, preexec = limits.wrap(argv, cgroup)
    start = time.perf_counter()
    try:
        proc = await asyncio.create_subprocess_exec(
            *command,
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=preexec,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        if cgroup is not None:
            release(cgroup)
        if isinstance(exc, FileNotFoundError) and str(exc.filename) == str(cwd):
            raise SandboxError(f"workspace {cwd} does not exist") from exc
        raise SandboxError(f"could not start {argv[0]!r}: {exc}") from exc
    out, err = BoundedBuffer(output_limit), BoundedBuffer(output_limit)
    readers = asyncio.gather(drain(proc.stdout, out), drain(proc.stderr, err), _feed(proc, stdin))
    timed_out = False
    try:
        await asyncio.wait_for(_exited(proc), timeout=limits.timeout_s)
    except TimeoutError:
        timed_out = True
    finally:
        _kill_tree(proc.pid, cgroup)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(readers), timeout=_PIPE_GRACE_S)
        if not readers.done():
            # A grandchild that escaped the process group (setsid) still holds the pipes.
            readers.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await readers
            transport = getattr(proc, "_transport", None)
            if transport is not None:
                transport.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), timeout=_REAP_WAIT_S)
        limit_hit = _cleanup(cgroup)
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


async def _exited(proc: asyncio.subprocess.Process) -> None:
    """Return when the main process exits, even if its children still hold stdout open.

    ``proc.wait()`` (Python 3.11) only returns once every pipe is closed, so a forgotten
    ``sleep 100 &`` would stretch every call to its timeout; a pidfd sees the exit itself.
    """
    if not hasattr(os, "pidfd_open"):
        await proc.wait()
        return
    try:
        fd = os.pidfd_open(proc.pid)
    except ProcessLookupError:  # already exited and reaped
        return
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def on_exit() -> None:
        if not done.done():
            done.set_result(None)

    loop.add_reader(fd, on_exit)
    try:
        await done
    finally:
        loop.remove_reader(fd)
        os.close(fd)


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


def _cleanup(cgroup: PidsCgroup | None) -> bool:
    if cgroup is None:
        return False
    limit_hit = cgroup.limit_hit()
    release(cgroup)
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
