"""Semantic-version references: ``name``, ``name@1.2.0``, ``name@^1.0``, ``name@>=1.0,<2``.

Plans and capsules pin what they depend on with npm-style ranges so a library can ship a fixed
``1.0.1`` without every plan being edited, while a breaking ``2.0.0`` is never picked up silently.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

import semver

from soma.errors import SpecError

_RANGE_HINT = "use a version range like 1.2.0, ^1.0, ~1.2, >=1.0,<2 or *"
_COMPARATOR_RE = re.compile(
    r"^(\^|~|>=|<=|>|<|==|=|!=)?\s*v?(\d+|[xX*])?(?:\.(\d+|[xX*]))?(?:\.(\d+|[xX*]))?(.*)$"
)

Version = semver.Version
T = TypeVar("T")


def split_ref(ref: str) -> tuple[str, str | None]:
    """Split ``name@range`` so callers can look the name up first and report a bad range apart."""
    name, sep, rng = ref.partition("@")
    return name.strip(), (rng.strip() or None) if sep else None


@dataclass(frozen=True)
class VersionRange:
    """A conjunction of comparators; every comparator must accept a version for it to match."""

    text: str
    tests: tuple[Callable[[Version], bool], ...]

    def matches(self, version: str | Version) -> bool:
        parsed = version if isinstance(version, Version) else Version.parse(version)
        return all(test(parsed) for test in self.tests)

    def best(self, items: Iterable[T], version_of: Callable[[T], str]) -> T | None:
        """The highest-versioned item in range, so a library can hold several releases at once."""
        matching = [item for item in items if self.matches(version_of(item))]
        return max(matching, key=lambda item: Version.parse(version_of(item)), default=None)


def parse_range(text: str | None) -> VersionRange:
    """Parse a range; ``None``, empty and ``*`` accept every version."""
    source = (text or "").strip()
    parts = [p.strip() for p in re.split(r"[,\s]+(?=[\^~<>=!\dvxX*])", source) if p.strip()]
    tests = tuple(_comparator(part, source) for part in parts if part not in {"*", "x", "X"})
    return VersionRange(source or "*", tests)


def _comparator(part: str, source: str) -> Callable[[Version], bool]:
    match = _COMPARATOR_RE.match(part)
    if not match or match.group(2) is None or (match.group(5) and not match.group(4)):
        raise SpecError(f"invalid version range {source!r}", hint=_RANGE_HINT)
    op, major, minor, patch, rest = match.groups()
    nums = [_number(major), _number(minor), _number(patch)]
    given = 1 if nums[1] is None else 2 if nums[2] is None else 3
    base = Version(nums[0] or 0, nums[1] or 0, nums[2] or 0)
    if rest:
        try:
            base = Version.parse(f"{base}{rest}")
        except ValueError:
            raise SpecError(f"invalid version range {source!r}", hint=_RANGE_HINT) from None
    return _build(op or "", base, given)


def _number(part: str | None) -> int | None:
    return None if part is None or part in {"x", "X", "*"} else int(part)


def _build(op: str, base: Version, given: int) -> Callable[[Version], bool]:
    if op == "^":
        return _between(base, _caret_upper(base, given))
    if op == "~":
        return _between(base, base.bump_major() if given == 1 else base.bump_minor())
    if op in {"", "=", "=="}:
        return _exact_or_prefix(base, given)
    return _relational(op, base, given)


def _caret_upper(base: Version, given: int) -> Version:
    """``^`` allows changes that do not modify the left-most non-zero part (npm semantics)."""
    if base.major or given == 1:
        return base.bump_major()
    if base.minor or given == 2:
        return base.bump_minor()
    return base.bump_patch()


def _exact_or_prefix(base: Version, given: int) -> Callable[[Version], bool]:
    if given == 3:
        return lambda v: v.compare(base) == 0
    return _between(base, base.bump_major() if given == 1 else base.bump_minor())


def _relational(op: str, base: Version, given: int) -> Callable[[Version], bool]:
    upper = base if given == 3 else (base.bump_major() if given == 1 else base.bump_minor())
    checks: dict[str, Callable[[Version], bool]] = {
        ">=": lambda v: v.compare(base) >= 0,
        ">": lambda v: v.compare(upper) >= 0 if given < 3 else v.compare(base) > 0,
        "<": lambda v: v.compare(base) < 0,
        "<=": lambda v: v.compare(upper) < 0 if given < 3 else v.compare(base) <= 0,
        "!=": lambda v: v.compare(base) != 0,
    }
    return checks[op]


def _between(low: Version, high: Version) -> Callable[[Version], bool]:
    return lambda v: v.compare(low) >= 0 and v.compare(high) < 0
