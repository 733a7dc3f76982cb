"""Per-project git workspaces and the agent identity that authors their commits."""

from soma.workspace.identity import AgentIdentity
from soma.workspace.workspace import CommitInfo, Workspace

__all__ = ["AgentIdentity", "CommitInfo", "Workspace"]
