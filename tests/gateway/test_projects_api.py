"""A project driven entirely over HTTP: created from a goal, watched live over SSE, its review
gates approved by a reviewer, finished — on the real engine with a worker in the gateway."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from soma.models.synthetic import SyntheticModel
from tests.gateway.conftest import LiveGateway
from tests.waiting import wait_for

pytestmark = pytest.mark.slow


def _sse(lines: list[str]) -> list[dict[str, str]]:
    events, current = [], {}
    for line in lines:
        if not line:
            if current:
                events.append(current)
            current = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(": ")
            current[name] = value
    return events


def test_project_over_http(engine_gateway: LiveGateway, model_table: dict[str, Any]) -> None:
    model_table["synthetic"] = SyntheticModel()
    dev = {"Authorization": f"Bearer {engine_gateway.key('acme', 'developer')}"}
    reviewer = {"Authorization": f"Bearer {engine_gateway.key('acme', 'reviewer')}"}
    with httpx.Client(base_url=engine_gateway.url, timeout=60) as client:
        assert client.get("/readyz").json()["checks"] == {"store": "ok", "engine": "ok"}
        created = client.post(
            "/api/v1/projects",
            json={"goal": "a word-count CLI", "planner": "template", "concurrency": 4},
            headers=dev,
        )
        assert created.status_code == 201, created.text
        project = created.json()
        project_id = project["id"]
        assert project["status"] == "running"
        assert project["plan"]["nodes"]

        # A developer may not approve (separation of duties); a reviewer approves each gate.
        approved: set[str] = set()

        def finished() -> dict[str, Any] | None:
            for review in client.get("/api/v1/reviews", headers=reviewer).json():
                if review["project_id"] != project_id:
                    continue
                path = f"/api/v1/projects/{project_id}/reviews/{review['node_id']}/approve"
                if not approved:
                    assert client.post(path, json={}, headers=dev).status_code == 403
                response = client.post(path, json={"comment": "lgtm"}, headers=reviewer)
                assert response.status_code in (202, 404), response.text
                approved.add(review["node_id"])
            state = client.get(f"/api/v1/projects/{project_id}", headers=dev).json()
            return state if state["status"] in ("succeeded", "failed") else None

        final = wait_for(finished, "the project to finish", timeout_s=240)
        assert final["status"] == "succeeded", final
        assert approved, "the template plan has human review gates"
        assert {run["status"] for run in final["runs"]} == {"succeeded"}
        assert final["input_tokens"] > 0

        # The SSE stream replays the whole history and ends with the final status.
        with client.stream(
            "GET", f"/api/v1/projects/{project_id}/events/stream", headers=dev
        ) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            events = _sse(list(stream.iter_lines()))
        kinds = [e.get("event") for e in events]
        assert kinds[0] == "project_started"
        assert "review_approved" in kinds
        assert kinds[-1] == "end"
        assert json.loads(events[-1]["data"])["status"] == "succeeded"
        ids = [int(e["id"]) for e in events if "id" in e]
        assert ids == sorted(ids)

        # Resuming from Last-Event-ID gives only what came after.
        with client.stream(
            "GET",
            f"/api/v1/projects/{project_id}/events/stream",
            headers={**dev, "Last-Event-ID": str(ids[-2])},
        ) as stream:
            resumed = _sse(list(stream.iter_lines()))
        assert [int(e["id"]) for e in resumed if "id" in e] == [ids[-1]]

        usage = client.get("/api/v1/usage", headers=dev).json()
        assert usage["input_tokens"] == final["input_tokens"]
        assert client.post(f"/api/v1/projects/{project_id}/cancel", headers=dev).status_code == 409


def test_cancel_over_http(engine_gateway: LiveGateway, model_table: dict[str, Any]) -> None:
    model_table["synthetic"] = SyntheticModel(latency_s=0.5)
    dev = {"Authorization": f"Bearer {engine_gateway.key('acme', 'developer')}"}
    with httpx.Client(base_url=engine_gateway.url, timeout=60) as client:
        project_id = client.post(
            "/api/v1/projects", json={"goal": "a slow thing", "planner": "template"}, headers=dev
        ).json()["id"]
        assert client.post(f"/api/v1/projects/{project_id}/cancel", headers=dev).status_code == 202

        def cancelled() -> bool:
            state = client.get(f"/api/v1/projects/{project_id}", headers=dev).json()
            return bool(state["status"] == "cancelled")

        wait_for(cancelled, "the project to be cancelled")


def test_project_routes_without_engine_answer_503(gateway: LiveGateway) -> None:
    dev = {"Authorization": f"Bearer {gateway.key('acme', 'developer')}"}
    with httpx.Client(base_url=gateway.url) as client:
        response = client.post("/api/v1/projects", json={"goal": "x"}, headers=dev)
    assert response.status_code == 503
    assert "engine" in response.json()["error"]["message"]


def test_bad_project_input_names_the_field(gateway: LiveGateway) -> None:
    dev = {"Authorization": f"Bearer {gateway.key('acme', 'developer')}"}
    with httpx.Client(base_url=gateway.url) as client:
        response = client.post(
            "/api/v1/projects", json={"goal": "x", "concurrency": 0}, headers=dev
        )
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["field"] == "concurrency"
    assert error["type"] == "invalid_request"
