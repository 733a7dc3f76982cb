"""Lessons on the real engine: a reviewer's rejection in one project reaches the prompt of the
same capsule in the next project, through memory."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from soma.models.function import FunctionModel
from soma.models.synthetic import SyntheticModel
from soma.models.types import ModelRequest, ModelResponse
from tests.gateway.conftest import LiveGateway

pytestmark = pytest.mark.slow

LESSON = "Mention the changelog entry in every code review."


def _run(client: httpx.Client, goal: str, reject_review_with: str | None) -> str:
    created = client.post("/api/v1/projects", json={"goal": goal, "planner": "template"})
    assert created.status_code == 201, created.text
    project_id: str = created.json()["id"]
    rejected = False
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        for review in client.get("/api/v1/reviews").json():
            if review["project_id"] != project_id:
                continue
            base = f"/api/v1/projects/{project_id}/reviews/{review['node_id']}"
            if review["node_id"] == "review" and reject_review_with and not rejected:
                client.post(f"{base}/reject", json={"comment": reject_review_with})
                rejected = True
            else:
                client.post(f"{base}/approve", json={"comment": "ok"})
        status = client.get(f"/api/v1/projects/{project_id}").json()["status"]
        if status in ("succeeded", "failed"):
            assert status == "succeeded"
            return project_id
        time.sleep(0.2)
    raise AssertionError("the project did not finish")


def test_a_rejection_becomes_a_lesson_for_the_next_project(
    engine_gateway: LiveGateway, model_table: dict[str, Any]
) -> None:
    synthetic = SyntheticModel()
    prompts: list[tuple[str, str]] = []

    async def recording(request: ModelRequest) -> ModelResponse:
        system = request.messages[0].content or ""
        prompts.append((system, request.messages[1].content or ""))
        return await synthetic.complete(request)

    model_table["synthetic"] = FunctionModel(recording, name="synthetic")
    headers = {"Authorization": f"Bearer {engine_gateway.key('acme', 'admin')}"}
    with httpx.Client(base_url=engine_gateway.url, headers=headers, timeout=60) as client:
        _run(client, "a url shortener", reject_review_with=LESSON)
        first_project = len(prompts)
        assert "lessons from earlier runs" not in prompts[0][1], "nothing learned yet"
        _run(client, "a markdown linter", reject_review_with=None)

    later = [user for _, user in prompts[first_project:] if "lessons from earlier runs" in user]
    assert later, "the second project's review run recalled the lesson"
    assert any(LESSON in user for user in later)
    lessons = engine_gateway.services.store.list_audit(None, "acme")
    assert any(r.action_kind == "memory_write" and r.effect == "allow" for r in lessons)
