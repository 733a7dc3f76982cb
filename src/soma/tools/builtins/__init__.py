"""The tools every Soma installation has: files, shell, python and git."""

from __future__ import annotations

from soma.tools.base import Tool
from soma.tools.builtins.exec import python_run, shell_exec
from soma.tools.builtins.fs import fs_list, fs_read, fs_write
from soma.tools.builtins.git import git_commit, git_diff, git_log, git_status

BUILTIN_TOOLS: tuple[Tool, ...] = (
    fs_read,
    fs_write,
    fs_list,
    shell_exec,
    python_run,
    git_commit,
    git_diff,
    git_log,
    git_status,
)

__all__ = ["BUILTIN_TOOLS"]
