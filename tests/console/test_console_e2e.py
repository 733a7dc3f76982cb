"""The console end to end in headless Chromium, on a gateway with the real engine and a worker:
sign in, start a project with the scripted model, watch its plan graph update live to a review
gate, approve the gates in the inbox, see the project finish; search and install a capsule; read
the audit log and usage. Each main page is saved as a screenshot for review."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from soma.models.synthetic import SyntheticModel
from tests.console.browser import Screenshots
from tests.console.pages import publish_capsule
from tests.gateway.conftest import LiveGateway

pytestmark = pytest.mark.slow

LIVE_TIMEOUT_MS = 120_000


def _sign_in(page: Page, base: str, key: str) -> None:
    page.goto(f"{base}/projects")
    expect(page).to_have_url(re.compile(r"/login\?next=/projects$"))
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{base}/projects")


def _approve_pending_gates(inbox: Page, base: str, project_id: str) -> int:
    """Approve every gate of the project waiting in the inbox; how many were approved."""
    inbox.goto(f"{base}/reviews")
    approved = 0
    while True:
        gate = inbox.locator(f'article.gate[id^="gate-{project_id}-"]').first
        if gate.count() == 0:
            return approved
        gate.get_by_label("Comment").fill("Looks good to me.")
        gate.get_by_role("button", name="Approve").click()
        inbox.wait_for_load_state()
        approved += 1


def test_console_end_to_end(
    engine_gateway: LiveGateway,
    model_table: dict[str, Any],
    page: Page,
    screenshots: Screenshots,
    tmp_path: Path,
) -> None:
    model_table["synthetic"] = SyntheticModel(latency_s=0.2)
    base = engine_gateway.url
    _sign_in(page, base, engine_gateway.key("acme", "admin"))
    screenshots(page, "projects-empty")

    page.get_by_label("Goal").fill("Build a todo-list CLI in Python")
    page.get_by_label("Planner").select_option("template")
    page.get_by_role("button", name="Start project").click()
    expect(page).to_have_url(re.compile(r"/projects/[A-Za-z0-9._-]+$"))
    project_id = page.url.rsplit("/", 1)[1]
    expect(page.locator("svg.dag .node").first).to_be_visible()

    # The graph changes colour through the SSE stream alone: this page is never reloaded.
    gate = page.locator("svg.dag .node.status-waiting_review").first
    expect(gate).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    expect(page.locator("#events li").last).to_be_visible()
    screenshots(page, "project-live-at-review-gate")

    inbox = page.context.new_page()
    approved = 0
    deadline = time.monotonic() + 240
    while page.get_attribute("body", "data-project-finished") != "true":
        assert time.monotonic() < deadline, "the project did not finish"
        if approved == 0 and inbox.url == "about:blank":
            inbox.goto(f"{base}/reviews")
            first_gate = inbox.locator(f'article.gate[id^="gate-{project_id}-"]').first
            expect(first_gate).to_be_visible()
            # The reviewer sees what is under review: the run's output and its commit's diff.
            expect(first_gate.locator("pre.diff")).to_contain_text("diff --git")
            expect(first_gate.get_by_text("waits for a human review")).to_be_visible()
            screenshots(inbox, "review-inbox")
        approved += _approve_pending_gates(inbox, base, project_id)
        page.wait_for_timeout(500)
    assert approved >= 1, "the template plan has human review gates"

    expect(page.locator("#project-status .status")).to_have_text("succeeded")
    assert (
        page.locator("svg.dag .node").count()
        == page.locator("svg.dag .node.status-succeeded").count()
    )
    expect(page.locator("#cancel-form")).to_have_count(0)
    screenshots(page, "project-finished")

    # A run's detail: its persona, decisions, and the commit it made.
    page.locator("svg.dag .node").first.focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name=re.compile(r"^Run "))).to_be_visible()
    expect(page.get_by_role("heading", name="Constitution decisions")).to_be_visible()
    screenshots(page, "run-detail")

    # The marketplace: search, open a capsule's page, install it into the tenant's library.
    publish_capsule(engine_gateway, tmp_path, "lint-sql", trust=True)
    page.goto(f"{base}/market")
    page.get_by_label("Search packages").fill("lint sql")
    page.get_by_label("Kind").select_option("capsule")
    page.get_by_role("button", name="Search").click()
    first = page.locator("ul.packages li.package h2 a").first
    expect(first).to_be_visible()
    screenshots(page, "market-search")
    assert first.inner_text() == "lint-sql"
    first.click()
    expect(page.get_by_role("heading", name="Versions")).to_be_visible()
    expect(page.get_by_text("trusted by your tenant").first).to_be_visible()
    screenshots(page, "package")
    page.get_by_role("button", name=re.compile("Install")).click()
    expect(page.get_by_role("status")).to_contain_text("Installed lint-sql 1.0.0")
    expect(page.locator("#installed-version")).to_have_text("1.0.0")
    installed = engine_gateway.services.store.list_installs("acme")
    assert "lint-sql" in {p.name for p in installed}

    # The audit log: the chain verifies and the project's decisions are there.
    page.goto(f"{base}/audit?project={project_id}")
    expect(page.locator("#chain-status")).to_contain_text("verified")
    assert page.locator("#audit tbody tr").count() >= 1
    expect(page.locator("#audit tbody")).to_contain_text(project_id[:20])
    screenshots(page, "audit")

    page.goto(f"{base}/usage")
    expect(page.get_by_role("heading", name="Tokens per persona")).to_be_visible()
    screenshots(page, "usage")


def test_console_is_usable_on_a_phone(
    engine_gateway: LiveGateway, page: Page, screenshots: Screenshots
) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    _sign_in(page, engine_gateway.url, engine_gateway.key("acme", "viewer"))
    nav = page.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link", name="Projects")).to_be_visible()
    expect(nav.get_by_role("link", name="Audit")).to_have_count(0)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page scrolls sideways on a phone ({width}px)"
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    screenshots(page, "projects-phone")
