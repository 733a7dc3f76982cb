"""Dependency resolution: which package versions an install needs, in the order to install them.

The resolver picks, for every package name, the highest non-yanked version that satisfies every
range asked for it. It does not explore alternatives version by version (no general
backtracking): when a range arrives that the version already picked does not satisfy, but some
other version satisfies every range seen so far, it restarts with that knowledge, which fixes
the common "a later dependent wants an older minor" case; when no version satisfies them all,
it fails naming each package that asked and the range it asked for, because that is what a
user needs to decide which package to upgrade.

Yanked versions are never picked for a range; they are picked only for an exact pin, written
``name@=1.2.3`` (or ``name@1.2.3``, which :func:`soma.specs.versions.parse_range` also reads as
exactly 1.2.3), so a project that locked a version that was later yanked still installs.

Packages already installed (``installed``, name → version) satisfy a dependency without being
installed again; one whose version falls outside a new range is a conflict, never silently
replaced, since other installed packages may rely on it. The package asked for itself is always
resolved against the source, which is how an upgrade happens.

Dependency cycles (a capsule and a persona that name each other) are allowed: each package is
picked once, the cycle is cut where it is re-entered, and the install order puts everything a
package needs before it except the package that closes the cycle.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from soma.errors import Conflict, NotFound, SomaError
from soma.marketplace.manifest import PublishedVersion
from soma.marketplace.sources import PackageSource
from soma.specs.versions import Version, VersionRange, parse_range

_EXACT_RE = re.compile(r"^(?:==?)?\s*v?\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$")
_MAX_RESTARTS = 32
_ATTEMPTS = range(_MAX_RESTARTS)
ROOT = "your request"
"""Who asked for the top-level package, as error messages name it."""


@dataclass(frozen=True)
class Requirement:
    """One package's demand on another: kept whole so conflicts can name who asked for what."""

    requirer: str
    text: str
    range: VersionRange = field(compare=False)

    @property
    def exact(self) -> bool:
        return is_exact_pin(self.text)

    def describe(self) -> str:
        return f"{self.requirer} requires {self.text}"


def is_exact_pin(range_text: str) -> bool:
    """Whether a range names exactly one version (the only way to get a yanked version)."""
    return bool(_EXACT_RE.match(range_text.strip()))


class _Restart(Exception):
    """A version picked early turned out to be wrong; resolve again with the ranges learned."""


@dataclass
class _Resolution:
    """One pass over the dependency graph; :func:`resolve` runs passes until one settles."""

    source: PackageSource
    installed: Mapping[str, str]
    tools: Collection[str]
    root: str
    learned: dict[str, list[Requirement]]
    cache: dict[str, list[PublishedVersion]]
    requirements: dict[str, list[Requirement]] = field(default_factory=dict)
    chosen: dict[str, PublishedVersion] = field(default_factory=dict)
    order: list[PublishedVersion] = field(default_factory=list)

    async def run(self, range_text: str) -> list[PublishedVersion]:
        await self._require(self.root, None, Requirement(ROOT, range_text, parse_range(range_text)))
        return self.order

    async def _require(self, name: str, kind: str | None, req: Requirement) -> None:
        reqs = self.requirements.setdefault(name, [])
        reqs.append(req)
        if name in self.chosen:
            self._check_kind(self.chosen[name], kind, req)
            self._check_chosen(name, req)
            return
        if name != self.root and name in self.installed:
            self._check_installed(name, reqs)
            return
        versions = await self._versions(name, req)
        picked = self._pick(name, kind, versions, [*self.learned.get(name, []), *reqs])
        self._check_kind(picked, kind, req)
        self.chosen[name] = picked
        deps = picked.manifest.dependencies
        await self._prefetch([d.name for d in deps if d.kind != "tool"])
        requirer = picked.manifest.ref
        for dep in deps:
            if dep.kind == "tool":
                self._check_tool(dep.name, requirer)
            else:
                dep_req = Requirement(requirer, dep.range, parse_range(dep.range))
                await self._require(dep.name, dep.kind, dep_req)
        self.order.append(picked)

    def _check_kind(self, found: PublishedVersion, kind: str | None, req: Requirement) -> None:
        if kind is not None and found.manifest.kind != kind:
            raise SomaError(
                f"{req.requirer} depends on {kind} '{found.manifest.name}', but "
                f"'{found.manifest.name}' in {self.source.url} is a {found.manifest.kind}",
                hint=f"ask the publisher of {req.requirer} to fix the dependency's kind",
            )

    def _check_chosen(self, name: str, req: Requirement) -> None:
        if req.range.matches(self.chosen[name].manifest.version):
            return
        reqs = [*self.learned.get(name, []), *self.requirements[name]]
        if _candidates(self.cache.get(name, []), reqs):
            self.learned[name] = _merge(self.learned.get(name, []), self.requirements[name])
            raise _Restart
        raise _conflict(name, reqs, self.cache.get(name, []))

    def _check_installed(self, name: str, reqs: list[Requirement]) -> None:
        version = self.installed[name]
        broken = [r for r in reqs if not r.range.matches(version)]
        if broken:
            raise Conflict(
                f"the library already has '{name}' {version}, but {broken[0].describe()}",
                hint=f"upgrade it first with `soma market install {name}@{broken[0].text}` if "
                "every installed package using it allows that, or uninstall what needs the "
                "old version",
            )

    def _check_tool(self, tool: str, requirer: str) -> None:
        if tool not in self.tools:
            available = ", ".join(sorted(self.tools)) or "none"
            raise NotFound(
                f"{requirer} needs the tool '{tool}', which this Soma instance does not have",
                hint=f"available tools: {available}",
            )

    async def _versions(self, name: str, req: Requirement) -> list[PublishedVersion]:
        if name not in self.cache:
            try:
                self.cache[name] = await self.source.versions(name)
            except NotFound:
                self.cache[name] = []
        if not self.cache[name]:
            who = "" if req.requirer == ROOT else f", required by {req.requirer}"
            raise NotFound(
                f"no package named '{name}' in {self.source.url}{who}",
                hint="check the name with `soma market search`, or install from the registry "
                "that publishes it with --registry",
            )
        return self.cache[name]

    async def _prefetch(self, names: list[str]) -> None:
        """Ask for every dependency's versions at once: over HTTP that costs one round trip of
        latency for all of a package's dependencies instead of one each. Failures are left for
        the one-by-one lookup, which reports them with who required the package."""
        wanted = [
            n
            for n in dict.fromkeys(names)
            if n not in self.cache and n not in self.chosen and n not in self.installed
        ]
        if len(wanted) < 2:
            return
        found = await asyncio.gather(
            *(self.source.versions(n) for n in wanted), return_exceptions=True
        )
        for name, result in zip(wanted, found, strict=True):
            if isinstance(result, list):
                self.cache[name] = result

    def _pick(
        self, name: str, kind: str | None, versions: list[PublishedVersion], reqs: list[Requirement]
    ) -> PublishedVersion:
        candidates = _candidates(versions, reqs)
        if candidates:
            return candidates[0]
        if len({r.requirer for r in reqs}) > 1:
            raise _conflict(name, reqs, versions)
        req = reqs[-1]
        who = "" if req.requirer == ROOT else f" (required by {req.requirer})"
        raise NotFound(
            f"no version of {kind or 'package'} '{name}' in {self.source.url} matches "
            f"{req.text!r}{who}",
            hint=_available(versions),
        )


