"""The package archive: a capsule or persona with its files, packed into deterministic bytes.

A signature is over the archive's sha256, so the same source must always give the same bytes:
otherwise a re-pack (by the publisher, or by a reviewer checking a release) could never be
compared with what was published. Everything that varies between machines and checkouts is
therefore pinned: member order, times, owners, modes, and the gzip header's time, name and OS.

Unpacking is the other half of the trust boundary. An archive comes from the network, so
:func:`unpack` accepts only what :func:`pack` produces and refuses everything else by name
(links, traversal, duplicates, gzip bombs, files the manifest does not vouch for) instead of
trying to make sense of it. It never writes to disk; installers decide where files go.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import stat
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from soma.errors import PackageRefused, SomaError, SpecError
from soma.marketplace.manifest import MANIFEST_FILE, Dependency, Manifest
from soma.specs.loader import load_spec, parse_spec, parse_yaml
from soma.specs.models import Capsule, Persona, Spec
from soma.specs.sources import format_path
from soma.specs.versions import parse_range, split_ref

__all__ = [
    "CAPSULE_FILE",
    "FILES_DIR",
    "MAX_PACKAGE_BYTES",
    "PACKAGE_FILE",
    "Unpacked",
    "archive_digest",
    "manifest_json",
    "pack",
    "read_manifest",
    "spec_file",
    "unpack",
]

MAX_PACKAGE_BYTES = 16 * 2**20
"""Default limit on an archive's uncompressed (tar) size, for packing and unpacking alike."""
PACKAGE_FILE = "package.yaml"
"""Optional packaging metadata beside the spec: extra dependencies, license, tags."""
CAPSULE_FILE = "capsule.yaml"
FILES_DIR = "files/"
"""Every member except the manifest lives under this prefix, so the two can never collide."""

_MAX_MANIFEST_BYTES = 1024 * 1024
_MAX_DESCRIPTION = 2000
_CHUNK = 64 * 1024
_SPEC_SUFFIXES = (".yaml", ".yml")
_REPACK_HINT = "re-pack the source with `soma market pack` or download the package again"


@dataclass(frozen=True)
class Unpacked:
    """A verified archive's contents, in memory: paths are relative, without ``files/``."""

    manifest: Manifest
    files: dict[str, bytes]


def archive_digest(data: bytes) -> str:
    """The sha256 hex digest that signatures and registries identify an archive by."""
    return hashlib.sha256(data).hexdigest()


