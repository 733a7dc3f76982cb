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
    pytest.mark.local_model,
    pytest.mark.skipif(
        importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python is not installed"
    ),
]


def test_soma_run_on_embedded_defaults_leaves_an_agent_commit(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOMA_")}
    env["SOMA_HOME"] = str(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "soma", "run", "Build a todo-list CLI in Python"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )

    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "local:smollm2-135m" in proc.stdout
    (workspace,) = (tmp_path / "workspaces").iterdir()
    assert (workspace / "docs" / "SPEC.md").stat().st_size > 0
    author = subprocess.run(
        ["git", "-C", str(workspace), "log", "-1", "--format=%an <%ae>"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert author == "product-manager (write-spec) <product-manager@agents.soma.local>"
