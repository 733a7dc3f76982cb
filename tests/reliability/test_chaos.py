"""Chaos: 20 small projects finish correctly while workers, the engine and the store misbehave.

Each project is a 2-3 node plan of ``crash_worker``'s side-effect capsule on a model double that
calls the side-effect tool once per node (see ``chaos_worker.py``); workers run in subprocesses.
On a seeded schedule, while projects run, the test

* SIGKILLs a worker and starts a replacement (``kill``),
* restarts this test's own Temporal dev server -- SIGTERM or SIGKILL, alternately -- on the same
  ``--db-filename`` and port, so every workflow must survive in the server's SQLite file
  (``server``),
* on the PostgreSQL variant, terminates every backend of the store's database from a separate
  connection, as a database failover would (``db``).

Then every project must have succeeded; no tool or model call that the store had recorded was
done again (the side-effect log and the store's records are interleaved in one file, so order
tells); usage has exactly one event per model/tool call, none lost; the audit log has one record
per key, none lost, and its hash chain verifies.

Gateways are not part of this setup (projects are started through the client API): the gateway
is stateless, and ``test_gateway_restart.py`` restarts one mid-SSE-stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool
from temporalio.client import Client

from soma.orchestrator import server as temporal_server
from soma.orchestrator.projects import project_handle, start_project
from soma.orchestrator.server import EmbeddedTemporal, connect
from soma.orchestrator.types import ProjectParams, Timeouts
from soma.settings import Settings
from soma.specs.models import Plan, PlanNode
from soma.store import Store
from tests.postgres import scratch_database

from .chaos_worker import CAPSULE, write_library

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
SEED = 20240612
PROJECTS = 20
WORKERS = 2
DEADLINE_S = 150.0
# Node shapes, picked per project by the seeded generator.
SHAPES: tuple[dict[str, list[str]], ...] = (
    {"a": [], "b": ["a"]},
    {"a": [], "b": [], "c": ["a", "b"]},
    {"a": [], "b": ["a"], "c": ["b"]},
)
TERMINAL = {"succeeded", "failed", "cancelled"}


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The store's database: a SQLite file, or a PostgreSQL database of this test's own (so
    terminating every backend of it touches nobody else)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'soma' / 'soma.db'}"
        return
    with scratch_database("soma_chaos") as url:
        yield url.render_as_string(hide_password=False)


@pytest.fixture
def engine_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """A Temporal dev server for this test alone, always on the same port, so that workers and
    clients reconnect to a restarted server by themselves."""
    port = temporal_server._free_port()
    monkeypatch.setattr(temporal_server, "_free_port", lambda: port)
    settings = Settings(home=tmp_path / "engine", temporal_address=None)
    server = EmbeddedTemporal(settings)
    address = server.start()
    try:
        yield settings.model_copy(update={"temporal_address": address})
    finally:
        server.stop()


@dataclass
class Figures:
    projects: int = 0
    nodes: int = 0
    worker_kills: int = 0
    worker_exits: int = 0
    server_restarts: int = 0
    db_drops: int = 0
    backends_terminated: int = 0
    tool_effects: int = 0
    model_calls: int = 0
    unrecorded_repeats: int = 0
    seconds: float = 0.0
    events: list[str] = field(default_factory=list)


class Chaos:
    """The workers, the dev server and the store's database, and ways to break each."""

    def __init__(
        self,
        settings: Settings,
        engine_home: Settings,
        log: Path,
        store_url: str,
        rng: random.Random,
    ) -> None:
        self.settings = settings
        self.server = EmbeddedTemporal(engine_home)
        self.log = log
        self.store_url = store_url
        self.rng = rng
        self.workers: list[subprocess.Popen[bytes]] = []
        self.outputs: dict[int, Path] = {}
        self.started = 0
        self.figures = Figures()
        self.sigkill_server = False

    def start_worker(self) -> None:
        self.started += 1
        output = self.settings.home / f"worker-{self.started}.out"
        command = [
            sys.executable,
            "-m",
            "tests.reliability.chaos_worker",
            "--address",
            str(self.settings.temporal_address),
            "--task-queue",
            self.settings.task_queue,
            "--home",
            str(self.settings.home),
            "--log",
            str(self.log),
            "--recorded",
            str(self.log),
        ]
        if self.settings.database_url:
            command += ["--database-url", self.settings.database_url]
        with output.open("wb") as sink:
            proc = subprocess.Popen(command, cwd=REPO_ROOT, stdout=sink, stderr=subprocess.STDOUT)
        self.workers.append(proc)
        self.outputs[proc.pid] = output

    def supervise(self) -> None:
        """Replace workers that exited on their own (as a process supervisor would)."""
        for proc in list(self.workers):
            if proc.poll() is not None:
                self.workers.remove(proc)
                self.figures.worker_exits += 1
                last = self.outputs[proc.pid].read_text(errors="replace").strip().splitlines()
                why = last[-1][:300] if last else "no output"
                self.figures.events.append(f"worker exited ({proc.returncode}: {why})")
                self.start_worker()

    def kill_worker(self) -> None:
        victim = self.rng.choice(self.workers)
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(timeout=10)
        self.workers.remove(victim)
        self.figures.worker_kills += 1
        self.start_worker()

    def restart_server(self) -> None:
        status = self.server.status()
        assert status.running
        assert status.pid is not None
        if self.sigkill_server:
            os.kill(status.pid, signal.SIGKILL)
        else:
            self.server.stop()
        self.sigkill_server = not self.sigkill_server
        address = self.server.start()
        assert address == self.settings.temporal_address, "the server came back elsewhere"
        self.figures.server_restarts += 1

    def drop_connections(self) -> None:
        engine = create_engine(self.store_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
        try:
            with engine.connect() as conn:
                dropped = conn.execute(
                    text(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                ).scalar_one()
        finally:
            engine.dispose()
        self.figures.db_drops += 1
        self.figures.backends_terminated += int(dropped)

    def stop(self) -> None:
        for proc in self.workers:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)


def plans(rng: random.Random) -> list[ProjectParams]:
    params = []
    for index in range(PROJECTS):
        project_id = f"chaos{index:02d}"
        shape = rng.choice(SHAPES)
        nodes = [
            PlanNode(
                id=node,
                capsule=CAPSULE,
                inputs={"node": f"{project_id}-{node}"},
                depends_on=deps,
            )
            for node, deps in shape.items()
        ]
        params.append(
            ProjectParams(
                project_id=project_id,
                goal=f"Chaos drill {index}",
                plan=Plan(goal=f"Chaos drill {index}", nodes=nodes),
                model="drill",
                # A dead worker's calls are retried after 2 s without heartbeats / 5 s.
                timeouts=Timeouts(tool_heartbeat_s=2, tool_s=30, model_s=5, record_s=10),
            )
        )
    return params


def schedule(rng: random.Random, postgres: bool) -> list[tuple[float, str]]:
    """Seeded chaos: which action, how many seconds after the start."""
    actions = ["kill"] * 5 + ["server"] * 2 + (["db"] * 3 if postgres else [])
    rng.shuffle(actions)
    at, timeline = 2.0, []
    for action in actions:
        at += rng.uniform(1.5, 3.0)
        timeline.append((at, action))
    return timeline


def check_log(lines: list[str]) -> tuple[Counter[str], int]:
    """Effects per label; fails on an effect done again after its result was recorded.

    Returns the effects and how many were repeated before being recorded (a retry after the
    worker died between doing and recording: at-least-once, by necessity)."""
    effects: Counter[str] = Counter()
    recorded: set[str] = set()
    for line in lines:
        if line.startswith("recorded "):
            recorded.add(line.removeprefix("recorded "))
            continue
        assert line not in recorded, f"side effect {line!r} repeated after it was recorded"
        effects[line] += 1
    missing = set(effects) - recorded
    assert not missing, f"side effects never recorded: {sorted(missing)}"
    return effects, sum(count - 1 for count in effects.values())


async def wait_all(
    store: Store, chaos: Chaos, params: list[ProjectParams], client: Client, started: float
) -> None:
    """Start the projects, run the chaos timeline, and wait for every project to finish."""
    rng = chaos.rng
    starts = []
    at = 0.0
    for p in params:
        starts.append((at, p))
        at += rng.uniform(0.5, 1.5)
    timeline = schedule(rng, store.dialect == "postgresql")
    pending = {p.project_id for p in params}
    first_project: str | None = None
    checked_restart = False
    while True:
        elapsed = time.monotonic() - started
        assert elapsed < DEADLINE_S, (
            f"projects still running after {DEADLINE_S} s: {sorted(pending)}; "
            f"events: {chaos.figures.events}"
        )
        while starts and starts[0][0] <= elapsed:
            _, p = starts.pop(0)
            store.create_project(project_id=p.project_id, goal=p.goal)
            await start_project(client, chaos.settings, p)
            first_project = first_project or p.project_id
        if timeline and timeline[0][0] <= elapsed and pending:
            _, action = timeline.pop(0)
            chaos.figures.events.append(f"{elapsed:.1f}s {action}")
            if action == "kill":
                chaos.kill_worker()
            elif action == "server":
                await asyncio.to_thread(chaos.restart_server)
            else:
                chaos.drop_connections()
            if action == "server" and not checked_restart and first_project:
                # The server's SQLite file kept the workflows: an old one is still known.
                desc = await project_handle(client, first_project).describe()
                assert desc.id.endswith(first_project)
                checked_restart = True
        chaos.supervise()
        for project_id in list(pending):
            with contextlib.suppress(Exception):  # the store may be mid-drop: ask again later
                if store.get_project(project_id).status in TERMINAL:
                    pending.discard(project_id)
        if not pending and not starts:
            return
        await asyncio.sleep(0.25)


async def test_projects_survive_chaos(
    engine_settings: Settings, store_url: str, tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    started = time.monotonic()
    postgres = store_url.startswith("postgresql")
    settings = engine_settings.model_copy(
        update={
            "home": tmp_path / "soma",
            "task_queue": f"chaos-{uuid.uuid4().hex[:8]}",
            "database_url": store_url if postgres else None,
        }
    )
    write_library(settings.home)
    log = tmp_path / "side-effects.log"
    log.touch()
    store = Store.open(settings.store_url)
    engine_home = Settings(home=tmp_path / "engine", temporal_address=None)
    chaos = Chaos(settings, engine_home, log, store_url, rng)
    params = plans(rng)
    try:
        for _ in range(WORKERS):
            chaos.start_worker()
        client = await connect(settings)
        await wait_all(store, chaos, params, client, started)
    finally:
        chaos.stop()
    figures = chaos.figures
    figures.seconds = time.monotonic() - started

    lines = log.read_text(encoding="utf-8").splitlines()
    effects, figures.unrecorded_repeats = check_log(lines)
    day = timedelta(days=1)
    now = datetime.now(UTC)
    for p in params:
        record = store.get_project(p.project_id)
        assert record.status == "succeeded", (p.project_id, record.error, figures.events)
        labels = [f"{p.project_id}-{n.id}" for n in p.plan.nodes]
        tools = {f"{label}:t1" for label in labels}
        models = {f"model {label}:{step}" for label in labels for step in (1, 2)}
        assert tools | models == {
            e for e in effects if e.split(" ")[-1].startswith(p.project_id + "-")
        }
        figures.projects += 1
        figures.nodes += len(labels)
        figures.tool_effects += len(tools)
        figures.model_calls += len(models)

        usage = store.usage_events("default", now - day, now + day, project_id=p.project_id)
        metered = Counter(event.kind for event in usage)
        assert len({event.key for event in usage}) == len(usage), "usage metered twice"
        assert metered["model"] == len(models), (p.project_id, metered)
        assert metered["tool"] == len(tools), (p.project_id, metered)
        assert sum(e.input_tokens for e in usage) == record.usage_input_tokens > 0

        audit = store.list_audit(project_id=p.project_id)
        keys = [r.key for r in audit]
        assert None not in keys, "audit record without an idempotency key"
        assert len(set(keys)) == len(keys), "audit record duplicated"
        kinds = Counter(r.action_kind for r in audit)
        assert kinds["model_output"] == len(models), (p.project_id, kinds)
        assert kinds["tool_call"] == len(tools), (p.project_id, kinds)
        assert kinds["message"] == len(labels), (p.project_id, kinds)

    verification = store.verify_audit()
    assert verification.ok, verification.problem
    assert figures.worker_kills >= 3
    assert figures.server_restarts >= 1
    if postgres:
        assert figures.db_drops >= 1
        assert figures.backends_terminated > 0
    print(
        f"\nchaos ({store.dialect}): {figures.projects} projects, {figures.nodes} nodes, "
        f"{figures.worker_kills} worker kills, {figures.worker_exits} worker exits, "
        f"{figures.server_restarts} server restarts, {figures.db_drops} db drops "
        f"({figures.backends_terminated} backends), {figures.tool_effects} tool effects + "
        f"{figures.model_calls} model calls once each, {figures.unrecorded_repeats} repeats "
        f"of unrecorded calls, audit {verification.checked} records ok, "
        f"{figures.seconds:.0f} s\n  timeline: {', '.join(figures.events)}"
    )
    store.close()
