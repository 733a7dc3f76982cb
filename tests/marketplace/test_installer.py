"""Installing real signed archives into a tenant's library, on a real SQLite store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from soma.cli.common import load_library
from soma.errors import Conflict, NotFound, PackageRefused, SomaError
from soma.marketplace.installer import (
    Installer,
    StoreTrust,
    load_tenant_library,
    tenant_library_dir,
)
from soma.marketplace.signing import PublisherKey
from soma.settings import Settings
from soma.store import Store
from tests.marketplace._build import ArchiveSource, capsule_dir, persona_file, signed

TENANT = "acme"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home")


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    settings.home.mkdir(parents=True)
    with Store.open(settings.store_url) as opened:
        yield opened


@pytest.fixture
def key() -> PublisherKey:
    return PublisherKey.generate("acme")


@pytest.fixture
def source(tmp_path: Path, key: PublisherKey) -> ArchiveSource:
    """report depends on summarize ^1 and the persona analyst; summarize on the built-in
    developer persona."""
    src = tmp_path / "src"
    registry = ArchiveSource()
    registry.keys["acme"] = [key.public_text]
    registry.add(*signed(persona_file(src, "analyst"), key))
    registry.add(*signed(capsule_dir(src, "summarize", "1.0.0"), key))
    registry.add(*signed(capsule_dir(src, "summarize", "1.2.0"), key))
    registry.add(*signed(capsule_dir(src, "summarize", "2.0.0"), key))
    report = capsule_dir(
        src,
        "report",
        "1.0.0",
        persona="analyst@^1",
        tools=("fs.read", "fs.write"),
        depends={"summarize": "^1.0"},
        extra_files={"prompts/outline.md": "# Outline\n"},
    )
    registry.add(*signed(report, key))
    return registry


def installer(store: Store, settings: Settings, tenant: str = TENANT) -> Installer:
    return Installer(store, settings, tenant, StoreTrust(store, tenant))


@pytest.fixture
def trusted(store: Store, settings: Settings, key: PublisherKey) -> Installer:
    inst = installer(store, settings)
    inst.trust("acme", key.public_text)
    return inst


def library_files(settings: Settings, tenant: str = TENANT) -> list[str]:
    root = tenant_library_dir(settings, tenant)
    if not root.is_dir():
        return []
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and p.name != ".install.lock"
    )


async def test_install_writes_the_plan_into_the_tenant_library(
    trusted: Installer, source: ArchiveSource, settings: Settings, store: Store
) -> None:
    lines: list[str] = []
    trusted._progress = lines.append
    records = await trusted.install(source, "report")

    # Dependencies first, in the manifest's order (sorted by kind, then name).
    assert [f"{r.name}@{r.version}" for r in records] == [
        "summarize@1.2.0",
        "analyst@1.0.0",
        "report@1.0.0",
    ]
    root = settings.home / "tenants" / TENANT / "library"
    assert tenant_library_dir(settings, TENANT) == root
    assert library_files(settings) == [
        "capsules/report/capsule.yaml",
        "capsules/report/prompts/outline.md",
        "capsules/summarize/capsule.yaml",
        "personas/analyst.yaml",
    ]
    assert (root / "capsules/report/prompts/outline.md").read_text() == "# Outline\n"
    library = load_tenant_library(settings, TENANT)
    assert library.capsule("report").persona == "analyst@^1"
    assert library.capsule("summarize").version == "1.2.0"
    assert library.persona("analyst").role == "tester"
    assert library.capsule("write-docs").name == "write-docs"  # built-ins still there
    assert not [p for p in library.validate() if "report" in p or "summarize" in p]

    installed = {p.name: p for p in store.list_installs(TENANT)}
    assert set(installed) == {"analyst", "summarize", "report"}
    assert installed["report"].source == "memory://registry"
    assert {(d.kind, d.name) for d in installed["report"].manifest.dependencies} == {
        ("capsule", "summarize"),
        ("persona", "analyst"),
        ("tool", "fs.read"),
        ("tool", "fs.write"),
    }
    assert any(line.startswith("resolved report@*") for line in lines)
    assert any(line.startswith("verified report@1.0.0") for line in lines)
    assert any(line.startswith("installed report@1.0.0") for line in lines)
    assert not list(root.glob(".installing-*"))  # staging cleaned up


async def test_the_default_tenant_installs_where_soma_commands_read(
    store: Store, settings: Settings, key: PublisherKey, source: ArchiveSource
) -> None:
    inst = installer(store, settings, "default")
    inst.trust("acme", key.public_text)
    await inst.install(source, "summarize", "~1.0")
    assert (settings.home / "library/capsules/summarize/capsule.yaml").is_file()
    assert load_library(settings).capsule("summarize").version == "1.0.0"
    assert store.list_installs(TENANT) == []  # other tenants see nothing


async def test_a_tampered_archive_is_refused_and_nothing_is_written(
    trusted: Installer, source: ArchiveSource, settings: Settings, store: Store
) -> None:
    data = bytearray(source.archives[("summarize", "1.2.0")])
    data[len(data) // 2] ^= 0xFF
    source.archives[("summarize", "1.2.0")] = bytes(data)

    with pytest.raises(PackageRefused) as caught:
        await trusted.install(source, "report")
    message = str(caught.value)
    assert "refused summarize@1.2.0 from memory://registry" in message
    assert "its archive has sha256" in message
    assert library_files(settings) == []
    assert store.list_installs(TENANT) == []


async def test_a_registry_relisting_a_changed_archive_is_caught_by_the_signature(
    trusted: Installer, source: ArchiveSource, settings: Settings, tmp_path: Path
) -> None:
    """The registry changes the archive and its own digest to match; the signature does not."""
    evil = PublisherKey.generate("acme")
    data, forged = signed(
        capsule_dir(tmp_path / "evil", "summarize", "1.2.0", tools=("shell.run",)), evil
    )
    listed = source.listed["summarize"]["1.2.0"]
    real = listed.signature
    source.listed["summarize"]["1.2.0"] = listed.model_copy(
        update={
            "digest": forged.digest,
            "signature": real.model_copy(update={"digest": forged.digest}),
        }
    )
    source.archives[("summarize", "1.2.0")] = data

    with pytest.raises(PackageRefused, match="forged or corrupted"):
        await trusted.install(source, "summarize", "^1.0")
    assert library_files(settings) == []


async def test_an_untrusted_publisher_is_refused_with_how_to_trust(
    store: Store, settings: Settings, source: ArchiveSource, key: PublisherKey
) -> None:
    inst = installer(store, settings)
    with pytest.raises(PackageRefused) as caught:
        await inst.install(source, "summarize")
    message = str(caught.value)
    assert f"signed by key {key.key_id}, which is not trusted for publisher acme" in message
    assert f"soma market trust acme 'ed25519:…' --tenant {TENANT}" in message
    assert key.public_text in message  # what the registry advertises, to check out of band
    assert library_files(settings) == []
    assert source.downloads == []  # refused from the listing, before downloading

    record = inst.trust("acme", key.public_text)
    assert (record.publisher, record.key_id) == ("acme", key.key_id)
    assert [f"{r.name}@{r.version}" for r in await inst.install(source, "summarize")] == [
        "summarize@2.0.0"
    ]


async def test_trust_is_per_tenant(
    trusted: Installer, store: Store, settings: Settings, source: ArchiveSource
) -> None:
    other = installer(store, settings, "globex")
    with pytest.raises(PackageRefused, match="not trusted"):
        await other.install(source, "summarize")


async def test_a_key_of_another_publisher_does_not_verify(
    store: Store, settings: Settings, source: ArchiveSource, key: PublisherKey
) -> None:
    inst = installer(store, settings)
    inst.trust("globex", key.public_text)  # right key, wrong publisher
    with pytest.raises(PackageRefused, match="not trusted for publisher acme"):
        await inst.install(source, "summarize")


async def test_an_unsigned_package_is_refused(
    trusted: Installer, source: ArchiveSource, settings: Settings
) -> None:
    listed = source.listed["summarize"]["2.0.0"]
    bogus = listed.signature.model_copy(update={"value": "AAAA"})
    source.listed["summarize"]["2.0.0"] = listed.model_copy(update={"signature": bogus})
    with pytest.raises(PackageRefused, match="forged or corrupted"):
        await trusted.install(source, "summarize")
    assert library_files(settings) == []


async def test_reinstalling_is_a_no_op_and_upgrading_replaces_files(
    trusted: Installer, source: ArchiveSource, settings: Settings, store: Store
) -> None:
    await trusted.install(source, "summarize", "1.0.0")
    assert await trusted.install(source, "summarize", "1.0.0") == []
    upgraded = await trusted.install(source, "summarize", "^1")
    assert [f"{r.name}@{r.version}" for r in upgraded] == ["summarize@1.2.0"]
    assert load_tenant_library(settings, TENANT).capsule("summarize").version == "1.2.0"
    assert [p.version for p in store.list_installs(TENANT)] == ["1.2.0"]


async def test_an_upgrade_that_breaks_an_installed_dependent_is_refused(
    trusted: Installer, source: ArchiveSource, settings: Settings
) -> None:
    await trusted.install(source, "report")
    with pytest.raises(Conflict) as caught:
        await trusted.install(source, "summarize", "2.0.0")
    assert "would break report@1.0.0, which requires summarize ^1.0" in str(caught.value)
    assert load_tenant_library(settings, TENANT).capsule("summarize").version == "1.2.0"


async def test_installed_packages_satisfy_later_installs(
    trusted: Installer, source: ArchiveSource
) -> None:
    await trusted.install(source, "summarize", "1.0.0")
    records = await trusted.install(source, "report")
    assert [r.name for r in records] == ["analyst", "report"]  # summarize 1.0.0 kept
    assert "summarize@1.2.0" not in source.downloads


async def test_a_built_in_name_is_refused(
    trusted: Installer, source: ArchiveSource, key: PublisherKey, tmp_path: Path
) -> None:
    source.add(*signed(capsule_dir(tmp_path / "x", "write-docs", "9.0.0"), key))
    with pytest.raises(Conflict, match="'write-docs' is a built-in capsule"):
        await trusted.install(source, "write-docs")
    assert source.downloads == []


async def test_a_built_in_version_itself_is_already_there(
    trusted: Installer, source: ArchiveSource, key: PublisherKey, tmp_path: Path
) -> None:
    """Every instance publishes its built-ins; installing one from another instance is a no-op."""
    builtin = load_tenant_library(trusted.settings, TENANT).capsule("write-docs")
    source.add(*signed(capsule_dir(tmp_path / "x", "write-docs", builtin.version), key))
    assert await trusted.install(source, "write-docs") == []
    assert source.downloads == []


async def test_the_users_own_spec_is_never_overwritten(
    trusted: Installer, source: ArchiveSource, settings: Settings
) -> None:
    own = tenant_library_dir(settings, TENANT) / "capsules" / "summarize"
    own.mkdir(parents=True)
    (own / "notes.txt").write_text("mine")
    with pytest.raises(Conflict, match="the library already has its own capsule 'summarize'"):
        await trusted.install(source, "summarize")
    assert (own / "notes.txt").read_text() == "mine"


async def test_the_users_own_spec_under_another_file_name_is_not_shadowed(
    trusted: Installer, source: ArchiveSource, settings: Settings, tmp_path: Path
) -> None:
    """A persona named analyst in personas/my-analyst.yml: installing one would make the
    library define analyst twice."""
    personas = tenant_library_dir(settings, TENANT) / "personas"
    personas.mkdir(parents=True)
    mine = persona_file(tmp_path / "mine", "analyst")
    (personas / "my-analyst.yml").write_text(mine.read_text())
    with pytest.raises(Conflict, match="the library already has its own persona 'analyst'"):
        await trusted.install(source, "analyst")
    # As a dependency it is satisfied by the user's own persona instead.
    records = await trusted.install(source, "report")
    assert [r.name for r in records] == ["summarize", "report"]


async def test_a_failure_while_recording_puts_the_library_back(
    trusted: Installer,
    source: ArchiveSource,
    settings: Settings,
    store: Store,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await trusted.install(source, "summarize", "1.0.0")
    before = library_files(settings)
    real = store.record_install
    calls = []

    def flaky(*args: object) -> object:
        calls.append(args)
        if len(calls) == 2:
            raise SomaError("database went away")
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "record_install", flaky)
    with pytest.raises(SomaError, match="database went away"):
        await trusted.install(source, "report")
    monkeypatch.setattr(store, "record_install", real)

    assert library_files(settings) == before
    assert [(p.name, p.version) for p in store.list_installs(TENANT)] == [("summarize", "1.0.0")]
    assert load_tenant_library(settings, TENANT).capsule("summarize").version == "1.0.0"


async def test_uninstall_refuses_while_a_dependent_is_installed(
    trusted: Installer, source: ArchiveSource, settings: Settings, store: Store
) -> None:
    await trusted.install(source, "report")
    with pytest.raises(Conflict, match=r"cannot uninstall summarize@1.2.0: report@1.0.0 depends"):
        trusted.uninstall("summarize")
    with pytest.raises(Conflict, match=r"report@1.0.0 depends on it"):
        trusted.uninstall("analyst")

    trusted.uninstall("report")
    trusted.uninstall("summarize")
    trusted.uninstall("analyst")
    assert library_files(settings) == []
    assert store.list_installs(TENANT) == []
    with pytest.raises(NotFound, match="'report' is not installed in tenant 'acme'"):
        trusted.uninstall("report")


def test_tenant_ids_cannot_escape_the_home(settings: Settings) -> None:
    with pytest.raises(SomaError, match="invalid tenant id"):
        tenant_library_dir(settings, "../etc")


async def test_a_registry_misstating_dependencies_is_refused(
    trusted: Installer, source: ArchiveSource, settings: Settings
) -> None:
    """The listing drives resolution, so it must be what the publisher signed."""
    listed = source.listed["report"]["1.0.0"]
    fewer = listed.manifest.model_copy(update={"dependencies": []})
    source.listed["report"]["1.0.0"] = listed.model_copy(update={"manifest": fewer})
    with pytest.raises(PackageRefused, match="describes it differently from its signed archive"):
        await trusted.install(source, "report")
    assert library_files(settings) == []
