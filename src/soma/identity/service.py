"""Identity: who may call Soma, and as whom.

:class:`Identity` manages tenants, users and API keys over the store, turns a presented
credential (an API key or a session token) into a :class:`Principal`, and maps logins from an
identity provider to users.

:meth:`Identity.authenticate` runs on every gateway request, so it avoids the database where it
safely can: a successful key or session lookup is cached in process for :data:`CACHE_TTL_S`
seconds. Revoking a key, or disabling a user or tenant, *through the same instance* takes effect
at once; done by another process (another gateway replica, the CLI) it takes effect within
those seconds. Secrets and expiry are checked on every call, cached or not, and a key's
``last_used_at`` is written at most once a minute (:data:`TOUCH_INTERVAL`).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeGuard

from soma.errors import Conflict, Forbidden, NotFound, SomaError, Unauthorized
from soma.identity import keys, sessions
from soma.identity.cache import TTLCache
from soma.identity.login import OIDCClaims
from soma.identity.permissions import (
    ROLE_PERMISSIONS,
    ROLES,
    Permission,
    Role,
    permissions_for,
)
from soma.identity.principal import Principal
from soma.store import ApiKeyRecord, Store, TenantRecord, UserRecord
from soma.store.audit import digest
from soma.store.tables import utcnow

CACHE_TTL_S = 5.0
TOUCH_INTERVAL = timedelta(minutes=1)
MIN_SECRET_BYTES = 32
SYSTEM = "system"
"""The audit actor of identity changes made with no caller to name (OIDC sign-ups, tests)."""
TENANT_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
_EMAIL = re.compile(r"[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f]+")  # no NUL or control chars
_MAX_EMAIL = 320
_MAX_NAME = 255
_PERMISSION_VALUES = frozenset(p.value for p in Permission)
_NEW_KEY = "create a new key with `soma admin create-key`"
_RELOGIN = "log in again"


@dataclass(frozen=True, slots=True)
class _KeyGrant:
    """What a valid key grants, as cached: enough to re-check the secret and expiry."""

    secret_hash: str
    expires_at: datetime | None
    last_used_at: datetime | None
    principal: Principal


class Identity:
    """Tenants, users, API keys and authentication over one :class:`Store`.

    ``secret`` signs session tokens (see :func:`soma.identity.load_secret_key`); every
    instance that must accept another's sessions needs the same one.
    """

    def __init__(
        self,
        store: Store,
        secret: bytes,
        *,
        session_ttl_s: int = 3600,
        cache_ttl_s: float = CACHE_TTL_S,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        if len(secret) < MIN_SECRET_BYTES:
            raise SomaError(
                f"the session secret is {len(secret)} bytes; at least {MIN_SECRET_BYTES} needed",
                hint="use soma.identity.load_secret_key(settings)",
            )
        if session_ttl_s <= 0:
            raise SomaError(f"session_ttl_s must be positive, not {session_ttl_s}")
        self._store = store
        self._secret = secret
        self.session_ttl_s = session_ttl_s
        self._clock = clock
        self._keys: TTLCache[str, _KeyGrant] = TTLCache(cache_ttl_s)
        self._users: TTLCache[tuple[str, str], Principal] = TTLCache(cache_ttl_s)
        self._touched: dict[str, datetime] = {}

    def __repr__(self) -> str:
        return f"Identity(store={self._store.url!r})"

    # -- tenants and users ---------------------------------------------------------------------

    def create_tenant(
        self,
        tenant_id: str,
        name: str = "",
        *,
        requests_per_min: int | None = None,
        tokens_per_min: int | None = None,
    ) -> TenantRecord:
        """A new tenant; Conflict if the id is taken. ``name`` defaults to the id."""
        if not TENANT_ID.fullmatch(tenant_id):
            raise SomaError(
                f"invalid tenant id {tenant_id!r}: use 1-63 lowercase letters, digits and"
                " dashes, starting with a letter or digit",
                hint="for example 'acme' or 'team-42'",
            )
        for what, limit in (
            ("requests_per_min", requests_per_min),
            ("tokens_per_min", tokens_per_min),
        ):
            if limit is not None and limit <= 0:
                raise SomaError(
                    f"{what} must be positive, not {limit}", hint="leave it out for the default"
                )
        return self._store.create_tenant(
            tenant_id,
            _check_name(name or tenant_id, "tenant name"),
            requests_per_min=requests_per_min,
            tokens_per_min=tokens_per_min,
        )

    def create_user(
        self, tenant_id: str, email: str, role: str, name: str = "", *, actor: str = SYSTEM
    ) -> UserRecord:
        """A new user of an existing tenant; Conflict if the email is taken there.

        Emails are stored lower-cased, so ``Ann@X.org`` and ``ann@x.org`` are one user.
        """
        user = self._store.create_user(
            tenant_id,
            _new_user_id(),
            _normalize_email(email),
            _check_role(role),
            _check_name(name, "user name"),
        )
        self._audit(tenant_id, actor, "user.create", {"user": user.id, "role": user.role})
        return user

    def set_user_disabled(
        self, tenant_id: str, user_id: str, disabled: bool = True, *, actor: str = SYSTEM
    ) -> UserRecord:
        """Disable (or re-enable) a user; their keys and sessions stop working at once here."""
        user = self._store.set_user_disabled(tenant_id, user_id, disabled)
        self._forget_all()
        operation = "user.disable" if disabled else "user.enable"
        self._audit(tenant_id, actor, operation, {"user": user_id})
        return user

    def set_tenant_disabled(
        self, tenant_id: str, disabled: bool = True, *, actor: str = SYSTEM
    ) -> TenantRecord:
        """Disable (or re-enable) a whole tenant."""
        tenant = self._store.set_tenant_disabled(tenant_id, disabled)
        self._forget_all()
        operation = "tenant.disable" if disabled else "tenant.enable"
        self._audit(tenant_id, actor, operation, {"tenant": tenant_id})
        return tenant

    def _audit(self, tenant_id: str, actor: str, operation: str, subject: dict[str, Any]) -> None:
        """Identity changes join the tenant's tamper-evident audit chain next to policy
        decisions, so "who gave this key its access" has the same answer trail as "who ran
        this command". Only ids and roles are recorded (as a digest), never a secret."""
        self._store.append_audit(
            tenant_id=tenant_id,
            project_id=None,
            node_id=None,
            actor=actor,
            action_kind="identity",
            tool=operation,
            arguments_digest=digest(subject),
            rule_id=None,
            effect="allow",
            reason=f"{operation} " + " ".join(f"{k}={v}" for k, v in sorted(subject.items())),
        )

    # -- API keys ------------------------------------------------------------------------------

    def create_key(
        self,
        tenant_id: str,
        user_id: str,
        name: str,
        *,
        scopes: Iterable[Permission] | None = None,
        expires_in_s: int | None = None,
        actor: str = SYSTEM,
    ) -> tuple[ApiKeyRecord, str]:
        """A new key for a user, and its plaintext, which exists only in this return value.

        ``scopes`` narrows the key to some of the user's permissions (None: all of them);
        asking for one the user's role lacks is Forbidden, since a key never widens a role.
        """
        user, tenant = self._store.get_user_with_tenant(tenant_id, user_id)
        if tenant.disabled or user.disabled:
            who = f"tenant '{tenant.id}'" if tenant.disabled else f"user {user.email}"
            raise Forbidden(f"{who} is disabled, so it cannot get new keys", hint="enable it first")
        granted = _parse_scopes(scopes)
        if granted is not None:
            extra = granted - ROLE_PERMISSIONS[_check_role(user.role)]
            if extra:
                raise Forbidden(
                    f"{user.email} is a {user.role}, which does not have"
                    f" {', '.join(sorted(extra))}; a key can only narrow its user's role",
                    hint="drop those scopes, or give the key to a user whose role has them",
                )
        expires_at = None
        if expires_in_s is not None:
            if expires_in_s <= 0:
                raise SomaError(f"expires_in_s must be positive, not {expires_in_s}")
            expires_at = self._clock() + timedelta(seconds=expires_in_s)
        new = keys.generate_key()
        record = self._store.add_api_key(
            tenant_id,
            user_id,
            new.key_id,
            _check_name(name, "key name", required=True),
            new.secret_hash,
            scopes=None if granted is None else sorted(granted),
            expires_at=expires_at,
        )
        self._audit(
            tenant_id,
            actor,
            "key.create",
            {"key": record.id, "user": user_id, "scopes": record.scopes},
        )
        return record, new.plaintext

    def list_keys(self, tenant_id: str, user_id: str | None = None) -> list[ApiKeyRecord]:
        """The tenant's keys (of one user, if given), revoked and expired ones included."""
        return self._store.list_api_keys(tenant_id, user_id)

    def revoke_key(self, tenant_id: str, key_id: str, *, actor: str = SYSTEM) -> ApiKeyRecord:
        """Revoke a key of this tenant; it is refused from the next request on."""
        record = self._store.revoke_api_key(tenant_id, key_id)
        self._keys.invalidate(key_id)
        self._audit(tenant_id, actor, "key.revoke", {"key": key_id, "user": record.user_id})
        return record

    # -- authentication ------------------------------------------------------------------------

    def authenticate(self, token: str) -> Principal:
        """The principal a bearer credential (API key or session token) proves; else
        Unauthorized, saying why (never repeating the credential)."""
        if not token:
            raise Unauthorized(
                "no credentials", hint="send `Authorization: Bearer <API key or session token>`"
            )
        if token.startswith(keys.KEY_PREFIX):
            return self._authenticate_key(token)
        return self._authenticate_session(token)

    def issue_session(self, tenant_id: str, user_id: str) -> str:
        """A session token for the user, valid for ``session_ttl_s`` seconds."""
        principal = self._user_principal(tenant_id, user_id)
        return sessions.issue(
            self._secret,
            tenant_id=principal.tenant_id,
            user_id=principal.user_id,
            role=principal.role,
            ttl_s=self.session_ttl_s,
            now=self._clock().timestamp(),
        )

    def _authenticate_key(self, token: str) -> Principal:
        parsed = keys.parse_key(token)
        grant = self._keys.get(parsed.key_id)
        if grant is None:
            generation = self._keys.generation
            grant = self._load_key(parsed)
            self._keys.put(parsed.key_id, grant, generation)
        elif not keys.secret_matches(parsed.secret, grant.secret_hash):
            raise _invalid_key(parsed.key_id)
        now = self._clock()
        if grant.expires_at is not None and now >= grant.expires_at:
            raise Unauthorized(
                f"API key {parsed.key_id} expired at {grant.expires_at:%Y-%m-%d %H:%M} UTC",
                hint=_NEW_KEY,
            )
        self._touch(parsed.key_id, grant.last_used_at, now)
        return grant.principal

    def _load_key(self, parsed: keys.ParsedKey) -> _KeyGrant:
        try:
            key, user, tenant = self._store.get_api_key_owner(parsed.key_id)
        except NotFound:
            raise _invalid_key(parsed.key_id) from None
        # The secret first: without it, nobody may learn whether the key is revoked.
        if not keys.secret_matches(parsed.secret, key.secret_hash):
            raise _invalid_key(parsed.key_id)
        if key.revoked_at is not None:
            raise Unauthorized(
                f"API key {key.id} was revoked at {key.revoked_at:%Y-%m-%d %H:%M} UTC",
                hint=_NEW_KEY,
            )
        _check_enabled(user, tenant)
        role = _check_role(user.role)
        scopes = None if key.scopes is None else _known_permissions(key.scopes)
        principal = Principal(
            tenant_id=key.tenant_id,
            user_id=user.id,
            role=role,
            permissions=permissions_for(role, scopes),
            key_id=key.id,
        )
        return _KeyGrant(key.secret_hash, key.expires_at, key.last_used_at, principal)

    def _authenticate_session(self, token: str) -> Principal:
        claims = sessions.verify(self._secret, token)
        try:
            return self._user_principal(claims.tid, claims.sub)
        except NotFound:
            raise Unauthorized("the session's user no longer exists", hint=_RELOGIN) from None

    def _user_principal(self, tenant_id: str, user_id: str) -> Principal:
        """The user's current principal: the role is read from the store, not from the token,
        so a demotion or a disabled account applies to sessions already issued."""
        cached = self._users.get((tenant_id, user_id))
        if cached is not None:
            return cached
        generation = self._users.generation
        user, tenant = self._store.get_user_with_tenant(tenant_id, user_id)
        _check_enabled(user, tenant)
        role = _check_role(user.role)
        principal = Principal(tenant.id, user.id, role, permissions_for(role))
        self._users.put((tenant_id, user_id), principal, generation)
        return principal

    def _touch(self, key_id: str, stored: datetime | None, now: datetime) -> None:
        last = self._touched.get(key_id, stored)
        if last is not None and now - last < TOUCH_INTERVAL:
            return
        self._touched[key_id] = now
        self._store.touch_api_key(key_id, now)

    def _forget_all(self) -> None:
        self._keys.clear()
        self._users.clear()

    # -- login ---------------------------------------------------------------------------------

    def login_oidc(self, claims: OIDCClaims, *, tenant_id: str, default_role: Role) -> UserRecord:
        """The user a verified provider login maps to, in ``tenant_id``.

        Found by the provider identity (issuer + subject) first; else the tenant's user with
        the same *verified* email is linked to it; else a new user with ``default_role`` is
        created. An unverified email is refused rather than trusted: anyone can type any
        address at some providers, and it would claim (or squat) that address's user.
        """
        try:
            tenant = self._store.get_tenant(tenant_id)
        except NotFound:
            raise Unauthorized(
                f"logins go to tenant '{tenant_id}', which does not exist",
                hint=f"create it (`soma admin create-tenant {tenant_id}`) or set SOMA_OIDC_TENANT",
            ) from None
        if tenant.disabled:
            raise Unauthorized(f"tenant '{tenant_id}' is disabled")
        try:
            user = self._store.get_user_by_oidc(tenant_id, claims.issuer, claims.subject)
        except NotFound:
            user = self._link_or_create(claims, tenant_id, _check_role(default_role))
        if user.disabled:
            raise Unauthorized(f"user {user.email} is disabled", hint="ask a tenant admin")
        return user

    def _link_or_create(self, claims: OIDCClaims, tenant_id: str, role: Role) -> UserRecord:
        if claims.email is None:
            raise Unauthorized(
                "the login provider did not say which email this account has",
                hint="allow the 'email' scope for Soma's client at the provider",
            )
        email = _normalize_email(claims.email)
        if not claims.email_verified:
            raise Unauthorized(
                f"the login provider has not verified that this account owns {email}",
                hint="verify the email address at the provider, then log in again",
            )
        try:
            existing = self._store.get_user_by_email(tenant_id, email)
        except NotFound:
            existing = None
        try:
            if existing is None:
                user = self._store.create_user(
                    tenant_id,
                    _new_user_id(),
                    email,
                    role,
                    (claims.name or "")[:_MAX_NAME],
                    oidc_issuer=claims.issuer,
                    oidc_subject=claims.subject,
                )
                subject = {"user": user.id, "role": role}
                self._audit(tenant_id, f"oidc:{claims.issuer}", "user.create", subject)
                return user
            if existing.oidc_subject is not None:
                raise Unauthorized(
                    f"user {email} is already linked to a different account at"
                    f" {existing.oidc_issuer}",
                    hint="log in with that account, or ask an admin to fix the link",
                )
            linked = self._store.link_user_oidc(
                tenant_id, existing.id, claims.issuer, claims.subject
            )
            self._audit(tenant_id, f"oidc:{claims.issuer}", "user.link", {"user": linked.id})
            return linked
        except Conflict as exc:  # e.g. the identity is linked to a user in another tenant
            raise Unauthorized(exc.message, hint=exc.hint) from exc


