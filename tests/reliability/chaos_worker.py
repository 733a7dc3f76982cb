"""A Soma worker in its own process, for the chaos test that SIGKILLs it at random points.

Run from the repository root::

    python -m tests.reliability.chaos_worker --address A --task-queue Q --home H --log L \
        --recorded R [--database-url URL]

It reuses ``crash_worker``'s capsule and side-effect tool; the model double here is smaller
(one tool call, then the answer). Every side effect goes to ``L``, one line each: the tool
appends ``<label>:t1`` and the model ``model <label>:<step>``, where ``<label>`` is
``<project>-<node>``. Every result the store records under an idempotency key is also
appended to ``R`` as the same line, once the store's transaction has committed, so the test
can pick kill moments where no completed side effect is still unrecorded (the at-least-once
window between doing an effect and recording it, which no store can close).
"""

from __future__ import annotations

import argparse
import asyncio
import re
from pathlib import Path
from typing import Any

from soma.models.protocol import Model
from soma.orchestrator.server import connect
from soma.orchestrator.worker import build_worker
from soma.settings import Settings
from soma.store import Store
from soma.tools import ToolRegistry, default_registry
from tests.orchestrator.crash_worker import (
    CAPSULE,
    DrillModel,
    append_line,
    load_library,
    side_effect_tool,
    write_library,
)

__all__ = ["CAPSULE", "TOOL_SLEEP_S", "write_library"]

TOOL_SLEEP_S = 0.2
_MODEL_KEY_RE = re.compile(r"([^/]+)/([^/]+)/a\d+/r\d+/model/(\d+)$")
_TOOL_OUTPUT_RE = re.compile(r"did ([a-z0-9_-]+:t\d+)")


class RecordingStore(Store):
    """Appends a line per newly recorded model or tool result, after the commit."""

    recorded: Path | None = None

    def remember_result(
        self, key: str, kind: str, project_id: str | None, result: dict[str, Any], **kw: Any
    ) -> None:
        super().remember_result(key, kind, project_id, result, **kw)
        if self.recorded is None:
            return
        if kind == "tool":
            found = _TOOL_OUTPUT_RE.search(str(result.get("output")))
            if found:
                append_line(self.recorded, f"recorded {found.group(1)}")
                return
        elif kind == "model":
            match = _MODEL_KEY_RE.search(key)
            if match:
                project, node, step = match.groups()
                append_line(self.recorded, f"recorded model {project}-{node}:{step}")
                return
        if kind in ("tool", "model"):
            append_line(self.recorded, f"unmatched {kind} {key} {result}")


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--address", required=True)
    parser.add_argument("--task-queue", required=True)
    parser.add_argument("--home", required=True, type=Path)
    parser.add_argument("--log", required=True, type=Path)
    parser.add_argument("--recorded", required=True, type=Path)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args(argv)

    settings = Settings(
        home=args.home,
        temporal_address=args.address,
        temporal_namespace="default",
        task_queue=args.task_queue,
        sandbox="subprocess",
        database_url=args.database_url,
    )
    store = RecordingStore.open(settings.store_url)
    assert isinstance(store, RecordingStore)
    store.recorded = args.recorded
    registry: ToolRegistry = default_registry()
    registry.register(side_effect_tool(args.log, None))
    model = DrillModel(args.log, turns=1, sleep_s=TOOL_SLEEP_S)

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
    print("worker ready", flush=True)
    await worker.run()


if __name__ == "__main__":
    asyncio.run(main())
