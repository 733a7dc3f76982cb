"""Publisher keys and package signatures (ed25519).

A package is trusted because a key the verifier already trusts signed its exact bytes, not
because of where it was downloaded from: mirrors, federated registries and USB sticks are all
equally untrusted transports. The signature covers ``SIGNED_PREFIX + sha256(archive)``; the
prefix keeps a publisher key from ever producing a signature valid in another protocol.

Key file format (``soma market keygen`` writes ``$SOMA_HOME/market/keys/<publisher>.key``): one
JSON object, mode 0600::

    {"format": "soma-publisher-key-v1", "publisher": "acme", "key_id": "…",
     "public_key": "ed25519:…", "private_key": "-----BEGIN PRIVATE KEY-----\\n…"}

``private_key`` is an unencrypted PKCS#8 PEM. The publisher name travels with the key because a
signature names its publisher, and signing as the wrong publisher would only fail later, at
verification. ``public_key`` is informative (it is re-derived and checked on load), so the
public half can be read with ``cat`` or ``jq`` without Soma.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import os
import secrets
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import TypeAdapter, ValidationError

from soma.errors import Conflict, PackageRefused, SomaError
from soma.marketplace.archive import Unpacked, archive_digest, read_manifest, unpack
from soma.marketplace.manifest import SIGNED_PREFIX, Signature
from soma.specs.models import Name

__all__ = [
    "KEY_FILE_FORMAT",
    "PUBLIC_KEY_PREFIX",
    "KeyRing",
    "PublisherKey",
    "TrustedKeys",
    "check_publisher_name",
    "key_id_of",
    "load_signature",
    "parse_public_key",
    "publisher_key_path",
    "sign",
    "verify",
    "verify_package",
]

KEY_FILE_FORMAT = "soma-publisher-key-v1"
PUBLIC_KEY_PREFIX = "ed25519:"
_RAW_KEY_BYTES = 32
_SIGNATURE_BYTES = 64
_MAX_KEY_FILE_BYTES = 64 * 1024
_NAME: TypeAdapter[str] = TypeAdapter(Name)


def check_publisher_name(publisher: str) -> str:
    """Publisher names become file names and signature fields, so they follow the name rules."""
    try:
        return _NAME.validate_python(publisher)
    except ValidationError:
        raise SomaError(
            f"{publisher!r} is not a valid publisher name",
            hint="use lower-case letters, digits and single '-', '_' or '.', e.g. 'acme' or "
            "'data-team'",
        ) from None


def publisher_key_path(home: Path, publisher: str) -> Path:
    """Where ``soma market keygen`` keeps a publisher's key: ``<home>/market/keys/<name>.key``."""
    return home / "market" / "keys" / f"{check_publisher_name(publisher)}.key"


def key_id_of(raw: bytes) -> str:
    """The first 16 hex digits of sha256(raw public key): short, yet unique per publisher."""
    return hashlib.sha256(raw).hexdigest()[:16]


