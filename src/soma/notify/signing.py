"""Webhook signatures, Stripe style: ``X-Soma-Signature: t=<unix seconds>,v1=<hex>``.

``v1`` is ``HMAC-SHA256(secret, f"{t}.{body}")`` over the exact bytes of the request body. The
timestamp is signed too, so a receiver that rejects old timestamps (see ``tolerance_s``) cannot
be fed a recorded request again later. A header may carry several ``v1`` values (one per
secret while a secret is being rotated); any one matching is enough.

Receivers verify with :func:`verify` (or its few lines re-typed, see ``docs/notifications.md``):
take the raw body *before* parsing JSON, since re-serialising changes the bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import time

from soma.errors import SomaError

HEADER = "X-Soma-Signature"
SCHEME = "v1"
DEFAULT_TOLERANCE_S = 300


class SignatureError(SomaError):
    """A webhook request's signature is missing, malformed, stale or does not match."""


def _key(secret: str | bytes) -> bytes:
    return secret.encode("utf-8") if isinstance(secret, str) else secret


def compute(secret: str | bytes, timestamp: int, body: bytes) -> str:
    """The hex ``v1`` signature of ``body`` sent at ``timestamp``."""
    message = str(timestamp).encode("ascii") + b"." + body
    return hmac.new(_key(secret), message, hashlib.sha256).hexdigest()


def sign(secret: str | bytes, body: bytes, *, timestamp: int | None = None) -> str:
    """The ``X-Soma-Signature`` header value for ``body``, timestamped now by default."""
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},{SCHEME}={compute(secret, t, body)}"


def parse(header: str) -> tuple[int, list[str]]:
    """``(timestamp, [v1 signatures])`` of a header value; SignatureError if malformed."""
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise SignatureError(
                    f"bad timestamp {value!r} in {HEADER}",
                    hint="the header looks like t=<unix seconds>,v1=<hex>",
                ) from None
        elif key == SCHEME:
            signatures.append(value)
    if timestamp is None or not signatures:
        raise SignatureError(
            f"malformed {HEADER} header: it needs t= and at least one {SCHEME}=",
            hint="the header looks like t=<unix seconds>,v1=<hex>",
        )
    return timestamp, signatures


def verify(
    secret: str | bytes,
    body: bytes,
    header: str | None,
    *,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> int:
    """Check a received webhook; returns its timestamp, raises SignatureError otherwise.

    ``tolerance_s`` bounds how far the timestamp may be from ``now`` (either way, to allow for
    clock skew); pass 0 to skip the age check (not recommended: it allows replays).
    """
    if not header:
        raise SignatureError(
            f"missing {HEADER} header",
            hint="give the rule a signing secret (`soma notify add ... --secret NAME`)",
        )
    timestamp, signatures = parse(header)
    if tolerance_s > 0:
        current = time.time() if now is None else now
        if abs(current - timestamp) > tolerance_s:
            raise SignatureError(
                f"signature timestamp is {int(current - timestamp)} s from now, more than the"
                f" {tolerance_s} s allowed",
                hint="a replayed request, or a clock out of sync: check NTP on both machines",
            )
    expected = compute(secret, timestamp, body)
    if not any(hmac.compare_digest(expected, s) for s in signatures):
        raise SignatureError(
            "signature does not match the body",
            hint="verify the raw request body with the rule's current secret",
        )
    return timestamp
