"""Roles and the permission matrix every gateway route is checked against.

Permissions are coarse verbs on resources. A role grants a fixed set; an API key may carry
scopes that narrow (never widen) its user's role, so a CI key can read projects and nothing else.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal, get_args

Role = Literal["admin", "developer", "reviewer", "viewer"]
ROLES: tuple[Role, ...] = get_args(Role)


class Permission(StrEnum):
    PROJECTS_READ = "projects:read"
    PROJECTS_WRITE = "projects:write"
    REVIEWS_READ = "reviews:read"
    REVIEWS_DECIDE = "reviews:decide"
    LIBRARY_READ = "library:read"
    AUDIT_READ = "audit:read"
    USAGE_READ = "usage:read"
    CHAT = "chat:use"
    KEYS_MANAGE = "keys:manage"
    """Create, list and revoke one's own API keys."""
    USERS_MANAGE = "users:manage"
    """Create users, and list and revoke anybody's keys, in one's tenant."""
    MARKET_PUBLISH = "market:publish"
    """Register publisher keys, publish, yank and rate packages."""
    MARKET_INSTALL = "market:install"
    """Install packages into, and remove them from, the tenant's library."""
    SECRETS_MANAGE = "secrets:manage"
    """Set, list (names only) and delete the tenant's secrets, e.g. adapter credentials."""
    MARKET_TRUST = "market:trust"
    """Trust a publisher's key for the whole tenant: what installs will accept from then on."""
    BILLING_MANAGE = "billing:manage"
    """Set the tenant's monthly budgets (reading invoices needs only usage:read)."""
    NOTIFICATIONS_MANAGE = "notifications:manage"
    """Add, list, test and remove the tenant's notification rules; read their deliveries."""


_VIEW = frozenset(
    {
        Permission.PROJECTS_READ,
        Permission.REVIEWS_READ,
        Permission.LIBRARY_READ,
        Permission.USAGE_READ,
        Permission.KEYS_MANAGE,
    }
)

# Separation of duties: a developer starts work and a reviewer judges it; only an admin does both.
ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    "viewer": _VIEW,
    "reviewer": _VIEW | {Permission.REVIEWS_DECIDE, Permission.AUDIT_READ},
    "developer": _VIEW
    | {
        Permission.PROJECTS_WRITE,
        Permission.CHAT,
        Permission.MARKET_PUBLISH,
        Permission.MARKET_INSTALL,
    },
    "admin": frozenset(Permission),
}


def permissions_for(
    role: Role, scopes: frozenset[Permission] | None = None
) -> frozenset[Permission]:
    """What a role may do, narrowed to ``scopes`` when a key carries them."""
    granted = ROLE_PERMISSIONS[role]
    return granted if scopes is None else granted & scopes