# -- validation --------------------------------------------------------------------------------


def _is_role(value: str) -> TypeGuard[Role]:
    return value in ROLES


def _check_role(value: str) -> Role:
    if not _is_role(value):
        raise SomaError(f"unknown role {value!r}", hint=f"use one of: {', '.join(ROLES)}")
    return value


def _normalize_email(email: str) -> str:
    normalized = email.strip().lower()
    if len(normalized) > _MAX_EMAIL or not _EMAIL.fullmatch(normalized):
        raise SomaError(f"invalid email address {email!r}", hint="for example ann@example.com")
    return normalized


def _check_name(name: str, what: str, *, required: bool = False) -> str:
    name = name.strip()
    if required and not name:
        raise SomaError(f"a {what} is required", hint="say what it is for, e.g. 'ci'")
    if len(name) > _MAX_NAME:
        raise SomaError(f"the {what} is {len(name)} characters; at most {_MAX_NAME} are allowed")
    return name


def _parse_scopes(scopes: Iterable[Permission | str] | None) -> frozenset[Permission] | None:
    if scopes is None:
        return None
    parsed = set()
    for scope in scopes:
        if scope not in _PERMISSION_VALUES:
            raise SomaError(
                f"unknown scope {scope!r}",
                hint=f"use some of: {', '.join(sorted(_PERMISSION_VALUES))}",
            )
        parsed.add(Permission(scope))
    if not parsed:
        raise SomaError(
            "an empty scope list would make a key that can do nothing",
            hint="give at least one scope, or none at all for everything the user's role allows",
        )
    return frozenset(parsed)


def _known_permissions(scopes: Iterable[str]) -> frozenset[Permission]:
    """Scopes from the store; unknown ones (from a newer or older version) grant nothing."""
    return frozenset(Permission(s) for s in scopes if s in _PERMISSION_VALUES)


def _check_enabled(user: UserRecord, tenant: TenantRecord) -> None:
    if tenant.disabled:
        raise Unauthorized(f"tenant '{tenant.id}' is disabled", hint="ask the Soma operator")
    if user.disabled:
        raise Unauthorized(f"user {user.email} is disabled", hint="ask a tenant admin")


def _invalid_key(key_id: str) -> Unauthorized:
    return Unauthorized(
        f"API key {key_id} is not valid: there is no such key, or its secret is wrong",
        hint="copy the whole key exactly as it was shown when created, or " + _NEW_KEY,
    )


def _new_user_id() -> str:
    return f"usr_{secrets.token_hex(8)}"
