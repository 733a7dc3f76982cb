"""Publisher keys, signatures and verification: tampered, unsigned or untrusted is refused."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from soma.errors import Conflict, PackageRefused, SomaError
from soma.marketplace.archive import archive_digest, pack
from soma.marketplace.manifest import SIGNED_PREFIX, Signature
from soma.marketplace.signing import (
    KeyRing,
    PublisherKey,
    TrustedKeys,
    key_id_of,
    load_signature,
    parse_public_key,
    publisher_key_path,
    sign,
    verify,
    verify_package,
)

CAPSULE = """\
kind: capsule
name: summarize
version: 1.0.0
description: Summarize a document.
persona: writer
instructions: Summarize the document.
"""


def package(tmp_path: Path, publisher: str = "acme") -> bytes:
    root = tmp_path / f"summarize-{publisher}"
    root.mkdir()
    (root / "capsule.yaml").write_text(CAPSULE)
    (root / "prompt.md").write_text("Be brief.\n" * 50)
    return pack(root, publisher=publisher)[1]


@pytest.fixture
def acme() -> PublisherKey:
    return PublisherKey.generate("acme")


@pytest.fixture
def data(tmp_path: Path) -> bytes:
    return package(tmp_path)


def ring(*keys: tuple[str, PublisherKey]) -> KeyRing:
    keyring = KeyRing()
    for publisher, key in keys:
        keyring.add(publisher, key.public_text)
    return keyring


def test_a_signed_package_verifies(data: bytes, acme: PublisherKey) -> None:
    signature = sign(data, acme)
    assert signature.publisher == "acme"
    assert signature.key_id == acme.key_id
    assert signature.digest == archive_digest(data)
    trusted = ring(("acme", acme))
    verify(data, signature, trusted)
    unpacked = verify_package(data, signature, trusted)
    assert unpacked.manifest.ref == "summarize@1.0.0"
    assert "capsule.yaml" in unpacked.files


def test_the_signature_covers_the_prefixed_digest(data: bytes, acme: PublisherKey) -> None:
    signature = sign(data, acme)
    Ed25519PublicKey.from_public_bytes(parse_public_key(acme.public_text)).verify(
        base64.b64decode(signature.value), SIGNED_PREFIX + archive_digest(data).encode()
    )


@pytest.mark.parametrize("where", [0, 1, 4, 9, 10, 100, "middle", -9, -5, -1])
def test_flipping_any_byte_is_refused(data: bytes, acme: PublisherKey, where: int | str) -> None:
    signature = sign(data, acme)
    position = len(data) // 2 if where == "middle" else int(where)
    tampered = bytearray(data)
    tampered[position] ^= 0x01
    with pytest.raises(PackageRefused, match="changed after signing"):
        verify(bytes(tampered), signature, ring(("acme", acme)))
    with pytest.raises(PackageRefused):
        verify_package(bytes(tampered), signature, ring(("acme", acme)))


def test_unsigned_packages_are_refused(data: bytes, acme: PublisherKey) -> None:
    with pytest.raises(PackageRefused, match="unsigned") as caught:
        verify(data, None, ring(("acme", acme)))
    assert caught.value.hint


def test_untrusted_keys_are_refused_with_how_to_trust(data: bytes, acme: PublisherKey) -> None:
    with pytest.raises(PackageRefused, match="not trusted for publisher acme") as caught:
        verify(data, sign(data, acme), KeyRing())
    assert caught.value.hint is not None
    assert "--trust" in caught.value.hint


def test_a_key_is_trusted_only_for_its_publisher(data: bytes, acme: PublisherKey) -> None:
    mallory = PublisherKey.generate("acme")
    # Mallory signs as "acme" with her own key, which the verifier trusts for mallory only.
    with pytest.raises(PackageRefused, match="not trusted for publisher acme"):
        verify(data, sign(data, mallory), ring(("acme", acme), ("mallory", mallory)))


def test_manifest_and_signature_publishers_must_match(tmp_path: Path) -> None:
    bob = PublisherKey.generate("bob")
    data = package(tmp_path, publisher="acme")
    signature = sign(data, bob)
    with pytest.raises(PackageRefused, match="published by acme but is signed by bob"):
        verify(data, signature, ring(("bob", bob)))
    with pytest.raises(PackageRefused, match="published by acme but is signed by bob"):
        verify_package(data, signature, ring(("bob", bob)))


def test_forged_signatures_are_refused(tmp_path: Path, data: bytes, acme: PublisherKey) -> None:
    trusted = ring(("acme", acme))
    other = package(tmp_path, publisher="acme2")
    # A genuine signature of another archive, relabelled with this archive's digest.
    borrowed = sign(other, acme).model_copy(update={"digest": archive_digest(data)})
    with pytest.raises(PackageRefused, match="signature is not valid") as caught:
        verify(data, borrowed, trusted)
    assert caught.value.hint
    for value in ("not base64!", base64.b64encode(b"short").decode()):
        garbled = sign(data, acme).model_copy(update={"value": value})
        with pytest.raises(PackageRefused, match="signature is not valid"):
            verify(data, garbled, trusted)


class _Lying:
    """A trust store returning a key other than the one the signature names."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw

    def trusted_key(self, publisher: str, key_id: str) -> bytes | None:
        return self.raw


