"""A Soma worker in its own process, for crash-recovery tests that SIGKILL it mid-project.

Run from the repository root::

    python -m tests.orchestrator.crash_worker --address A --task-queue Q --home H --log L \
        [--hold-file F]

Every observable side effect goes to the log file ``L``, one line each, so a test can count them
after the project ends:

* the ``test.side_effect`` tool sleeps ``sleep_s`` (the activity wrapper heartbeats meanwhile),
  then appends ``<label>`` (``a:t1``...);
* the model double appends ``model <node>:<step>`` for every real call, asks for
  ``test.side_effect`` on turns 1..4 (labels ``<node>:t1``..``<node>:t4``), then answers.

With ``--hold-file`` the worker freezes at three chosen points and writes a line to that file
at each, so the test can kill it at a moment it knows instead of one it guesses:

* node ``a``: just after the result of its ``t2`` tool call was recorded in the store and before
  Temporal hears of it -- the window the store's idempotency records exist for;
* node ``b``: inside its ``t2`` tool call, before the side effect -- an in-flight call that a
  second worker must run (once);
* node ``c``: just after the result of its second model call was recorded, like ``a``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from soma.models.protocol import Model
from soma.models.scripted import count_usage, stream_chunks
from soma.models.types import Message, ModelRequest, ModelResponse, StreamChunk, ToolCall
from soma.orchestrator.server import connect
from soma.orchestrator.worker import build_worker
from soma.settings import Settings
from soma.specs.library import Library
from soma.store import Store
from soma.tools import ToolArgs, ToolContext, ToolRegistry, ToolResult, default_registry, tool

CAPSULE = "side-effects"
TOOL = "test.side_effect"
TURNS = 4
SLEEP_S = 0.5
HOLD_RECORDED = "a:t2"  # freeze after this call's result is in the store
HOLD_RUNNING = "b:t2"  # freeze inside this call, before its side effect
HOLD_MODEL = ("c", 2)  # freeze after this node's model call (step) is in the store
HOLD_S = 3600.0

PERSONA_YAML = """\
kind: persona
name: tester
version: 1.0.0
role: test engineer
goal: Exercise side effects exactly once.
tools: ["test.*"]
"""

CAPSULE_YAML = f"""\
kind: capsule
name: {CAPSULE}
version: 1.0.0
description: Calls a side-effecting test tool several times, then reports.
persona: tester
inputs:
  type: object
  properties:
    node: {{type: string}}
  required: [node]
outputs:
  type: object
  properties:
    node: {{type: string}}
    calls: {{type: integer}}
  required: [node, calls]
tools: [{TOOL}]
instructions: "Run the side-effect drill for node [[{{{{ node }}}}]]."
review: none
"""

_NODE_RE = re.compile(r"\[\[([a-z0-9_-]+)\]\]")


def write_library(home: Path) -> Path:
    """Write the test's persona and capsule under ``home/library`` and return that directory."""
    root = home / "library"
    (root / "personas").mkdir(parents=True, exist_ok=True)
    (root / "capsules" / CAPSULE).mkdir(parents=True, exist_ok=True)
    (root / "personas" / "tester.yaml").write_text(PERSONA_YAML, encoding="utf-8")
    (root / "capsules" / CAPSULE / "capsule.yaml").write_text(CAPSULE_YAML, encoding="utf-8")
    return root


def load_library(home: Path) -> Library:
    return Library.from_dirs(home / "library", builtin=True)


def append_line(path: Path, line: str) -> None:
    with path.open("a", encoding="utf-8") as file:
        file.write(line + "\n")
        file.flush()


class SideEffectArgs(ToolArgs):
    label: str
    sleep_s: float = SLEEP_S


def side_effect_tool(log: Path, hold: Path | None) -> Any:
    @tool(TOOL, "Sleep, then append the label to the side-effect log.", SideEffectArgs)
    async def side_effect(args: SideEffectArgs, ctx: ToolContext) -> ToolResult:
        if hold is not None and args.label == HOLD_RUNNING:
            append_line(hold, f"running {args.label}")
            await asyncio.sleep(HOLD_S)  # the activity keeps heartbeating: only a kill ends this
        await asyncio.sleep(args.sleep_s)
        append_line(log, args.label)
        return ToolResult(ok=True, output=f"did {args.label}")

    return side_effect


class HoldingStore(Store):
    """Freezes the worker right after a chosen tool or model result has been recorded."""

    hold: Path | None = None

    def remember_result(
        self, key: str, kind: str, project_id: str | None, result: dict[str, Any], **kw: Any
    ) -> None:
        super().remember_result(key, kind, project_id, result, **kw)
        if self.hold is None:
            return
        node, step = HOLD_MODEL
        if kind == "tool" and f"did {HOLD_RECORDED}" in str(result.get("output")):
            marker = f"recorded {HOLD_RECORDED}"
        elif kind == "model" and key.endswith(f"/{node}/a1/r0/model/{step}"):
            marker = f"recorded model {node}:{step}"
        else:
            return
        append_line(self.hold, marker)
        time.sleep(HOLD_S)  # in the activity's worker thread: Temporal never hears back


class DrillModel:
    """Asks for the side-effect tool ``turns`` times, then answers; logs every real call."""

    def __init__(self, log: Path, *, turns: int = TURNS, sleep_s: float = SLEEP_S) -> None:
        self.log = log
        self.turns = turns
        self.sleep_s = sleep_s

    @property
    def name(self) -> str:
        return "drill"

    async def complete(self, request: ModelRequest) -> ModelResponse:
        prompt = next((m.content or "" for m in request.messages if m.role == "user"), "")
        match = _NODE_RE.search(prompt)
        node = match.group(1) if match else "?"
        turn = sum(1 for m in request.messages if m.role == "assistant")
        append_line(self.log, f"model {node}:{turn + 1}")
        if turn < self.turns and request.tools:
            call = ToolCall(
                id=f"call_{turn + 1}",
                name=TOOL,
                arguments={"label": f"{node}:t{turn + 1}", "sleep_s": self.sleep_s},
            )
            message = Message.assistant(tool_calls=[call])
        else:
            message = Message.assistant(json.dumps({"node": node, "calls": turn}))
        return ModelResponse(
            message=message,
            usage=count_usage(request, message),
            model=self.name,
            finish_reason="tool_calls" if message.tool_calls else "stop",
        )

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamChunk]:
        response = await self.complete(request)
        for chunk in stream_chunks(response):
            yield chunk


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", required=True)
    parser.add_argument("--task-queue", required=True)
    parser.add_argument("--home", required=True, type=Path)
    parser.add_argument("--log", required=True, type=Path)
    parser.add_argument("--hold-file", type=Path, default=None)
    args = parser.parse_args(argv)

    settings = Settings(
        home=args.home,
        temporal_address=args.address,
        temporal_namespace="default",
        task_queue=args.task_queue,
        sandbox="subprocess",
        database_url=None,
    )
    store = HoldingStore.open(settings.store_url)
    assert isinstance(store, HoldingStore)
    store.hold = args.hold_file
    registry: ToolRegistry = default_registry()
    registry.register(side_effect_tool(args.log, args.hold_file))
    model = DrillModel(args.log)

    def models(spec: str) -> Model:
        return model

    client = await connect(settings)
    worker = build_worker(
        client,
        settings,
        store=store,
        library=load_library(args.home),
        registry=registry,
        models=models,
    )
    await worker.run()


if __name__ == "__main__":
    asyncio.run(main())
