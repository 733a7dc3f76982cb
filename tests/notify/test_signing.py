"""Webhook signatures: they verify with the secret, and fail with a wrong secret, a tampered
body, a stale or future timestamp, or a malformed header."""

from __future__ import annotations

import hashlib
import hmac
import time

import pytest

from soma.notify.signing import SignatureError, compute, parse, sign, verify

SECRET = "whsec-test-0123456789"
BODY = b'{"type":"review.needed","project_id":"p1"}'


def test_sign_then_verify() -> None:
    header = sign(SECRET, BODY)
    timestamp = verify(SECRET, BODY, header)
    assert abs(timestamp - time.time()) < 5


def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    header = sign(SECRET, BODY, timestamp=1_700_000_000)
    expected = hmac.new(SECRET.encode(), b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"
    assert parse(header) == (1_700_000_000, [expected])


def test_wrong_secret_fails() -> None:
    with pytest.raises(SignatureError, match="does not match"):
        verify("another-secret", BODY, sign(SECRET, BODY))


def test_tampered_body_fails() -> None:
    header = sign(SECRET, BODY)
    with pytest.raises(SignatureError, match="does not match"):
        verify(SECRET, BODY.replace(b"p1", b"p2"), header)


def test_stale_timestamp_fails_and_tolerance_is_configurable() -> None:
    old = int(time.time()) - 3600
    header = sign(SECRET, BODY, timestamp=old)
    with pytest.raises(SignatureError, match="from now"):
        verify(SECRET, BODY, header)
    assert verify(SECRET, BODY, header, tolerance_s=7200) == old
    assert verify(SECRET, BODY, header, tolerance_s=0) == old


def test_future_timestamp_fails() -> None:
    header = sign(SECRET, BODY, timestamp=int(time.time()) + 3600)
    with pytest.raises(SignatureError):
        verify(SECRET, BODY, header)


def test_re_signed_timestamp_without_the_secret_fails() -> None:
    """Replaying with a fresh t= but the old v1= does not pass: the timestamp is signed."""
    old = int(time.time()) - 3600
    v1 = compute(SECRET, old, BODY)
    with pytest.raises(SignatureError, match="does not match"):
        verify(SECRET, BODY, f"t={int(time.time())},v1={v1}")


@pytest.mark.parametrize("header", [None, "", "v1=abc", "t=12", "t=soon,v1=abc", "garbage"])
def test_missing_or_malformed_header_fails(header: str | None) -> None:
    with pytest.raises(SignatureError):
        verify(SECRET, BODY, header)


def test_any_of_several_signatures_passes_during_rotation() -> None:
    now = int(time.time())
    header = f"t={now},v1={compute('old-secret', now, BODY)},v1={compute(SECRET, now, BODY)}"
    assert verify(SECRET, BODY, header) == now
    assert verify("old-secret", BODY, header) == now


def test_the_documented_receiver_snippet_verifies() -> None:
    """The verification example in docs/notifications.md agrees with :func:`sign`."""
    import re
    from pathlib import Path

    doc = Path(__file__).parents[2] / "docs" / "notifications.md"
    [snippet] = re.findall(r"```python\n(.*?)```", doc.read_text(), re.S)[:1]
    namespace: dict[str, object] = {}
    exec(snippet, namespace)
    check = namespace["verify_soma_signature"]
    assert callable(check)
    header = sign(SECRET, BODY)
    assert check(SECRET, BODY, header)
    assert not check("wrong", BODY, header)
    assert not check(SECRET, BODY + b" ", header)
    assert not check(SECRET, BODY, sign(SECRET, BODY, timestamp=int(time.time()) - 3600))
