"""OIDC login end to end against a real provider (authlib's server) running on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from joserfc.jwk import RSAKey

from soma.errors import SomaError, Unauthorized
from soma.identity import Identity, LoginStart, OIDCClient, permissions_for
from soma.store import Store
from tests.identity.oidc_provider import (
    CLIENT_ID,
    CLIENT_SECRET,
    REDIRECT_URI,
    Provider,
    serve,
)

_KEY = RSAKey.generate_key(2048, {"kid": "test-1"})  # RSA keygen is slow: once per module


@pytest.fixture
def provider() -> Iterator[Provider]:
    with serve(Provider(key=_KEY)) as running:
        yield running


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


@pytest.fixture
def oidc(provider: Provider, http: httpx.AsyncClient) -> OIDCClient:
    return OIDCClient(provider.issuer, CLIENT_ID, CLIENT_SECRET, http=http)


@pytest.fixture
def identity(tmp_path: Path) -> Iterator[Identity]:
    with Store.open(f"sqlite:///{tmp_path / 'soma.db'}") as store:
        yield Identity(store, b"s" * 32)


async def _authorize(http: httpx.AsyncClient, start: LoginStart) -> tuple[str, str]:
    """What the browser does: open the provider's URL and follow it back to the callback."""
    response = await http.get(start.url, follow_redirects=False)
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith(REDIRECT_URI + "?")
    query = parse_qs(urlsplit(location).query)
    return query["code"][0], query["state"][0]


async def test_full_login_flow(
    oidc: OIDCClient, http: httpx.AsyncClient, provider: Provider, identity: Identity
) -> None:
    start = await oidc.begin(REDIRECT_URI)
    query = parse_qs(urlsplit(start.url).query)
    assert query["code_challenge_method"] == ["S256"]
    assert query["state"] == [start.state]
    assert query["nonce"] == [start.nonce]
    assert start.code_verifier not in start.url

    code, state = await _authorize(http, start)
    claims = await oidc.complete(code, REDIRECT_URI, start, state=state)
    assert provider.token_requests[-1]["code_verifier"] == start.code_verifier
    assert (claims.issuer, claims.subject) == (provider.issuer, "alice-sub-42")
    assert (claims.email, claims.email_verified, claims.name) == (
        "alice@example.com",
        True,
        "Alice Example",
    )
    assert claims.claims["nonce"] == start.nonce

    user = identity.login_oidc(claims, tenant_id="default", default_role="developer")
    assert (user.email, user.role, user.oidc_subject) == (
        "alice@example.com",
        "developer",
        "alice-sub-42",
    )
    token = identity.issue_session("default", user.id)
    principal = identity.authenticate(token)
    assert (principal.tenant_id, principal.user_id) == ("default", user.id)
    assert principal.permissions == permissions_for("developer")

    # A second login finds the same user.
    start = await oidc.begin(REDIRECT_URI)
    code, state = await _authorize(http, start)
    again = await oidc.complete(code, REDIRECT_URI, start, state=state)
    assert identity.login_oidc(again, tenant_id="default", default_role="viewer").id == user.id


async def test_login_start_round_trips_and_hides_the_verifier(oidc: OIDCClient) -> None:
    start = await oidc.begin(REDIRECT_URI)
    assert LoginStart.model_validate_json(start.model_dump_json()) == start
    assert start.code_verifier not in repr(start)
    assert start.code_verifier not in str(start)


async def test_wrong_code_verifier_is_refused(oidc: OIDCClient, http: httpx.AsyncClient) -> None:
    start = await oidc.begin(REDIRECT_URI)
    code, state = await _authorize(http, start)
    other = await oidc.begin(REDIRECT_URI)  # a verifier of another login
    forged = start.model_copy(update={"code_verifier": other.code_verifier})
    with pytest.raises(Unauthorized, match=r"refused the authorization code.*invalid_grant"):
        await oidc.complete(code, REDIRECT_URI, forged, state=state)


async def test_code_is_single_use(oidc: OIDCClient, http: httpx.AsyncClient) -> None:
    start = await oidc.begin(REDIRECT_URI)
    code, state = await _authorize(http, start)
    await oidc.complete(code, REDIRECT_URI, start, state=state)
    with pytest.raises(Unauthorized, match="refused the authorization code"):
        await oidc.complete(code, REDIRECT_URI, start, state=state)


