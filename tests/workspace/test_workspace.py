from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from soma.errors import WorkspaceError
from soma.workspace import AgentIdentity, Workspace

DEV = AgentIdentity(persona="developer", capsule="implement-feature", run_id="run-1")


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return Workspace.open(tmp_path, "proj")


def test_open_creates_repo_with_initial_commit(ws: Workspace, tmp_path: Path) -> None:
    assert ws.path == (tmp_path / "proj").resolve()
    log = ws.log()
    assert len(log) == 1
    assert log[0].author_name == "Soma"
    assert log[0].author_email == "soma@localhost"
    assert (ws.path / ".git" / "HEAD").read_text().strip() == "ref: refs/heads/main"


def test_reopen_keeps_history(ws: Workspace, tmp_path: Path) -> None:
    (ws.path / "a.txt").write_text("a\n")
    sha = ws.commit("add a", DEV)
    again = Workspace.open(tmp_path, "proj")
    assert again.head() == sha
    assert len(again.log()) == 2


@pytest.mark.parametrize(
    "bad", ["", ".", "..", "../x", "a/b", "/abs", "a\x00b", ".hidden", "x" * 200, "a b", "proj\n"]
)
def test_project_id_rejected(tmp_path: Path, bad: str) -> None:
    with pytest.raises(WorkspaceError, match="invalid project id"):
        Workspace.open(tmp_path, bad)


def test_commit_author_is_agent(ws: Workspace) -> None:
    (ws.path / "src").mkdir()
    (ws.path / "src" / "m.py").write_text("x = 1\n")
    sha = ws.commit("implement m", DEV)
    head = ws.log(1)[0]
    assert head.sha == sha
    assert head.author_name == "developer (implement-feature)"
    assert head.author_email == "developer@agents.soma.local"
    assert head.message.startswith("implement m")
    assert "Soma-Run-Id: run-1" in head.message


def test_show_gives_a_commit_as_a_reviewer_reads_it(ws: Workspace) -> None:
    (ws.path / "notes.md").write_text("hello\n" * 50)
    sha = ws.commit("write notes", DEV)
    shown = ws.show(sha)
    assert shown.startswith(f"commit {sha}")
    assert "notes.md | 50 +" in shown
    assert "+hello" in shown
    cut = ws.show(sha, max_chars=100)
    assert cut.startswith(f"commit {sha}")
    assert "cut at 100 of" in cut
    with pytest.raises(WorkspaceError):
        ws.show("--output=/tmp/x")


def test_commit_without_changes(ws: Workspace) -> None:
    sha = ws.commit("nothing to do", AgentIdentity(persona="reviewer"))
    assert sha is not None
    assert ws.log(1)[0].author_name == "reviewer"
    assert ws.commit("still nothing", DEV, allow_empty=False) is None


def test_user_git_config_is_ignored(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / ".gitconfig").write_text("[user]\n name = Evil\n[core]\n hooksPath = /nope\n")
    monkeypatch.setenv("HOME", str(home))
    hook = ws.path / ".git" / "hooks" / "pre-commit"
    hook.write_text("#!/bin/sh\nexit 1\n")
    hook.chmod(0o755)
    (ws.path / "f").write_text("f")
    ws.commit("hooks do not run", DEV)
    assert ws.log(1)[0].author_name == DEV.git_name


def test_diff_includes_untracked_and_does_not_stage(ws: Workspace) -> None:
    (ws.path / "new.txt").write_text("hello\n")
    diff = ws.diff()
    assert "new.txt" in diff
    assert "+hello" in diff
    status = os.popen(f"git -C {ws.path} status --porcelain").read()
    assert status.strip() == "?? new.txt"


def test_diff_since_rev(ws: Workspace) -> None:
    first = ws.head()
    (ws.path / "a").write_text("1\n")
    ws.commit("a", DEV)
    assert ws.diff() == ""
    assert "+1" in ws.diff(first)
    with pytest.raises(WorkspaceError, match="invalid revision"):
        ws.diff("--output=/tmp/x")
    with pytest.raises(WorkspaceError, match="invalid revision"):
        ws.diff("HEAD..main")


def test_log_limits(ws: Workspace) -> None:
    for i in range(3):
        ws.commit(f"c{i}", DEV)
    assert [c.message.splitlines()[0] for c in ws.log(2)] == ["c2", "c1"]


class TestResolve:
    def test_inside(self, ws: Workspace) -> None:
        assert ws.resolve("a/b.txt") == ws.path / "a" / "b.txt"
        assert ws.resolve("a/../b") == ws.path / "b"
        assert ws.resolve(".") == ws.path

    @pytest.mark.parametrize("bad", ["../x", "a/../../x", "/etc/passwd", "~/x", "x\x00y"])
    def test_escapes(self, ws: Workspace, bad: str) -> None:
        with pytest.raises(WorkspaceError):
            ws.resolve(bad)

    @pytest.mark.parametrize("bad", [".git", ".git/config", "./.git/hooks/x", ".GIT/config"])
    def test_git_internals(self, ws: Workspace, bad: str) -> None:
        with pytest.raises(WorkspaceError, match=r"\.git"):
            ws.resolve(bad)

    def test_symlink_out(self, ws: Workspace, tmp_path: Path) -> None:
        (ws.path / "link").symlink_to(tmp_path)
        with pytest.raises(WorkspaceError, match="escapes"):
            ws.resolve("link/x")

    def test_symlink_in(self, ws: Workspace) -> None:
        (ws.path / "real").mkdir()
        (ws.path / "alias").symlink_to("real")
        assert ws.resolve("alias/f") == ws.path / "real" / "f"


@pytest.mark.parametrize("bad", ["a b", "x<y>", "", "evil\n", "a@b"])
def test_identity_names_are_safe(bad: str) -> None:
    with pytest.raises(ValidationError):
        AgentIdentity(persona=bad)


def _open_and_count(root: str, start_at: float) -> int:
    import time

    time.sleep(max(0.0, start_at - time.time()))  # every process opens at the same instant
    workspace = Workspace.open(Path(root), "raced")
    return len(workspace.log(10))


def test_processes_racing_to_create_a_workspace_share_one_repository(tmp_path: Path) -> None:
    """Workers of several processes may open a new project's workspace at the same moment."""
    import concurrent.futures
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    import time

    with concurrent.futures.ProcessPoolExecutor(6, mp_context=context) as pool:
        start_at = time.time() + 3.0  # after every worker process has started
        counts = list(pool.map(_open_and_count, [str(tmp_path)] * 6, [start_at] * 6))
    assert counts == [1] * 6, "one repository, one initial commit"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raced"], "no staging folder left"


def test_a_crash_during_creation_leaves_nothing_half_made(tmp_path: Path) -> None:
    (tmp_path / ".init-p1-abandoned").mkdir()  # what a worker killed mid-init leaves behind
    (tmp_path / ".init-p1-abandoned" / ".git").mkdir()
    workspace = Workspace.open(tmp_path, "p1")
    assert workspace.head()
    assert len(workspace.log(5)) == 1
