"""The README's first command on the embedded defaults: local model, sandbox, git workspace."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.slow,
    # Ten agents on a 135M model on two cores: minutes, not the suite's default 300 s.
    pytest.mark.timeout(1500),
    pytest.mark.local_model,
    pytest.mark.skipif(
        importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python is not installed"
    ),
]


def soma(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "soma", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )


def test_soma_run_on_embedded_defaults_runs_the_dag_with_a_commit_per_node(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOMA_")}
    env.update(SOMA_HOME=str(tmp_path), COLUMNS="200")
    try:
        proc = soma(env, "run", "Build a todo-list CLI in Python", "--auto-approve")
        assert "by the template planner" in proc.stdout
        assert proc.returncode == 0, proc.stdout + proc.stderr
        (workspace,) = (tmp_path / "workspaces").iterdir()
        assert (workspace / "docs" / "SPEC.md").stat().st_size > 0
        authors = subprocess.run(
            ["git", "-C", str(workspace), "log", "--format=%an"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split("\n")
        # One commit per node; a node whose work a review sent back commits once per round.
        agents = {a for a in authors if "(" in a}
        assert len(agents) == 10, agents
        assert "product-manager (write-spec)" in agents
        logs = soma(env, "logs", workspace.name)
        assert logs.stdout.count("node_succeeded") == 10
    finally:
        soma(env, "server", "stop")