def test_a_trust_store_returning_the_wrong_key_does_not_pass(
    data: bytes, acme: PublisherKey
) -> None:
    other = PublisherKey.generate("acme")
    lying: TrustedKeys = _Lying(parse_public_key(other.public_text))
    with pytest.raises(PackageRefused, match="not trusted"):
        verify(data, sign(data, acme), lying)


# --- keys ---------------------------------------------------------------------------------------


def test_keys_are_saved_0600_and_never_overwritten(tmp_path: Path, acme: PublisherKey) -> None:
    path = publisher_key_path(tmp_path, "acme")
    acme.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    before = path.read_bytes()
    with pytest.raises(Conflict, match="never overwritten") as caught:
        PublisherKey.generate("acme").save(path)
    assert caught.value.hint
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == ["acme.key"]  # no temporary left behind
    loaded = PublisherKey.load(path)
    assert (loaded.publisher, loaded.key_id, loaded.public_text) == (
        "acme",
        acme.key_id,
        acme.public_text,
    )
    signature = sign(b"anything", loaded)
    assert signature.value == sign(b"anything", acme).value  # ed25519 is deterministic


def test_the_key_file_is_json_with_a_pkcs8_pem(tmp_path: Path, acme: PublisherKey) -> None:
    path = tmp_path / "acme.key"
    acme.save(path)
    document = json.loads(path.read_text())
    assert document["publisher"] == "acme"
    assert document["public_key"] == acme.public_text
    assert document["private_key"].startswith("-----BEGIN PRIVATE KEY-----")


def test_the_private_key_never_shows(acme: PublisherKey) -> None:
    secret = acme._private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    shown = repr(acme) + str(acme) + f"{acme}"
    assert "acme" in shown
    assert acme.key_id in shown
    for form in (secret.hex(), base64.b64encode(secret).decode(), "PRIVATE"):
        assert form not in shown


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("not json", "not JSON"),
        ('{"format": "other"}', "is not a publisher key"),
        ('{"format": "soma-publisher-key-v1", "publisher": "acme"}', "lacks"),
        (
            '{"format": "soma-publisher-key-v1", "publisher": "acme", "private_key": "x"}',
            "no readable private key",
        ),
    ],
)
def test_bad_key_files_are_explained(tmp_path: Path, content: str, reason: str) -> None:
    path = tmp_path / "bad.key"
    path.write_text(content)
    with pytest.raises(SomaError, match=reason) as caught:
        PublisherKey.load(path)
    assert caught.value.hint


def test_an_edited_key_file_is_refused(tmp_path: Path, acme: PublisherKey) -> None:
    path = tmp_path / "acme.key"
    acme.save(path)
    document = json.loads(path.read_text())
    document["public_key"] = PublisherKey.generate("x").public_text
    path.write_text(json.dumps(document))
    with pytest.raises(SomaError, match="does not belong"):
        PublisherKey.load(path)
    with pytest.raises(SomaError, match="no publisher key"):
        PublisherKey.load(tmp_path / "missing.key")


def test_publisher_names_are_checked(tmp_path: Path) -> None:
    with pytest.raises(SomaError, match="not a valid publisher name"):
        PublisherKey.generate("../etc")
    with pytest.raises(SomaError, match="not a valid publisher name"):
        publisher_key_path(tmp_path, "a/b")


def test_public_keys_parse_and_have_short_ids(acme: PublisherKey) -> None:
    raw = parse_public_key(f"  {acme.public_text}\n")
    assert len(raw) == 32
    assert key_id_of(raw) == hashlib.sha256(raw).hexdigest()[:16] == acme.key_id
    assert acme.public_text == "ed25519:" + base64.b64encode(raw).decode()


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "not an ed25519 public key"),
        ("rsa:AAAA", "not an ed25519 public key"),
        ("ed25519:not*base64", "not valid base64"),
        ("ed25519:" + base64.b64encode(bytes(31)).decode(), "decodes to 31 bytes"),
    ],
)
def test_bad_public_keys_are_explained(text: str, reason: str) -> None:
    with pytest.raises(SomaError, match=re.escape(reason)) as caught:
        parse_public_key(text)
    assert caught.value.hint


def test_signature_files_load_or_refuse(tmp_path: Path, data: bytes, acme: PublisherKey) -> None:
    path = tmp_path / "x.soma.sig"
    signature = sign(data, acme)
    path.write_text(signature.model_dump_json())
    assert load_signature(path) == signature
    with pytest.raises(PackageRefused, match="unsigned"):
        load_signature(tmp_path / "missing.sig")
    path.write_text('{"publisher": "acme"}')
    with pytest.raises(PackageRefused, match="not a valid signature"):
        load_signature(path)


def test_signature_model_rejects_bad_fields() -> None:
    with pytest.raises(ValueError, match="key_id"):
        Signature(publisher="acme", key_id="XYZ", digest="0" * 64, value="x")
