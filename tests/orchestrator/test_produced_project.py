"""A whole template project with a scripted team: the project it produces passes its own tests.

The scripted model plays every persona: the developer writes a real todo CLI, the QA engineer
writes unittest tests for it, and run-tests-and-fix runs them in the sandbox and reports what the
exit code says. The test then runs the produced tests itself, in the sandbox, to check the claim.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid

import pytest

from soma.models.function import FunctionModel
from soma.models.synthetic import value_for
from soma.models.types import Message, ModelRequest, ToolCall
from soma.orchestrator.projects import start_project
from soma.orchestrator.types import ProjectParams
from soma.planner import template_plan
from soma.specs.library import Library
from soma.tools.sandbox import make_sandbox
from soma.workspace import Workspace

from .conftest import Harness
from .test_project_workflow import approve_all

pytestmark = pytest.mark.slow

TODO_PY = '''"""A tiny todo-list CLI: add, list and complete items stored in todo.json."""
import json
import sys
from pathlib import Path

STORE = Path("todo.json")


def load():
    return json.loads(STORE.read_text()) if STORE.exists() else []


def save(items):
    STORE.write_text(json.dumps(items))


def main(argv):
    items = load()
    if argv[:1] == ["add"]:
        items.append({"text": " ".join(argv[1:]), "done": False})
        save(items)
        return f"added {len(items)}"
    if argv[:1] == ["done"]:
        items[int(argv[1]) - 1]["done"] = True
        save(items)
        return f"done {argv[1]}"
    return "\\n".join(
        f"{i}. [{'x' if it['done'] else ' '}] {it['text']}" for i, it in enumerate(items, 1)
    )


if __name__ == "__main__":
    print(main(sys.argv[1:]))
'''

TEST_TODO_PY = """import os
import tempfile
import unittest

import todo


class TodoTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp()
        os.chdir(self.dir)
        todo.STORE = todo.Path(self.dir) / "todo.json"

    def test_add_then_list(self):
        self.assertEqual(todo.main(["add", "buy", "milk"]), "added 1")
        self.assertEqual(todo.main([]), "1. [ ] buy milk")

    def test_done_marks_item(self):
        todo.main(["add", "write", "tests"])
        todo.main(["done", "1"])
        self.assertEqual(todo.main([]), "1. [x] write tests")
"""

FILES = {"implement-feature": ("todo.py", TODO_PY), "write-tests": ("test_todo.py", TEST_TODO_PY)}
TEST_COMMAND = "cd /workspace 2>/dev/null || true; python3 -m unittest -v 2>&1"


def capsule_of(request: ModelRequest) -> str | None:
    """The capsule an agent works on, from its system prompt; None for the auto-reviewer."""
    match = re.search(r"carrying out the task '([a-z0-9-]+)'", request.messages[0].content or "")
    return match.group(1) if match else None


def team(request: ModelRequest) -> Message:
    """One scripted agent per capsule: act with tools first, then answer from what happened."""
    capsule = capsule_of(request)
    if capsule is None:
        return Message.assistant(json.dumps({"approved": True, "comment": "looks complete"}))
    tool_turns = [m for m in request.messages if m.role == "tool"]
    schema = request.output.json_schema if request.output else {"type": "string"}
    if capsule in FILES and not tool_turns:
        path, content = FILES[capsule]
        call = ToolCall(id="c1", name="fs.write", arguments={"path": path, "content": content})
        return Message.assistant(tool_calls=[call])
    if capsule == "run-tests-and-fix" and not tool_turns:
        call = ToolCall(id="c1", name="shell.exec", arguments={"command": TEST_COMMAND})
        return Message.assistant(tool_calls=[call])
    answer = value_for(schema, "answer")
    if capsule == "run-tests-and-fix":
        passed = "exit_code: 0" in (tool_turns[-1].content or "")
        answer["status"] = "passed" if passed else "failed"
        answer["report"] = (tool_turns[-1].content or "")[:2000]
    return Message.assistant(json.dumps(answer))


async def test_produced_project_passes_its_own_tests_in_the_sandbox(harness: Harness) -> None:
    harness.models["m"] = FunctionModel(team)
    plan = template_plan("Build a todo-list CLI in Python", Library.builtin())
    project_id = f"todo-{uuid.uuid4().hex[:6]}"
    harness.store.create_project(project_id=project_id, goal=plan.goal)
    params = ProjectParams(project_id=project_id, goal=plan.goal, plan=plan, model="m")

    handle = await start_project(harness.client, harness.settings, params)
    approver = asyncio.ensure_future(approve_all(harness, project_id))
    try:
        state = await asyncio.wait_for(handle.result(), timeout=120)
    finally:
        approver.cancel()

    assert state.status == "succeeded", state.error
    fix = {n.node_id: n for n in harness.store.list_nodes(project_id)}["fix"]
    assert fix.output is not None
    assert fix.output["status"] == "passed", fix.output["report"]
    workspace = Workspace.open(harness.settings.workspaces_dir, project_id)
    assert len([c for c in workspace.log(50) if "(" in c.author_name]) == len(plan.nodes)
    check = await make_sandbox("auto").run(
        ["sh", "-c", "python3 -m unittest -v 2>&1"],
        cwd=workspace.path,
        timeout_s=60,
        memory_mb=512,
    )
    assert check.exit_code == 0, check.stdout + check.stderr
    assert "Ran 2 tests" in check.stdout
