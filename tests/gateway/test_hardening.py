"""Request limits, timeouts, CORS, security headers and error bodies."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from soma.gateway.app import build_services, create_app
from soma.models.function import FunctionModel
from soma.models.protocol import Model
from soma.models.types import ModelRequest
from soma.settings import Settings
from tests.gateway.conftest import LiveGateway, serve_in_thread


@pytest.fixture
def tight_gateway(
    gateway_settings: Settings, model_table: dict[str, Model]
) -> Iterator[LiveGateway]:
    settings = gateway_settings.model_copy(
        update={
            "max_body_bytes": 2048,
            "request_timeout_s": 0.5,
            "cors_origins": ["https://console.example"],
        }
    )
    services = build_services(settings, models=model_table.__getitem__)
    url, stop = serve_in_thread(create_app(services))
    try:
        yield LiveGateway(url, services)
    finally:
        stop()


def test_security_headers_on_every_response(gateway: LiveGateway) -> None:
    with httpx.Client(base_url=gateway.url) as client:
        for response in (client.get("/healthz"), client.get("/api/v1/projects")):
            headers = response.headers
            assert headers["x-content-type-options"] == "nosniff"
            assert headers["x-frame-options"] == "DENY"
            assert "default-src 'none'" in headers["content-security-policy"]
            assert headers["cache-control"] == "no-store"
            assert len(headers["x-request-id"]) == 16
            assert "server" not in headers or "uvicorn" not in headers["server"]


def test_cors_is_off_by_default(gateway: LiveGateway) -> None:
    with httpx.Client(base_url=gateway.url) as client:
        response = client.options(
            "/api/v1/projects",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
        )
    assert "access-control-allow-origin" not in response.headers


def test_cors_allows_only_configured_origins(tight_gateway: LiveGateway) -> None:
    with httpx.Client(base_url=tight_gateway.url) as client:
        ok = client.options(
            "/api/v1/projects",
            headers={"Origin": "https://console.example", "Access-Control-Request-Method": "GET"},
        )
        evil = client.options(
            "/api/v1/projects",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
        )
    assert ok.headers["access-control-allow-origin"] == "https://console.example"
    assert "access-control-allow-origin" not in evil.headers


def test_oversize_body_is_refused(tight_gateway: LiveGateway) -> None:
    key = tight_gateway.key("acme", "developer")
    big = {"goal": "x" * 5000}
    with httpx.Client(base_url=tight_gateway.url) as client:
        declared = client.post(
            "/api/v1/projects", json=big, headers={"Authorization": f"Bearer {key}"}
        )

        def chunks() -> Iterator[bytes]:
            yield b'{"goal": "'
            for _ in range(10):
                yield b"x" * 1000
            yield b'"}'

        streamed = client.post(
            "/api/v1/projects",
            content=chunks(),
            headers={"Authorization": f"Bearer {key}", "content-type": "application/json"},
        )
    for response in (declared, streamed):
        assert response.status_code == 413, response.text
        error = response.json()["error"]
        assert error["type"] == "payload_too_large"
        assert "2048" in error["message"]


def test_slow_requests_time_out(tight_gateway: LiveGateway, model_table: dict[str, Model]) -> None:
    async def slow(request: ModelRequest) -> str:
        await asyncio.sleep(3)
        return "late"

    model_table["scripted"] = FunctionModel(slow)
    key = tight_gateway.key("acme", "developer")
    with httpx.Client(base_url=tight_gateway.url, timeout=10) as client:
        response = client.post(
            "/v1/chat/completions",
            json={"model": "scripted", "messages": [{"role": "user", "content": "hi"}]},
            headers={"Authorization": f"Bearer {key}"},
        )
    assert response.status_code == 504
    assert response.json()["error"]["type"] == "timeout"


def test_unexpected_errors_hide_internals(
    gateway: LiveGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("database password is hunter2")

    monkeypatch.setattr(gateway.services.store, "list_projects", broken)
    key = gateway.key("acme", "viewer")
    with httpx.Client(base_url=gateway.url) as client:
        response = client.get("/api/v1/projects", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 500
    body = response.text
    assert "hunter2" not in body
    assert "Traceback" not in body
    assert response.headers["x-request-id"] in response.json()["error"]["message"]


def test_malformed_json_and_unknown_routes_get_error_bodies(gateway: LiveGateway) -> None:
    key = gateway.key("acme", "developer")
    auth = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=gateway.url) as client:
        bad = client.post(
            "/api/v1/projects",
            content=b"{not json",
            headers={**auth, "content-type": "application/json"},
        )
        missing = client.get("/api/v1/nothing-here", headers=auth)
        wrong_scheme = client.get("/api/v1/me", headers={"Authorization": f"Basic {key}"})
    assert bad.status_code == 422
    assert bad.json()["error"]["type"] == "invalid_request"
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "not_found"
    assert wrong_scheme.status_code == 401


def test_health_and_readiness(gateway: LiveGateway) -> None:
    with httpx.Client(base_url=gateway.url) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz")
    # A gateway made without the engine (a model gateway) is ready without it.
    assert ready.status_code == 200
    assert ready.json() == {"ready": True, "checks": {"store": "ok"}}
