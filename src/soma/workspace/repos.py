"""Where a project's local bare repository (the ``git.local`` resource) lives.

Kept apart from :mod:`soma.workspace.resources` so that ``git.push`` can find the repository
without importing the provisioners (which import the adapters). The location is derived from
trusted values only (``SOMA_HOME``, tenant, project id), never read from the workspace's
``.git/config``, which a sandbox without bubblewrap cannot protect from the agent.
"""

from __future__ import annotations

from pathlib import Path

REPOS_DIR = "repos"
WORKSPACES_DIR = "workspaces"


def local_repo_path(home: Path, tenant_id: str, project_id: str, remote: str = "origin") -> Path:
    """``$SOMA_HOME/repos/<tenant>/<project>.git`` (``<project>.<remote>.git`` for a remote
    other than ``origin``)."""
    stem = project_id if remote == "origin" else f"{project_id}.{remote}"
    return Path(home) / REPOS_DIR / tenant_id / f"{stem}.git"


def provisioned_origin(workspace_path: Path, tenant_id: str, project_id: str) -> Path | None:
    """The project's provisioned ``origin`` repository, if it has one.

    Workspaces live at ``$SOMA_HOME/workspaces/<project>``, so the home is two levels up.
    """
    home = Path(workspace_path).parent.parent
    path = local_repo_path(home, tenant_id, project_id)
    return path if (path / "HEAD").is_file() else None
