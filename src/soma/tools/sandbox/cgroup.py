"""Per-run ``pids`` cgroups: the fork-bomb cap that still works when Soma runs as root.

Optional by design: most containers do not delegate a writable cgroup, and then we rely on
RLIMIT_NPROC (non-root only), the pid namespace and the timeout. Detection runs once.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import itertools
import logging
import os
import signal
import subprocess
from pathlib import Path

log = logging.getLogger(__name__)

_counter = itertools.count()

# The kernel keeps a cgroup busy for a few milliseconds after its last process exits; waiting
# for that would double the cost of a short command, so removal is retried later instead.
_pending: list[PidsCgroup] = []


class PidsCgroup:
    """A cgroup created for one command and removed after it; children join it before exec."""

    def __init__(self, path: Path, max_pids: int) -> None:
        self.path = path
        path.mkdir()
        self.procs_path = path / "cgroup.procs"
        try:
            (path / "pids.max").write_text(str(max_pids))
        except OSError:
            path.rmdir()
            raise

    def limit_hit(self) -> bool:
        """Whether a fork failed because of the cap (told to the agent, it explains odd errors)."""
        try:
            events = (self.path / "pids.events").read_text().split()
        except OSError:
            return False
        return len(events) >= 2 and events[-1] != "0"

    def kill_all(self) -> None:
        kill_file = self.path / "cgroup.kill"
        if kill_file.exists():
            with contextlib.suppress(OSError):
                kill_file.write_text("1")
            return
        try:
            pids = (self.path / "cgroup.procs").read_text().split()
        except OSError:
            return
        for pid in pids:
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(pid), signal.SIGKILL)

    def try_remove(self) -> bool:
        """rmdir; False while killed processes are still being reaped."""
        try:
            self.path.rmdir()
        except FileNotFoundError:
            return True
        except OSError:
            return False
        return True


def _join(procs: str) -> None:
    fd = os.open(procs, os.O_WRONLY)
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)


def _candidates() -> list[Path]:
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        _, controllers, rel = line.split(":", 2)
        rel = rel.lstrip("/")
        if "pids" in controllers.split(","):
            found.append(Path("/sys/fs/cgroup/pids") / rel)
        elif controllers == "":
            for mount in (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified")):
                if (mount / "cgroup.controllers").exists():
                    base = mount / rel
                    with contextlib.suppress(OSError):
                        if "pids" in (base / "cgroup.subtree_control").read_text().split():
                            found.append(base)
                    break
    return found


@functools.cache
def pids_cgroup_parent() -> Path | None:
    """A directory we may create per-run cgroups in, proven by running one process in it."""
    for parent in _candidates():
        try:
            probe = PidsCgroup(parent / f"soma-probe-{os.getpid()}", 8)
        except OSError:
            continue
        try:
            subprocess.run(
                ["true"],
                preexec_fn=functools.partial(_join, os.fspath(probe.procs_path)),
                check=True,
                capture_output=True,
            )
        except (OSError, subprocess.SubprocessError):
            continue
        finally:
            probe.try_remove()
        return parent
    log.info("no writable pids cgroup; fork bombs are bounded by RLIMIT_NPROC and the timeout")
    return None


def release(cgroup: PidsCgroup) -> None:
    """Remove ``cgroup`` now if the kernel lets us, else on a later call or at exit."""
    if not cgroup.try_remove():
        _pending.append(cgroup)


@atexit.register
def _sweep() -> None:
    for cgroup in list(_pending):
        cgroup.kill_all()
        if cgroup.try_remove():
            _pending.remove(cgroup)


def default_pids_cgroup() -> bool:
    """Use cgroups only where RLIMIT_NPROC cannot work: the kernel exempts uid 0 from it."""
    return os.geteuid() == 0


def create_pids_cgroup(max_pids: int) -> PidsCgroup | None:
    parent = pids_cgroup_parent()
    if parent is None:
        return None
    if _pending:
        _sweep()
    try:
        return PidsCgroup(parent / f"soma-{os.getpid()}-{next(_counter)}", max_pids)
    except OSError as exc:
        log.warning("could not create a pids cgroup in %s: %s", parent, exc)
        return None
