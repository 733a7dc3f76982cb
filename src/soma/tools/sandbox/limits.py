"""Resource limits, applied to the child before it runs anything.

rlimits cover memory (RLIMIT_AS), CPU, file size and core dumps for any uid. RLIMIT_NPROC does
not work when Soma runs as root (the kernel exempts uid 0 even inside a user namespace), so a
fork bomb is also capped, when running as root, by a per-run ``pids`` cgroup if one can be
created, and always by the wall-clock timeout that kills the whole tree.

The limits are set by exec'ing through ``prlimit`` (and ``sh`` to join the cgroup) rather than
by a Python ``preexec_fn``: a preexec_fn forces a full fork() of the interpreter, which costs
5-15 ms per call, several times the cost of bubblewrap itself.
"""

from __future__ import annotations

import functools
import math
import os
import resource
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from soma.tools.sandbox.cgroup import PidsCgroup

MIB = 1024 * 1024
_JOIN_SCRIPT = 'echo $$ > "$0" && exec "$@"'


@functools.cache
def _tool(name: str) -> str | None:
    return shutil.which(name, path="/usr/bin:/bin:/usr/sbin:/sbin")


@dataclass(frozen=True)
class Limits:
    memory_mb: int
    timeout_s: float
    max_procs: int = 256
    max_file_mb: int = 1024

    def _values(self) -> dict[str, tuple[int, int]]:
        # RLIMIT_CPU is per process and counts every thread, so it is scaled by the CPU count
        # and only backs up the wall-clock kill (e.g. if Soma itself dies mid-run).
        cpu = math.ceil(self.timeout_s * (os.cpu_count() or 1)) + 1
        return {
            "as": (self.memory_mb * MIB, self.memory_mb * MIB),
            "cpu": (cpu, cpu + 1),
            "nproc": (self.max_procs, self.max_procs),
            "fsize": (self.max_file_mb * MIB, self.max_file_mb * MIB),
            "core": (0, 0),
        }

    def wrap(
        self, argv: Sequence[str], cgroup: PidsCgroup | None
    ) -> tuple[list[str], Callable[[], None] | None]:
        """Return the argv to exec, and a preexec_fn only when the fast tools are missing."""
        prlimit, sh = _tool("prlimit"), _tool("sh")
        if prlimit is None or (cgroup is not None and sh is None):
            return list(argv), self._preexec(cgroup)
        flags = [f"--{name}={soft}:{hard}" for name, (soft, hard) in self._values().items()]
        wrapped = [prlimit, *flags, "--", *argv]
        if cgroup is not None and sh is not None:
            wrapped = [sh, "-c", _JOIN_SCRIPT, str(cgroup.procs_path), *wrapped]
        return wrapped, None

    def _preexec(self, cgroup: PidsCgroup | None) -> Callable[[], None]:
        values = {getattr(resource, f"RLIMIT_{k.upper()}"): v for k, v in self._values().items()}
        procs = os.fspath(cgroup.procs_path) if cgroup is not None else None

        def apply() -> None:  # runs between fork and exec: syscalls only
            if procs is not None:
                fd = os.open(procs, os.O_WRONLY)
                os.write(fd, str(os.getpid()).encode())
                os.close(fd)
            for which, limit in values.items():
                resource.setrlimit(which, limit)

        return apply
