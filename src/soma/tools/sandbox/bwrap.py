"""Bubblewrap: the real isolation.

The command gets its own user, pid, network, ipc, uts and cgroup namespaces; a read-only view
of the system (/usr and a few /etc files, never /root, /home or /etc secrets); the workspace at
``/workspace`` as the only persistent writable place (its ``.git`` read-only, so no hook or
config can be planted for the host's next git call); a private /tmp; and nothing else. Without a
network namespace device other than ``lo``, even the host's 127.0.0.1 is unreachable.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from soma.errors import SandboxError
from soma.tools.sandbox.base import OUTPUT_LIMIT_BYTES, SandboxResult
from soma.tools.sandbox.cgroup import create_pids_cgroup, default_pids_cgroup
from soma.tools.sandbox.env import base_env, check_extra_env
from soma.tools.sandbox.limits import Limits
from soma.tools.sandbox.runner import run_confined

SANDBOX_WORKDIR = "/workspace"
_SANDBOX_UID = "1000"

# Enough for dynamic linking, locale, users and TLS roots; notably not resolv.conf or hosts.
_ETC_ENTRIES = (
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "alternatives",
    "localtime",
    "timezone",
    "passwd",
    "group",
    "nsswitch.conf",
    "ssl",
    "ca-certificates",
)
_TOP_LEVEL = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")


def _system_args() -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for name in _TOP_LEVEL:
        path = Path("/") / name
        if path.is_symlink():  # merged-/usr layouts: recreate the link, do not bind through it
            args += ["--symlink", os.readlink(path), os.fspath(path)]
        elif path.is_dir():
            args += ["--ro-bind", os.fspath(path), os.fspath(path)]
    for name in _ETC_ENTRIES:
        path = Path("/etc") / name
        if path.exists():
            args += ["--ro-bind", os.fspath(path), os.fspath(path)]
    return args


def _base_argv(bwrap: str) -> list[str]:
    argv = [
        bwrap,
        "--unshare-all",
        "--unshare-user",
        "--uid",
        _SANDBOX_UID,
        "--gid",
        _SANDBOX_UID,
        "--hostname",
        "sandbox",
        "--die-with-parent",
        "--new-session",
        "--disable-userns",
        "--cap-drop",
        "ALL",
        *_system_args(),
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--tmpfs",
        "/tmp",
        "--clearenv",
    ]
    for key, value in base_env(SANDBOX_WORKDIR).items():
        argv += ["--setenv", key, value]
    return argv


class BwrapSandbox:
    """Runs commands under bubblewrap; the fixed part of the command line is built once."""

    name = "bwrap"
    isolated = True

    def __init__(
        self,
        bwrap: str | None = None,
        *,
        max_procs: int = 256,
        output_limit: int = OUTPUT_LIMIT_BYTES,
        pids_cgroup: bool | None = None,
    ) -> None:
        """``pids_cgroup``: cap processes with a per-run cgroup; None = only as root, where
        RLIMIT_NPROC is ignored (it costs ~8 ms per call: the kernel waits an RCU grace period
        when a process changes cgroup)."""
        path = bwrap or shutil.which("bwrap")
        if path is None:
            raise SandboxError("bubblewrap (bwrap) is not installed", hint="apt install bubblewrap")
        self.bwrap = path
        self.max_procs = max_procs
        self.pids_cgroup = default_pids_cgroup() if pids_cgroup is None else pids_cgroup
        self.output_limit = output_limit
        self._base = _base_argv(path)

    def argv_for(
        self, argv: Sequence[str], cwd: Path, env: Mapping[str, str] | None = None
    ) -> list[str]:
        """The full bwrap command line for ``argv`` in workspace ``cwd``."""
        if not argv:
            raise SandboxError("empty command")
        workspace = os.fspath(cwd)
        full = [*self._base, "--bind", workspace, SANDBOX_WORKDIR]
        if (cwd / ".git").exists():
            full += ["--ro-bind", os.path.join(workspace, ".git"), SANDBOX_WORKDIR + "/.git"]
        for key, value in check_extra_env(env).items():
            full += ["--setenv", key, value]
        # Last, so every mount point above could still be created in the root tmpfs.
        full += ["--chdir", SANDBOX_WORKDIR, "--remount-ro", "/", "--", *argv]
        return full

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
        command = self.argv_for(argv, cwd, env)
        return await run_confined(
            command,
            cwd=cwd,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
            stdin=stdin,
            limits=Limits(memory_mb=memory_mb, timeout_s=timeout_s, max_procs=self.max_procs),
            output_limit=self.output_limit,
            cgroup=create_pids_cgroup(self.max_procs) if self.pids_cgroup else None,
        )


@functools.cache
def bwrap_works(bwrap: str | None = None) -> bool:
    """Whether bubblewrap can create our namespaces here (it cannot in many containers)."""
    path = bwrap or shutil.which("bwrap")
    if path is None:
        return False
    try:
        with tempfile.TemporaryDirectory(prefix="soma-bwrap-probe-") as tmp:
            probe = subprocess.run(
                BwrapSandbox(path).argv_for(["true"], Path(tmp)),
                capture_output=True,
                timeout=10,
                check=False,
            )
    except (OSError, subprocess.SubprocessError, SandboxError):
        return False
    return probe.returncode == 0
