"""The backup archive: a gzip'd tar whose last member is a manifest of every other member.

Writing hashes each member as it streams into the archive, so the manifest's sha256s are of
exactly the bytes written. Reading is the trust boundary: :func:`extract_verified` extracts into
a staging directory of the caller's and accepts only what :class:`ArchiveWriter` produces —
relative paths under ``home/`` or ``store/``, regular files, directories and symbolic links that
stay inside ``home/`` — under a size cap, then checks every member against the manifest before
the caller moves anything into place. Links are created last, so no member is ever written
through one.
"""

from __future__ import annotations

import hashlib
import io
import os
import posixpath
import tarfile
import zlib
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import IO, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from soma.errors import SomaError

MANIFEST = "manifest.json"
HOME = "home/"
STORE = "store/"
FORMAT = "soma-backup"
FORMAT_VERSION = 1
DEFAULT_MAX_BYTES = 64 * 2**30
"""Default cap on the uncompressed size of a restore (the sum of its members)."""
_MAX_MANIFEST_BYTES = 256 * 2**20
_MAX_MEMBERS = 5_000_000
_CHUNK = 1024 * 1024
_SECRET_MODE = 0o600


class BackupRefused(SomaError):
    """A backup archive, or the place it would be restored into, is not acceptable."""


class Member(BaseModel):
    """One archive member: a file (``sha256``, ``size``), a directory, or a link."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["file", "dir", "link"] = "file"
    sha256: str | None = None
    size: int = 0
    link: str | None = None


class BackupManifest(BaseModel):
    """``manifest.json``: what the archive holds and how to check it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["soma-backup"] = "soma-backup"
    version: int = FORMAT_VERSION
    soma_version: str
    created_at: datetime
    alembic_revision: str
    store_format: Literal["sqlite", "jsonl"]
    source_dialect: str
    source_home: str
    secret_key: Literal["archive", "environment", "absent"]
    tables: list[str]
    counts: dict[str, int]
    members: dict[str, Member]


class _Hashing(io.RawIOBase):
    """Reads ``source`` through, hashing what passes."""

    def __init__(self, source: IO[bytes]) -> None:
        self._source = source
        self.sha256 = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self._source.read(size)
        self.sha256.update(data)
        return data


class ArchiveWriter:
    """Appends members to a gzip'd tar stream and remembers their digests for the manifest."""

    def __init__(self, out: IO[bytes]) -> None:
        self._tar = tarfile.open(fileobj=out, mode="w:gz", format=tarfile.PAX_FORMAT)  # noqa: SIM115
        self.members: dict[str, Member] = {}

    def add_file(self, name: str, path: Path, *, mode: int | None = None) -> None:
        with path.open("rb") as handle:
            info = self._info(name, tarfile.REGTYPE, mode or os.fstat(handle.fileno()).st_mode)
            info.size = os.fstat(handle.fileno()).st_size
            hashing = _Hashing(handle)
            self._tar.addfile(info, hashing)
        self.members[name] = Member(sha256=hashing.sha256.hexdigest(), size=info.size)

    def add_bytes(self, name: str, data: bytes) -> None:
        info = self._info(name, tarfile.REGTYPE, 0o644)
        info.size = len(data)
        self._tar.addfile(info, io.BytesIO(data))

    def add_tree(self, name: str, root: Path, *, secret: bool = False) -> None:
        """``root`` (a file or a directory, recursively) as ``name``; links are kept as links."""
        if root.is_symlink():
            target = os.readlink(root)
            info = self._info(name, tarfile.SYMTYPE, 0o777)
            info.linkname = target
            self._tar.addfile(info)
            self.members[name] = Member(kind="link", link=target)
        elif root.is_dir():
            self._tar.addfile(self._info(name, tarfile.DIRTYPE, 0o755))
            self.members[name] = Member(kind="dir")
            for child in sorted(root.iterdir()):
                self.add_tree(f"{name}/{child.name}", child, secret=secret)
        elif root.is_file():
            self.add_file(name, root, mode=_SECRET_MODE if secret else None)
        # sockets, fifos and devices are not state worth restoring: skipped

    def close(self) -> None:
        self._tar.close()

    @staticmethod
    def _info(name: str, kind: bytes, mode: int) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.mode = mode & 0o777
        info.mtime = int(datetime.now().timestamp())
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info


def manifest_bytes(manifest: BackupManifest) -> bytes:
    return manifest.model_dump_json(indent=1).encode("utf-8")


# --- reading --------------------------------------------------------------------------------


