"""OpenID Connect login (the Relying Party side): authorization code flow with PKCE.

Only the code flow is implemented, with PKCE (S256) always on, because it is the one flow that
keeps tokens out of the browser and stays safe even if the code leaks. The ID token is the proof
of who logged in, so all of it is checked: signature against the provider's published keys
(asymmetric algorithms only), issuer, audience, authorized party, expiry, issued-at, and the
nonce that binds it to this very login. Provider metadata and keys are fetched once and cached;
keys are fetched again when a token names a key id not seen yet (the provider rotated keys).

JOSE is handled by ``joserfc``, the library that authlib itself now builds on (``authlib.jose``
is deprecated); PKCE and random tokens come from authlib's helpers.
"""

from __future__ import annotations

import base64
import hmac
from typing import Any
from urllib.parse import quote

import httpx
from authlib.common.security import generate_token  # type: ignore[import-untyped]
from authlib.common.urls import add_params_to_uri  # type: ignore[import-untyped]
from authlib.oauth2.rfc7636 import create_s256_code_challenge  # type: ignore[import-untyped]
from authlib.oidc.core.util import create_half_hash  # type: ignore[import-untyped]
from joserfc import jwt
from joserfc.errors import (
    BadSignatureError,
    ExpiredTokenError,
    InvalidClaimError,
    InvalidKeyIdError,
    JoseError,
    MissingClaimError,
)
from joserfc.jwk import KeySet
from pydantic import SecretStr

from soma.errors import SomaError, Unauthorized
from soma.identity.login import LoginStart, OIDCClaims

# Asymmetric only: an HS* ID token would be signed with the client secret, which the provider
# and every copy of this server share, so it proves less; "none" proves nothing.
SIGNING_ALGORITHMS = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
)
DEFAULT_SCOPE = "openid email profile"
_LEEWAY_S = 60
_RETRY = "start the login again"


