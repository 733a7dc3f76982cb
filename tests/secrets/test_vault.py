"""The vault: secrets sealed at rest, bound to their tenant and name, never in audit records."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import update

from soma.errors import NotFound, SomaError
from soma.secrets import MASK, Vault, mask
from soma.store import Store
from soma.store.tables import TenantSecret

KEY = b"k" * 32
TOKEN = "ghp_s3cr3t-token-VALUE-0123456789"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "soma.db"


@pytest.fixture
def store(db: Path) -> Iterator[Store]:
    with Store.open(f"sqlite:///{db}") as opened:
        opened.create_tenant("acme", "Acme")
        opened.create_tenant("other", "Other")
        yield opened


@pytest.fixture
def vault(store: Store) -> Vault:
    return Vault(store, KEY)


def _tamper(store: Store, **values: object) -> None:
    with store._engine.begin() as conn:
        conn.execute(
            update(TenantSecret)
            .where(TenantSecret.tenant_id == "acme", TenantSecret.name == "github.token")
            .values(**values)
        )


def test_round_trip_and_replace(vault: Vault) -> None:
    first = vault.set("acme", "github.token", TOKEN, actor="user:ann")
    assert vault.get("acme", "github.token") == TOKEN
    second = vault.set("acme", "github.token", "new-value", actor="user:bob")
    assert vault.get("acme", "github.token") == "new-value"
    assert second.created_at == first.created_at
    assert second.updated_by == "user:bob"
    assert [i.name for i in vault.names("acme")] == ["github.token"]
    assert vault.names("other") == []


def test_unicode_value(vault: Vault) -> None:
    vault.set("acme", "x", "pässwörd ✓")
    assert vault.get("acme", "x") == "pässwörd ✓"


def test_plaintext_is_not_in_the_database(vault: Vault, store: Store, db: Path) -> None:
    vault.set("acme", "github.token", TOKEN)
    row = store.get_secret_row("acme", "github.token")
    assert TOKEN.encode() not in row.ciphertext
    assert len(row.nonce) == 12
    store.close()
    for path in db.parent.iterdir():  # the main file and any WAL
        assert TOKEN.encode() not in path.read_bytes(), path


def test_each_write_uses_a_fresh_nonce(vault: Vault, store: Store) -> None:
    vault.set("acme", "a", TOKEN)
    vault.set("acme", "b", TOKEN)
    one, two = store.get_secret_row("acme", "a"), store.get_secret_row("acme", "b")
    assert one.nonce != two.nonce
    assert one.ciphertext != two.ciphertext


def test_flipped_ciphertext_byte_is_refused(vault: Vault, store: Store) -> None:
    vault.set("acme", "github.token", TOKEN)
    sealed = bytearray(store.get_secret_row("acme", "github.token").ciphertext)
    sealed[0] ^= 0x01
    _tamper(store, ciphertext=bytes(sealed))
    with pytest.raises(SomaError, match="cannot be decrypted: it was changed or moved") as info:
        vault.get("acme", "github.token")
    assert TOKEN not in str(info.value)


def test_row_moved_to_another_tenant_is_refused(vault: Vault, store: Store) -> None:
    vault.set("acme", "github.token", TOKEN)
    _tamper(store, tenant_id="other")
    with pytest.raises(SomaError, match="cannot be decrypted"):
        vault.get("other", "github.token")


def test_renamed_row_is_refused(vault: Vault, store: Store) -> None:
    vault.set("acme", "github.token", TOKEN)
    _tamper(store, name="jira.token")
    with pytest.raises(SomaError, match="cannot be decrypted"):
        vault.get("acme", "jira.token")


def test_another_instance_secret_cannot_read(vault: Vault, store: Store) -> None:
    vault.set("acme", "github.token", TOKEN)
    with pytest.raises(SomaError, match="SOMA_SECRET_KEY changed"):
        Vault(store, b"another-secret-key-0123456789abcdef").get("acme", "github.token")


def test_missing_secret_and_unknown_tenant(vault: Vault) -> None:
    with pytest.raises(NotFound, match="has no secret 'nope'") as info:
        vault.get("acme", "nope")
    assert info.value.hint
    assert "soma secrets set acme nope" in info.value.hint
    with pytest.raises(NotFound, match="no tenant 'ghost'"):
        vault.set("ghost", "x", "value")
    with pytest.raises(NotFound):
        vault.delete("acme", "nope")


def test_tenants_are_isolated(vault: Vault) -> None:
    vault.set("acme", "github.token", TOKEN)
    with pytest.raises(NotFound):
        vault.get("other", "github.token")
    with pytest.raises(NotFound):
        vault.delete("other", "github.token")
    assert vault.get("acme", "github.token") == TOKEN


@pytest.mark.parametrize("name", ["github.token", "a", "x1_y-z.w", "0" + "a" * 127])
def test_valid_names(vault: Vault, name: str) -> None:
    vault.set("acme", name, "value")
    assert vault.get("acme", name) == "value"


@pytest.mark.parametrize(
    "name", ["", "GitHub", ".hidden", "-x", "a/b", "a b", "a" * 129, "tok\0en", "é"]
)
def test_invalid_names(vault: Vault, name: str) -> None:
    with pytest.raises(SomaError, match="invalid secret name"):
        vault.set("acme", name, "value")


def test_value_limits(vault: Vault) -> None:
    with pytest.raises(SomaError, match="would be empty"):
        vault.set("acme", "x", "")
    vault.set("acme", "x", "v" * 64 * 1024)
    with pytest.raises(SomaError, match="at most 65536") as info:
        vault.set("acme", "x", "v" * (64 * 1024 + 1))
    assert "vvvv" not in str(info.value)


def test_set_and_delete_are_audited_by_name_only(vault: Vault, store: Store) -> None:
    vault.set("acme", "github.token", TOKEN, actor="user:ann")
    vault.delete("acme", "github.token", actor="user:ann")
    records = store.list_audit(tenant_id="acme")
    mine = [r for r in records if r.action_kind == "secrets"]
    assert [r.tool for r in mine] == ["secret.set", "secret.delete"]
    for record in mine:
        assert record.actor == "user:ann"
        assert "github.token" in record.reason
        assert TOKEN not in record.model_dump_json()
    assert store.verify_audit("acme").ok
    with pytest.raises(NotFound):
        vault.get("acme", "github.token")


def test_reader(vault: Vault, store: Store) -> None:
    vault.set("acme", "github.token", TOKEN)
    vault.set("acme", "jira.token", "jira-value")
    vault.set("other", "github.token", "other-tenant-value")
    reader = vault.reader("acme")
    assert reader.get("github.token") == TOKEN
    assert reader.get("missing") is None
    assert sorted(reader.values()) == sorted([TOKEN, "jira-value"])


def test_reader_skips_unreadable_values_when_masking(vault: Vault, store: Store) -> None:
    vault.set("acme", "github.token", TOKEN)
    vault.set("acme", "jira.token", "jira-value")
    _tamper(store, nonce=b"\0" * 12)
    reader = vault.reader("acme")
    assert reader.values() == ["jira-value"]
    with pytest.raises(SomaError, match="cannot be decrypted"):
        reader.get("github.token")


def test_reprs_never_show_values(vault: Vault, store: Store) -> None:
    vault.set("acme", "github.token", TOKEN)
    reader = vault.reader("acme")
    reader.values()
    for text in (repr(vault), str(vault), repr(reader), str(reader)):
        assert TOKEN not in text
    assert "ciphertext" not in repr(store.get_secret_row("acme", "github.token"))


def test_mask() -> None:
    text = f"echo: token={TOKEN}, again {TOKEN}; short=abc"
    assert mask(text, [TOKEN, "abc"]) == f"echo: token={MASK}, again {MASK}; short=abc"
    assert mask("key=abcdef", ["abcd", "abcdef"]) == f"key={MASK}"
    assert mask("nothing here", []) == "nothing here"