def extract_verified(
    archive: Path, staging: Path, *, max_bytes: int = DEFAULT_MAX_BYTES
) -> BackupManifest:
    """Extract ``archive`` into ``staging`` and check it against its manifest; refuse anything
    unsafe, oversized, truncated or tampered with, naming the member."""
    found: dict[str, Member] = {}
    links: list[tuple[str, str]] = []
    manifest: BackupManifest | None = None
    total = 0
    current = "the archive's start"
    try:
        with tarfile.open(archive, mode="r|gz") as tar:
            for info in tar:
                current = info.name
                if len(found) >= _MAX_MEMBERS:
                    raise BackupRefused(f"the archive holds more than {_MAX_MEMBERS} members")
                if info.name == MANIFEST:
                    if manifest is not None:
                        raise BackupRefused(f"the archive holds {MANIFEST} twice")
                    manifest = _read_manifest(tar, info)
                    continue
                name = _check_name(info.name)
                if name in found:
                    raise BackupRefused(f"the archive holds {name!r} twice", hint=_HINT)
                if info.isdir():
                    (staging / name).mkdir(parents=True, exist_ok=True, mode=0o755)
                    found[name] = Member(kind="dir")
                elif info.issym():
                    links.append((name, _check_link(name, info.linkname)))
                    found[name] = Member(kind="link", link=info.linkname)
                elif info.type in (tarfile.REGTYPE, tarfile.AREGTYPE) and not info.issparse():
                    total += info.size
                    if total > max_bytes:
                        raise BackupRefused(
                            f"the archive unpacks to more than {max_bytes} bytes (at {name!r})",
                            hint="pass a larger limit if the instance really is this large",
                        )
                    found[name] = _extract_file(tar, info, staging / name)
                else:
                    raise BackupRefused(
                        f"the archive member {name!r} is a {_kind(info)}; a backup holds"
                        " regular files, directories and links inside home/ only",
                        hint=_HINT,
                    )
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        if isinstance(exc, FileNotFoundError) and not archive.exists():
            raise BackupRefused(f"{archive} does not exist") from None
        raise BackupRefused(
            f"{archive} is truncated or corrupt: reading failed at member {current!r} ({exc})",
            hint=_HINT,
        ) from None
    if manifest is None:
        raise BackupRefused(
            f"{archive} holds no {MANIFEST}: it is truncated or not a Soma backup", hint=_HINT
        )
    _compare(manifest, found)
    for name, target in links:
        path = staging / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.symlink_to(target)
    return manifest


_HINT = "use an intact archive written by `soma admin backup`; this one was altered or cut short"


def _read_manifest(tar: tarfile.TarFile, info: tarfile.TarInfo) -> BackupManifest:
    if not info.isfile() or info.size > _MAX_MANIFEST_BYTES:
        raise BackupRefused(f"{MANIFEST} is not a plain file under 256 MiB", hint=_HINT)
    handle = tar.extractfile(info)
    data = handle.read() if handle is not None else b""
    if len(data) != info.size:
        raise BackupRefused(f"{MANIFEST} is truncated", hint=_HINT)
    try:
        manifest = BackupManifest.model_validate_json(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"]) or "document"
        raise BackupRefused(
            f"{MANIFEST} is invalid at {where}: {error['msg']}",
            hint="the archive was not written by a compatible `soma admin backup`",
        ) from None
    if manifest.version != FORMAT_VERSION:
        raise BackupRefused(
            f"the backup has format version {manifest.version}; this Soma reads version"
            f" {FORMAT_VERSION}",
            hint="restore it with the Soma version that wrote it",
        )
    return manifest


def _extract_file(tar: tarfile.TarFile, info: tarfile.TarInfo, path: Path) -> Member:
    handle = tar.extractfile(info)
    if handle is None:
        raise BackupRefused(f"cannot read the archive member {info.name!r}", hint=_HINT)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    sha = hashlib.sha256()
    size = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        while chunk := handle.read(_CHUNK):
            sha.update(chunk)
            size += len(chunk)
            out.write(chunk)
    if size != info.size:
        raise BackupRefused(f"the archive member {info.name!r} is truncated", hint=_HINT)
    os.chmod(path, info.mode & 0o755 if info.mode & 0o077 else info.mode & 0o700)
    return Member(sha256=sha.hexdigest(), size=size)


def _compare(manifest: BackupManifest, found: dict[str, Member]) -> None:
    for name, member in found.items():
        listed = manifest.members.get(name)
        if listed is None:
            raise BackupRefused(
                f"the archive holds {name!r}, which its manifest does not list", hint=_HINT
            )
        if listed.kind != member.kind or listed.link != member.link:
            raise BackupRefused(f"{name!r} is not what the manifest says it is", hint=_HINT)
        if member.kind == "file" and (listed.sha256, listed.size) != (member.sha256, member.size):
            raise BackupRefused(
                f"the archive member {name!r} does not match its sha256 in the manifest:"
                " it was changed after the backup was written",
                hint=_HINT,
            )
    for name in manifest.members:
        if name not in found:
            raise BackupRefused(
                f"the manifest lists {name!r}, which the archive does not hold", hint=_HINT
            )


def _check_name(name: str) -> str:
    problem = _path_problem(name)
    if problem is None and not name.startswith((HOME, STORE)):
        problem = "it is outside home/ and store/"
    if problem:
        raise BackupRefused(f"the archive member {name!r} is unsafe: {problem}", hint=_HINT)
    return name


def _check_link(name: str, target: str) -> str:
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
    if (
        not target
        or PurePosixPath(target).is_absolute()
        or "\x00" in target
        or not name.startswith(HOME)
        or not resolved.startswith(HOME)
    ):
        raise BackupRefused(
            f"the archive member {name!r} is a link to {target!r}, outside the restored home",
            hint=_HINT,
        )
    return target


def _path_problem(path: str) -> str | None:
    if not path:
        return "the path is empty"
    if "\\" in path or any(ord(ch) < 32 for ch in path):
        return "the path holds a backslash or control character"
    if path.startswith("/") or PurePosixPath(path).is_absolute():
        return "the path is absolute"
    if any(part in {"", ".", ".."} for part in path.split("/")):
        return "the path holds an empty, '.' or '..' component"
    return None


def _kind(info: tarfile.TarInfo) -> str:
    if info.islnk():
        return "hard link"
    if info.issparse():
        return "sparse file"
    return "device or special file"
