"""The registry service over a real store: publishing, immutability, yanks, downloads, ratings,
search, and every way a publish is refused."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from soma.errors import Conflict, Forbidden, NotFound, PackageRefused, PayloadTooLarge, SomaError
from soma.marketplace.manifest import Signature
from soma.marketplace.registry import LocalSource, Registry
from soma.marketplace.search import SearchIndex
from soma.marketplace.signing import PublisherKey, sign
from soma.store import Store
from tests.marketplace._build import capsule_dir, persona_file, signed

ACME = PublisherKey.generate("acme")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(f"sqlite:///{tmp_path / 'soma.db'}") as opened:
        yield opened


@pytest.fixture
def registry(store: Store) -> Registry:
    """Lexical search only: no embedding model in unit tests."""
    registry = Registry(store, index_factory=SearchIndex)
    registry.register_key("acme", "acme", ACME.public_text)
    return registry


def package(
    tmp_path: Path, name: str = "summarize", version: str = "1.0.0", key: PublisherKey = ACME
) -> tuple[bytes, Signature]:
    return signed(capsule_dir(tmp_path / "src", name, version), key)


def publish(
    registry: Registry, tmp_path: Path, name: str = "summarize", version: str = "1.0.0"
) -> None:
    data, signature = package(tmp_path, name, version)
    registry.publish(data, signature, tenant_id="acme", user_id="alice")


def test_publish_then_list_read_and_download(registry: Registry, tmp_path: Path) -> None:
    data, signature = package(tmp_path)
    published = registry.publish(data, signature, tenant_id="acme", user_id="alice")
    assert (published.manifest.ref, published.digest, published.size) == (
        "summarize@1.0.0",
        signature.digest,
        len(data),
    )
    assert published.signature == signature
    assert registry.version("summarize", "1.0.0") == published
    assert registry.archive("summarize", "1.0.0") == data
    assert registry.archive("summarize", "1.0.0") == data
    assert [v.downloads for v in registry.versions("summarize")] == [2]
    with pytest.raises(NotFound):
        registry.versions("missing")
    with pytest.raises(NotFound):
        registry.archive("summarize", "2.0.0")


def test_versions_are_immutable_even_after_a_yank(registry: Registry, tmp_path: Path) -> None:
    publish(registry, tmp_path)
    again, signature = signed(
        capsule_dir(tmp_path / "v2", "summarize", extra_files={"notes.md": "changed"}), ACME
    )
    with pytest.raises(Conflict, match="immutable"):
        registry.publish(again, signature, tenant_id="acme", user_id="alice")
    registry.yank("acme", "summarize", "1.0.0", "broken")
    with pytest.raises(Conflict, match="immutable"):
        registry.publish(again, signature, tenant_id="acme", user_id="alice")
    publish(registry, tmp_path / "next", version="1.0.1")
    versions = registry.versions("summarize")
    assert [(v.manifest.version, v.yanked) for v in versions] == [("1.0.0", True), ("1.0.1", False)]


def test_only_the_publishers_tenant_may_yank(registry: Registry, tmp_path: Path) -> None:
    publish(registry, tmp_path)
    with pytest.raises(Forbidden):
        registry.yank("beta", "summarize", "1.0.0", "not yours")
    assert not registry.version("summarize", "1.0.0").yanked
    yanked = registry.yank("acme", "summarize", "1.0.0", "leaks a token")
    assert (yanked.yanked, yanked.yank_reason) == (True, "leaks a token")


def test_ratings_and_downloads_show_in_listings(registry: Registry, tmp_path: Path) -> None:
    publish(registry, tmp_path)
    publish(registry, tmp_path / "b", name="translate")
    registry.archive("translate", "1.0.0")
    summary = registry.rate("acme", "alice", "summarize", 5)
    assert summary is not None
    assert (summary.rating, summary.ratings) == (5.0, 1)
    summary = registry.rate("beta", "bob", "summarize", 2)
    assert summary is not None
    assert (summary.rating, summary.ratings) == (3.5, 2)
    listed = registry.search("")
    assert [(s.name, s.downloads) for s in listed] == [("translate", 1), ("summarize", 0)]
    assert listed[1].rating == 3.5
    with pytest.raises(NotFound):
        registry.rate("acme", "alice", "missing", 3)


def test_search_finds_by_words_and_kind(registry: Registry, tmp_path: Path) -> None:
    publish(registry, tmp_path, name="summarize")
    publish(registry, tmp_path / "b", name="translate")
    data, signature = signed(persona_file(tmp_path / "p", "summarizer"), ACME)
    registry.publish(data, signature, tenant_id="acme", user_id="alice")

    hits = registry.search("summarize")
    assert hits
    assert hits[0].name == "summarize"
    assert hits[0].score is not None
    assert hits[0].score > 0
    assert "translate" not in {h.name for h in hits}
    personas = registry.search("", kind="persona")
    assert [s.name for s in personas] == ["summarizer"]
    assert registry.search("", limit=1)
    assert len(registry.search("", limit=1)) == 1


def test_search_follows_publishes_and_yanks_made_elsewhere(
    registry: Registry, store: Store, tmp_path: Path
) -> None:
    """Another gateway replica (another Registry on the same store) sees changes on search."""
    replica = Registry(store, index_factory=SearchIndex)
    assert replica.search("translate") == []
    publish(registry, tmp_path, name="translate")
    assert [h.name for h in replica.search("translate")] == ["translate"]
    registry.yank("acme", "translate", "1.0.0", "withdrawn")
    assert replica.search("translate") == []


def test_publishing_under_another_tenants_publisher_is_forbidden(
    registry: Registry, tmp_path: Path
) -> None:
    data, signature = package(tmp_path)
    with pytest.raises(Forbidden, match="another tenant"):
        registry.publish(data, signature, tenant_id="beta", user_id="mallory")
    with pytest.raises(Forbidden):
        registry.register_key("beta", "acme", PublisherKey.generate("acme").public_text)


def test_an_unclaimed_publisher_must_register_a_key_first(
    registry: Registry, tmp_path: Path
) -> None:
    newcomer = PublisherKey.generate("newcomer")
    data, signature = package(tmp_path, key=newcomer)
    with pytest.raises(PackageRefused, match="no registered keys"):
        registry.publish(data, signature, tenant_id="beta", user_id="bob")
    registry.register_key("beta", "newcomer", newcomer.public_text)
    assert registry.publish(data, signature, tenant_id="beta", user_id="bob").size == len(data)


def test_a_key_the_publisher_did_not_register_is_refused(
    registry: Registry, tmp_path: Path
) -> None:
    stolen_name = PublisherKey.generate("acme")
    data, signature = package(tmp_path, key=stolen_name)
    with pytest.raises(PackageRefused, match="not registered"):
        registry.publish(data, signature, tenant_id="acme", user_id="alice")
    # Naming a registered key id does not help a signature made by another key.
    forged = signature.model_copy(update={"key_id": ACME.key_id})
    with pytest.raises(PackageRefused, match="forged or corrupted"):
        registry.publish(data, forged, tenant_id="acme", user_id="alice")


def test_a_tampered_archive_is_refused(registry: Registry, tmp_path: Path) -> None:
    data, signature = package(tmp_path)
    tampered = data[:-9] + bytes([data[-9] ^ 1]) + data[-8:]
    with pytest.raises(PackageRefused, match="changed after signing"):
        registry.publish(tampered, signature, tenant_id="acme", user_id="alice")
    # Re-signing garbage with the real key still does not make it a package.
    garbage = b"not a package"
    with pytest.raises(PackageRefused, match="not a Soma package"):
        registry.publish(garbage, sign(garbage, ACME), tenant_id="acme", user_id="alice")
    with pytest.raises(NotFound):
        registry.versions("summarize")


def test_a_package_must_be_signed_as_its_own_publisher(registry: Registry, tmp_path: Path) -> None:
    other = PublisherKey.generate("other")
    registry.register_key("acme", "other", other.public_text)
    data, _ = package(tmp_path)  # manifest says publisher acme
    with pytest.raises(PackageRefused, match="published by acme"):
        registry.publish(data, sign(data, other), tenant_id="acme", user_id="alice")


def test_oversized_archives_are_refused(store: Store, tmp_path: Path) -> None:
    small = Registry(store, index_factory=SearchIndex, max_archive_bytes=100)
    small.register_key("acme", "acme", ACME.public_text)
    data, signature = package(tmp_path)
    with pytest.raises(PayloadTooLarge):
        small.publish(data, signature, tenant_id="acme", user_id="alice")


def test_keys_are_checked_when_registered(registry: Registry) -> None:
    with pytest.raises(SomaError, match="not an ed25519 public key"):
        registry.register_key("acme", "acme", "ssh-rsa AAAA")
    with pytest.raises(SomaError, match="not a valid publisher name"):
        registry.register_key("acme", "Not A Name", ACME.public_text)
    assert registry.publisher_keys("acme") == [ACME.public_text]
    assert registry.publisher_keys("nobody") == []


async def test_local_source_serves_the_installer(registry: Registry, tmp_path: Path) -> None:
    data, signature = package(tmp_path)
    registry.publish(data, signature, tenant_id="acme", user_id="alice")
    source = LocalSource(registry.store)
    assert source.url == "local"
    assert [v.digest for v in await source.versions("summarize")] == [signature.digest]
    assert await source.archive("summarize", "1.0.0") == data
    assert await source.publisher_keys("acme") == [ACME.public_text]
    with pytest.raises(NotFound):
        await source.versions("missing")
