"""Package archives: deterministic packing, and unpacking that refuses anything else."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import shutil
import tarfile
import zlib
from importlib.resources import files
from pathlib import Path

import pytest

from soma.errors import PackageRefused, SomaError, SpecError
from soma.marketplace.archive import (
    MAX_PACKAGE_BYTES,
    Unpacked,
    archive_digest,
    manifest_json,
    pack,
    read_manifest,
    spec_file,
    unpack,
)
from soma.marketplace.manifest import MANIFEST_FILE, Dependency

LIBRARY = Path(str(files("soma") / "library"))
CAPSULE = """\
kind: capsule
name: summarize
version: 1.2.0
description: Summarize a document for a busy reader.
persona: writer@^1.0
tools: [fs.read, {name: fs.write, constraints: {path_glob: "out/*"}}]
instructions: Summarize the document.
tags: [docs, writing]
"""
PERSONA = """\
kind: persona
name: writer
version: 1.0.3
role: technical writer
goal: Explain things plainly.
"""
PACKAGE_YAML = """\
license: Apache-2.0
tags: [summaries, docs]
dependencies:
  - {kind: capsule, name: write-spec, range: ^1.0}
  - {kind: persona, name: writer, range: ">=1.0.2,<2"}
"""
FILES = {
    "capsule.yaml": CAPSULE,
    "prompts/system.md": "You are careful.\n",
    "knowledge/facts.txt": "The sky is blue.\n",
    "evals/cases.yaml": "- input: {}\n",
}


def write_tree(root: Path, tree: dict[str, str], order: list[str] | None = None) -> Path:
    for name in order or list(tree):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(tree[name], encoding="utf-8")
    return root


@pytest.fixture
def capsule_dir(tmp_path: Path) -> Path:
    root = write_tree(tmp_path / "summarize", {**FILES, "package.yaml": PACKAGE_YAML})
    (root / ".DS_Store").write_bytes(b"\0junk")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref: main\n")
    return root


# --- hand-built archives ------------------------------------------------------------------------


def regular(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def special(name: str, kind: bytes, target: str = "") -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info, None


def build(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return gzip.compress(raw.getvalue())


def members_of(data: bytes) -> list[tuple[tarfile.TarInfo, bytes | None]]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        result = []
        for info in tar.getmembers():
            handle = tar.extractfile(info)
            result.append((info, handle.read() if handle else None))
        return result


# --- packing ------------------------------------------------------------------------------------


def test_packing_twice_gives_identical_bytes(capsule_dir: Path) -> None:
    first = pack(capsule_dir, publisher="acme")
    second = pack(capsule_dir, publisher="acme")
    assert first == second


def test_packing_ignores_mtimes_permissions_and_creation_order(
    capsule_dir: Path, tmp_path: Path
) -> None:
    _, original = pack(capsule_dir, publisher="acme")
    order = sorted(FILES, reverse=True)
    copy = write_tree(tmp_path / "elsewhere" / "summarize", FILES, order)
    shutil.copy(capsule_dir / "package.yaml", copy / "package.yaml")
    for index, name in enumerate(order):
        os.utime(copy / name, (1_000_000 + index, 2_000_000_000 - index * 7777))
        (copy / name).chmod(0o600 if index % 2 else 0o755)
    (copy / ".cache").write_text("hidden files never count")
    _, again = pack(copy, publisher="acme")
    assert again == original


def test_archive_layout_and_metadata_are_pinned(capsule_dir: Path) -> None:
    manifest, data = pack(capsule_dir, publisher="acme")
    # gzip header: no FNAME flag, mtime 0, OS "unknown" (255) on every platform.
    assert data[:4] == b"\x1f\x8b\x08\x00"
    assert data[4:8] == b"\0\0\0\0"
    assert data[9] == 255
    members = members_of(data)
    names = [info.name for info, _ in members]
    assert names == [MANIFEST_FILE, *(f"files/{name}" for name in sorted(FILES))]
    for info, _ in members:
        assert (info.mtime, info.mode, info.uid, info.gid) == (0, 0o644, 0, 0)
        assert (info.uname, info.gname, info.type) == ("", "", tarfile.REGTYPE)
        assert info.pax_headers == {}
    manifest_bytes = members[0][1]
    assert manifest_bytes == manifest_json(manifest)
    assert manifest_bytes is not None
    assert json.loads(manifest_bytes) == manifest.model_dump(mode="json")
    assert b": " not in manifest_bytes
    assert b", " not in manifest_bytes


def test_manifest_is_taken_from_the_spec_and_package_yaml(capsule_dir: Path) -> None:
    manifest, _ = pack(capsule_dir, publisher="acme")
    assert (manifest.name, manifest.version, manifest.kind) == ("summarize", "1.2.0", "capsule")
    assert manifest.publisher == "acme"
    assert manifest.description == "Summarize a document for a busy reader."
    assert manifest.tags == ["docs", "writing", "summaries"]
    assert manifest.license == "Apache-2.0"
    assert manifest.dependencies == [
        Dependency(kind="capsule", name="write-spec", range="^1.0"),
        Dependency(kind="persona", name="writer", range=">=1.0.2,<2"),  # package.yaml wins
        Dependency(kind="tool", name="fs.read", range="*"),
        Dependency(kind="tool", name="fs.write", range="*"),
    ]
    assert sorted(manifest.files) == sorted(FILES)
    assert manifest.files["capsule.yaml"] == hashlib.sha256(CAPSULE.encode()).hexdigest()


def test_capsule_without_package_yaml_depends_on_its_persona_and_tools(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "summarize", {"capsule.yaml": CAPSULE.replace("@^1.0", "")})
    manifest, _ = pack(root, publisher="acme")
    assert [(d.kind, d.name, d.range) for d in manifest.dependencies] == [
        ("persona", "writer", "*"),
        ("tool", "fs.read", "*"),
        ("tool", "fs.write", "*"),
    ]
    assert manifest.license is None
    assert list(manifest.files) == ["capsule.yaml"]


def test_a_persona_packs_from_its_file_or_its_directory(tmp_path: Path) -> None:
    persona_dir = write_tree(tmp_path / "writer", {"writer.yaml": PERSONA})
    from_file = pack(persona_dir / "writer.yaml", publisher="acme")
    from_dir = pack(persona_dir, publisher="acme")
    assert from_file == from_dir
    manifest, data = from_file
    assert manifest.kind == "persona"
    assert manifest.description == "technical writer: Explain things plainly."
    assert list(manifest.files) == ["writer.yaml"]
    assert spec_file(unpack(data)) == "writer.yaml"


def test_a_capsule_yaml_file_packs_its_whole_directory(capsule_dir: Path) -> None:
    assert pack(capsule_dir / "capsule.yaml", publisher="acme") == pack(
        capsule_dir, publisher="acme"
    )


CAPSULES = sorted(path.name for path in (LIBRARY / "capsules").iterdir())
PERSONAS = sorted(path.name for path in (LIBRARY / "personas").iterdir())


@pytest.mark.parametrize(
    "source",
    [f"capsules/{name}" for name in CAPSULES] + [f"personas/{name}" for name in PERSONAS],
)
def test_every_builtin_capsule_and_persona_packs_and_unpacks(source: str) -> None:
    manifest, data = pack(LIBRARY / source, publisher="soma")
    assert pack(LIBRARY / source, publisher="soma")[1] == data
    unpacked = unpack(data)
    assert unpacked.manifest == manifest == read_manifest(data)
    path = spec_file(unpacked)
    on_disk = LIBRARY / source / path if manifest.kind == "capsule" else LIBRARY / source
    assert unpacked.files[path] == on_disk.read_bytes()


def test_invalid_spec_fails_with_file_and_line(tmp_path: Path) -> None:
    root = write_tree(
        tmp_path / "bad", {"capsule.yaml": CAPSULE.replace("version: 1.2.0", "versio: 1")}
    )
    with pytest.raises(SpecError) as caught:
        pack(root, publisher="acme")
    assert str(root / "capsule.yaml") in str(caught.value)
    assert caught.value.line == 3


def test_package_yaml_is_validated_with_lines(capsule_dir: Path) -> None:
    (capsule_dir / "package.yaml").write_text("license: MIT\nlicence: MIT\n")
    with pytest.raises(SpecError, match="unknown field 'licence'") as caught:
        pack(capsule_dir, publisher="acme")
    assert caught.value.line == 2
    assert "allowed fields" in str(caught.value)

    (capsule_dir / "package.yaml").write_text(
        "dependencies:\n  - {kind: capsule, name: x, range: '^^1'}\n"
    )
    with pytest.raises(SpecError, match="invalid version range") as caught:
        pack(capsule_dir, publisher="acme")
    assert caught.value.line == 2

    (capsule_dir / "package.yaml").write_text("dependencies:\n  - {kind: plugin, name: x}\n")
    with pytest.raises(SpecError, match=re.escape("dependencies[0].kind")):
        pack(capsule_dir, publisher="acme")


def test_bad_publisher_and_sources_are_explained(capsule_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(SomaError, match="publisher") as caught:
        pack(capsule_dir, publisher="Not Valid")
    assert caught.value.hint
    with pytest.raises(SomaError, match="does not exist"):
        pack(tmp_path / "missing", publisher="acme")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SomaError, match="neither"):
        pack(empty, publisher="acme")


def test_symlinks_in_the_source_are_refused(capsule_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("do not ship")
    (capsule_dir / "prompts" / "leak.txt").symlink_to(tmp_path / "secret.txt")
    with pytest.raises(SomaError, match="symbolic link") as caught:
        pack(capsule_dir, publisher="acme")
    assert caught.value.hint


# --- unpacking ----------------------------------------------------------------------------------


def test_unpack_returns_manifest_and_files(capsule_dir: Path) -> None:
    manifest, data = pack(capsule_dir, publisher="acme")
    unpacked = unpack(data)
    assert unpacked == Unpacked(manifest, {k: v.encode() for k, v in FILES.items()})
    assert spec_file(unpacked) == "capsule.yaml"
    assert archive_digest(data) == hashlib.sha256(data).hexdigest()


def test_a_changed_file_repacked_with_the_old_manifest_is_refused(capsule_dir: Path) -> None:
    _, data = pack(capsule_dir, publisher="acme")
    members = members_of(data)
    members = [
        regular(info.name, b"You are reckless.\n")
        if info.name == "files/prompts/system.md"
        else (info, content)
        for info, content in members
    ]
    with pytest.raises(
        PackageRefused, match=re.escape("prompts/system.md does not match its sha256")
    ):
        unpack(build(members))


def test_files_must_match_the_manifest_listing(capsule_dir: Path) -> None:
    _, data = pack(capsule_dir, publisher="acme")
    members = members_of(data)
    extra = build([*members, regular("files/extra.sh", b"rm -rf /")])
    with pytest.raises(
        PackageRefused, match=re.escape("extra.sh, which its manifest does not list")
    ):
        unpack(extra)
    missing = build([m for m in members if m[0].name != "files/knowledge/facts.txt"])
    with pytest.raises(
        PackageRefused, match=re.escape("lists files/knowledge/facts.txt, which the archive")
    ):
        unpack(missing)


def test_manifest_and_spec_must_agree(capsule_dir: Path) -> None:
    manifest, data = pack(capsule_dir, publisher="acme")
    forged = manifest.model_copy(update={"name": "other"})
    members = [(regular(MANIFEST_FILE, manifest_json(forged))), *members_of(data)[1:]]
    with pytest.raises(PackageRefused, match=re.escape("manifest says capsule other@1.2.0")):
        unpack(build(members))


@pytest.fixture
def manifest_member(capsule_dir: Path) -> tuple[tarfile.TarInfo, bytes | None]:
    return members_of(pack(capsule_dir, publisher="acme")[1])[0]


@pytest.mark.parametrize(
    ("member", "reason"),
    [
        (regular("evil.txt", b"x"), "outside files/"),
        (regular("/etc/passwd", b"x"), "outside files/"),
        (regular("files//etc/passwd", b"x"), "unsafe"),
        (regular("files/../../.bashrc", b"x"), "unsafe"),
        (regular("files/a/./b", b"x"), "unsafe"),
        (regular("files/a\\..\\b", b"x"), "unsafe"),
        (special("files/link", tarfile.SYMTYPE, "/etc/passwd"), "symbolic link"),
        (special("files/hard", tarfile.LNKTYPE, "files/capsule.yaml"), "hard link"),
        (special("files/prompts", tarfile.DIRTYPE), "directory"),
        (special("files/tty", tarfile.CHRTYPE), "device"),
        (special("files/fifo", tarfile.FIFOTYPE), "device"),
        (regular(MANIFEST_FILE, b"{}"), "twice"),
    ],
)
def test_unsafe_members_are_refused(
    manifest_member: tuple[tarfile.TarInfo, bytes | None],
    member: tuple[tarfile.TarInfo, bytes | None],
    reason: str,
) -> None:
    with pytest.raises(PackageRefused, match=reason):
        unpack(build([manifest_member, member]))


def test_duplicate_members_are_refused(capsule_dir: Path) -> None:
    members = members_of(pack(capsule_dir, publisher="acme")[1])
    with pytest.raises(PackageRefused, match="twice"):
        unpack(build([*members, members[1]]))


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "not a valid gzip"),
        (b"PK\x03\x04 a zip file", "not a valid gzip"),
        (gzip.compress(b"not a tar archive " * 100), "not a valid gzip'd tar|start with"),
        (build([regular("files/capsule.yaml", b"x")]), "does not start with its manifest"),
        (build([regular(MANIFEST_FILE, b"{not json")]), "manifest soma-package.json is invalid"),
        (build([regular(MANIFEST_FILE, b'{"format": 1}')]), "is invalid at name"),
    ],
)
def test_malformed_archives_are_refused(data: bytes, reason: str) -> None:
    with pytest.raises(PackageRefused, match=reason):
        unpack(data)
    with pytest.raises(PackageRefused):
        read_manifest(data)


def test_a_truncated_archive_is_refused(capsule_dir: Path) -> None:
    _, data = pack(capsule_dir, publisher="acme")
    for cut in (10, len(data) // 2, len(data) - 4):
        with pytest.raises(PackageRefused, match="not a valid gzip"):
            unpack(data[:cut])


def test_manifest_paths_must_be_safe(capsule_dir: Path) -> None:
    manifest, _ = pack(capsule_dir, publisher="acme")
    evil = manifest.model_copy(update={"files": {"../escape": "0" * 64}})
    with pytest.raises(PackageRefused, match=re.escape("manifest lists '../escape'")):
        unpack(build([regular(MANIFEST_FILE, manifest_json(evil))]))


def test_oversized_archives_are_refused(capsule_dir: Path) -> None:
    _, data = pack(capsule_dir, publisher="acme")
    with pytest.raises(PackageRefused, match="more than 4096 bytes"):
        unpack(data, max_bytes=4096)
    assert unpack(data, max_bytes=64 * 1024).manifest.name == "summarize"


def test_a_gzip_bomb_is_refused_without_inflating_it(
    manifest_member: tuple[tarfile.TarInfo, bytes | None],
) -> None:
    size = 256 * 2**20  # zeros: compresses to about 250 KiB
    info, content = manifest_member
    header = io.BytesIO()
    with tarfile.open(fileobj=header, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(info, io.BytesIO(content or b""))
    bomb_info = tarfile.TarInfo("files/bomb")
    bomb_info.size = size
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31: gzip framing
    head = _without_end(header.getvalue()) + bomb_info.tobuf(tarfile.PAX_FORMAT)
    parts = [compressor.compress(head)]
    zeros = bytes(2**20)
    parts.extend(compressor.compress(zeros) for _ in range(size // len(zeros)))
    parts.append(compressor.flush())
    bomb = b"".join(parts)
    assert len(bomb) < 2 * 2**20
    with pytest.raises(PackageRefused, match=f"more than {MAX_PACKAGE_BYTES} bytes"):
        unpack(bomb)


def _without_end(tar_bytes: bytes) -> bytes:
    """Strip the end-of-archive zero blocks, so more members can follow."""
    end = len(tar_bytes)
    while end >= 512 and tar_bytes[end - 512 : end] == bytes(512):
        end -= 512
    return tar_bytes[:end]


def test_read_manifest_only_needs_the_start(capsule_dir: Path) -> None:
    manifest, data = pack(capsule_dir, publisher="acme")
    assert read_manifest(data) == manifest