class OIDCClient:
    """A Relying Party for one OpenID Connect provider (``issuer``) and one registered client.

    ``client_secret`` None makes it a public client (PKCE alone authenticates the exchange).
    Pass ``http`` to share a connection pool (and, in tests, a transport); otherwise the client
    owns one, closed by :meth:`aclose`.
    """

    def __init__(
        self,
        issuer: str,
        client_id: str,
        client_secret: str | SecretStr | None,
        *,
        http: httpx.AsyncClient | None = None,
        scope: str = DEFAULT_SCOPE,
        timeout_s: float = 10.0,
    ) -> None:
        self.issuer = issuer
        self.client_id = client_id
        self._secret = (
            client_secret.get_secret_value()
            if isinstance(client_secret, SecretStr)
            else client_secret
        )
        self.scope = scope
        self._http = http or httpx.AsyncClient(timeout=timeout_s)
        self._owns_http = http is None
        self._metadata: dict[str, Any] | None = None
        self._keys: KeySet | None = None

    def __repr__(self) -> str:
        return f"OIDCClient(issuer={self.issuer!r}, client_id={self.client_id!r})"

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> OIDCClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- discovery -----------------------------------------------------------------------------

    async def discover(self) -> dict[str, Any]:
        """The provider's metadata (``/.well-known/openid-configuration``), fetched once, and
        its signing keys with it."""
        if self._metadata is None:
            url = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
            metadata = await self._get_json(url, "discovery document")
            _check_metadata(metadata, self.issuer)
            self._keys = await self._fetch_keys(metadata)
            self._metadata = metadata
        return self._metadata

    async def _fetch_keys(self, metadata: dict[str, Any]) -> KeySet:
        jwks = await self._get_json(str(metadata["jwks_uri"]), "signing keys (JWKS)")
        try:
            return KeySet.import_key_set(jwks)  # type: ignore[arg-type]
        except (JoseError, ValueError, KeyError, TypeError) as exc:
            raise SomaError(
                f"the OIDC provider's JWKS at {metadata['jwks_uri']} is not a valid key set",
                hint="check the provider's configuration",
            ) from exc

    async def _get_json(self, url: str, what: str) -> dict[str, Any]:
        try:
            response = await self._http.get(url, headers={"Accept": "application/json"})
            response.raise_for_status()
            data = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise SomaError(
                f"could not read the OIDC provider's {what} from {url}: {exc}",
                hint="check SOMA_OIDC_ISSUER and that the provider is reachable from here",
            ) from exc
        if not isinstance(data, dict):
            raise SomaError(f"the OIDC provider's {what} at {url} is not a JSON object")
        return data

    # -- the flow ------------------------------------------------------------------------------

    async def begin(self, redirect_uri: str) -> LoginStart:
        """A fresh login: the provider URL to redirect the browser to, and the secrets to keep
        until the callback (see :class:`LoginStart`)."""
        metadata = await self.discover()
        state: str = generate_token(32)
        nonce: str = generate_token(32)
        # RFC 7636: 43 to 128 characters of [A-Za-z0-9-._~]; generate_token draws [A-Za-z0-9].
        code_verifier: str = generate_token(64)
        params = [
            ("response_type", "code"),
            ("client_id", self.client_id),
            ("redirect_uri", redirect_uri),
            ("scope", self.scope),
            ("state", state),
            ("nonce", nonce),
            ("code_challenge", str(create_s256_code_challenge(code_verifier))),
            ("code_challenge_method", "S256"),
        ]
        url: str = add_params_to_uri(str(metadata["authorization_endpoint"]), params)
        return LoginStart(url=url, state=state, nonce=nonce, code_verifier=code_verifier)

    async def complete(
        self, code: str, redirect_uri: str, start: LoginStart, *, state: str | None = None
    ) -> OIDCClaims:
        """Exchange the callback's ``code`` and return the verified claims of its ID token.

        ``state`` is the callback's ``state`` parameter: pass it, and it must equal
        ``start.state``. (Callers that instead look ``start`` up *by* the callback's state have
        already checked it.) Any failure is Unauthorized, saying what was wrong.
        """
        if state is not None and not hmac.compare_digest(state, start.state):
            raise Unauthorized(
                "the login callback's state does not match the login this browser started"
                " (a forged or replayed callback, or a login begun in another tab)",
                hint=_RETRY,
            )
        metadata = await self.discover()
        tokens = await self._exchange(metadata, code, redirect_uri, start.code_verifier)
        id_token = tokens.get("id_token")
        if not isinstance(id_token, str):
            raise Unauthorized(
                "the OIDC provider returned no ID token",
                hint="make sure the 'openid' scope is allowed for this client at the provider",
            )
        access_token = tokens.get("access_token")
        claims = await self._verify_id_token(
            metadata, id_token, start.nonce, access_token if isinstance(access_token, str) else None
        )
        return OIDCClaims(
            issuer=claims["iss"],
            subject=claims["sub"],
            email=_str_or_none(claims.get("email")),
            email_verified=claims.get("email_verified") is True,
            name=_str_or_none(claims.get("name")),
            claims=claims,
        )

    async def _exchange(
        self, metadata: dict[str, Any], code: str, redirect_uri: str, code_verifier: str
    ) -> dict[str, Any]:
        data = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": code_verifier,
        }
        headers = {"Accept": "application/json"}
        if self._secret is None:
            data["client_id"] = self.client_id
        else:
            # client_secret_basic, with both parts form-encoded first (RFC 6749 section 2.3.1).
            pair = f"{quote(self.client_id, safe='')}:{quote(self._secret, safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
        url = str(metadata["token_endpoint"])
        try:
            response = await self._http.post(url, data=data, headers=headers)
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise SomaError(
                f"the OIDC token endpoint {url} did not answer with JSON: {exc}",
                hint="check that the provider is reachable and healthy",
            ) from exc
        if response.status_code != 200 or not isinstance(body, dict):
            error = body.get("error", "") if isinstance(body, dict) else ""
            detail = body.get("error_description", "") if isinstance(body, dict) else ""
            raise Unauthorized(
                f"the OIDC provider refused the authorization code ({response.status_code}"
                f" {error}{': ' if detail else ''}{detail})",
                hint=f"codes are single-use and short-lived; {_RETRY}",
            )
        return body

    async def _verify_id_token(
        self, metadata: dict[str, Any], id_token: str, nonce: str, access_token: str | None
    ) -> dict[str, Any]:
        algorithms = _algorithms(metadata)
        try:
            token = self._decode(id_token, algorithms)
        except InvalidKeyIdError:
            self._keys = await self._fetch_keys(metadata)  # the provider may have rotated keys
            try:
                token = self._decode(id_token, algorithms)
            except InvalidKeyIdError as exc:
                raise Unauthorized(
                    "the ID token is signed with a key the provider does not publish",
                    hint=_RETRY,
                ) from exc
        registry = jwt.JWTClaimsRegistry(
            leeway=_LEEWAY_S,
            iss={"essential": True, "value": self.issuer},
            sub={"essential": True},
            aud={"essential": True, "value": self.client_id},
            exp={"essential": True},
            iat={"essential": True},
            nonce={"essential": True, "value": nonce},
        )
        try:
            registry.validate(token.claims)
        except ExpiredTokenError as exc:
            raise Unauthorized(
                "the ID token has expired", hint=f"check this server's clock; {_RETRY}"
            ) from exc
        except (MissingClaimError, InvalidClaimError) as exc:
            raise Unauthorized(_claim_problem(exc), hint=_RETRY) from exc
        _check_azp(token.claims, self.client_id)
        if access_token is not None and "at_hash" in token.claims:
            _check_at_hash(token, access_token)
        return token.claims

    def _decode(self, id_token: str, algorithms: list[str]) -> jwt.Token:
        assert self._keys is not None, "discover() fetches the keys"
        try:
            return jwt.decode(id_token, self._keys, algorithms=algorithms)
        except InvalidKeyIdError:
            raise
        except BadSignatureError as exc:
            raise Unauthorized(
                "the ID token's signature does not verify with the provider's keys: it was"
                " forged or altered",
                hint=_RETRY,
            ) from exc
        except (JoseError, ValueError) as exc:
            raise Unauthorized(
                f"the ID token is not a valid signed JWT ({type(exc).__name__}: {exc})",
                hint=f"it must be signed with one of {', '.join(algorithms)}; {_RETRY}",
            ) from exc


