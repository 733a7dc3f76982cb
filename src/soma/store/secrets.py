"""A tenant's sealed secrets in the store.

The store only keeps what :mod:`soma.secrets` sealed and hands it back; it never sees a
plaintext value, so nothing here can log or leak one. Every query is scoped by ``tenant_id``:
another tenant's secret is NotFound, not Forbidden, so its existence is not confirmed either.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from soma.errors import NotFound
from soma.store.identity import _tenant
from soma.store.records import SecretInfo, SecretRow
from soma.store.tables import TenantSecret, utcnow

# Listings never load the sealed bytes: they are of no use to anyone who only wants names.
_LISTED = (
    TenantSecret.tenant_id,
    TenantSecret.name,
    TenantSecret.created_at,
    TenantSecret.updated_at,
    TenantSecret.updated_by,
)


class SecretsMixin:
    """The secret methods of :class:`soma.store.Store`."""

    # Provided by Store.
    def _read(self) -> AbstractContextManager[Session]:
        raise NotImplementedError

    def _write(self) -> AbstractContextManager[Session]:
        raise NotImplementedError

    def put_secret_row(
        self,
        tenant_id: str,
        name: str,
        *,
        nonce: bytes,
        ciphertext: bytes,
        key_version: int,
        updated_by: str,
    ) -> SecretInfo:
        """Create or replace a sealed secret, keeping its first ``created_at``.

        NotFound for an unknown tenant, so a typo in a tenant id does not quietly create
        credentials nobody will ever read.
        """
        try:
            return self._put(tenant_id, name, nonce, ciphertext, key_version, updated_by)
        except IntegrityError:  # lost a race with a first write of the same name: replace it
            return self._put(tenant_id, name, nonce, ciphertext, key_version, updated_by)

    def _put(
        self,
        tenant_id: str,
        name: str,
        nonce: bytes,
        ciphertext: bytes,
        key_version: int,
        updated_by: str,
    ) -> SecretInfo:
        now = utcnow()
        with self._write() as session:
            _tenant(session, tenant_id)
            row = session.get(TenantSecret, (tenant_id, name))
            if row is None:
                row = TenantSecret(tenant_id=tenant_id, name=name, created_at=now)
                session.add(row)
            row.nonce = nonce
            row.ciphertext = ciphertext
            row.key_version = key_version
            row.updated_at = now
            row.updated_by = updated_by
            session.flush()
            return _info(row)

    def get_secret_row(self, tenant_id: str, name: str) -> SecretRow:
        """The sealed secret, or NotFound."""
        with self._read() as session:
            row = session.get(TenantSecret, (tenant_id, name))
            if row is None:
                raise _missing(tenant_id, name)
            return SecretRow.model_validate(row)

    def list_secret_rows(self, tenant_id: str) -> list[SecretInfo]:
        """The tenant's secrets by name, without their sealed bytes."""
        query = (
            select(*_LISTED).where(TenantSecret.tenant_id == tenant_id).order_by(TenantSecret.name)
        )
        with self._read() as session:
            return [SecretInfo.model_validate(row._asdict()) for row in session.execute(query)]

    def delete_secret_row(self, tenant_id: str, name: str) -> None:
        """Forget a secret; NotFound if there is none, so a mistyped name is not a silent no-op."""
        with self._write() as session:
            result = session.execute(
                delete(TenantSecret).where(
                    TenantSecret.tenant_id == tenant_id, TenantSecret.name == name
                )
            )
            if getattr(result, "rowcount", 0) == 0:
                raise _missing(tenant_id, name)


def _info(row: TenantSecret) -> SecretInfo:
    return SecretInfo(
        tenant_id=row.tenant_id,
        name=row.name,
        created_at=row.created_at,
        updated_at=row.updated_at,
        updated_by=row.updated_by,
    )


def _missing(tenant_id: str, name: str) -> NotFound:
    return NotFound(
        f"tenant '{tenant_id}' has no secret '{name}'",
        hint=f"set it with `soma secrets set {tenant_id} {name}`"
        " or PUT /api/v1/secrets/{name}; list existing names with `soma secrets list`",
    )
