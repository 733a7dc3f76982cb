"""The catalogue of capsules, personas and constitutions an agent team can draw on.

A library is read from directories laid out as ``personas/<name>.yaml``,
``capsules/<name>/capsule.yaml`` (the directory may also hold prompts or knowledge files) and
``constitutions/<name>.yaml``. The built-in catalogue ships inside the package so a fresh install
can run a whole project offline; users add their own directories, which override built-in
specs of the same name and version. Everything is loaded once, up front, so a bad spec fails
at start-up rather than in the middle of a run, and lookups afterwards are dictionary reads.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Iterator
from fnmatch import fnmatchcase
from functools import cache
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import TypeVar

from soma.errors import NotFound, SomaError, SpecError
from soma.specs.loader import MAX_SPEC_BYTES, load_spec, parse_spec
from soma.specs.models import Capsule, Constitution, Persona, Spec
from soma.specs.sources import origin_of
from soma.specs.versions import Version, parse_range, split_ref

S = TypeVar("S", Capsule, Persona, Constitution)
Dir = str | Path | Traversable

_SUFFIXES = (".yaml", ".yml")
_PLACEHOLDER_RE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def builtin_dir() -> Traversable:
    """The catalogue shipped as package data (a real directory unless installed as a zip)."""
    return files("soma") / "library"


class _Shelf:
    """All versions of one kind of spec, by name then version."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.items: dict[str, dict[str, Spec]] = {}

    def add(self, spec: Spec, name: str, version: str, seen: dict[str, str], file: str) -> None:
        """Add a spec; a duplicate inside one directory is a mistake, across directories an
        override (a user's directory replacing a built-in spec)."""
        ref = f"{name}@{version}"
        if ref in seen:
            raise SpecError(
                f"{self.kind} {ref} is defined twice in the same library directory",
                file=file,
                hint=f"the other definition is in {seen[ref]}; bump one version or rename it",
            )
        seen[ref] = file
        self.items.setdefault(name, {})[version] = spec

    def get(self, ref: str) -> Spec:
        name, text = split_ref(ref)
        versions = self.items.get(name)
        if not versions:
            raise NotFound(f"no {self.kind} named '{name}'", hint=self._name_hint(name))
        best = parse_range(text).best(versions.items(), lambda item: item[0])
        if best is None:
            available = ", ".join(sorted(versions, key=Version.parse))
            raise NotFound(
                f"no version of {self.kind} '{name}' matches '{text}'",
                hint=f"available versions: {available}",
            )
        return best[1]

    def latest(self) -> Iterator[Spec]:
        for name in sorted(self.items):
            versions = self.items[name]
            yield versions[max(versions, key=Version.parse)]

    def every(self) -> Iterator[Spec]:
        for name in sorted(self.items):
            versions = self.items[name]
            for version in sorted(versions, key=Version.parse):
                yield versions[version]

    def _name_hint(self, name: str) -> str | None:
        close = difflib.get_close_matches(name, list(self.items), n=3)
        if close:
            return "did you mean " + " or ".join(f"'{c}'" for c in close) + "?"
        if self.items:
            return f"available: {', '.join(sorted(self.items))}"
        return None