def _algorithms(metadata: dict[str, Any]) -> list[str]:
    """The asymmetric algorithms the provider says it signs ID tokens with (all, if silent)."""
    offered = metadata.get("id_token_signing_alg_values_supported")
    algorithms = [a for a in SIGNING_ALGORITHMS if not offered or a in offered]
    if not algorithms:
        raise SomaError(
            f"the OIDC provider signs ID tokens only with {', '.join(map(str, offered or []))};"
            " Soma needs an asymmetric algorithm such as RS256 or ES256",
            hint="set the client's ID token signature algorithm to RS256 at the provider",
        )
    return algorithms


def _check_metadata(metadata: dict[str, Any], issuer: str) -> None:
    if metadata.get("issuer") != issuer:
        # OpenID Connect Discovery 1.0, section 4.3: this is what stops a mix-up of providers.
        raise SomaError(
            f"the OIDC provider calls itself {metadata.get('issuer')!r}, not {issuer!r}",
            hint="set SOMA_OIDC_ISSUER to exactly the provider's issuer (mind trailing slashes)",
        )
    missing = [
        k for k in ("authorization_endpoint", "token_endpoint", "jwks_uri") if k not in metadata
    ]
    if missing:
        raise SomaError(f"the OIDC provider's discovery document lacks {', '.join(missing)}")
    methods = metadata.get("code_challenge_methods_supported")
    if methods is not None and "S256" not in methods:
        raise SomaError(
            "the OIDC provider does not support PKCE with S256, which Soma requires",
            hint="enable PKCE (S256) for this client at the provider",
        )


def _check_azp(claims: dict[str, Any], client_id: str) -> None:
    """OIDC Core 3.1.3.7: with several audiences the token must name us as authorized party."""
    aud = claims["aud"]
    several = isinstance(aud, list) and len(aud) > 1
    azp = claims.get("azp")
    if (several and azp is None) or (azp is not None and azp != client_id):
        raise Unauthorized(f"the ID token was issued to another client (azp={azp!r})", hint=_RETRY)


def _check_at_hash(token: jwt.Token, access_token: str) -> None:
    expected: bytes | None = create_half_hash(access_token, token.header["alg"])
    if expected is None or not hmac.compare_digest(
        expected.decode("ascii"), str(token.claims["at_hash"])
    ):
        raise Unauthorized(
            "the ID token's at_hash does not match the access token it came with", hint=_RETRY
        )


def _claim_problem(exc: MissingClaimError | InvalidClaimError) -> str:
    claim = getattr(exc, "claim", None) or str(exc)
    if claim == "nonce":
        return (
            "the ID token's nonce does not match this login: the token was issued for another"
            " login (replayed or injected)"
        )
    if claim == "aud":
        return "the ID token is not meant for this client (wrong audience)"
    if claim == "iss":
        return "the ID token was issued by another provider (wrong issuer)"
    if isinstance(exc, MissingClaimError):
        return f"the ID token lacks required claims: {claim}"
    return f"the ID token's '{claim}' claim is invalid"


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


__all__ = ["SIGNING_ALGORITHMS", "OIDCClient"]
