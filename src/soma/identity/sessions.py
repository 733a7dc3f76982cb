"""Session tokens: short-lived JWTs that a login (OIDC, later SAML) hands to a browser or client.

HS256 with the server's secret key: only Soma issues and checks them, so a shared secret is all
that is needed and verification costs microseconds. Verification pins the algorithm to HS256, so
a token claiming ``alg: none`` or another algorithm is refused rather than trusted.
"""

from __future__ import annotations

import secrets
import time

import jwt
from pydantic import BaseModel, ConfigDict, ValidationError

from soma.errors import Unauthorized

ISSUER = "soma"
ALGORITHM = "HS256"
_REQUIRED = ["sub", "tid", "role", "iat", "exp", "jti", "iss"]
_RELOGIN = "log in again to get a new session token"


class SessionClaims(BaseModel):
    """What a verified session token says: who (``sub``) in which tenant (``tid``), until when."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    sub: str
    tid: str
    role: str
    iat: int
    exp: int
    jti: str
    iss: str


def issue(
    secret: bytes,
    *,
    tenant_id: str,
    user_id: str,
    role: str,
    ttl_s: int,
    now: float | None = None,
) -> str:
    """A signed session token valid for ``ttl_s`` seconds from ``now`` (default: the clock)."""
    issued = int(time.time() if now is None else now)
    claims = {
        "sub": user_id,
        "tid": tenant_id,
        "role": role,
        "iat": issued,
        "exp": issued + ttl_s,
        "jti": secrets.token_urlsafe(12),
        "iss": ISSUER,
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify(secret: bytes, token: str) -> SessionClaims:
    """The claims of a valid token; Unauthorized, saying why, for anything else."""
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            issuer=ISSUER,
            options={"require": _REQUIRED},
        )
        return SessionClaims.model_validate(claims)
    except jwt.ExpiredSignatureError as exc:
        raise Unauthorized("the session token has expired", hint=_RELOGIN) from exc
    except jwt.InvalidAlgorithmError as exc:
        raise Unauthorized(
            f"the session token is not signed with {ALGORITHM}", hint=_RELOGIN
        ) from exc
    except jwt.InvalidSignatureError as exc:
        raise Unauthorized(
            "the session token's signature is invalid: it was forged, altered, or signed with"
            " another server's secret key",
            hint=f"{_RELOGIN}; replicas must share SOMA_SECRET_KEY",
        ) from exc
    except (jwt.MissingRequiredClaimError, jwt.InvalidIssuerError, ValidationError) as exc:
        raise Unauthorized(
            f"the token is not a Soma session token ({_first_line(exc)})", hint=_RELOGIN
        ) from exc
    except jwt.DecodeError as exc:
        raise Unauthorized(
            "malformed credential: neither an API key (soma_...) nor a session token",
            hint="send `Authorization: Bearer <API key or session token>`",
        ) from exc
    except jwt.InvalidTokenError as exc:
        raise Unauthorized(
            f"the session token is invalid ({_first_line(exc)})", hint=_RELOGIN
        ) from exc


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
