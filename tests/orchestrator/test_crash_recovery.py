"""A worker SIGKILLed mid-project: a second worker finishes it and no side effect happens twice.

The worker runs in a subprocess (``crash_worker.py``) so it can really die. It is frozen at known
points before the kill, one per node: ``a`` right after its ``t2`` tool result was recorded in the
store but before Temporal heard of it (Temporal retries that call: only the store's idempotency
record stops a second side effect), ``b`` inside its ``t2`` tool call, before the side effect
(the second worker must run it, once), and ``c`` like ``a`` but after its second model call.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from temporalio.client import Client

from soma.orchestrator.projects import start_project
from soma.orchestrator.types import ProjectParams, Timeouts
from soma.settings import Settings
from soma.specs.models import Plan, PlanNode
from soma.store import Store
from soma.workspace import Workspace

from .crash_worker import (
    CAPSULE,
    HOLD_MODEL,
    HOLD_RECORDED,
    HOLD_RUNNING,
    TURNS,
    load_library,
    write_library,
)

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
NODES = ("a", "b", "c")
HOLDS_DEADLINE_S = 30.0
RESULT_DEADLINE_S = 90.0


def start_worker(
    settings: Settings, log: Path, output: Path, hold: Path | None
) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-m",
        "tests.orchestrator.crash_worker",
        "--address",
        str(settings.temporal_address),
        "--task-queue",
        settings.task_queue,
        "--home",
        str(settings.home),
        "--log",
        str(log),
    ]
    if hold is not None:
        command += ["--hold-file", str(hold)]
    with output.open("wb") as sink:
        return subprocess.Popen(command, cwd=REPO_ROOT, stdout=sink, stderr=subprocess.STDOUT)


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


def tail(path: Path, n: int = 40) -> str:
    return "\n".join(lines(path)[-n:])


async def wait_until(
    condition: Callable[[], bool], deadline_s: float, worker: subprocess.Popen[bytes], output: Path
) -> None:
    deadline = time.monotonic() + deadline_s
    while not condition():
        if worker.poll() is not None:
            raise AssertionError(f"worker exited with {worker.returncode}:\n{tail(output)}")
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met in {deadline_s} s; worker:\n{tail(output)}")
        await asyncio.sleep(0.05)


async def test_killed_worker_leaves_no_repeated_side_effect(
    temporal_settings: Settings, temporal_client: Client, tmp_path: Path
) -> None:
    settings = temporal_settings.model_copy(
        update={"home": tmp_path, "task_queue": f"crash-{uuid.uuid4().hex[:8]}"}
    )
    write_library(tmp_path)
    assert load_library(tmp_path).capsule(CAPSULE).persona == "tester"
    store = Store.open(settings.store_url)
    log, holds = tmp_path / "side-effects.log", tmp_path / "holds.log"
    outputs = [tmp_path / "worker-1.out", tmp_path / "worker-2.out"]
    log.touch()

    project_id = f"p-{uuid.uuid4().hex[:8]}"
    plan = Plan(
        goal="Survive a worker crash",
        nodes=[PlanNode(id=n, capsule=CAPSULE, inputs={"node": n}) for n in NODES],
    )
    store.create_project(project_id=project_id, goal=plan.goal)
    params = ProjectParams(
        project_id=project_id,
        goal=plan.goal,
        plan=plan,
        model="drill",
        # A dead worker's tool call is retried after 2 s without heartbeats, a model call after 5 s.
        timeouts=Timeouts(tool_heartbeat_s=2, tool_s=30, model_s=5),
    )

    workers: list[subprocess.Popen[bytes]] = []
    try:
        first = start_worker(settings, log, outputs[0], hold=holds)
        workers.append(first)
        handle = await start_project(temporal_client, settings, params)
        model_node, model_step = HOLD_MODEL
        expected_holds = {
            f"recorded {HOLD_RECORDED}",
            f"running {HOLD_RUNNING}",
            f"recorded model {model_node}:{model_step}",
        }
        await wait_until(
            lambda: set(lines(holds)) == expected_holds, HOLDS_DEADLINE_S, first, outputs[0]
        )
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
        before_crash = lines(log)
        assert HOLD_RECORDED in before_crash, "a:t2's side effect happened before the crash"
        assert HOLD_RUNNING not in before_crash, "b:t2 was still in flight at the crash"
        assert f"model {model_node}:{model_step}" in before_crash

        second = start_worker(settings, log, outputs[1], hold=None)
        workers.append(second)
        try:
            state = await asyncio.wait_for(handle.result(), timeout=RESULT_DEADLINE_S)
        except TimeoutError:
            raise AssertionError(
                f"project did not finish; log:\n{tail(log)}\nworker 2:\n{tail(outputs[1])}"
            ) from None
    finally:
        for proc in workers:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)

    assert state.status == "succeeded", state.error
    assert store.get_project(project_id).status == "succeeded"

    effects = Counter(lines(log))
    expected = [f"{n}:t{i}" for n in NODES for i in range(1, TURNS + 1)]
    expected += [f"model {n}:{step}" for n in NODES for step in range(1, TURNS + 2)]
    repeated = {line: count for line, count in effects.items() if count > 1}
    assert not repeated, f"side effects repeated after the crash: {repeated}"
    assert sorted(effects) == sorted(expected), f"side effects: {sorted(effects)}"

    # Metering: every model and tool call recorded exactly once, though the worker died between
    # recording some results and metering them; the usage adds up to the project's totals.
    day = timedelta(days=1)
    now = datetime.now(UTC)
    usage = store.usage_events("default", now - day, now + day, project_id=project_id)
    metered = Counter(event.kind for event in usage)
    assert metered["model"] == len(NODES) * (TURNS + 1), metered
    assert metered["tool"] == len(NODES) * TURNS, metered
    assert len({event.key for event in usage}) == len(usage)
    record = store.get_project(project_id)
    assert sum(e.input_tokens for e in usage) == record.usage_input_tokens > 0
    assert sum(e.output_tokens for e in usage) == record.usage_output_tokens

    workspace = Workspace.open(settings.workspaces_dir, project_id)
    agent_commits = [c for c in workspace.log(50) if c.author_name == f"tester ({CAPSULE})"]
    run_ids = sorted(c.message.rsplit("Soma-Run-Id: ", 1)[-1] for c in agent_commits)
    assert run_ids == [f"{n}.r0" for n in NODES]
    assert {state.nodes[n].commit for n in NODES} == {c.sha for c in agent_commits}