class Library:
    """An in-memory index of specs, read-only once built by :meth:`builtin` or :meth:`from_dirs`."""

    def __init__(self) -> None:
        self._capsules = _Shelf("capsule")
        self._personas = _Shelf("persona")
        self._constitutions = _Shelf("constitution")

    @classmethod
    def builtin(cls, *extra_dirs: Dir) -> Library:
        """The shipped catalogue, plus ``extra_dirs`` whose specs override same-version ones."""
        if not extra_dirs:
            return _builtin_library()
        return cls.from_dirs(builtin_dir(), *extra_dirs)

    @classmethod
    def from_dirs(cls, *dirs: Dir, builtin: bool = False) -> Library:
        """The given directories (after the built-in one when ``builtin``), later ones
        overriding earlier ones."""
        library = cls()
        for directory in (builtin_dir(), *dirs) if builtin else dirs:
            library._load_dir(_as_dir(directory))
        return library

    def extended(self, *dirs: Dir) -> Library:
        """A new library: this one's specs, then ``dirs`` overriding them (this one is not
        changed, so a shared base can be extended per tenant)."""
        library = Library()
        for mine, theirs in (
            (self._capsules, library._capsules),
            (self._personas, library._personas),
            (self._constitutions, library._constitutions),
        ):
            theirs.items = {name: dict(versions) for name, versions in mine.items.items()}
        for directory in dirs:
            library._load_dir(_as_dir(directory))
        return library

    # --- lookups -------------------------------------------------------------------------------

    def capsule(self, ref: str) -> Capsule:
        """``name`` or ``name@range`` (``^1.0``, ``~1.2``, ``>=1.0,<2``): the highest match."""
        return _typed(self._capsules.get(ref), Capsule)

    def persona(self, ref: str) -> Persona:
        return _typed(self._personas.get(ref), Persona)

    def constitution(self, ref: str = "default") -> Constitution:
        return _typed(self._constitutions.get(ref), Constitution)

    def capsules(self, *, all_versions: bool = False) -> list[Capsule]:
        """Sorted by name; only the latest version of each unless ``all_versions``."""
        return _listed(self._capsules, all_versions, Capsule)

    def personas(self, *, all_versions: bool = False) -> list[Persona]:
        return _listed(self._personas, all_versions, Persona)

    def constitutions(self, *, all_versions: bool = False) -> list[Constitution]:
        return _listed(self._constitutions, all_versions, Constitution)

    # --- consistency ---------------------------------------------------------------------------

    def validate(self) -> list[str]:
        """Cross-spec problems single-file loading cannot see; empty when the library is sound."""
        problems: list[str] = []
        for capsule in self.capsules(all_versions=True):
            problems.extend(self._capsule_problems(capsule))
        return problems

    def _capsule_problems(self, capsule: Capsule) -> Iterator[str]:
        where = _where(capsule)
        try:
            persona = self.persona(capsule.persona)
        except SomaError as exc:
            yield f"{where}: persona '{capsule.persona}' cannot be resolved: {exc}"
            return
        if persona.tools:
            for grant in capsule.tools:
                if not any(fnmatchcase(grant.name, pattern) for pattern in persona.tools):
                    yield (
                        f"{where}: tool '{grant.name}' is not allowed for persona "
                        f"'{persona.name}' (allowed: {', '.join(persona.tools)})"
                    )
        declared = capsule.inputs.get("properties", {})
        for name in sorted(set(_PLACEHOLDER_RE.findall(capsule.instructions))):
            if name not in declared:
                yield f"{where}: instructions use '{{{{ {name} }}}}' but there is no input '{name}'"

    # --- loading -------------------------------------------------------------------------------

    def _load_dir(self, root: Path | Traversable) -> None:
        if not root.is_dir():
            raise SpecError("library directory not found", file=str(root))
        shelves: list[tuple[str, _Shelf, Callable[[Traversable], Iterable[Traversable]]]] = [
            ("persona", self._personas, _yaml_files),
            ("constitution", self._constitutions, _yaml_files),
            ("capsule", self._capsules, _capsule_files),
        ]
        for kind, shelf, finder in shelves:
            seen: dict[str, str] = {}
            sub = root / f"{kind}s"
            if not sub.is_dir():
                continue
            for file in finder(sub):
                spec = _load_file(file, kind)
                assert isinstance(spec, Capsule | Persona | Constitution)  # kind was forced
                shelf.add(spec, spec.name, spec.version, seen, str(file))


@cache
def _builtin_library() -> Library:
    return Library.from_dirs(builtin_dir())


def _as_dir(directory: Dir) -> Path | Traversable:
    return Path(directory) if isinstance(directory, str) else directory


def _yaml_files(directory: Traversable) -> list[Traversable]:
    return sorted(
        (f for f in directory.iterdir() if f.is_file() and f.name.endswith(_SUFFIXES)),
        key=lambda f: f.name,
    )


def _capsule_files(directory: Traversable) -> list[Traversable]:
    """``capsules/<name>/capsule.yaml``, and flat ``capsules/<name>.yaml`` for one-file capsules."""
    found = _yaml_files(directory)
    for child in sorted(directory.iterdir(), key=lambda f: f.name):
        if child.is_dir():
            found.extend(f for f in _yaml_files(child) if f.name.split(".")[0] == "capsule")
    return found


def _load_file(file: Traversable, kind: str) -> Spec:
    if isinstance(file, Path):
        return load_spec(file, kind)  # cached by path and modification time
    raw = file.read_bytes()
    if len(raw) > MAX_SPEC_BYTES:
        raise SpecError("the document is larger than 1024 KiB", file=str(file))
    return parse_spec(raw.decode("utf-8-sig"), kind, str(file))


def _typed(spec: Spec, model: type[S]) -> S:
    assert isinstance(spec, model)  # shelves only ever hold their own kind
    return spec


def _listed(shelf: _Shelf, all_versions: bool, model: type[S]) -> list[S]:
    specs = shelf.every() if all_versions else shelf.latest()
    return [_typed(spec, model) for spec in specs]


def _where(capsule: Capsule) -> str:
    origin = origin_of(capsule)
    return f"{origin.file if origin else '<memory>'} (capsule {capsule.ref})"