async def test_tampered_state_is_refused(oidc: OIDCClient, http: httpx.AsyncClient) -> None:
    start = await oidc.begin(REDIRECT_URI)
    code, state = await _authorize(http, start)
    with pytest.raises(Unauthorized, match="state does not match") as info:
        await oidc.complete(code, REDIRECT_URI, start, state=state[:-1] + "X")
    assert start.state not in str(info.value)


async def test_wrong_nonce_is_refused(oidc: OIDCClient, http: httpx.AsyncClient) -> None:
    start = await oidc.begin(REDIRECT_URI)
    code, state = await _authorize(http, start)
    replayed = start.model_copy(update={"nonce": "nonce-of-another-login"})
    with pytest.raises(Unauthorized, match="nonce does not match"):
        await oidc.complete(code, REDIRECT_URI, replayed, state=state)


async def test_forged_signature_is_refused(
    oidc: OIDCClient, http: httpx.AsyncClient, provider: Provider
) -> None:
    provider.signing_key = RSAKey.generate_key(2048, {"kid": "test-1"})  # same kid, other key
    start = await oidc.begin(REDIRECT_URI)
    code, state = await _authorize(http, start)
    with pytest.raises(Unauthorized, match="signature does not verify"):
        await oidc.complete(code, REDIRECT_URI, start, state=state)


async def test_rotated_provider_keys_are_refetched(
    oidc: OIDCClient, http: httpx.AsyncClient, provider: Provider
) -> None:
    await oidc.discover()  # caches the JWKS with key test-1
    provider.key = RSAKey.generate_key(2048, {"kid": "test-2"})
    start = await oidc.begin(REDIRECT_URI)
    code, state = await _authorize(http, start)
    claims = await oidc.complete(code, REDIRECT_URI, start, state=state)
    assert claims.subject == "alice-sub-42"


async def test_unpublished_signing_key_is_refused(
    oidc: OIDCClient, http: httpx.AsyncClient, provider: Provider
) -> None:
    provider.signing_key = RSAKey.generate_key(2048, {"kid": "rogue"})
    start = await oidc.begin(REDIRECT_URI)
    code, state = await _authorize(http, start)
    with pytest.raises(Unauthorized, match="does not publish"):
        await oidc.complete(code, REDIRECT_URI, start, state=state)


async def test_token_for_another_client_is_refused(
    oidc: OIDCClient, http: httpx.AsyncClient, provider: Provider
) -> None:
    provider.extra_claims = {"aud": ["someone-else"]}
    start = await oidc.begin(REDIRECT_URI)
    code, state = await _authorize(http, start)
    with pytest.raises(Unauthorized, match="wrong audience"):
        await oidc.complete(code, REDIRECT_URI, start, state=state)


async def test_expired_id_token_is_refused(
    oidc: OIDCClient, http: httpx.AsyncClient, provider: Provider
) -> None:
    provider.extra_claims = {"exp": 1_000_000_000}
    start = await oidc.begin(REDIRECT_URI)
    code, state = await _authorize(http, start)
    with pytest.raises(Unauthorized, match="expired"):
        await oidc.complete(code, REDIRECT_URI, start, state=state)


async def test_wrong_client_secret_is_refused(provider: Provider, http: httpx.AsyncClient) -> None:
    oidc = OIDCClient(provider.issuer, CLIENT_ID, "not-the-secret", http=http)
    start = await oidc.begin(REDIRECT_URI)
    code, state = await _authorize(http, start)
    with pytest.raises(Unauthorized, match="invalid_client") as info:
        await oidc.complete(code, REDIRECT_URI, start, state=state)
    assert "not-the-secret" not in str(info.value)


async def test_discovery_is_cached(oidc: OIDCClient, http: httpx.AsyncClient) -> None:
    calls: list[str] = []

    async def log(request: httpx.Request) -> None:
        calls.append(request.url.path)

    http.event_hooks["request"].append(log)
    await oidc.begin(REDIRECT_URI)
    await oidc.begin(REDIRECT_URI)
    assert calls == ["/.well-known/openid-configuration", "/jwks"]


async def test_issuer_mismatch_is_a_configuration_error(
    provider: Provider, http: httpx.AsyncClient
) -> None:
    oidc = OIDCClient(provider.issuer + "/", CLIENT_ID, CLIENT_SECRET, http=http)
    with pytest.raises(SomaError, match="calls itself"):
        await oidc.discover()


async def test_unreachable_provider(http: httpx.AsyncClient) -> None:
    oidc = OIDCClient("http://127.0.0.1:9", CLIENT_ID, CLIENT_SECRET, http=http)
    with pytest.raises(SomaError, match="could not read the OIDC provider's discovery"):
        await oidc.begin(REDIRECT_URI)
