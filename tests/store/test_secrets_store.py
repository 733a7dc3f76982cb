"""Sealed secrets in the store, on SQLite and PostgreSQL: tenant-scoped, bytes kept intact."""

from __future__ import annotations

import os

import pytest

from soma.errors import NotFound
from soma.store import SecretInfo, Store

NONCE = os.urandom(12)
SEALED = bytes(range(256)) * 4  # every byte value, NUL included


def put(
    store: Store, tenant: str = "acme", name: str = "github.token", by: str = "u"
) -> SecretInfo:
    return store.put_secret_row(
        tenant, name, nonce=NONCE, ciphertext=SEALED, key_version=1, updated_by=by
    )


@pytest.fixture
def tenants(store: Store) -> Store:
    store.create_tenant("acme", "Acme")
    store.create_tenant("other", "Other")
    return store


def test_put_get_list_delete(tenants: Store) -> None:
    store = tenants
    info = put(store)
    assert (info.tenant_id, info.name, info.updated_by) == ("acme", "github.token", "u")
    row = store.get_secret_row("acme", "github.token")
    assert (row.nonce, row.ciphertext, row.key_version) == (NONCE, SEALED, 1)
    put(store, name="a.first")
    assert [i.name for i in store.list_secret_rows("acme")] == ["a.first", "github.token"]
    store.delete_secret_row("acme", "github.token")
    with pytest.raises(NotFound, match=r"has no secret 'github\.token'"):
        store.get_secret_row("acme", "github.token")
    with pytest.raises(NotFound):
        store.delete_secret_row("acme", "github.token")


def test_replace_keeps_created_at(tenants: Store) -> None:
    first = put(tenants, by="ann")
    second = tenants.put_secret_row(
        "acme", "github.token", nonce=b"n" * 12, ciphertext=b"c", key_version=1, updated_by="bob"
    )
    assert second.created_at == first.created_at
    assert second.updated_at >= first.updated_at
    assert second.updated_by == "bob"
    assert tenants.get_secret_row("acme", "github.token").ciphertext == b"c"


def test_tenant_scoped(tenants: Store) -> None:
    put(tenants)
    assert tenants.list_secret_rows("other") == []
    with pytest.raises(NotFound):
        tenants.get_secret_row("other", "github.token")
    with pytest.raises(NotFound):
        tenants.delete_secret_row("other", "github.token")
    put(tenants, tenant="other")
    tenants.delete_secret_row("other", "github.token")
    assert tenants.get_secret_row("acme", "github.token").ciphertext == SEALED


def test_unknown_tenant(store: Store) -> None:
    with pytest.raises(NotFound, match="no tenant 'ghost'"):
        put(store, tenant="ghost")


def test_listing_has_no_sealed_bytes(tenants: Store) -> None:
    put(tenants)
    (info,) = tenants.list_secret_rows("acme")
    assert set(info.model_dump()) == {"tenant_id", "name", "created_at", "updated_at", "updated_by"}
