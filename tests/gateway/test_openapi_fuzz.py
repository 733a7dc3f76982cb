"""Schemathesis against the live gateway's own OpenAPI document: generated requests for every
operation, positive and negative, must never get a 5xx, and successful answers must match the
documented response schemas."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from pydantic import SecretStr
from schemathesis import BaseSchema
from schemathesis.checks import not_a_server_error, response_schema_conformance

from soma.gateway.app import build_services, create_app
from soma.models.function import FunctionModel
from soma.settings import Settings
from tests.gateway.conftest import LiveGateway, serve_in_thread

pytestmark = pytest.mark.slow

EXAMPLES_PER_OPERATION = 25


@pytest.fixture
def idle_engine_gateway(temporal_settings: Settings, tmp_path: Path) -> Iterator[LiveGateway]:
    """Connected to the engine but with no worker: created projects start and wait, so fuzzing
    exercises every route without running hundreds of generated projects."""
    app_settings = temporal_settings.model_copy(
        update={
            "home": tmp_path,
            "task_queue": f"fuzz-{uuid.uuid4().hex[:8]}",
            "secret_key": SecretStr("fuzz-secret-key-0123456789-0123456789"),
            "model": "scripted",
        }
    )
    models = {"scripted": FunctionModel(lambda request: "fuzzed reply")}
    services = build_services(app_settings, models=models.__getitem__)
    url, stop = serve_in_thread(create_app(services, engine=True))
    try:
        yield LiveGateway(url, services)
    finally:
        stop()


def _fuzz(schema: BaseSchema, url: str, headers: dict[str, str]) -> tuple[list[str], int]:
    failures: list[str] = []
    calls = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path.endswith("/events/stream") or operation.path == "/auth/oidc/login":
            # A stream of an existing project never ends by design, and the login route
            # redirects off-site; both are covered by their own tests.
            continue

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def check(case: Any) -> None:
            nonlocal calls
            calls += 1
            response = case.call(base_url=url, headers=headers, timeout=30)
            try:
                case.validate_response(
                    response, checks=[not_a_server_error, response_schema_conformance]
                )
            except AssertionError as exc:
                failures.append(f"{case.operation.label}: {str(exc)[:500]}")

        check()
    return failures, calls


def test_no_server_errors_across_the_api(idle_engine_gateway: LiveGateway) -> None:
    url = idle_engine_gateway.url
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    headers = {"Authorization": f"Bearer {idle_engine_gateway.key('acme', 'admin')}"}
    failures, calls = _fuzz(schema, url, headers)
    assert not failures, "\n".join(failures)
    assert calls >= 10 * len(list(schema.get_all_operations())) // 2