async def resolve(
    source: PackageSource,
    name: str,
    range: str = "*",
    *,
    installed: Mapping[str, str] | None = None,
    tools: Collection[str] = (),
) -> list[PublishedVersion]:
    """The install plan for ``name@range``: every package to install, dependencies first.

    Packages in ``installed`` that satisfy their ranges are left out of the plan. ``tools`` are
    the tool names this instance has; a package needing any other tool is refused up front,
    since it would fail only when an agent first called it.
    """
    learned: dict[str, list[Requirement]] = {}
    cache: dict[str, list[PublishedVersion]] = {}
    for _attempt in _ATTEMPTS:
        resolution = _Resolution(source, installed or {}, tools, name, learned, cache)
        try:
            return await resolution.run(range)
        except _Restart:
            continue
    raise SomaError(
        f"could not settle the dependencies of '{name}' after {_MAX_RESTARTS} attempts",
        hint="pin the dependencies that keep changing with exact versions (name@=1.2.3)",
    )


def _candidates(
    versions: list[PublishedVersion], reqs: list[Requirement]
) -> list[PublishedVersion]:
    """Versions every requirement accepts, best first; yanked ones only for an exact pin."""
    pinned = any(r.exact for r in reqs)
    ok = [
        v
        for v in versions
        if (pinned or not v.yanked) and all(r.range.matches(v.manifest.version) for r in reqs)
    ]
    return sorted(ok, key=lambda v: Version.parse(v.manifest.version), reverse=True)


def _merge(old: list[Requirement], new: list[Requirement]) -> list[Requirement]:
    return [*old, *(r for r in new if r not in old)]


def _conflict(name: str, reqs: list[Requirement], versions: list[PublishedVersion]) -> Conflict:
    asked = "; ".join(r.describe() for r in _merge([], reqs))
    return Conflict(
        f"conflicting requirements for '{name}': {asked} — no published version satisfies all "
        f"of them",
        hint=_available(versions) + "; upgrade or pin one of the requiring packages so their "
        "ranges overlap",
    )


def _available(versions: list[PublishedVersion]) -> str:
    live = sorted((v.manifest.version for v in versions if not v.yanked), key=Version.parse)
    yanked = sorted((v.manifest.version for v in versions if v.yanked), key=Version.parse)
    text = f"available versions: {', '.join(live) or 'none'}"
    return f"{text} (yanked: {', '.join(yanked)})" if yanked else text
