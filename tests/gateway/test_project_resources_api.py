"""Project resources over HTTP on the real engine: requested with the project, listed with it,
refused for teardown while it runs, torn down once it finished; a resource that cannot be
provisioned fails the project before its workflow starts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from soma.models.synthetic import SyntheticModel
from tests.gateway.conftest import LiveGateway
from tests.waiting import wait_for

pytestmark = pytest.mark.slow


def test_resources_live_and_die_with_the_project(
    engine_gateway: LiveGateway, model_table: dict[str, Any]
) -> None:
    model_table["synthetic"] = SyntheticModel()
    admin = engine_gateway.headers("acme", "admin")
    with httpx.Client(base_url=engine_gateway.url, timeout=60) as client:
        created = client.post(
            "/api/v1/projects",
            json={
                "goal": "a word-count CLI",
                "planner": "template",
                "concurrency": 4,
                "resources": [{"kind": "git.local"}],
            },
            headers=admin,
        )
        assert created.status_code == 201, created.text
        project = created.json()
        project_id = project["id"]
        [resource] = project["resources"]
        assert resource["kind"] == "git.local"
        assert resource["status"] == "provisioned"
        bare = Path(resource["location"])
        assert (bare / "HEAD").is_file()

        early = client.post(f"/api/v1/projects/{project_id}/teardown", headers=admin)
        assert early.status_code == 409, early.text
        assert bare.exists()

        def finished() -> dict[str, Any] | None:
            for review in client.get("/api/v1/reviews", headers=admin).json():
                if review["project_id"] == project_id:
                    path = f"/api/v1/projects/{project_id}/reviews/{review['node_id']}/approve"
                    client.post(path, json={"comment": "lgtm"}, headers=admin)
            state = client.get(f"/api/v1/projects/{project_id}", headers=admin).json()
            return state if state["status"] in ("succeeded", "failed") else None

        final = wait_for(finished, "the project to finish")
        assert [r["status"] for r in final["resources"]] == ["provisioned"]

        torn = client.post(f"/api/v1/projects/{project_id}/teardown", headers=admin)
        assert torn.status_code == 200, torn.text
        [gone] = torn.json()
        assert gone["status"] == "torn_down"
        assert gone["details"]["teardown"] == "removed"
        assert not bare.exists()
        listed = client.get(f"/api/v1/projects/{project_id}/resources", headers=admin).json()
        assert listed == torn.json()
        again = client.post(f"/api/v1/projects/{project_id}/teardown", headers=admin)
        assert again.json() == listed


def test_a_resource_that_cannot_be_provisioned_fails_the_project(
    engine_gateway: LiveGateway, model_table: dict[str, Any]
) -> None:
    model_table["synthetic"] = SyntheticModel()
    admin = engine_gateway.headers("acme", "admin")
    with httpx.Client(base_url=engine_gateway.url, timeout=60) as client:
        refused = client.post(
            "/api/v1/projects",
            json={
                "goal": "a word-count CLI",
                "planner": "template",
                "resources": [{"kind": "git.local"}, {"kind": "github.repo", "name": "acme/wc"}],
            },
            headers=admin,
        )
        assert refused.status_code == 400, refused.text
        assert "github.repo 'acme/wc'" in refused.json()["error"]["message"]
        [project] = client.get("/api/v1/projects", headers=admin).json()
        assert project["status"] == "failed"
        assert "no GitHub token" in project["error"]
        resources = client.get(f"/api/v1/projects/{project['id']}/resources", headers=admin).json()
        assert {r["kind"]: r["status"] for r in resources} == {
            "git.local": "torn_down",
            "github.repo": "torn_down",
        }

        bad = client.post(
            "/api/v1/projects",
            json={"goal": "x", "resources": [{"kind": "github.repo", "name": "no-owner"}]},
            headers=admin,
        )
        assert bad.status_code == 422, bad.text
