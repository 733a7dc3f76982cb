"""Identity: tenants, users, API keys, roles (RBAC), sessions and OIDC login.

The gateway authenticates every request with :meth:`Identity.authenticate` and checks the
resulting :class:`Principal` against the :class:`Permission` its route needs. See
``docs/identity.md`` for the permission matrix, the key format and OIDC setup.
"""

from soma.identity.keys import KEY_PREFIX
from soma.identity.login import LoginProvider, LoginStart, OIDCClaims
from soma.identity.oidc import OIDCClient
from soma.identity.permissions import ROLE_PERMISSIONS, ROLES, Permission, Role, permissions_for
from soma.identity.principal import Principal
from soma.identity.secret import load_secret_key
from soma.identity.service import CACHE_TTL_S, Identity
from soma.identity.sessions import SessionClaims

__all__ = [
    "CACHE_TTL_S",
    "KEY_PREFIX",
    "ROLES",
    "ROLE_PERMISSIONS",
    "Identity",
    "LoginProvider",
    "LoginStart",
    "OIDCClaims",
    "OIDCClient",
    "Permission",
    "Principal",
    "Role",
    "SessionClaims",
    "load_secret_key",
    "permissions_for",
]
