"""Cross-site request forgery protection for cookie-authenticated requests.

A browser sends the session cookie with any request to the gateway, including one a hostile
page makes it send; a bearer token it never sends on its own. So state-changing requests that
authenticate by cookie must also present a token only Soma's own pages can know: an HMAC of the
session under the server's secret, which a page of another origin cannot read or compute.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from soma.errors import Forbidden

CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def csrf_token(secret: bytes, session: str) -> str:
    """The token that goes with ``session``: stable for the session, useless for any other."""
    mac = hmac.new(secret, b"soma-csrf\x00" + session.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac[:24]).decode()


def check_csrf(secret: bytes, session: str, presented: str | None) -> None:
    if not presented or not hmac.compare_digest(csrf_token(secret, session), presented):
        raise Forbidden(
            "missing or wrong CSRF token for a cookie-authenticated change",
            hint=f"send the page's token in the {CSRF_HEADER} header (or use a bearer token)",
        )