def manifest_json(manifest: Manifest) -> bytes:
    """Canonical JSON (sorted keys, no spaces, UTF-8), so equal manifests are equal bytes."""
    return json.dumps(
        manifest.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")


# --- packing ------------------------------------------------------------------------------------


class _PackageExtras(BaseModel):
    """``package.yaml``: what the spec cannot say but the marketplace needs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dependencies: list[Dependency] = Field(default_factory=list)
    license: str | None = Field(default=None, min_length=1, max_length=128)
    tags: list[str] = Field(default_factory=list)


@dataclass(frozen=True)
class _Source:
    spec: Spec
    spec_path: Path
    files: dict[str, Path]
    extras: _PackageExtras


def pack(source: Path, *, publisher: str) -> tuple[Manifest, bytes]:
    """Pack a capsule directory, a persona YAML file, or a directory holding one persona YAML."""
    found = _find_source(Path(source))
    contents = {path: _read_file(file) for path, file in found.files.items()}
    manifest = _build_manifest(found, publisher, contents)
    return manifest, _archive(manifest, contents)


def _find_source(source: Path) -> _Source:
    if source.is_file() and source.name == CAPSULE_FILE:
        source = source.parent
    if source.is_dir() and (source / CAPSULE_FILE).is_file():
        spec_path = source / CAPSULE_FILE
        capsule = load_spec(spec_path, "capsule")
        files = _walk(source, exclude={PACKAGE_FILE})
        return _Source(capsule, spec_path, files, _load_extras(source / PACKAGE_FILE))
    if source.is_dir():
        spec_path = _single_persona_file(source)
    elif source.is_file():
        spec_path = source
    else:
        raise SomaError(
            f"{source} does not exist",
            hint="pass a capsule directory (with capsule.yaml) or a persona YAML file",
        )
    persona = load_spec(spec_path, "persona")
    files = {spec_path.name: spec_path}
    return _Source(persona, spec_path, files, _load_extras(spec_path.parent / PACKAGE_FILE))


def _single_persona_file(directory: Path) -> Path:
    candidates = sorted(
        entry
        for entry in directory.iterdir()
        if entry.suffix in _SPEC_SUFFIXES
        and entry.name != PACKAGE_FILE
        and not entry.name.startswith(".")
        and entry.is_file()
    )
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise SomaError(
            f"{directory} holds neither a {CAPSULE_FILE} nor a persona YAML file",
            hint="pass a capsule directory, a persona YAML file, or a directory with one persona",
        )
    names = ", ".join(entry.name for entry in candidates)
    raise SomaError(
        f"{directory} holds several YAML files ({names}); a package holds one persona",
        hint="pass the persona's YAML file itself",
    )


def _walk(root: Path, *, exclude: set[str]) -> dict[str, Path]:
    """Every regular, non-hidden file under ``root``, by POSIX path, in a stable order."""
    found: dict[str, Path] = {}
    for directory, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(directory)
        dirnames[:] = sorted(name for name in dirnames if not name.startswith("."))
        for name in dirnames:
            if (here / name).is_symlink():
                raise _symlink_error(here / name)
        for name in sorted(filenames):
            file = here / name
            relative = file.relative_to(root).as_posix()
            if name.startswith(".") or relative in exclude:
                continue
            mode = file.lstat().st_mode
            if stat.S_ISLNK(mode):
                raise _symlink_error(file)
            if not stat.S_ISREG(mode):
                raise SomaError(
                    f"{file} is not a regular file",
                    hint="packages hold regular files only; move it out of the capsule directory",
                )
            problem = _path_problem(relative)
            if problem:
                raise SomaError(f"cannot pack {file}: {problem}", hint="rename the file")
            found[relative] = file
    _check_total(sum(file.stat().st_size for file in found.values()), root)
    return dict(sorted(found.items()))


def _symlink_error(path: Path) -> SomaError:
    return SomaError(
        f"{path} is a symbolic link",
        hint="packages hold regular files only, so that they unpack the same everywhere; "
        "replace the link with a copy of its target",
    )


def _check_total(size: int, root: Path) -> None:
    if size > MAX_PACKAGE_BYTES:
        raise SomaError(
            f"the files under {root} total {size / 2**20:.1f} MiB; a package may hold at most "
            f"{MAX_PACKAGE_BYTES // 2**20} MiB",
            hint="keep large data out of the capsule; capsules can query memory or read "
            "workspace files at run time",
        )


def _read_file(file: Path) -> bytes:
    try:
        return file.read_bytes()
    except OSError as exc:
        raise SomaError(f"cannot read {file}: {exc.strerror}") from None


def _load_extras(path: Path) -> _PackageExtras:
    if not path.is_file():
        return _PackageExtras()
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read the package file: {exc}", file=str(path)) from None
    data, where = parse_yaml(text, str(path))
    if not isinstance(data, dict):
        raise where.error(
            "the package file must be a mapping",
            hint="allowed fields: dependencies, license, tags",
        )
    try:
        extras = _PackageExtras.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = tuple(error["loc"])
        if error["type"] == "extra_forbidden":
            raise where.error(
                f"unknown field '{loc[-1]}'",
                loc,
                hint="allowed fields: dependencies, license, tags",
            ) from None
        message = error["msg"].removeprefix("Value error, ")
        raise where.error(message, loc, hint="see docs/marketplace.md, 'Package format'") from None
    seen: set[tuple[str, str]] = set()
    for index, dependency in enumerate(extras.dependencies):
        key = (dependency.kind, dependency.name)
        if key in seen:
            raise where.error(
                f"{dependency.kind} '{dependency.name}' is listed twice",
                ("dependencies", index),
                hint="keep one entry per dependency",
            )
        seen.add(key)
        try:
            parse_range(dependency.range)
        except SpecError as exc:
            raise where.error(
                exc.message, ("dependencies", index, "range"), hint=exc.hint
            ) from None
    return extras


def _build_manifest(found: _Source, publisher: str, contents: dict[str, bytes]) -> Manifest:
    spec = found.spec
    if isinstance(spec, Capsule):
        kind = "capsule"
        description, tags = spec.description, list(spec.tags)
        derived = _capsule_dependencies(spec, found.spec_path)
    else:
        assert isinstance(spec, Persona)  # _find_source loads nothing else
        kind = "persona"
        description, tags, derived = f"{spec.role}: {spec.goal}", [], []
    # package.yaml refines what the spec implies (e.g. pins the persona's range).
    merged = {(d.kind, d.name): d for d in derived}
    merged.update({(d.kind, d.name): d for d in found.extras.dependencies})
    if (kind, spec.name) in merged:
        raise SomaError(
            f"{kind} {spec.name} depends on itself", hint=f"remove it from {PACKAGE_FILE}"
        )
    fields: dict[str, Any] = {
        "name": spec.name,
        "version": spec.version,
        "kind": kind,
        "publisher": publisher,
        "description": _shorten(" ".join(description.split())),
        "tags": list(dict.fromkeys([*tags, *found.extras.tags])),
        "license": found.extras.license,
        "dependencies": [merged[key] for key in sorted(merged)],
        "files": {path: hashlib.sha256(data).hexdigest() for path, data in contents.items()},
    }
    try:
        return Manifest.model_validate(fields)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = format_path(error["loc"]) or "manifest"
        raise SomaError(
            f"cannot pack {spec.name}: {where}: {error['msg']}",
            hint=_manifest_hint(str(error["loc"][0]) if error["loc"] else ""),
        ) from None


def _manifest_hint(field: str) -> str:
    if field == "publisher":
        return "publisher names look like 'acme' or 'data-team': lower-case letters, digits, -_."
    if field == "tags":
        return f"a package has at most 32 tags; trim the spec's or {PACKAGE_FILE}'s tags"
    return "fix the spec or package.yaml"


def _capsule_dependencies(capsule: Capsule, spec_path: Path) -> list[Dependency]:
    name, rng = split_ref(capsule.persona)
    try:
        parse_range(rng)
    except SpecError as exc:
        raise SpecError(exc.message, file=str(spec_path), field="persona", hint=exc.hint) from None
    dependencies = [Dependency(kind="persona", name=name, range=rng or "*")]
    for tool in dict.fromkeys(grant.name for grant in capsule.tools):
        dependencies.append(Dependency(kind="tool", name=tool, range="*"))
    return dependencies


def _shorten(text: str) -> str:
    return text if len(text) <= _MAX_DESCRIPTION else text[: _MAX_DESCRIPTION - 1] + "…"


def _archive(manifest: Manifest, contents: dict[str, bytes]) -> bytes:
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _add_member(tar, MANIFEST_FILE, manifest_json(manifest))
        for path in sorted(contents):
            _add_member(tar, FILES_DIR + path, contents[path])
    raw = tar_bytes.getvalue()
    if len(raw) > MAX_PACKAGE_BYTES:
        _check_total(len(raw), Path(manifest.name))
    out = io.BytesIO()
    # GzipFile, not gzip.compress: the latter lets zlib write the OS byte, which differs by
    # platform; GzipFile always writes 255 ("unknown"), and we pin the time and omit the name.
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, compresslevel=9, mtime=0) as gz:
        gz.write(raw)
    return out.getvalue()


def _add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    tar.addfile(info, io.BytesIO(data))


# --- unpacking ----------------------------------------------------------------------------------


def unpack(data: bytes, *, max_bytes: int = MAX_PACKAGE_BYTES) -> Unpacked:
    """Read and check an archive in memory; refuse anything :func:`pack` would not produce."""
    with _open_tar(io.BytesIO(_decompress(data, max_bytes)), "r:") as tar:
        manifest = _first_manifest(tar)
        files: dict[str, bytes] = {}
        while (member := _next(tar)) is not None:
            path = _member_path(member)
            if path in files:
                raise PackageRefused(
                    f"the archive holds {member.name} twice", hint="a package lists each file once"
                )
            files[path] = _member_bytes(tar, member)
    _check_files(manifest, files)
    unpacked = Unpacked(manifest, files)
    _check_spec(unpacked)
    return unpacked


def read_manifest(data: bytes, *, max_bytes: int = MAX_PACKAGE_BYTES) -> Manifest:
    """Only the manifest, without checking the files: cheap, for signature checks and listings.

    It is the first member, so only the start of the archive is decompressed.
    """
    with _open_tar(io.BufferedReader(_Bounded(data, max_bytes)), "r|") as tar:
        return _first_manifest(tar)


class _Bounded(io.RawIOBase):
    """Decompresses gzip lazily and refuses to yield more than ``limit`` bytes (gzip bombs)."""

    def __init__(self, data: bytes, limit: int) -> None:
        self._gzip = gzip.GzipFile(fileobj=io.BytesIO(data), mode="rb")
        self._limit = limit
        self.total = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        try:
            chunk = self._gzip.read(min(len(view), self._limit + 1 - self.total))
        except (OSError, EOFError, zlib.error) as exc:
            raise _not_an_archive(exc) from None
        self.total += len(chunk)
        if self.total > self._limit:
            raise _too_big(self._limit)
        view[: len(chunk)] = chunk
        return len(chunk)


def _decompress(data: bytes, max_bytes: int) -> bytes:
    """The whole tar stream, decompressed with a running limit, so the gzip CRC is checked too."""
    stream = _Bounded(data, max_bytes)
    parts: list[bytes] = []
    while chunk := stream.read(_CHUNK):
        parts.append(chunk)
    return b"".join(parts)


def _too_big(limit: int) -> PackageRefused:
    return PackageRefused(
        f"the archive unpacks to more than {limit} bytes",
        hint="packages are small; this one is oversized or a gzip bomb — do not install it",
    )


def _not_an_archive(exc: BaseException) -> PackageRefused:
    return PackageRefused(
        f"not a Soma package: the data is not a valid gzip'd tar archive ({exc})",
        hint=_REPACK_HINT,
    )


def _open_tar(stream: IO[bytes], mode: Literal["r:", "r|"]) -> tarfile.TarFile:
    try:
        return tarfile.open(fileobj=stream, mode=mode)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise _not_an_archive(exc) from None


def _next(tar: tarfile.TarFile) -> tarfile.TarInfo | None:
    try:
        return tar.next()
    except (tarfile.TarError, OSError, EOFError, UnicodeError) as exc:
        raise _not_an_archive(exc) from None


def _first_manifest(tar: tarfile.TarFile) -> Manifest:
    member = _next(tar)
    if member is None or member.name != MANIFEST_FILE:
        found = "nothing" if member is None else member.name
        raise PackageRefused(
            f"the archive does not start with its manifest {MANIFEST_FILE} (found {found})",
            hint=_REPACK_HINT,
        )
    if not _is_plain_file(member):
        raise _bad_type(member)
    if member.size > _MAX_MANIFEST_BYTES:
        raise PackageRefused(f"the manifest {MANIFEST_FILE} is larger than 1 MiB")
    raw = _member_bytes(tar, member)
    try:
        manifest = Manifest.model_validate_json(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = format_path(error["loc"]) or "document"
        raise PackageRefused(
            f"the manifest {MANIFEST_FILE} is invalid at {where}: {error['msg']}",
            hint=_REPACK_HINT,
        ) from None
    for path in manifest.files:
        problem = _path_problem(path)
        if problem:
            raise PackageRefused(f"the manifest lists {path!r}: {problem}", hint=_REPACK_HINT)
    for dependency in manifest.dependencies:
        try:
            parse_range(dependency.range)
        except SpecError:
            raise PackageRefused(
                f"the manifest's dependency {dependency.name} has an invalid range "
                f"{dependency.range!r}",
                hint=_REPACK_HINT,
            ) from None
    return manifest


def _member_path(member: tarfile.TarInfo) -> str:
    if member.name == MANIFEST_FILE:
        raise PackageRefused(f"the archive holds {MANIFEST_FILE} twice", hint=_REPACK_HINT)
    if not member.name.startswith(FILES_DIR):
        raise PackageRefused(
            f"the archive member {member.name!r} is outside {FILES_DIR}",
            hint="only the manifest and files/… belong in a package",
        )
    path = member.name[len(FILES_DIR) :]
    problem = _path_problem(path)
    if problem:
        raise PackageRefused(f"the archive member {member.name!r} is unsafe: {problem}")
    if not _is_plain_file(member):
        raise _bad_type(member)
    return path


def _is_plain_file(member: tarfile.TarInfo) -> bool:
    """Regular and not sparse: a sparse member could claim gigabytes of zeros from a few bytes."""
    return member.type in (tarfile.REGTYPE, tarfile.AREGTYPE) and not member.issparse()


def _bad_type(member: tarfile.TarInfo) -> PackageRefused:
    if member.issym():
        kind = "a symbolic link"
    elif member.islnk():
        kind = "a hard link"
    elif member.isdir():
        kind = "a directory"
    elif member.issparse():
        kind = "a sparse file"
    else:
        kind = "a device or special file"
    return PackageRefused(
        f"the archive member {member.name!r} is {kind}; packages hold regular files only",
        hint="do not install this package",
    )


def _member_bytes(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    try:
        handle = tar.extractfile(member)
        data = handle.read() if handle is not None else None
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise _not_an_archive(exc) from None
    if data is None or len(data) != member.size:
        raise PackageRefused(f"the archive member {member.name!r} is truncated", hint=_REPACK_HINT)
    return data


def _path_problem(path: str) -> str | None:
    """Why a relative path may not be a package file, or None: installers join it to a dir."""
    if not path:
        return "the path is empty"
    if "\\" in path or "\x00" in path or any(ord(ch) < 32 for ch in path):
        return "the path holds a backslash or control character"
    if path.startswith("/") or PurePosixPath(path).is_absolute():
        return "the path is absolute"
    parts = path.split("/")
    if any(part in {"", ".", ".."} for part in parts):
        return "the path holds an empty, '.' or '..' component"
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return "the path is not valid UTF-8"
    return None


def _check_files(manifest: Manifest, files: dict[str, bytes]) -> None:
    for path in files:
        if path not in manifest.files:
            raise PackageRefused(
                f"the archive holds files/{path}, which its manifest does not list",
                hint=f"the archive was changed after packing; {_REPACK_HINT}",
            )
    for path, digest in manifest.files.items():
        if path not in files:
            raise PackageRefused(
                f"the manifest lists files/{path}, which the archive does not hold",
                hint=f"the archive was changed after packing; {_REPACK_HINT}",
            )
        if hashlib.sha256(files[path]).hexdigest() != digest:
            raise PackageRefused(
                f"files/{path} does not match its sha256 in the manifest",
                hint=f"the file was changed after packing; {_REPACK_HINT}",
            )


def spec_file(unpacked: Unpacked) -> str:
    """The path of the package's capsule.yaml or persona YAML inside ``unpacked.files``."""
    manifest = unpacked.manifest
    if manifest.kind == "capsule":
        if CAPSULE_FILE in unpacked.files:
            return CAPSULE_FILE
    else:
        top = [path for path in unpacked.files if "/" not in path and path.endswith(_SPEC_SUFFIXES)]
        if len(top) == 1:
            return top[0]
        for suffix in _SPEC_SUFFIXES:
            if manifest.name + suffix in unpacked.files:
                return manifest.name + suffix
    expected = CAPSULE_FILE if manifest.kind == "capsule" else f"{manifest.name}.yaml"
    raise PackageRefused(
        f"the {manifest.kind} package {manifest.ref} holds no {expected}", hint=_REPACK_HINT
    )


def _check_spec(unpacked: Unpacked) -> None:
    """The spec inside must be valid and be what the manifest says, or installs would lie."""
    manifest = unpacked.manifest
    path = spec_file(unpacked)
    source = f"{manifest.ref}:{path}"
    try:
        spec = parse_spec(unpacked.files[path].decode("utf-8-sig"), manifest.kind, source)
    except UnicodeDecodeError:
        raise PackageRefused(f"{source} is not UTF-8 text", hint=_REPACK_HINT) from None
    except SpecError as exc:
        raise PackageRefused(f"the package's spec is invalid: {exc}", hint=_REPACK_HINT) from None
    if not isinstance(spec, Capsule | Persona):
        raise PackageRefused(f"{source} is not a capsule or persona", hint=_REPACK_HINT)
    if (spec.kind, spec.name, spec.version) != (manifest.kind, manifest.name, manifest.version):
        raise PackageRefused(
            f"the manifest says {manifest.kind} {manifest.ref} but {path} is "
            f"{spec.kind} {spec.name}@{spec.version}",
            hint=_REPACK_HINT,
        )
