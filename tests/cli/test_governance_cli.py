"""`soma policy test` and `soma audit verify|show` from the command line."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from soma.cli.main import app
from soma.constitution import builtin_cases
from soma.constitution.audit import digest, record_decision
from soma.settings import Settings
from soma.store import Store

runner = CliRunner()


@pytest.fixture
def home(tmp_path: Path) -> dict[str, str]:
    return {"SOMA_HOME": str(tmp_path), "COLUMNS": "200"}


def test_policy_test_passes_on_the_shipped_cases() -> None:
    result = runner.invoke(app, ["policy", "test", str(builtin_cases("default"))])
    assert result.exit_code == 0, result.output
    assert "cases passed" in result.output


def test_policy_test_fails_on_a_wrong_expectation(tmp_path: Path) -> None:
    cases = tmp_path / "cases.yaml"
    cases.write_text(
        "constitution: default\ncases:\n"
        "  - name: deleting root is fine (wrong)\n"
        "    subject: {persona: developer}\n"
        "    action: {kind: tool_call, tool: shell.exec, arguments: {command: 'rm -rf /'}}\n"
        "    expect: allow\n"
    )
    result = runner.invoke(app, ["policy", "test", str(cases)], env={"COLUMNS": "200"})
    assert result.exit_code == 1
    assert "0/1 cases passed" in result.output
    assert "deny" in result.output


def record(store: Store, effect: str, reason: str) -> None:
    store.append_audit(
        project_id="p1",
        node_id="impl",
        actor="developer (implement-feature)",
        action_kind="tool_call",
        tool="shell.exec",
        arguments_digest=digest({"command": "ls"}),
        rule_id=None,
        effect=effect,
        reason=reason,
    )


def test_audit_show_and_verify_detect_tampering(home: dict[str, str]) -> None:
    settings = Settings(home=Path(home["SOMA_HOME"]))
    store = Store.open(settings.store_url)
    record(store, "allow", "no rule matched")
    record(store, "deny", "deny-delete-root")
    record(store, "allow", "no rule matched")

    shown = runner.invoke(app, ["audit", "show", "p1"], env=home)
    assert shown.exit_code == 0
    assert "deny-delete-root" in shown.output
    ok = runner.invoke(app, ["audit", "verify"], env=home)
    assert ok.exit_code == 0
    assert "3 records verified" in ok.output

    engine = create_engine(settings.store_url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE audit_log SET effect = 'allow' WHERE effect = 'deny'"))
    broken = runner.invoke(app, ["audit", "verify"], env=home)
    assert broken.exit_code == 1
    assert "audit chain broken at record 2" in broken.output


def test_audit_show_finds_the_projects_tenant(home: dict[str, str]) -> None:
    settings = Settings(home=Path(home["SOMA_HOME"]))
    store = Store.open(settings.store_url)
    store.create_tenant("acme", "Acme")
    store.create_project("acme-project", "goal", tenant_id="acme")
    record_decision(
        store,
        tenant_id="acme",
        project_id="acme-project",
        actor="developer (write-code)",
        action_kind="tool_call",
        tool="shell.exec",
        arguments={"command": "ls"},
        effect="allow",
        reason="acme's decision",
    )
    shown = runner.invoke(app, ["audit", "show", "acme-project"], env=home)
    assert shown.exit_code == 0, shown.output
    assert "acme's decision" in shown.output
    whole = runner.invoke(app, ["audit", "show", "--tenant", "acme"], env=home)
    assert "acme's decision" in whole.output
