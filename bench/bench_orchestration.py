"""Durable orchestration on the embedded Temporal server: overhead per step, and concurrency.

Both workloads run real projects (ProjectWorkflow -> one CapsuleWorkflow per node -> activities
with idempotency keys recorded in the SQLite store, and one agent commit per node) against a
throwaway ``temporal server start-dev`` and an in-process worker. The capsule is a custom one
(``review: none``) whose only tool is an in-process no-op, so what is measured is orchestration,
not the sandbox or a model.

1. Overhead: a 50-node DAG, 10 layers of width 5, every node depending on the whole previous
   layer; each node makes 2 model+tool rounds = 2 model calls + 1 tool call (the model calls
   ``bench.noop`` once, then answers), zero-latency model. An agent step is one model call
   (the loop's step counter). Target: <= 5 ms per agent step.
2. Concurrency: 200 independent nodes in one project at concurrency 200; 3 model+tool rounds =
   3 model calls (100 ms simulated latency each) + 2 tool calls; ideal 3 x 100 ms = 0.3 s.
   Target: < 1.3 s.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from tempfile import TemporaryDirectory

from _table import print_table
from _temporal import Env, embedded_server, recorded_results, run_project, worker_env
from soma.models.protocol import Model
from soma.models.synthetic import SyntheticModel, tool_named
from soma.settings import Settings
from soma.specs.library import Library
from soma.specs.models import Plan, PlanNode
from soma.tools import ToolArgs, ToolContext, ToolRegistry, ToolResult, tool

LAYERS, WIDTH = 10, 5
WIDE_NODES = 200
LATENCY_S = 0.1
FAST, SLOW = "bench-fast", "bench-slow"

PERSONA = """\
kind: persona
name: bench-agent
version: 1.0.0
role: benchmark agent
goal: Call the no-op tool when asked, then answer.
tools: ["bench.*"]
"""

CAPSULE = """\
kind: capsule
name: bench-step
version: 1.0.0
description: A cheap capsule for orchestration benchmarks.
persona: bench-agent
inputs:
  type: object
  properties:
    n: {type: integer}
outputs:
  type: object
  properties:
    answer: {type: string}
  required: [answer]
tools: [bench.noop]
instructions: Call bench.noop, then answer.
review: none
budget:
  max_steps: 8
"""


class NoopArgs(ToolArgs):
    pass


@tool("bench.noop", "Do nothing.", NoopArgs, quick=True)
async def noop(args: NoopArgs, ctx: ToolContext) -> ToolResult:
    return ToolResult(ok=True, output="ok")


def write_library(root: Path) -> Library:
    (root / "personas").mkdir(parents=True)
    (root / "capsules" / "bench-step").mkdir(parents=True)
    (root / "personas" / "bench-agent.yaml").write_text(PERSONA)
    (root / "capsules" / "bench-step" / "capsule.yaml").write_text(CAPSULE)
    return Library.from_dirs(root, builtin=True)


def layered_plan(layers: int, width: int) -> Plan:
    nodes: list[PlanNode] = []
    previous: list[str] = []
    for layer in range(layers):
        ids = [f"l{layer}n{i}" for i in range(width)]
        nodes += [
            PlanNode(id=i, capsule="bench-step", inputs={"n": layer}, depends_on=previous)
            for i in ids
        ]
        previous = ids
    return Plan(goal="orchestration overhead", nodes=nodes)


def wide_plan(count: int) -> Plan:
    nodes = [PlanNode(id=f"n{i}", capsule="bench-step", inputs={"n": i}) for i in range(count)]
    return Plan(goal="orchestration concurrency", nodes=nodes)


def models() -> dict[str, Model]:
    return {
        FAST: SyntheticModel(pick_tool=tool_named("bench.noop", {}, turns=1)),
        SLOW: SyntheticModel(latency_s=LATENCY_S, pick_tool=tool_named("bench.noop", {}, turns=2)),
    }


async def overhead(env: Env) -> list[object]:
    await run_project(env, layered_plan(1, 2), model=FAST, concurrency=WIDTH)  # warm-up
    plan = layered_plan(LAYERS, WIDTH)
    params, _, elapsed = await run_project(env, plan, model=FAST, concurrency=WIDTH)
    nodes = len(plan.nodes)
    steps = sum(n.steps for n in env.store.list_nodes(params.project_id))
    recorded = recorded_results(env.store, params.project_id)
    # Every activity but prepare_capsule (a pure read) records its result under its key;
    # "event" rows are progress events written by model and tool activities, not activities.
    activities = sum(n for kind, n in recorded.items() if kind != "event") + nodes
    return [
        f"{LAYERS}x{WIDTH} DAG",
        round(elapsed, 2),
        round(1e3 * elapsed / nodes, 1),
        activities,
        round(1e3 * elapsed / activities, 2),
        steps,
        round(1e3 * elapsed / steps, 2),
        "≤ 5",
        "1.2 / 6",
    ]


async def concurrency(env: Env) -> list[object]:
    await run_project(env, wide_plan(4), model=SLOW, concurrency=4)  # warm-up
    ideal = 3 * LATENCY_S
    _, state, elapsed = await run_project(
        env, wide_plan(WIDE_NODES), model=SLOW, concurrency=WIDE_NODES
    )
    assert all(n.status == "succeeded" for n in state.nodes.values())
    return [
        f"{WIDE_NODES} runs at once",
        round(ideal, 2),
        round(elapsed, 2),
        f"{100 * ideal / elapsed:.1f} %",
        "< 1.3 s",
        "LangGraph 1.3 s (23 %), CrewAI 8.7 s (3.5 %)",
    ]


async def measure(
    home: Path, address: str, settings: Settings, max_activities: int
) -> tuple[list[object], list[object]]:
    registry = ToolRegistry([noop])
    library = write_library(home / "library")
    table = models()
    async with worker_env(
        settings,
        address,
        library=library,
        registry=registry,
        models=table.__getitem__,
        max_concurrent_activities=max_activities,
    ) as env:
        first = await overhead(env)
        second = await concurrency(env)
    return first, second


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-activities", type=int, default=1000)
    args = parser.parse_args()
    started = time.perf_counter()
    with TemporaryDirectory(prefix="soma-bench-") as tmp:
        home = Path(tmp)
        with embedded_server(home) as (settings, address):
            first, second = asyncio.run(measure(home, address, settings, args.max_activities))
    print_table(
        "Orchestration overhead: embedded Temporal, 2 model calls (0 ms) + 1 no-op tool call "
        "per node; a step is one model call; peers ms/step: LangGraph+SQLite / CrewAI",
        [
            "workload",
            "wall s",
            "ms/node",
            "acts",
            "ms/act",
            "steps",
            "ms/step",
            "target",
            "peers",
        ],
        [first],
    )
    print_table(
        "Orchestration concurrency: embedded Temporal, 3 model calls (100 ms) + 2 no-op tool "
        "calls per run",
        ["workload", "ideal s", "wall s", "% of ideal", "target", "peers"],
        [second],
    )
    print(f"(bench total {time.perf_counter() - started:.1f} s incl. server start)")


if __name__ == "__main__":
    main()
