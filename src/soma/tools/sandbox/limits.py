"""Resource limits applied in the child between fork and exec.

rlimits cover memory (RLIMIT_AS), CPU, file size and core dumps for any uid. RLIMIT_NPROC does
not work when Soma runs as root (the kernel exempts uid 0 even inside a user namespace), so a
fork bomb is also capped by a per-run ``pids`` cgroup whenever one can be created, and always
by the wall-clock timeout that kills the whole tree.
"""

from __future__ import annotations

import math
import os
import resource
from collections.abc import Callable
from dataclasses import dataclass

from soma.tools.sandbox.cgroup import PidsCgroup

MIB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    memory_mb: int
    timeout_s: float
    max_procs: int = 256
    max_file_mb: int = 1024

    def preexec(self, cgroup: PidsCgroup | None) -> Callable[[], None]:
        """Build the function run in the forked child; it only does syscalls (fork-safe)."""
        memory = self.memory_mb * MIB
        # RLIMIT_CPU is per process and counts every thread, so it is scaled by the CPU count and
        # only backs up the wall-clock kill (e.g. if Soma itself dies mid-run).
        cpu = math.ceil(self.timeout_s * (os.cpu_count() or 1)) + 1
        nproc = self.max_procs
        fsize = self.max_file_mb * MIB
        join_fd = cgroup.procs_fd if cgroup is not None else -1

        def apply() -> None:
            if join_fd >= 0:
                os.write(join_fd, str(os.getpid()).encode())
            resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
            resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
            resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

        return apply
