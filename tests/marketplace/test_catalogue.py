"""The built-in catalogue, published to the instance's registry as publisher ``soma``."""

from __future__ import annotations

import shutil
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from soma.errors import Conflict
from soma.marketplace.catalogue import (
    PUBLISHER,
    instance_key_path,
    publish_builtin_catalogue,
    trust_catalogue_keys,
)
from soma.marketplace.signing import verify_package
from soma.settings import Settings
from soma.specs.library import Library, builtin_dir
from soma.store import Store


class _Trust:
    def __init__(self, store: Store, tenant_id: str) -> None:
        self.store, self.tenant_id = store, tenant_id

    def trusted_key(self, publisher: str, key_id: str) -> bytes | None:
        return self.store.trusted_key(self.tenant_id, publisher, key_id)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", secret_key=SecretStr("k" * 40))


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    with Store.open(settings.store_url) as opened:
        yield opened


def test_every_builtin_spec_is_published_once(store: Store, settings: Settings) -> None:
    library = Library.builtin()
    expected = {c.name for c in library.capsules()} | {p.name for p in library.personas()}
    assert publish_builtin_catalogue(store, settings) == len(expected)
    summaries = store.package_summaries()
    assert {s.name for s in summaries} == expected
    assert {s.publisher for s in summaries} == {PUBLISHER}
    assert store.publisher_owner(PUBLISHER) == "default"
    assert publish_builtin_catalogue(store, settings) == 0, "a second start publishes nothing"
    assert len(store.publisher_keys(PUBLISHER)) == 1


def test_packages_verify_with_the_instance_key_every_tenant_trusts(
    store: Store, settings: Settings
) -> None:
    store.create_tenant("acme", "Acme")
    publish_builtin_catalogue(store, settings)
    key_file = instance_key_path(settings)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    version = store.get_package_version("write-spec", "1.0.0")
    data = store.package_archive("write-spec", "1.0.0")
    for tenant in ("default", "acme"):
        unpacked = verify_package(data, version.signature, _Trust(store, tenant))
        assert unpacked.manifest.name == "write-spec"
    store.create_tenant("late", "Late")
    assert store.list_trusted("late") == []
    trust_catalogue_keys(store, "late")
    assert [t.publisher for t in store.list_trusted("late")] == [PUBLISHER]


def test_concurrent_first_starts_agree(store: Store, settings: Settings) -> None:
    barrier = threading.Barrier(3)
    counts: list[int] = []
    errors: list[BaseException] = []

    def start() -> None:
        barrier.wait()
        try:
            counts.append(publish_builtin_catalogue(store, settings))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sum(counts) == len(store.package_summaries())
    assert len(store.publisher_keys(PUBLISHER)) == 1


def test_a_builtin_changed_without_a_version_bump_is_an_error(
    store: Store, settings: Settings, tmp_path: Path
) -> None:
    library = tmp_path / "library"
    shutil.copytree(Path(str(builtin_dir())), library)
    publish_builtin_catalogue(store, settings, library_dir=library)
    spec = library / "capsules" / "write-spec" / "capsule.yaml"
    spec.write_text(spec.read_text().replace("testable product specification", "spec"))
    with pytest.raises(Conflict, match=r"write-spec@1\.0\.0"):
        publish_builtin_catalogue(store, settings, library_dir=library)
