"""Who did something in a workspace.

It lives in :mod:`soma.workspace` (not :mod:`soma.tools`) because commits need it and the tools
import the workspace: keeping it here avoids an import cycle.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, field_validator

# Names end up in git author fields and e-mail local parts, so they are kept to a charset that
# needs no quoting anywhere (no spaces, angle brackets or newlines that could forge a header).
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

EMAIL_DOMAIN = "agents.soma.local"


class AgentIdentity(BaseModel):
    """The persona acting, in which capsule and run; becomes the git author of its commits."""

    model_config = ConfigDict(frozen=True)

    persona: str
    capsule: str | None = None
    run_id: str | None = None

    @field_validator("persona", "capsule", "run_id")
    @classmethod
    def _safe_name(cls, value: str | None) -> str | None:
        if value is not None and not _NAME.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a safe name: use letters, digits, '.', '_' or '-' "
                "(at most 64 characters, starting with a letter or digit)"
            )
        return value

    @property
    def git_name(self) -> str:
        """``developer (implement-feature)``: readable in ``git log`` without extra tooling."""
        return f"{self.persona} ({self.capsule})" if self.capsule else self.persona

    @property
    def git_email(self) -> str:
        return f"{self.persona}@{EMAIL_DOMAIN}"
