"""Dependency resolution against an in-memory registry: which versions, in which order, and
what the user is told when no plan exists."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from soma.errors import Conflict, NotFound, SomaError, SpecError
from soma.marketplace.manifest import Dependency, Manifest, PublishedVersion, Signature
from soma.marketplace.resolver import is_exact_pin, resolve

TOOLS = ("fs.read", "fs.write", "shell.run")


class MemorySource:
    """A registry held in a dict: name -> versions. Counts lookups to check caching."""

    url = "memory://test"

    def __init__(self) -> None:
        self.packages: dict[str, list[PublishedVersion]] = {}
        self.lookups: list[str] = []

    def add(
        self,
        ref: str,
        *deps: str,
        kind: str = "capsule",
        yanked: bool = False,
    ) -> MemorySource:
        """``ref`` is name@version; each dep is ``[kind:]name@range``."""
        name, version = ref.split("@")
        dependencies = []
        for dep in deps:
            dep_kind, _, rest = dep.rpartition(":")
            dep_name, _, dep_range = rest.partition("@")
            dependencies.append(
                Dependency(kind=dep_kind or "capsule", name=dep_name, range=dep_range or "*")
            )
        manifest = Manifest(
            name=name,
            version=version,
            kind=kind,  # type: ignore[arg-type]
            publisher="acme",
            description=f"{name} for tests",
            dependencies=dependencies,
            files={"capsule.yaml": "0" * 64},
        )
        signature = Signature(publisher="acme", key_id="0" * 16, digest="0" * 64, value="AA==")
        self.packages.setdefault(name, []).append(
            PublishedVersion(
                manifest=manifest,
                digest="0" * 64,
                signature=signature,
                size=1,
                yanked=yanked,
                yank_reason="broken" if yanked else None,
                published_at=datetime(2025, 1, 1, tzinfo=UTC),
            )
        )
        return self

    async def versions(self, name: str) -> list[PublishedVersion]:
        self.lookups.append(name)
        return list(self.packages.get(name, []))

    async def archive(self, name: str, version: str) -> bytes:
        raise AssertionError("the resolver never downloads")

    async def publisher_keys(self, publisher: str) -> list[str]:
        return []


def refs(plan: list[PublishedVersion]) -> list[str]:
    return [v.manifest.ref for v in plan]


async def test_a_package_without_dependencies_resolves_to_its_highest_version() -> None:
    source = MemorySource().add("solo@1.0.0").add("solo@1.2.0").add("solo@2.0.0")
    assert refs(await resolve(source, "solo")) == ["solo@2.0.0"]
    assert refs(await resolve(source, "solo", "^1.0")) == ["solo@1.2.0"]


async def test_a_chain_installs_dependencies_first() -> None:
    source = (
        MemorySource()
        .add("app@1.0.0", "lib@^1.0")
        .add("lib@1.0.0", "base@~2.1")
        .add("lib@1.4.0", "base@~2.1")
        .add("lib@2.0.0")
        .add("base@2.1.0")
        .add("base@2.1.5")
        .add("base@2.2.0")
    )
    assert refs(await resolve(source, "app")) == ["base@2.1.5", "lib@1.4.0", "app@1.0.0"]


async def test_a_diamond_resolves_the_shared_dependency_once() -> None:
    source = (
        MemorySource()
        .add("top@1.0.0", "left@*", "right@*")
        .add("left@1.0.0", "shared@^1.0")
        .add("right@1.0.0", "shared@>=1.1,<2")
        .add("shared@1.0.0")
        .add("shared@1.3.0")
        .add("shared@2.0.0")
    )
    plan = refs(await resolve(source, "top"))
    assert plan == ["shared@1.3.0", "left@1.0.0", "right@1.0.0", "top@1.0.0"]
    assert source.lookups.count("shared") == 1


async def test_a_later_narrower_range_repicks_an_older_version() -> None:
    """left takes shared 1.5 first; right then needs <1.3, which 1.2 satisfies for both."""
    source = (
        MemorySource()
        .add("top@1.0.0", "left@*", "right@*")
        .add("left@1.0.0", "shared@^1.0")
        .add("right@1.0.0", "shared@<1.3")
        .add("shared@1.2.0")
        .add("shared@1.5.0")
    )
    plan = refs(await resolve(source, "top"))
    assert plan == ["shared@1.2.0", "left@1.0.0", "right@1.0.0", "top@1.0.0"]


async def test_incompatible_ranges_name_both_requirers_and_ranges() -> None:
    source = (
        MemorySource()
        .add("top@1.0.0", "left@*", "right@*")
        .add("left@1.0.0", "shared@^1.0")
        .add("right@2.0.0", "shared@^2.0")
        .add("shared@1.4.0")
        .add("shared@2.1.0")
    )
    with pytest.raises(Conflict) as caught:
        await resolve(source, "top")
    message = str(caught.value)
    assert "conflicting requirements for 'shared'" in message
    assert "left@1.0.0 requires ^1.0" in message
    assert "right@2.0.0 requires ^2.0" in message
    assert "available versions: 1.4.0, 2.1.0" in message


async def test_an_installed_version_outside_a_new_range_is_a_conflict() -> None:
    source = MemorySource().add("app@1.0.0", "lib@^2.0").add("lib@2.0.0")
    with pytest.raises(Conflict) as caught:
        await resolve(source, "app", installed={"lib": "1.3.0"}, tools=TOOLS)
    assert "the library already has 'lib' 1.3.0, but app@1.0.0 requires ^2.0" in str(caught.value)


async def test_installed_dependencies_in_range_are_left_out_of_the_plan() -> None:
    source = MemorySource().add("app@1.0.0", "lib@^1.0", "persona:developer@^1").add("lib@1.9.0")
    plan = await resolve(source, "app", installed={"lib": "1.2.0", "developer": "1.0.0"})
    assert refs(plan) == ["app@1.0.0"]
    assert "lib" not in source.lookups


async def test_the_requested_package_is_resolved_even_when_installed() -> None:
    """That is how an upgrade happens: install asks for the package again."""
    source = MemorySource().add("app@1.0.0").add("app@1.1.0")
    assert refs(await resolve(source, "app", installed={"app": "1.0.0"})) == ["app@1.1.0"]


async def test_a_missing_dependency_names_who_required_it() -> None:
    source = MemorySource().add("app@1.0.0", "lib@^1.0", "ghost@^1.0").add("lib@1.0.0")
    with pytest.raises(NotFound) as caught:
        await resolve(source, "app")
    assert "no package named 'ghost' in memory://test, required by app@1.0.0" in str(caught.value)


async def test_a_missing_package_is_not_found() -> None:
    with pytest.raises(NotFound, match="no package named 'nothing' in memory://test"):
        await resolve(MemorySource(), "nothing")


async def test_no_version_in_range_lists_what_exists() -> None:
    source = MemorySource().add("app@1.0.0", "lib@^3.0").add("lib@1.0.0").add("lib@2.0.0")
    with pytest.raises(NotFound) as caught:
        await resolve(source, "app")
    message = str(caught.value)
    assert "no version of capsule 'lib' in memory://test matches '^3.0'" in message
    assert "(required by app@1.0.0)" in message
    assert "available versions: 1.0.0, 2.0.0" in message


async def test_a_missing_tool_is_named() -> None:
    source = MemorySource().add("app@1.0.0", "tool:fs.read", "tool:browser.open")
    with pytest.raises(NotFound) as caught:
        await resolve(source, "app", tools=TOOLS)
    message = str(caught.value)
    assert "app@1.0.0 needs the tool 'browser.open'" in message
    assert "available tools: fs.read, fs.write, shell.run" in message


async def test_tools_that_exist_need_no_package() -> None:
    source = MemorySource().add("app@1.0.0", "tool:fs.read", "tool:shell.run")
    assert refs(await resolve(source, "app", tools=TOOLS)) == ["app@1.0.0"]


async def test_yanked_versions_are_skipped_for_ranges() -> None:
    source = MemorySource().add("lib@1.0.0").add("lib@1.1.0", yanked=True)
    assert refs(await resolve(source, "lib", "^1.0")) == ["lib@1.0.0"]
    assert refs(await resolve(source, "lib")) == ["lib@1.0.0"]


async def test_yanked_versions_are_installed_when_pinned_exactly() -> None:
    source = MemorySource().add("lib@1.0.0").add("lib@1.1.0", yanked=True)
    for pin in ("=1.1.0", "1.1.0", "==1.1.0"):
        plan = await resolve(source, "lib", pin)
        assert refs(plan) == ["lib@1.1.0"]
        assert plan[0].yanked
    dependent = MemorySource().add("app@1.0.0", "lib@=1.1.0").add("lib@1.1.0", yanked=True)
    assert refs(await resolve(dependent, "app")) == ["lib@1.1.0", "app@1.0.0"]


async def test_only_yanked_versions_in_range_is_not_found_and_says_so() -> None:
    source = MemorySource().add("lib@1.0.0", yanked=True)
    with pytest.raises(NotFound, match=r"available versions: none \(yanked: 1.0.0\)"):
        await resolve(source, "lib", "^1.0")


async def test_a_cycle_resolves_each_package_once() -> None:
    source = (
        MemorySource()
        .add("writer@1.0.0", "persona:editor@^1")
        .add("editor@1.0.0", "capsule:writer@^1", kind="persona")
    )
    assert refs(await resolve(source, "writer")) == ["editor@1.0.0", "writer@1.0.0"]
    assert refs(await resolve(source, "editor")) == ["writer@1.0.0", "editor@1.0.0"]


async def test_a_cycle_back_to_an_incompatible_range_is_a_conflict() -> None:
    source = MemorySource().add("a@2.0.0", "b@*").add("b@1.0.0", "a@^1.0").add("a@1.0.0", "b@*")
    with pytest.raises(Conflict, match=r"your request requires 2.0.0; b@1.0.0 requires \^1.0"):
        await resolve(source, "a", "2.0.0")
    # Unpinned, the cycle settles on the version both accept.
    assert refs(await resolve(source, "a")) == ["b@1.0.0", "a@1.0.0"]


async def test_a_dependency_of_the_wrong_kind_is_refused() -> None:
    source = MemorySource().add("app@1.0.0", "persona:helper@*").add("helper@1.0.0")
    with pytest.raises(SomaError, match="depends on persona 'helper', but 'helper'"):
        await resolve(source, "app")


async def test_an_invalid_range_is_a_spec_error() -> None:
    with pytest.raises(SpecError, match="invalid version range"):
        await resolve(MemorySource().add("lib@1.0.0"), "lib", "^^1")


def test_exact_pins() -> None:
    assert is_exact_pin("=1.2.3")
    assert is_exact_pin("1.2.3")
    assert is_exact_pin("==1.2.3-rc.1")
    assert not is_exact_pin("^1.2.3")
    assert not is_exact_pin("1.2")
    assert not is_exact_pin(">=1.2.3")
