"""Session tokens: issued and verified with HS256 only."""

from __future__ import annotations

import time

import jwt
import pytest

from soma.errors import Unauthorized
from soma.identity import sessions

SECRET = b"k" * 32
OTHER = b"o" * 32


def _token(**overrides: object) -> str:
    claims: dict[str, object] = {
        "sub": "u1",
        "tid": "acme",
        "role": "admin",
        "iat": int(time.time()),
        "exp": int(time.time()) + 60,
        "jti": "j",
        "iss": "soma",
    }
    claims.update(overrides)
    return jwt.encode({k: v for k, v in claims.items() if v is not None}, SECRET, "HS256")


def test_issue_and_verify() -> None:
    token = sessions.issue(SECRET, tenant_id="acme", user_id="u1", role="developer", ttl_s=60)
    claims = sessions.verify(SECRET, token)
    assert (claims.sub, claims.tid, claims.role, claims.iss) == ("u1", "acme", "developer", "soma")
    assert claims.exp - claims.iat == 60
    assert jwt.get_unverified_header(token)["alg"] == "HS256"


def test_every_token_has_its_own_id() -> None:
    first = sessions.issue(SECRET, tenant_id="t", user_id="u", role="viewer", ttl_s=60)
    second = sessions.issue(SECRET, tenant_id="t", user_id="u", role="viewer", ttl_s=60)
    assert sessions.verify(SECRET, first).jti != sessions.verify(SECRET, second).jti


def test_expired() -> None:
    token = sessions.issue(
        SECRET, tenant_id="t", user_id="u", role="viewer", ttl_s=60, now=time.time() - 120
    )
    with pytest.raises(Unauthorized, match="expired"):
        sessions.verify(SECRET, token)


def test_signed_by_another_secret() -> None:
    token = sessions.issue(OTHER, tenant_id="t", user_id="u", role="admin", ttl_s=60)
    with pytest.raises(Unauthorized, match="signature is invalid"):
        sessions.verify(SECRET, token)


def test_tampered_payload() -> None:
    header, _, signature = _token().split(".")
    forged_payload = jwt.utils.base64url_encode(
        b'{"sub":"u1","tid":"acme","role":"admin","iat":1,"exp":9999999999,"jti":"j","iss":"soma"}'
    ).decode()
    with pytest.raises(Unauthorized, match="signature is invalid"):
        sessions.verify(SECRET, f"{header}.{forged_payload}.{signature}")


def test_alg_none_is_refused() -> None:
    unsigned = jwt.encode({"sub": "u1", "tid": "acme", "role": "admin"}, None, algorithm="none")
    with pytest.raises(Unauthorized, match="not signed with HS256"):
        sessions.verify(SECRET, unsigned)


def test_other_algorithm_is_refused() -> None:
    claims = jwt.decode(_token(), options={"verify_signature": False})
    token = jwt.encode(claims, SECRET * 2, "HS512")
    with pytest.raises(Unauthorized, match="not signed with HS256"):
        sessions.verify(SECRET, token)


@pytest.mark.parametrize("missing", ["tid", "exp", "role", "jti"])
def test_missing_claims(missing: str) -> None:
    with pytest.raises(Unauthorized, match="not a Soma session token"):
        sessions.verify(SECRET, _token(**{missing: None}))


def test_wrong_issuer() -> None:
    with pytest.raises(Unauthorized, match="not a Soma session token"):
        sessions.verify(SECRET, _token(iss="someone-else"))


@pytest.mark.parametrize("garbage", ["x", "a.b.c", "Bearer abc", "eyJ.eyJ.sig"])
def test_garbage(garbage: str) -> None:
    with pytest.raises(Unauthorized, match="malformed credential"):
        sessions.verify(SECRET, garbage)
