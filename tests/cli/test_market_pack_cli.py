"""`soma market keygen|pack|sign|verify` against package files on disk."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from soma.cli.main import app
from soma.marketplace.archive import archive_digest

runner = CliRunner()

CAPSULE = """\
kind: capsule
name: summarize
version: 1.2.0
description: Summarize a document.
persona: writer@^1.0
tools: [fs.read]
instructions: Summarize the document.
"""


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return {"SOMA_HOME": str(tmp_path / "home"), "COLUMNS": "200"}


@pytest.fixture
def capsule_dir(tmp_path: Path) -> Path:
    root = tmp_path / "src" / "summarize"
    (root / "prompts").mkdir(parents=True)
    (root / "capsule.yaml").write_text(CAPSULE)
    (root / "prompts" / "system.md").write_text("Be brief.\n")
    return root


def market(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["market", *args], env=env)
    return result.exit_code, result.stdout, result.stderr


def keygen(env: dict[str, str], publisher: str) -> str:
    code, out, err = market(env, "keygen", publisher)
    assert code == 0, err
    return out.strip()


def test_keygen_pack_sign_verify(env: dict[str, str], capsule_dir: Path) -> None:
    public = keygen(env, "acme")
    assert public.startswith("ed25519:")
    key_file = Path(env["SOMA_HOME"]) / "market" / "keys" / "acme.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert "PRIVATE" not in public

    code, out, err = market(env, "pack", str(capsule_dir), "--publisher", "acme")
    assert code == 0, err
    archive = Path("summarize-1.2.0.soma").resolve()
    assert out.strip() == archive_digest(archive.read_bytes())
    assert "packed capsule summarize@1.2.0 (2 files" in err

    code, out, err = market(env, "sign", str(archive))
    assert code == 0, err
    signature_file = Path(out.strip())
    assert signature_file == archive.with_name("summarize-1.2.0.soma.sig")
    signature = json.loads(signature_file.read_text())
    assert signature["publisher"] == "acme"
    assert signature["digest"] == archive_digest(archive.read_bytes())

    for trust in (public, f"acme={public}", f"@{key_file.with_suffix('.pub')}"):
        code, out, err = market(env, "verify", str(archive), "--trust", trust)
        assert code == 0, err
        assert out.startswith("verified capsule summarize@1.2.0 by acme")


def test_keygen_never_overwrites_a_key(env: dict[str, str]) -> None:
    keygen(env, "acme")
    key_file = Path(env["SOMA_HOME"]) / "market" / "keys" / "acme.key"
    before = key_file.read_bytes()
    code, out, err = market(env, "keygen", "acme")
    assert code == 2
    assert "already exists" in err
    assert out == ""
    assert key_file.read_bytes() == before


def test_pack_is_deterministic_and_honours_output(
    env: dict[str, str], capsule_dir: Path, tmp_path: Path
) -> None:
    first, second = tmp_path / "a.soma", tmp_path / "out" / "b.soma"
    for target in (first, second):
        code, _, err = market(
            env, "pack", str(capsule_dir), "--publisher", "acme", "-o", str(target)
        )
        assert code == 0, err
    assert first.read_bytes() == second.read_bytes()


@pytest.fixture
def signed(env: dict[str, str], capsule_dir: Path) -> tuple[Path, str]:
    public = keygen(env, "acme")
    assert market(env, "pack", str(capsule_dir), "--publisher", "acme")[0] == 0
    archive = Path("summarize-1.2.0.soma").resolve()
    assert market(env, "sign", str(archive), "--publisher", "acme")[0] == 0
    return archive, public


def test_verify_refuses_a_tampered_archive(env: dict[str, str], signed: tuple[Path, str]) -> None:
    archive, public = signed
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    archive.write_bytes(bytes(data))
    code, out, err = market(env, "verify", str(archive), "--trust", public)
    assert code == 2
    assert "changed after signing" in err
    assert "verified" not in out


def test_verify_refuses_unsigned_and_untrusted(
    env: dict[str, str], signed: tuple[Path, str]
) -> None:
    archive, public = signed
    stranger = keygen(env, "stranger")
    code, _, err = market(env, "verify", str(archive), "--trust", stranger)
    assert code == 2
    assert "not trusted for publisher acme" in err
    code, _, err = market(env, "verify", str(archive), "--trust", f"stranger={public}")
    assert code == 2
    assert "not trusted for publisher acme" in err
    code, _, err = market(env, "verify", str(archive))
    assert code == 2
    assert "--trust" in err
    archive.with_name(archive.name + ".sig").unlink()
    code, _, err = market(env, "verify", str(archive), "--trust", public)
    assert code == 2
    assert "unsigned" in err


def test_verify_takes_a_signature_from_elsewhere(
    env: dict[str, str], signed: tuple[Path, str], tmp_path: Path
) -> None:
    archive, public = signed
    moved = tmp_path / "sigs" / "s.json"
    moved.parent.mkdir()
    archive.with_name(archive.name + ".sig").rename(moved)
    code, _, err = market(env, "verify", str(archive), "--signature", str(moved), "--trust", public)
    assert code == 0, err


def test_sign_refuses_another_publishers_package(
    env: dict[str, str], capsule_dir: Path, tmp_path: Path
) -> None:
    keygen(env, "bob")
    assert market(env, "pack", str(capsule_dir), "--publisher", "acme")[0] == 0
    code, _, err = market(env, "sign", "summarize-1.2.0.soma", "--publisher", "bob")
    assert code == 2
    assert "packed for publisher acme, but the key belongs to bob" in err
    code, _, err = market(env, "sign", "summarize-1.2.0.soma")
    assert code == 2
    assert "no publisher key" in err
    assert "keygen" in err


def test_bad_inputs_exit_2_with_the_reason(env: dict[str, str], tmp_path: Path) -> None:
    code, _, err = market(env, "keygen", "Not Valid")
    assert code == 2
    assert "not a valid publisher name" in err
    code, _, err = market(env, "pack", str(tmp_path / "nothing"), "--publisher", "acme")
    assert code == 2
    assert "does not exist" in err
    code, _, err = market(env, "verify", str(tmp_path / "nothing.soma"), "--trust", "x")
    assert code == 2
    assert "no archive" in err
    garbage = tmp_path / "garbage.soma"
    garbage.write_bytes(b"garbage")
    code, _, err = market(env, "sign", str(garbage), "--publisher", "acme")
    assert code == 2
    assert "not a valid gzip" in err
