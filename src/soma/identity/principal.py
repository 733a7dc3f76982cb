"""Who is calling: the identity every gateway request is authorised as."""

from __future__ import annotations

from dataclasses import dataclass

from soma.identity.permissions import Permission, Role


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller. ``key_id`` is set when the credential was an API key, and
    ``permissions`` are already narrowed by that key's scopes."""

    tenant_id: str
    user_id: str
    role: Role
    permissions: frozenset[Permission]
    key_id: str | None = None

    def can(self, permission: Permission) -> bool:
        return permission in self.permissions

    @property
    def rate_key(self) -> str:
        """The bucket this caller's own request rate is counted in."""
        return f"key:{self.key_id}" if self.key_id else f"user:{self.user_id}"
