"""Tenants, users and API keys in the store.

These methods only keep records; checking roles, scopes, secrets and expiry is the job of
:mod:`soma.identity`, which sits above the store. Every lookup of something a tenant owns is
scoped by ``tenant_id``, so a user or key of tenant B is NotFound to tenant A (rather than
Forbidden, which would confirm that it exists). The exceptions are :meth:`get_api_key` and
:meth:`get_api_key_owner`: authentication starts from nothing but the key, and the key's own
tenant is what it proves.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import datetime

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from soma.errors import Conflict, NotFound
from soma.store.records import ApiKeyRecord, TenantRecord, UserRecord
from soma.store.tables import ApiKey, Tenant, User, utcnow


class IdentityMixin:
    """The identity methods of :class:`soma.store.Store`."""

    # Provided by Store.
    def _read(self) -> AbstractContextManager[Session]:
        raise NotImplementedError

    def _write(self) -> AbstractContextManager[Session]:
        raise NotImplementedError

    # -- tenants -------------------------------------------------------------------------------

    def create_tenant(
        self,
        tenant_id: str,
        name: str,
        *,
        requests_per_min: int | None = None,
        tokens_per_min: int | None = None,
    ) -> TenantRecord:
        """Record a new tenant; a taken id is a Conflict."""
        tenant = Tenant(
            id=tenant_id,
            name=name,
            created_at=utcnow(),
            requests_per_min=requests_per_min,
            tokens_per_min=tokens_per_min,
            disabled=False,
        )
        try:
            with self._write() as session:
                if session.get(Tenant, tenant_id) is not None:
                    raise _tenant_taken(tenant_id)
                session.add(tenant)
                session.flush()
                return TenantRecord.model_validate(tenant)
        except IntegrityError as exc:  # lost a race with another creator of the same id
            raise _tenant_taken(tenant_id) from exc

    def get_tenant(self, tenant_id: str) -> TenantRecord:
        """The tenant, or NotFound."""
        with self._read() as session:
            return TenantRecord.model_validate(_tenant(session, tenant_id))

    def list_tenants(self) -> list[TenantRecord]:
        """All tenants, by id."""
        with self._read() as session:
            return [
                TenantRecord.model_validate(t)
                for t in session.scalars(select(Tenant).order_by(Tenant.id))
            ]

    def set_tenant_disabled(self, tenant_id: str, disabled: bool) -> TenantRecord:
        """Disable (or re-enable) a tenant: its users and keys stop authenticating."""
        with self._write() as session:
            tenant = _tenant(session, tenant_id)
            tenant.disabled = disabled
            session.flush()
            return TenantRecord.model_validate(tenant)

    # -- users ---------------------------------------------------------------------------------

    def create_user(
        self,
        tenant_id: str,
        user_id: str,
        email: str,
        role: str,
        name: str = "",
        *,
        oidc_issuer: str | None = None,
        oidc_subject: str | None = None,
    ) -> UserRecord:
        """Record a new user in an existing tenant.

        NotFound if the tenant does not exist; Conflict if the email is taken in the tenant or
        the OIDC identity is already linked to some user.
        """
        user = User(
            id=user_id,
            tenant_id=tenant_id,
            email=email,
            name=name,
            role=role,
            oidc_issuer=oidc_issuer,
            oidc_subject=oidc_subject,
            created_at=utcnow(),
            disabled=False,
        )
        try:
            with self._write() as session:
                _tenant(session, tenant_id)
                _check_user_free(session, user)
                session.add(user)
                session.flush()
                return UserRecord.model_validate(user)
        except IntegrityError as exc:  # lost a race; say which constraint it was
            with self._read() as session:
                _check_user_free(session, user)
            raise Conflict(
                f"user '{user_id}' already exists", hint="retry; a new id is drawn each time"
            ) from exc

    def get_user(self, tenant_id: str, user_id: str) -> UserRecord:
        """The user, or NotFound if it does not exist *in this tenant*."""
        with self._read() as session:
            return UserRecord.model_validate(_user(session, tenant_id, user_id))

    def get_user_by_email(self, tenant_id: str, email: str) -> UserRecord:
        """The tenant's user with this (exact, already normalised) email, or NotFound."""
        query = select(User).where(User.tenant_id == tenant_id, User.email == email)
        with self._read() as session:
            user = session.scalar(query)
            if user is None:
                raise NotFound(
                    f"no user with email '{email}' in tenant '{tenant_id}'",
                    hint=f"list the users with `soma admin list-users {tenant_id}`",
                )
            return UserRecord.model_validate(user)

    def get_user_by_oidc(self, tenant_id: str, issuer: str, subject: str) -> UserRecord:
        """The tenant's user linked to this login-provider identity, or NotFound."""
        query = select(User).where(
            User.tenant_id == tenant_id, User.oidc_issuer == issuer, User.oidc_subject == subject
        )
        with self._read() as session:
            user = session.scalar(query)
            if user is None:
                raise NotFound(f"no user in tenant '{tenant_id}' is linked to {subject}@{issuer}")
            return UserRecord.model_validate(user)

    def list_users(self, tenant_id: str) -> list[UserRecord]:
        """The tenant's users, by email."""
        query = select(User).where(User.tenant_id == tenant_id).order_by(User.email)
        with self._read() as session:
            return [UserRecord.model_validate(u) for u in session.scalars(query)]

    def link_user_oidc(self, tenant_id: str, user_id: str, issuer: str, subject: str) -> UserRecord:
        """Link a user to a login-provider identity; Conflict if another user has it."""
        try:
            with self._write() as session:
                user = _user(session, tenant_id, user_id)
                user.oidc_issuer = issuer
                user.oidc_subject = subject
                session.flush()
                return UserRecord.model_validate(user)
        except IntegrityError as exc:
            raise _identity_taken(issuer, subject) from exc

    def set_user_disabled(self, tenant_id: str, user_id: str, disabled: bool) -> UserRecord:
        """Disable (or re-enable) a user: their keys and sessions stop authenticating."""
        with self._write() as session:
            user = _user(session, tenant_id, user_id)
            user.disabled = disabled
            session.flush()
            return UserRecord.model_validate(user)

    # -- API keys ------------------------------------------------------------------------------

    def add_api_key(
        self,
        tenant_id: str,
        user_id: str,
        key_id: str,
        name: str,
        secret_hash: str,
        *,
        scopes: Sequence[str] | None = None,
        expires_at: datetime | None = None,
    ) -> ApiKeyRecord:
        """Record a key of a user of this tenant (NotFound if there is no such user)."""
        key = ApiKey(
            id=key_id,
            tenant_id=tenant_id,
            user_id=user_id,
            name=name,
            secret_hash=secret_hash,
            scopes=None if scopes is None else list(scopes),
            created_at=utcnow(),
            expires_at=expires_at,
        )
        try:
            with self._write() as session:
                _user(session, tenant_id, user_id)
                session.add(key)
                session.flush()
                return ApiKeyRecord.model_validate(key)
        except IntegrityError as exc:
            raise Conflict(
                f"an API key with id '{key_id}' already exists",
                hint="key ids are random; create the key again to draw a new one",
            ) from exc

    def get_api_key(self, key_id: str) -> ApiKeyRecord:
        """The key with this id in any tenant, or NotFound. For authentication only: anything
        acting for a tenant must use :meth:`list_api_keys` or :meth:`revoke_api_key`."""
        with self._read() as session:
            key = session.get(ApiKey, key_id)
            if key is None:
                raise _key_not_found(key_id, None)
            return ApiKeyRecord.model_validate(key)

    def get_api_key_owner(self, key_id: str) -> tuple[ApiKeyRecord, UserRecord, TenantRecord]:
        """The key with its user and tenant, in one query (the gateway's per-request path)."""
        query = (
            select(ApiKey, User, Tenant)
            .join(User, User.id == ApiKey.user_id)
            .join(Tenant, Tenant.id == User.tenant_id)
            .where(ApiKey.id == key_id, User.tenant_id == ApiKey.tenant_id)
        )
        with self._read() as session:
            row = session.execute(query).one_or_none()
            if row is None:
                raise _key_not_found(key_id, None)
            key, user, tenant = row
            return (
                ApiKeyRecord.model_validate(key),
                UserRecord.model_validate(user),
                TenantRecord.model_validate(tenant),
            )

    def get_user_with_tenant(self, tenant_id: str, user_id: str) -> tuple[UserRecord, TenantRecord]:
        """The user and its tenant in one query, or NotFound."""
        query = (
            select(User, Tenant)
            .join(Tenant, Tenant.id == User.tenant_id)
            .where(User.id == user_id, User.tenant_id == tenant_id)
        )
        with self._read() as session:
            row = session.execute(query).one_or_none()
            if row is None:
                raise _user_not_found(tenant_id, user_id)
            user, tenant = row
            return UserRecord.model_validate(user), TenantRecord.model_validate(tenant)

    def list_api_keys(self, tenant_id: str, user_id: str | None = None) -> list[ApiKeyRecord]:
        """The tenant's keys (of one user, if given), oldest first, revoked ones included."""
        query = select(ApiKey).where(ApiKey.tenant_id == tenant_id)
        if user_id is not None:
            query = query.where(ApiKey.user_id == user_id)
        query = query.order_by(ApiKey.created_at, ApiKey.id)
        with self._read() as session:
            return [ApiKeyRecord.model_validate(k) for k in session.scalars(query)]

    def revoke_api_key(self, tenant_id: str, key_id: str) -> ApiKeyRecord:
        """Revoke the tenant's key. Revoking again keeps the first revocation time."""
        query = select(ApiKey).where(ApiKey.id == key_id, ApiKey.tenant_id == tenant_id)
        with self._write() as session:
            key = session.scalar(query.with_for_update())
            if key is None:
                raise _key_not_found(key_id, tenant_id)
            if key.revoked_at is None:
                key.revoked_at = utcnow()
                session.flush()
            return ApiKeyRecord.model_validate(key)

    def touch_api_key(self, key_id: str, when: datetime) -> None:
        """Set the key's ``last_used_at`` to ``when`` unless it is already later.

        Never moves the time backwards, so concurrent gateway replicas may touch in any order.
        """
        with self._write() as session:
            session.execute(
                update(ApiKey)
                .where(
                    ApiKey.id == key_id,
                    or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < when),
                )
                .values(last_used_at=when)
                .execution_options(synchronize_session=False)
            )


