"""The marketplace's records in the store, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import threading

import pytest

from soma.errors import Conflict, Forbidden, NotFound, PackageRefused
from soma.marketplace.manifest import Manifest, Signature
from soma.marketplace.signing import PublisherKey
from soma.store import Store

KEY = PublisherKey.generate("acme")
OTHER_KEY = PublisherKey.generate("acme")


def manifest(
    name: str = "summarize",
    version: str = "1.0.0",
    *,
    publisher: str = "acme",
    kind: str = "capsule",
    description: str = "Summarise a document",
    tags: list[str] | None = None,
) -> Manifest:
    return Manifest.model_validate(
        {
            "name": name,
            "version": version,
            "kind": kind,
            "publisher": publisher,
            "description": description,
            "tags": tags or ["text"],
            "files": {"capsule.yaml": "0" * 64},
        }
    )


def publish(
    store: Store,
    m: Manifest,
    *,
    tenant: str = "acme",
    archive: bytes | None = None,
) -> str:
    data = archive if archive is not None else f"archive of {m.ref}".encode()
    digest = hashlib.sha256(data).hexdigest()
    signature = Signature(publisher=m.publisher, key_id=KEY.key_id, digest=digest, value="c2ln")
    store.add_package_version(m, digest, signature, data, tenant_id=tenant, user_id="u1")
    return digest


@pytest.fixture
def market(store: Store) -> Store:
    store.add_publisher_key("acme", "acme", KEY.key_id, KEY.public_text)
    return store


def test_first_key_claims_the_publisher_name(store: Store) -> None:
    assert store.publisher_owner("acme") is None
    assert store.publisher_keys("acme") == []
    record = store.add_publisher_key("acme", "acme", KEY.key_id, KEY.public_text)
    assert (record.publisher, record.tenant_id, record.public_key) == (
        "acme",
        "acme",
        KEY.public_text,
    )
    assert store.publisher_owner("acme") == "acme"
    again = store.add_publisher_key("acme", "acme", KEY.key_id, KEY.public_text)
    assert again == record, "registering the same key again is a no-op"
    store.add_publisher_key("acme", "acme", OTHER_KEY.key_id, OTHER_KEY.public_text)
    assert {k.key_id for k in store.publisher_keys("acme")} == {KEY.key_id, OTHER_KEY.key_id}
    with pytest.raises(Forbidden, match="another tenant"):
        store.add_publisher_key("beta", "acme", KEY.key_id, KEY.public_text)


def test_another_tenant_cannot_add_a_key_to_an_owned_publisher(market: Store) -> None:
    fresh = PublisherKey.generate("acme")
    with pytest.raises(Forbidden):
        market.add_publisher_key("beta", "acme", fresh.key_id, fresh.public_text)
    assert [k.key_id for k in market.publisher_keys("acme")] == [KEY.key_id]


def test_a_key_id_must_match_its_key(store: Store) -> None:
    with pytest.raises(PackageRefused, match="does not match"):
        store.add_publisher_key("acme", "acme", OTHER_KEY.key_id, KEY.public_text)
    with pytest.raises(PackageRefused, match="does not match"):
        store.trust_publisher_key("acme", "acme", OTHER_KEY.key_id, KEY.public_text)


def test_concurrent_claims_of_a_new_publisher_leave_one_owner(store: Store) -> None:
    keys = [PublisherKey.generate("race") for _ in range(6)]
    barrier = threading.Barrier(len(keys))
    outcomes: list[str] = []

    def claim(index: int) -> None:
        barrier.wait()
        try:
            store.add_publisher_key(
                f"t{index}", "race", keys[index].key_id, keys[index].public_text
            )
            outcomes.append("ok")
        except Forbidden:
            outcomes.append("forbidden")

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(len(keys))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["forbidden"] * 5 + ["ok"]
    assert len({k.tenant_id for k in store.publisher_keys("race")}) == 1


def test_published_version_round_trips(market: Store) -> None:
    m = manifest()
    digest = publish(market, m)
    got = market.get_package_version("summarize", "1.0.0")
    assert got.manifest == m
    assert (got.digest, got.size, got.yanked, got.downloads) == (
        digest,
        len(b"archive of summarize@1.0.0"),
        False,
        0,
    )
    assert got.signature.key_id == KEY.key_id
    assert got.published_at.tzinfo is not None
    with pytest.raises(NotFound):
        market.get_package_version("summarize", "9.9.9")


def test_versions_are_immutable_even_after_a_yank(market: Store) -> None:
    publish(market, manifest())
    with pytest.raises(Conflict, match="immutable; publish a new version"):
        publish(market, manifest(), archive=b"other bytes")
    market.yank_package_version("acme", "summarize", "1.0.0", "broken")
    with pytest.raises(Conflict, match="immutable"):
        publish(market, manifest(), archive=b"other bytes")
    assert market.package_archive("summarize", "1.0.0") == b"archive of summarize@1.0.0"


def test_publishing_needs_the_publisher_owned_by_the_tenant(market: Store) -> None:
    with pytest.raises(Forbidden):
        publish(market, manifest(), tenant="beta")
    with pytest.raises(Forbidden):
        publish(market, manifest(publisher="unclaimed"))


def test_a_package_name_belongs_to_its_first_publisher(market: Store) -> None:
    publish(market, manifest())
    squatter = PublisherKey.generate("evil")
    market.add_publisher_key("beta", "evil", squatter.key_id, squatter.public_text)
    with pytest.raises(Forbidden, match="belongs to publisher 'acme'"):
        publish(market, manifest(version="2.0.0", publisher="evil"), tenant="beta")


def test_versions_are_listed_in_semver_order(market: Store) -> None:
    for version in ("1.10.0", "1.2.0", "1.2.0-rc.1", "0.9.0"):
        publish(market, manifest(version=version))
    listed = [v.manifest.version for v in market.list_package_versions("summarize")]
    assert listed == ["0.9.0", "1.2.0-rc.1", "1.2.0", "1.10.0"]
    with pytest.raises(NotFound, match="no package 'missing'"):
        market.list_package_versions("missing")


def test_downloads_are_counted_atomically(market: Store) -> None:
    publish(market, manifest())
    threads = [
        threading.Thread(target=market.package_archive, args=("summarize", "1.0.0"))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert market.get_package_version("summarize", "1.0.0").downloads == 8
    with pytest.raises(NotFound):
        market.package_archive("summarize", "2.0.0")


def test_only_the_publishers_tenant_may_yank(market: Store) -> None:
    publish(market, manifest())
    with pytest.raises(Forbidden):
        market.yank_package_version("beta", "summarize", "1.0.0", "mine now")
    assert not market.get_package_version("summarize", "1.0.0").yanked
    yanked = market.yank_package_version("acme", "summarize", "1.0.0", "leaks secrets")
    assert (yanked.yanked, yanked.yank_reason) == (True, "leaks secrets")
    with pytest.raises(NotFound):
        market.yank_package_version("acme", "summarize", "3.0.0", "x")


def test_summaries_show_the_latest_unyanked_version_and_totals(market: Store) -> None:
    publish(market, manifest(version="1.0.0", description="old"))
    publish(market, manifest(version="1.1.0", description="new", tags=["fresh"]))
    publish(market, manifest(version="2.0.0", description="broken"))
    publish(market, manifest("greeter", kind="persona", description="says hi"))
    market.yank_package_version("acme", "summarize", "2.0.0", "broken")
    market.package_archive("summarize", "1.0.0")
    market.package_archive("summarize", "2.0.0")
    market.rate_package("acme", "u1", "summarize", 5)
    market.rate_package("beta", "u2", "summarize", 2)
    market.rate_package("acme", "u1", "summarize", 4)  # replaces u1's earlier rating

    summaries = {s.name: s for s in market.package_summaries()}
    assert list(summaries) == ["greeter", "summarize"]
    summary = summaries["summarize"]
    assert (summary.latest, summary.description, summary.tags) == ("1.1.0", "new", ["fresh"])
    assert (summary.downloads, summary.rating, summary.ratings) == (2, 3.0, 2)
    assert (summaries["greeter"].kind, summaries["greeter"].rating) == ("persona", None)
    assert [s.name for s in market.package_summaries(["greeter", "nope"])] == ["greeter"]
    assert market.package_summaries([]) == []
    docs = market.all_package_docs()
    assert [(d.name, d.description, d.tags) for d in docs] == [
        ("greeter", "says hi", ("text",)),
        ("summarize", "new", ("fresh",)),
    ]


def test_a_fully_yanked_package_leaves_the_listings(market: Store) -> None:
    publish(market, manifest())
    before = market.package_catalogue_state()
    market.yank_package_version("acme", "summarize", "1.0.0", "gone")
    assert market.package_catalogue_state() != before
    assert market.package_summaries() == []
    assert market.all_package_docs() == []
    assert len(market.list_package_versions("summarize")) == 1


def test_ratings_need_a_package_and_1_to_5_stars(market: Store) -> None:
    with pytest.raises(NotFound):
        market.rate_package("acme", "u1", "missing", 3)
    publish(market, manifest())
    with pytest.raises(ValueError, match="1 to 5"):
        market.rate_package("acme", "u1", "summarize", 6)


def test_installs_are_per_tenant(store: Store) -> None:
    first = store.record_install("acme", manifest(), "a" * 64, "local")
    assert (first.version, first.kind, first.source, first.manifest) == (
        "1.0.0",
        "capsule",
        "local",
        manifest(),
    )
    store.record_install("acme", manifest(version="1.1.0"), "b" * 64, "http://peer:8765")
    store.record_install("beta", manifest("greeter", kind="persona"), "c" * 64, "local")
    installed = store.list_installs("acme")
    assert [(i.name, i.version, i.digest[0]) for i in installed] == [("summarize", "1.1.0", "b")]
    assert [i.name for i in store.list_installs("beta")] == ["greeter"]
    with pytest.raises(NotFound):
        store.remove_install("beta", "summarize")
    store.remove_install("acme", "summarize")
    assert store.list_installs("acme") == []
    assert [i.name for i in store.list_installs("beta")] == ["greeter"]


def test_trust_is_per_tenant(store: Store) -> None:
    record = store.trust_publisher_key("acme", "acme", KEY.key_id, KEY.public_text)
    assert store.trust_publisher_key("acme", "acme", KEY.key_id, KEY.public_text) == record
    assert store.trusted_key("acme", "acme", KEY.key_id) == KEY.public_raw
    assert store.trusted_key("beta", "acme", KEY.key_id) is None
    assert store.trusted_key("acme", "other", KEY.key_id) is None
    assert [(t.publisher, t.key_id) for t in store.list_trusted("acme")] == [("acme", KEY.key_id)]
    assert store.list_trusted("beta") == []
