"""Drive one project over HTTP to its end (reviews approved), for the telemetry tests."""

from __future__ import annotations

import time
from typing import Any

import httpx

from tests.gateway.conftest import LiveGateway


def run_project(gateway: LiveGateway, goal: str = "a word-count CLI") -> dict[str, Any]:
    """POST a template-planned project, approve its review gates, return its final state."""
    dev = {"Authorization": f"Bearer {gateway.key('acme', 'developer')}"}
    reviewer = {"Authorization": f"Bearer {gateway.key('acme', 'reviewer')}"}
    with httpx.Client(base_url=gateway.url, timeout=60) as client:
        created = client.post(
            "/api/v1/projects",
            json={"goal": goal, "planner": "template", "concurrency": 4},
            headers=dev,
        )
        assert created.status_code == 201, created.text
        project_id = created.json()["id"]
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            for review in client.get("/api/v1/reviews", headers=reviewer).json():
                if review["project_id"] == project_id:
                    path = f"/api/v1/projects/{project_id}/reviews/{review['node_id']}/approve"
                    client.post(path, json={"comment": "lgtm"}, headers=reviewer)
            state: dict[str, Any] = client.get(f"/api/v1/projects/{project_id}", headers=dev).json()
            if state["status"] in ("succeeded", "failed", "cancelled"):
                return state
            time.sleep(0.2)
    raise AssertionError("the project did not finish in time")