# -- helpers -----------------------------------------------------------------------------------


def _tenant(session: Session, tenant_id: str) -> Tenant:
    tenant = session.get(Tenant, tenant_id)
    if tenant is None:
        raise NotFound(
            f"no tenant '{tenant_id}'",
            hint=f"create it with `soma admin create-tenant {tenant_id}`",
        )
    return tenant


def _user(session: Session, tenant_id: str, user_id: str) -> User:
    user = session.scalar(select(User).where(User.id == user_id, User.tenant_id == tenant_id))
    if user is None:
        raise _user_not_found(tenant_id, user_id)
    return user


def _check_user_free(session: Session, user: User) -> None:
    """Raise Conflict, naming the clash, if ``user`` would break a unique constraint."""
    taken = select(User.id).where(User.tenant_id == user.tenant_id, User.email == user.email)
    if session.scalar(taken) is not None:
        raise Conflict(
            f"tenant '{user.tenant_id}' already has a user with email '{user.email}'",
            hint="emails are unique within a tenant; use the existing user",
        )
    if user.oidc_issuer is not None and user.oidc_subject is not None:
        linked = select(User.id).where(
            User.oidc_issuer == user.oidc_issuer, User.oidc_subject == user.oidc_subject
        )
        if session.scalar(linked) is not None:
            raise _identity_taken(user.oidc_issuer, user.oidc_subject)


def _user_not_found(tenant_id: str, user_id: str) -> NotFound:
    return NotFound(
        f"no user '{user_id}' in tenant '{tenant_id}'",
        hint=f"list the tenant's users with `soma admin list-users {tenant_id}`",
    )


def _key_not_found(key_id: str, tenant_id: str | None) -> NotFound:
    where = f" in tenant '{tenant_id}'" if tenant_id is not None else ""
    hint = f"list the keys with `soma admin list-keys {tenant_id}`" if tenant_id else None
    return NotFound(f"no API key '{key_id}'{where}", hint=hint)


def _tenant_taken(tenant_id: str) -> Conflict:
    return Conflict(
        f"a tenant with id '{tenant_id}' already exists",
        hint="tenant ids are unique; choose another id or use the existing tenant",
    )


def _identity_taken(issuer: str, subject: str) -> Conflict:
    return Conflict(
        f"the login identity {subject}@{issuer} is already linked to another user",
        hint="one provider account maps to exactly one user, in any tenant; log in as that user",
    )