def parse_public_key(text: str) -> bytes:
    """The raw 32-byte key from ``ed25519:<base64>`` (surrounding whitespace ignored)."""
    value = text.strip()
    hint = "public keys look like ed25519:<base64 of 32 bytes>, as `soma market keygen` prints"
    if not value.startswith(PUBLIC_KEY_PREFIX):
        raise SomaError(f"{_preview(value)} is not an ed25519 public key", hint=hint)
    try:
        raw = base64.b64decode(value[len(PUBLIC_KEY_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise SomaError(f"{_preview(value)} is not valid base64", hint=hint) from None
    if len(raw) != _RAW_KEY_BYTES:
        raise SomaError(
            f"{_preview(value)} decodes to {len(raw)} bytes; an ed25519 public key has 32",
            hint=hint,
        )
    return raw


def _preview(text: str) -> str:
    return repr(text if len(text) <= 60 else text[:57] + "...")


def _public_text(raw: bytes) -> str:
    return PUBLIC_KEY_PREFIX + base64.b64encode(raw).decode("ascii")


class PublisherKey:
    """A publisher's signing key. Its repr and str show the publisher and key id, never the key."""

    __slots__ = ("_private", "publisher")

    def __init__(self, publisher: str, private_key: Ed25519PrivateKey) -> None:
        self.publisher = check_publisher_name(publisher)
        self._private = private_key

    @classmethod
    def generate(cls, publisher: str) -> PublisherKey:
        return cls(publisher, Ed25519PrivateKey.generate())

    @classmethod
    def load(cls, path: Path) -> PublisherKey:
        """Read a key file written by :meth:`save`; refuse anything that does not add up."""
        hint = "the file must be a Soma publisher key written by `soma market keygen`"
        try:
            if path.stat().st_size > _MAX_KEY_FILE_BYTES:
                raise SomaError(f"{path} is too large to be a publisher key", hint=hint)
            document = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SomaError(
                f"no publisher key at {path}",
                hint="create one with `soma market keygen <publisher>` or pass --key FILE",
            ) from None
        except OSError as exc:
            raise SomaError(f"cannot read {path}: {exc.strerror}") from None
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise SomaError(f"{path} is not a publisher key (not JSON)", hint=hint) from None
        if not isinstance(document, dict) or document.get("format") != KEY_FILE_FORMAT:
            raise SomaError(f"{path} is not a publisher key ({KEY_FILE_FORMAT})", hint=hint)
        publisher, pem = document.get("publisher"), document.get("private_key")
        if not isinstance(publisher, str) or not isinstance(pem, str):
            raise SomaError(f"{path} lacks its publisher or private_key", hint=hint)
        try:
            private = serialization.load_pem_private_key(pem.encode("ascii"), password=None)
        except (ValueError, TypeError, UnicodeEncodeError):
            raise SomaError(
                f"{path} holds no readable private key",
                hint="expected an unencrypted PKCS#8 PEM; " + hint,
            ) from None
        if not isinstance(private, Ed25519PrivateKey):
            raise SomaError(f"{path} holds a key that is not ed25519", hint=hint)
        key = cls(publisher, private)
        stated = document.get("public_key")
        if stated is not None and stated != key.public_text:
            raise SomaError(
                f"{path}: public_key does not belong to private_key; the file was edited",
                hint="restore the key from a backup; do not edit key files by hand",
            )
        return key

    def save(self, path: Path) -> None:
        """Write the key atomically with mode 0600; never replace an existing file.

        Losing a publisher key means every verifier has to be told a new one, so an existing
        key is never overwritten, even by a second ``keygen`` racing this one.
        """
        pem = self._private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode("ascii")
        document: dict[str, Any] = {
            "format": KEY_FILE_FORMAT,
            "publisher": self.publisher,
            "key_id": self.key_id,
            "public_key": self.public_text,
            "private_key": pem,
        }
        if path.exists() or path.is_symlink():
            raise _exists(path)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                json.dump(document, file, indent=2)
                file.write("\n")
                file.flush()
                os.fsync(file.fileno())
            try:
                os.link(tmp, path)  # unlike rename, fails if another writer got there first
            except FileExistsError:
                raise _exists(path) from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    @property
    def public_raw(self) -> bytes:
        return self._private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    @property
    def key_id(self) -> str:
        return key_id_of(self.public_raw)

    @property
    def public_text(self) -> str:
        """``ed25519:<base64>``: what verifiers pass to ``--trust``."""
        return _public_text(self.public_raw)

    def sign_bytes(self, message: bytes) -> bytes:
        return self._private.sign(message)

    def __repr__(self) -> str:
        return f"PublisherKey(publisher={self.publisher!r}, key_id={self.key_id!r})"

    __str__ = __repr__


def _exists(path: Path) -> Conflict:
    return Conflict(
        f"{path} already exists; a publisher key is never overwritten",
        hint="keep using it, or move it away first (verifiers will then need the new public key)",
    )


def sign(data: bytes, key: PublisherKey) -> Signature:
    """Sign an archive's bytes as ``key.publisher``."""
    digest = archive_digest(data)
    value = key.sign_bytes(SIGNED_PREFIX + digest.encode("ascii"))
    return Signature(
        publisher=key.publisher,
        key_id=key.key_id,
        digest=digest,
        value=base64.b64encode(value).decode("ascii"),
    )


def load_signature(path: Path) -> Signature:
    """Read a ``.sig`` file (the Signature as JSON), as ``soma market sign`` writes it."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PackageRefused(
            f"the package is unsigned: there is no signature file {path}",
            hint="sign it with `soma market sign <archive>` or pass --signature FILE",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PackageRefused(f"cannot read the signature {path}: {exc}") from None
    try:
        return Signature.model_validate_json(text)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"]) or "document"
        raise PackageRefused(
            f"{path} is not a valid signature: {where}: {error['msg']}",
            hint="signature files are the JSON that `soma market sign` writes",
        ) from None


class TrustedKeys(Protocol):
    """Which public keys a verifier trusts, per publisher (a key ring, a registry's database)."""

    def trusted_key(self, publisher: str, key_id: str) -> bytes | None:
        """The raw 32-byte key, or None when this key is not trusted for this publisher."""
        ...


class KeyRing(TrustedKeys):
    """In-memory trusted keys: for tests, the CLI and small deployments."""

    def __init__(self) -> None:
        self._keys: dict[tuple[str, str], bytes] = {}

    def add(self, publisher: str, public_text: str) -> str:
        """Trust ``public_text`` for ``publisher`` (only for it); returns the key id."""
        raw = parse_public_key(public_text)
        key_id = key_id_of(raw)
        self._keys[(check_publisher_name(publisher), key_id)] = raw
        return key_id

    def trusted_key(self, publisher: str, key_id: str) -> bytes | None:
        return self._keys.get((publisher, key_id))

    def __len__(self) -> int:
        return len(self._keys)


def verify(data: bytes, signature: Signature | None, trusted: TrustedKeys) -> None:
    """Refuse the archive unless a trusted key of its publisher signed exactly these bytes."""
    if signature is None:
        raise PackageRefused(
            "the package is unsigned",
            hint="ask the publisher for its signature file, or sign your own package with "
            "`soma market sign <archive>`",
        )
    if archive_digest(data) != signature.digest:
        raise PackageRefused(
            "the archive does not match its signature's digest: it was changed after signing",
            hint="download it again; if it still fails, the copy you were given was tampered with",
        )
    raw = trusted.trusted_key(signature.publisher, signature.key_id)
    if raw is None or key_id_of(raw) != signature.key_id:
        raise PackageRefused(
            f"the package is signed by key {signature.key_id}, which is not trusted for "
            f"publisher {signature.publisher}",
            hint=f"if you trust {signature.publisher}, get their public key (ed25519:…) from them "
            f"directly and trust it, e.g. `soma market verify --trust "
            f"{signature.publisher}=ed25519:…`",
        )
    try:
        value = base64.b64decode(signature.value, validate=True)
        if len(value) != _SIGNATURE_BYTES:
            raise InvalidSignature
        Ed25519PublicKey.from_public_bytes(raw).verify(
            value, SIGNED_PREFIX + signature.digest.encode("ascii")
        )
    except (InvalidSignature, binascii.Error, ValueError):
        raise PackageRefused(
            f"the signature is not valid for this archive and {signature.publisher}'s key "
            f"{signature.key_id}: it was forged or corrupted",
            hint="do not install this package; ask the publisher for a fresh signature",
        ) from None
    _check_publisher(read_manifest(data).publisher, signature)


def verify_package(data: bytes, signature: Signature | None, trusted: TrustedKeys) -> Unpacked:
    """Verify the signature, then unpack and check every file: what installers should call."""
    verify(data, signature, trusted)
    unpacked = unpack(data)
    assert signature is not None  # verify refused unsigned packages
    _check_publisher(unpacked.manifest.publisher, signature)
    return unpacked


def _check_publisher(publisher: str, signature: Signature) -> None:
    if publisher != signature.publisher:
        raise PackageRefused(
            f"the package says it is published by {publisher} but is signed by "
            f"{signature.publisher}",
            hint=f"a publisher may only sign its own packages; {publisher} must sign it",
        )
