"""What any interactive login provider does, whatever its protocol.

A login is two steps around a browser redirect: :meth:`LoginProvider.begin` says where to send
the user and what to remember until they come back; :meth:`LoginProvider.complete` turns what
they came back with into verified claims about who they are, which
:meth:`soma.identity.Identity.login_oidc` maps to a user.
"""

from __future__ import annotations

from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field


class LoginStart(BaseModel):
    """The redirect to send the user to, and what to keep until their callback.

    Keep it until the callback, server-side or in a short-lived HttpOnly cookie signed by the
    server (it is a plain pydantic model, so ``model_dump_json``/``model_validate_json``
    round-trip it): ``state`` ties the callback to this browser, ``nonce`` the ID token to this
    login, and ``code_verifier`` (PKCE) the code exchange to this client. ``state`` and
    ``nonce`` travel in ``url`` anyway; ``code_verifier`` must never appear in a URL or a log,
    so it is kept out of ``repr``.
    """

    model_config = ConfigDict(frozen=True)

    url: str
    state: str
    nonce: str
    code_verifier: str = Field(repr=False)


class OIDCClaims(BaseModel):
    """Who the provider says logged in.

    ``(issuer, subject)`` is the stable identity; ``email`` may change at the provider and only
    counts for linking to an existing user when ``email_verified`` is true. ``claims`` holds all
    of the ID token's claims for callers that need more (groups, locale...).
    """

    model_config = ConfigDict(frozen=True)

    issuer: str
    subject: str
    email: str | None = None
    email_verified: bool = False
    name: str | None = None
    claims: dict[str, Any] = Field(default_factory=dict, repr=False)


class LoginProvider(Protocol):
    """An interactive login protocol: OpenID Connect now (:class:`soma.identity.OIDCClient`).

    SAML 2.0 plugs in here later: ``begin`` builds the AuthnRequest redirect (with its
    RelayState as ``state``), and ``complete`` validates the signed assertion posted back and
    returns its NameID and attributes as :class:`OIDCClaims` (issuer = the IdP's entity id,
    subject = the persistent NameID), so user mapping and sessions stay the same.
    """

    async def begin(self, redirect_uri: str) -> LoginStart:
        """Start a login that will come back to ``redirect_uri``."""
        ...

    async def complete(
        self, code: str, redirect_uri: str, start: LoginStart, *, state: str | None = None
    ) -> OIDCClaims:
        """Verify the callback of the login ``start`` began; Unauthorized if anything is off."""
        ...
