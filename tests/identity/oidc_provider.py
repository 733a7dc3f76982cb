"""A real, minimal OpenID Connect provider for tests, built on authlib's Flask server.

It implements the authorization code flow with PKCE (required) and ID tokens signed with RS256,
plus discovery and JWKS endpoints, and serves them from a thread on 127.0.0.1. The
``/authorize`` endpoint consents at once for :attr:`Provider.user` (there is no login page) and
redirects back with the code, exactly as a provider does after the user clicked "allow".

Knobs for negative tests: :attr:`Provider.signing_key` (sign with a key the JWKS does not
publish) and :attr:`Provider.extra_claims` (override ID token claims such as ``aud``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import ClientMixin
from authlib.oauth2.rfc6749.grants import AuthorizationCodeGrant
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import AuthorizationCodeMixin, UserInfo
from authlib.oidc.core.grants import OpenIDCode
from flask import Flask, Response, jsonify, request
from joserfc.jwk import RSAKey
from werkzeug.serving import make_server

CLIENT_ID = "soma-test"
CLIENT_SECRET = "test-client-secret"
REDIRECT_URI = "http://127.0.0.1:9/callback"


@dataclass
class TestUser:
    sub: str = "alice-sub-42"
    email: str = "alice@example.com"
    email_verified: bool = True
    name: str = "Alice Example"

    def get_user_id(self) -> str:
        return self.sub


@dataclass
class Client(ClientMixin):
    client_id: str = CLIENT_ID
    client_secret: str = CLIENT_SECRET
    redirect_uris: tuple[str, ...] = (REDIRECT_URI,)
    scope: str = "openid email profile"

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str:
        return self.redirect_uris[0]

    def get_allowed_scope(self, scope: str) -> str:
        return " ".join(s for s in scope.split() if s in self.scope.split())

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return client_secret == self.client_secret

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == "client_secret_basic"

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "authorization_code"


@dataclass
class Code(AuthorizationCodeMixin):
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    user: TestUser
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    auth_time: int = field(default_factory=lambda: int(time.time()))

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time

    def get_acr(self) -> None:
        return None

    def get_amr(self) -> None:
        return None


@dataclass
class Provider:
    """The provider's state; ``issuer`` is set once the server has a port."""

    key: RSAKey = field(default_factory=lambda: RSAKey.generate_key(2048, {"kid": "test-1"}))
    client: Client = field(default_factory=Client)
    user: TestUser = field(default_factory=TestUser)
    issuer: str = ""
    codes: dict[str, Code] = field(default_factory=dict)
    signing_key: RSAKey | None = None
    extra_claims: dict[str, Any] = field(default_factory=dict)
    token_requests: list[dict[str, str]] = field(default_factory=list)

    def metadata(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "jwks_uri": f"{self.issuer}/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "email", "profile"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic"],
            "code_challenge_methods_supported": ["S256"],
        }


def _grants(provider: Provider) -> tuple[type[AuthorizationCodeGrant], OpenIDCode]:
    class CodeGrant(AuthorizationCodeGrant):
        TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic"]

        def save_authorization_code(self, code: str, req: Any) -> None:
            data = req.payload.data
            provider.codes[code] = Code(
                code=code,
                client_id=req.client.client_id,
                redirect_uri=req.payload.redirect_uri,
                scope=req.payload.scope,
                user=req.user,
                nonce=data.get("nonce"),
                code_challenge=data.get("code_challenge"),
                code_challenge_method=data.get("code_challenge_method"),
            )

        def query_authorization_code(self, code: str, client: Client) -> Code | None:
            found = provider.codes.get(code)
            return found if found is not None and found.client_id == client.client_id else None

        def delete_authorization_code(self, authorization_code: Code) -> None:
            provider.codes.pop(authorization_code.code, None)

        def authenticate_user(self, authorization_code: Code) -> TestUser:
            return authorization_code.user

    class IDTokens(OpenIDCode):
        def exists_nonce(self, nonce: str, req: Any) -> bool:
            return any(c.nonce == nonce for c in provider.codes.values())

        def resolve_client_private_key(self, client: Client) -> RSAKey:
            return provider.signing_key or provider.key

        def get_client_algorithm(self, client: Client) -> str:
            return "RS256"

        def get_encode_header(self, client: Client) -> dict[str, str]:
            key = provider.signing_key or provider.key
            return {"alg": "RS256", "kid": str(key.kid)}

        def get_client_claims(self, client: Client) -> dict[str, Any]:
            return {"iss": provider.issuer, "aud": [client.client_id], **provider.extra_claims}

        def generate_user_info(self, user: TestUser, scope: str) -> UserInfo:
            info = UserInfo(sub=user.sub)
            if "email" in scope.split():
                info.update(email=user.email, email_verified=user.email_verified)
            if "profile" in scope.split():
                info["name"] = user.name
            return info

    return CodeGrant, IDTokens(require_nonce=True)


def create_app(provider: Provider) -> Flask:
    app = Flask(__name__)
    server = AuthorizationServer(
        app,
        query_client=lambda cid: provider.client if cid == provider.client.client_id else None,
        save_token=lambda token, req: None,
    )
    grant, id_tokens = _grants(provider)
    server.register_grant(grant, [CodeChallenge(required=True), id_tokens])

    @app.get("/.well-known/openid-configuration")
    def discovery() -> Response:
        return jsonify(provider.metadata())

    @app.get("/jwks")
    def jwks() -> Response:
        return jsonify({"keys": [provider.key.as_dict(private=False)]})

    @app.get("/authorize")
    def authorize() -> Any:
        if not request.args.get("code_challenge"):
            return jsonify(error="invalid_request", error_description="PKCE is required"), 400
        grant = server.get_consent_grant(end_user=provider.user)
        return server.create_authorization_response(grant_user=provider.user, grant=grant)

    @app.post("/token")
    def token() -> Any:
        provider.token_requests.append(dict(request.form))
        return server.create_token_response()

    return app


@contextmanager
def serve(provider: Provider) -> Iterator[Provider]:
    """Run the provider on 127.0.0.1 (a free port) until the block ends."""
    http = make_server("127.0.0.1", 0, create_app(provider), threaded=True)
    provider.issuer = f"http://127.0.0.1:{http.server_port}"
    # A short poll interval, or shutdown() waits half a second for the loop to notice.
    thread = threading.Thread(target=http.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield provider
    finally:
        http.shutdown()
        thread.join(timeout=10)
