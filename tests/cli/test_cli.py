"""The ``soma`` command line, run as a real process against a real OpenAI-compatible server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from soma.cli.main import app
from soma.models.synthetic import value_for
from tests.models.fake_openai_server import FakeOpenAI, Reply, completion, serve

API_KEY = "sk-cli-SECRET-abcdef123456"
SPEC = "# Todo CLI\n\n## Requirements\n\nR1. `todo add TEXT` stores an item.\n" + "Detail. " * 40


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    yield from serve()


@pytest.fixture
def soma_env(tmp_path: Path, fake_openai: FakeOpenAI) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOMA_")}
    env.update(
        SOMA_HOME=str(tmp_path / "home"),
        SOMA_MODEL="openai:fake-model",
        SOMA_OPENAI_BASE_URL=fake_openai.base_url,
        SOMA_OPENAI_API_KEY=API_KEY,
        COLUMNS="200",
    )
    return env


def soma(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "soma", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def schema_valid_answer(body: Any) -> Reply:
    """A server-side model that answers every request with JSON valid for its schema."""
    schema = body.get("response_format", {}).get("json_schema", {}).get("schema")
    content = json.dumps(value_for(schema, "answer")) if schema else "ok"
    return Reply(body=completion(content))


@pytest.mark.slow
def test_run_plans_and_executes_a_dag_with_one_commit_per_node(
    soma_env: dict[str, str], fake_openai: FakeOpenAI
) -> None:
    fake_openai.responder = schema_valid_answer
    try:
        proc = soma(
            soma_env,
            "run",
            "Build a todo-list CLI in Python",
            "--planner",
            "template",
            "--auto-approve",
        )
        assert proc.returncode == 0, proc.stderr + proc.stdout
        assert "by the template planner" in proc.stdout
        assert "succeeded" in proc.stdout
        assert API_KEY not in proc.stdout + proc.stderr
        (workspace,) = (Path(soma_env["SOMA_HOME"]) / "workspaces").iterdir()
        authors = subprocess.run(
            ["git", "-C", str(workspace), "log", "--format=%an"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split("\n")
        agent_commits = [a for a in authors if "(" in a]
        assert len(agent_commits) == 10
        assert "product-manager (write-spec)" in agent_commits
        assert (workspace / "docs/SPEC.md").is_file()

        listed = soma(soma_env, "status")
        assert workspace.name in listed.stdout
        detail = soma(soma_env, "status", workspace.name)
        assert detail.stdout.count("succeeded") >= 10
        logs = soma(soma_env, "logs", workspace.name)
        assert "node_succeeded" in logs.stdout
        assert "review_approved" in logs.stdout
    finally:
        soma(soma_env, "server", "stop")


@pytest.mark.slow
def test_failed_run_exits_non_zero_and_says_why(
    soma_env: dict[str, str], fake_openai: FakeOpenAI
) -> None:
    for _ in range(3):
        fake_openai.reply_json(completion("I think the spec is fine."))

    proc = soma(soma_env, "agent", "run", "write-spec", "--input", "goal=Todo app")

    assert proc.returncode == 1
    assert "failed" in proc.stdout
    assert "not valid JSON" in proc.stdout


runner = CliRunner()


def test_capsule_list_shows_the_builtin_library() -> None:
    result = runner.invoke(app, ["capsule", "list"])
    assert result.exit_code == 0
    for name in ("write-spec", "implement-feature", "release-notes"):
        assert name in result.output


def test_capsule_show_prints_yaml() -> None:
    result = runner.invoke(app, ["capsule", "show", "write-spec@^1"])
    assert result.exit_code == 0
    assert "name: write-spec" in result.output
    assert "persona: product-manager" in result.output


def test_unknown_capsule_is_a_clear_error() -> None:
    result = runner.invoke(app, ["capsule", "show", "write-specs"])
    assert result.exit_code == 2
    assert "write-spec" in result.output


def test_persona_list_and_show() -> None:
    listed = runner.invoke(app, ["persona", "list"])
    assert listed.exit_code == 0
    assert "security-reviewer" in listed.output
    shown = runner.invoke(app, ["persona", "show", "developer"])
    assert shown.exit_code == 0
    assert "role:" in shown.output


def test_schema_prints_json_schema() -> None:
    result = runner.invoke(app, ["schema", "capsule"])
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert "instructions" in schema["properties"]


def test_validate_reports_file_line_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "capsule.yaml"
    bad.write_text(
        "kind: capsule\nname: bad\nversion: 1.0.0\ndescription: d\npersona: developer\n"
        "instructions: do it\nbudget:\n  max_steps: ten\n"
    )
    result = runner.invoke(app, ["capsule", "validate", str(bad)])
    assert result.exit_code == 1
    assert f"{bad}:8" in result.output
    assert "budget.max_steps" in result.output


def test_agent_run_rejects_malformed_inputs(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["agent", "run", "write-spec", "--input", "goal"], env={"SOMA_HOME": str(tmp_path)}
    )
    assert result.exit_code == 2
    assert "key=value" in result.output


def test_help_lists_the_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("run", "capsule", "persona", "agent", "schema"):
        assert command in result.output


def test_inputs_can_be_read_from_files(tmp_path: Path) -> None:
    missing = tmp_path / "missing.md"
    result = runner.invoke(
        app,
        ["agent", "run", "write-docs", "-i", f"spec=@{missing}"],
        env={"SOMA_HOME": str(tmp_path)},
    )
    assert result.exit_code == 2
    assert "inputs.spec" in result.output
    assert "cannot read" in result.output


def test_input_values_are_coerced_and_files_read(tmp_path: Path) -> None:
    from soma.cli.main import _parse_inputs

    spec = tmp_path / "SPEC.md"
    spec.write_text("# Spec\n")
    parsed = _parse_inputs(
        [f"spec=@{spec}", "count=3", "flags=[1, 2]", "name=plain text", "ok=true", "eq=a=b"]
    )
    assert parsed == {
        "spec": "# Spec\n",
        "count": 3,
        "flags": [1, 2],
        "name": "plain text",
        "ok": True,
        "eq": "a=b",
    }


@pytest.mark.slow
def test_capsule_eval_reports_checks(soma_env: dict[str, str], fake_openai: FakeOpenAI) -> None:
    fake_openai.reply_json(completion(json.dumps({"title": "Word count", "spec": SPEC})))

    proc = soma(soma_env, "capsule", "eval", "write-spec")

    assert proc.returncode == 1, proc.stderr
    assert "word-count-cli" in proc.stdout
    assert "lacks '## Acceptance criteria'" in proc.stdout
    assert "0/1 evals passed" in proc.stdout
