"""One git repository per project: the only place agents may write.

Every path an in-process tool touches goes through :meth:`Workspace.resolve`, which is the
single point that keeps agents inside the project and out of ``.git`` (where a planted config
or hook would run code on the host the next time we call git).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from soma.errors import WorkspaceError
from soma.workspace.git import run_git
from soma.workspace.identity import AgentIdentity

_PROJECT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_REV = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/~^@{}-]{0,199}$")
_RECORD_SEP = "\x1e"
_FIELD_SEP = "\x00"

# Git serialises writers with index.lock and fails instead of waiting, so writers of the same
# repository queue here; keyed by path because several Workspace objects may share a project.
_locks: dict[Path, threading.Lock] = {}
_locks_guard = threading.Lock()


def _lock_for(path: Path) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(path, threading.Lock())


@dataclass(frozen=True)
class CommitInfo:
    sha: str
    author_name: str
    author_email: str
    message: str


class Workspace:
    """A project's git working tree. Methods are blocking; call them via ``asyncio.to_thread``."""

    def __init__(self, path: Path, project_id: str) -> None:
        self.path = path
        self.project_id = project_id
        self._lock = _lock_for(path)

    @classmethod
    def open(cls, root: Path, project_id: str) -> Workspace:
        """Open ``<root>/<project_id>``, creating the repository with an initial commit if new."""
        if not _PROJECT_ID.fullmatch(project_id):
            raise WorkspaceError(
                f"invalid project id {project_id!r}",
                hint="use letters, digits, '.', '_' or '-', starting with a letter or digit",
            )
        path = (Path(root) / project_id).resolve()
        if path.parent != Path(root).resolve():
            raise WorkspaceError(f"project {project_id!r} resolves outside {root}")
        ws = cls(path, project_id)
        if not (path / ".git").is_dir():
            ws._init()
        return ws

    def _init(self) -> None:
        """Create the repository aside and move it into place with one rename.

        Workers of several processes may open a new project's workspace at the same moment,
        and one may be killed in the middle of ``git init``: built in place, the first case
        fails ("File exists") and the second leaves a half-made ``.git`` that every later open
        trusts. Built aside, a crash leaves only a staging folder, and of two racers the second
        rename fails and it adopts the repository the first one made.
        """
        root = self.path.parent
        root.mkdir(parents=True, exist_ok=True)
        with self._lock:
            if (self.path / ".git").is_dir():
                return
            staging = Path(tempfile.mkdtemp(prefix=f".init-{self.project_id}-", dir=root))
            try:
                run_git(staging, ["init", "--quiet", "--initial-branch=main"])
                run_git(
                    staging, ["commit", "--quiet", "--allow-empty", "-m", "Initialize workspace"]
                )
                try:
                    if self.path.is_dir():
                        os.rename(staging / ".git", self.path / ".git")
                    else:
                        os.rename(staging, self.path)
                except OSError:
                    if not (self.path / ".git").is_dir():
                        raise
            finally:
                shutil.rmtree(staging, ignore_errors=True)

    def resolve(self, relpath: str) -> Path:
        """Map an agent-supplied relative path to an absolute path inside the workspace.

        Symlinks are followed before the containment check, so a link pointing outside is
        rejected like ``../x``. The check is not atomic with the later open: a process racing to
        swap a directory for a symlink could still win, which is why the sandbox also sees the
        workspace as its only writable place.
        """
        if "\x00" in relpath:
            raise WorkspaceError("path contains a NUL byte")
        pure = PurePosixPath(relpath)
        if pure.is_absolute() or relpath.startswith("~"):
            raise WorkspaceError(
                f"path {relpath!r} is absolute", hint="use a path relative to the workspace root"
            )
        resolved = (self.path / pure).resolve()
        try:
            inside = resolved.relative_to(self.path)
        except ValueError:
            raise WorkspaceError(
                f"path {relpath!r} escapes the workspace",
                hint="stay inside the project; '..' and links to outside are not allowed",
            ) from None
        if inside.parts and inside.parts[0].casefold() == ".git":
            raise WorkspaceError(
                f"path {relpath!r} is inside .git", hint="use the git.* tools to change history"
            )
        return resolved

    def commit(
        self, message: str, author: AgentIdentity, *, allow_empty: bool = True
    ) -> str | None:
        """Stage everything and commit as ``author``; return the new sha.

        ``allow_empty`` defaults to True because every capsule run must leave a commit carrying
        its agent as author (the audit trail), even when it changed nothing. With False, returns
        None when there is nothing to commit.
        """
        if not message.strip():
            raise WorkspaceError("commit message is empty")
        if author.run_id:
            message = f"{message.rstrip()}\n\nSoma-Run-Id: {author.run_id}\n"
        env = {"GIT_AUTHOR_NAME": author.git_name, "GIT_AUTHOR_EMAIL": author.git_email}
        with self._lock:
            run_git(self.path, ["add", "--all"])
            if not allow_empty and not run_git(self.path, ["status", "--porcelain"]).strip():
                return None
            args = ["commit", "--quiet", "--no-verify", "--file=-"]
            if allow_empty:
                args.append("--allow-empty")
            run_git(self.path, args, env=env, input_text=message)
            return run_git(self.path, ["rev-parse", "HEAD"]).strip()

    def status(self) -> str:
        """Short status (``git status --short``) of the working tree, untracked files included."""
        return run_git(self.path, ["status", "--short", "--untracked-files=all"])

    def head(self) -> str:
        return run_git(self.path, ["rev-parse", "HEAD"]).strip()

    def diff(self, rev: str | None = None) -> str:
        """Unified diff of the working tree, untracked files included, against ``rev`` (HEAD).

        New files matter most to a reviewer, and plain ``git diff`` hides them; staging into a
        throwaway index shows them without touching the real index.
        """
        base = self._check_rev(rev or "HEAD")
        with tempfile.TemporaryDirectory(prefix="soma-index-") as tmp:
            index = Path(tmp) / "index"
            real_index = self.path / ".git" / "index"
            if real_index.exists():
                shutil.copyfile(real_index, index)
            env = {"GIT_INDEX_FILE": os.fspath(index)}
            run_git(self.path, ["add", "--all"], env=env)
            return run_git(
                self.path,
                ["diff", "--cached", "--no-color", "--no-ext-diff", "--end-of-options", base, "--"],
                env=env,
            )

    def show(self, rev: str, *, max_chars: int = 200_000) -> str:
        """One commit as a reviewer reads it: header, changed-file summary and patch, cut at
        ``max_chars`` so a commit of generated files cannot swamp a page."""
        out = run_git(
            self.path,
            [
                "show",
                "--no-color",
                "--no-ext-diff",
                "--stat",
                "--patch",
                "--end-of-options",
                self._check_rev(rev),
                "--",
            ],
        )
        if len(out) > max_chars:
            return out[:max_chars] + f"\n… cut at {max_chars:,} of {len(out):,} characters\n"
        return out

    def log(self, n: int = 20) -> list[CommitInfo]:
        """The last ``n`` commits, newest first."""
        if n < 1:
            return []
        fmt = "%H%x00%an%x00%ae%x00%B%x1e"  # NUL/RS separators: messages may hold anything else
        out = run_git(self.path, ["log", f"--max-count={n}", f"--format={fmt}"])
        commits = []
        for record in out.split(_RECORD_SEP):
            record = record.lstrip("\n")
            if not record:
                continue
            sha, name, email, message = record.split(_FIELD_SEP, 3)
            commits.append(CommitInfo(sha, name, email, message.strip()))
        return commits

    @staticmethod
    def _check_rev(rev: str) -> str:
        # Revisions come from agents: refuse anything git could read as an option or a range
        # that reaches outside the repository's own objects.
        if not _REV.fullmatch(rev) or ".." in rev:
            raise WorkspaceError(f"invalid revision {rev!r}", hint="use a sha, branch or HEAD~N")
        return rev

    def __repr__(self) -> str:
        return f"Workspace({self.project_id!r}, {os.fspath(self.path)!r})"
