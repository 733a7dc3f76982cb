"""Running git so that nothing outside the call can change what it does.

The workspace content is written by agents, so git must not pick up the operator's config,
run hooks, or execute anything the repository asks for (fsmonitor, submodule recursion,
pagers). Every invocation goes through :func:`run_git`.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from soma.errors import WorkspaceError

GIT_TIMEOUT_S = 60.0

# Passed as ``-c`` so they override anything in the repository's own config as well.
_SAFE_CONFIG = (
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "core.pager=cat",
    "core.quotePath=false",
    "diff.external=",
    "diff.ignoreSubmodules=all",
    "submodule.recurse=false",
    "status.submoduleSummary=false",
    "commit.gpgSign=false",
    "tag.gpgSign=false",
    "gc.auto=0",
    "init.defaultBranch=main",
    "protocol.allow=never",
)

_BASE_ENV = {
    "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
    "HOME": "/nonexistent",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_OPTIONAL_LOCKS": "0",
    "GIT_COMMITTER_NAME": "Soma",
    "GIT_COMMITTER_EMAIL": "soma@localhost",
    "GIT_AUTHOR_NAME": "Soma",
    "GIT_AUTHOR_EMAIL": "soma@localhost",
}

_BASE_ARGV: tuple[str, ...] = ("git", *(part for kv in _SAFE_CONFIG for part in ("-c", kv)))


def run_git(
    cwd: Path,
    args: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    input_text: str | None = None,
) -> str:
    """Run ``git <args>`` in ``cwd`` and return stdout; any failure becomes a WorkspaceError."""
    full_env = {**_BASE_ENV, **(env or {})}
    try:
        proc = subprocess.run(
            [*_BASE_ARGV, *args],
            cwd=cwd,
            env=full_env,
            input=input_text,
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            timeout=GIT_TIMEOUT_S,
            check=False,
        )
    except FileNotFoundError as exc:
        raise WorkspaceError("git is not installed", hint="install git 2.28 or newer") from exc
    except subprocess.TimeoutExpired as exc:
        raise WorkspaceError(f"git {args[0]} timed out after {GIT_TIMEOUT_S:g}s") from exc
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip()
        raise WorkspaceError(f"git {args[0]} failed in {cwd}: {detail}")
    return proc.stdout
