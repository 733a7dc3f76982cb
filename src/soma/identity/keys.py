"""API keys: ``soma_<key id>_<secret>``.

The key id is public (it names the key in listings, logs and rate-limit buckets) and is the
primary key of its row, so checking a key is one indexed read. The secret is 32 random bytes, so
the stored sha256 of it cannot be reversed by guessing: a slow password hash (bcrypt, argon2)
would only add milliseconds to every request without adding safety.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field

from soma.errors import Unauthorized

KEY_PREFIX = "soma_"
KEY_ID_LENGTH = 12
_SECRET_BYTES = 32
# token_urlsafe(32) is 43 characters of the URL-safe base64 alphabet, unpadded.
_KEY = re.compile(r"soma_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")


@dataclass(frozen=True, slots=True)
class NewKey:
    """A freshly drawn key: ``plaintext`` goes to the user once, ``secret_hash`` to the store."""

    key_id: str
    plaintext: str = field(repr=False)
    secret_hash: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class ParsedKey:
    """A presented key split into its public id and its secret."""

    key_id: str
    secret: str = field(repr=False)


def generate_key() -> NewKey:
    """Draw a new key id and secret from the OS's CSPRNG."""
    key_id = secrets.token_hex(KEY_ID_LENGTH // 2)
    secret = secrets.token_urlsafe(_SECRET_BYTES)
    return NewKey(key_id, f"{KEY_PREFIX}{key_id}_{secret}", hash_secret(secret))


def hash_secret(secret: str) -> str:
    """The sha256 hex digest of a key's secret, as stored."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def secret_matches(secret: str, secret_hash: str) -> bool:
    """Whether ``secret`` hashes to ``secret_hash``, compared in constant time."""
    return hmac.compare_digest(hash_secret(secret), secret_hash)


def parse_key(token: str) -> ParsedKey:
    """Split a presented key; Unauthorized if it is not shaped like one.

    The message never repeats the token, since a malformed key may still be mostly secret.
    """
    match = _KEY.fullmatch(token)
    if match is None:
        raise Unauthorized(
            f"malformed API key: expected {KEY_PREFIX}<12 hex digits>_<43 characters>",
            hint="copy the whole key exactly as `soma admin create-key` printed it",
        )
    return ParsedKey(match.group(1), match.group(2))
