"""Tenants, users and API keys in the store (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from soma.errors import Conflict, NotFound
from soma.store import Store

HASH = "ab" * 32


@pytest.fixture
def acme(store: Store) -> Store:
    store.create_tenant("acme", "Acme", requests_per_min=60)
    store.create_tenant("globex", "Globex")
    store.create_user("acme", "u1", "ann@acme.test", "admin", "Ann")
    store.create_user("globex", "u2", "bob@globex.test", "viewer")
    return store


def test_the_default_tenant_exists_after_migration(store: Store) -> None:
    tenant = store.get_tenant("default")
    assert tenant.disabled is False
    assert tenant.requests_per_min is None


def test_tenants(acme: Store) -> None:
    tenant = acme.get_tenant("acme")
    assert (tenant.name, tenant.requests_per_min, tenant.tokens_per_min) == ("Acme", 60, None)
    assert tenant.created_at.tzinfo is not None
    assert [t.id for t in acme.list_tenants()] == ["acme", "default", "globex"]
    with pytest.raises(Conflict, match="already exists"):
        acme.create_tenant("acme", "again")
    with pytest.raises(NotFound, match="create-tenant nope"):
        acme.get_tenant("nope")
    assert acme.set_tenant_disabled("acme", True).disabled


def test_users_are_scoped_by_tenant(acme: Store) -> None:
    assert acme.get_user("acme", "u1").email == "ann@acme.test"
    assert acme.get_user_by_email("acme", "ann@acme.test").id == "u1"
    with pytest.raises(NotFound):
        acme.get_user("globex", "u1")
    with pytest.raises(NotFound):
        acme.get_user_by_email("globex", "ann@acme.test")
    assert [u.id for u in acme.list_users("acme")] == ["u1"]
    assert [u.id for u in acme.list_users("globex")] == ["u2"]


def test_user_email_is_unique_per_tenant_only(acme: Store) -> None:
    with pytest.raises(Conflict, match="already has a user with email"):
        acme.create_user("acme", "u3", "ann@acme.test", "viewer")
    acme.create_user("globex", "u3", "ann@acme.test", "viewer")  # another tenant: fine


def test_user_needs_an_existing_tenant(store: Store) -> None:
    with pytest.raises(NotFound, match="no tenant 'nope'"):
        store.create_user("nope", "u1", "a@b.c", "viewer")


def test_oidc_identity_links_once_across_tenants(acme: Store) -> None:
    linked = acme.link_user_oidc("acme", "u1", "https://idp", "sub-1")
    assert (linked.oidc_issuer, linked.oidc_subject) == ("https://idp", "sub-1")
    assert acme.get_user_by_oidc("acme", "https://idp", "sub-1").id == "u1"
    with pytest.raises(NotFound):
        acme.get_user_by_oidc("globex", "https://idp", "sub-1")
    with pytest.raises(Conflict, match="already linked"):
        acme.link_user_oidc("globex", "u2", "https://idp", "sub-1")
    with pytest.raises(Conflict, match="already linked"):
        acme.create_user(
            "globex", "u3", "c@globex.test", "viewer", oidc_issuer="https://idp",
            oidc_subject="sub-1",
        )  # fmt: skip


def test_api_key_lifecycle(acme: Store) -> None:
    expires = datetime.now(UTC) + timedelta(days=1)
    key = acme.add_api_key(
        "acme", "u1", "k1", "ci", HASH, scopes=["projects:read"], expires_at=expires
    )
    assert key.scopes == ["projects:read"]
    assert key.expires_at == expires
    assert acme.get_api_key("k1") == key
    got, user, tenant = acme.get_api_key_owner("k1")
    assert (got.id, user.id, tenant.id) == ("k1", "u1", "acme")
    assert [k.id for k in acme.list_api_keys("acme")] == ["k1"]
    assert [k.id for k in acme.list_api_keys("acme", "u1")] == ["k1"]
    assert acme.list_api_keys("acme", "nobody") == []

    revoked = acme.revoke_api_key("acme", "k1")
    assert revoked.revoked_at is not None
    again = acme.revoke_api_key("acme", "k1")
    assert again.revoked_at == revoked.revoked_at


def test_keys_of_another_tenant_are_not_found(acme: Store) -> None:
    acme.add_api_key("acme", "u1", "k1", "ci", HASH)
    assert acme.list_api_keys("globex") == []
    with pytest.raises(NotFound, match="no API key 'k1' in tenant 'globex'"):
        acme.revoke_api_key("globex", "k1")
    assert acme.get_api_key("k1").revoked_at is None
    with pytest.raises(NotFound):
        acme.add_api_key("globex", "u1", "k2", "sneaky", HASH)  # u1 is not globex's user


def test_key_ids_are_unique(acme: Store) -> None:
    acme.add_api_key("acme", "u1", "k1", "ci", HASH)
    with pytest.raises(Conflict):
        acme.add_api_key("acme", "u1", "k1", "ci", HASH)


def test_touch_never_moves_back(acme: Store) -> None:
    acme.add_api_key("acme", "u1", "k1", "ci", HASH)
    later = datetime(2030, 1, 1, tzinfo=UTC)
    acme.touch_api_key("k1", later)
    acme.touch_api_key("k1", later - timedelta(minutes=5))
    assert acme.get_api_key("k1").last_used_at == later


def test_key_record_hides_its_hash(acme: Store) -> None:
    key = acme.add_api_key("acme", "u1", "k1", "ci", HASH)
    assert key.secret_hash == HASH
    assert HASH not in repr(key)
    assert HASH not in str(key)
    assert "secret_hash" not in key.model_dump()
    assert HASH not in key.model_dump_json()
