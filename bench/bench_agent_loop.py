"""Agent-loop overhead per step: zero-latency scripted model, one tool call every step.

What is measured is everything Soma adds around a model and a tool: building the request,
validating tool arguments against their JSON Schema, dispatching through the registry, feeding
results back and validating the final answer against the output schema. Target: >= 5,000 steps/s.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from tempfile import TemporaryDirectory

from _table import print_table
from soma.agents.driver import drive
from soma.agents.loop import AgentLoop, AgentTask, ToolOutcome
from soma.models.function import FunctionModel
from soma.models.types import Message, ModelRequest, ToolCall
from soma.tools import ToolArgs, ToolContext, ToolRegistry, ToolResult, tool
from soma.tools.sandbox import make_sandbox
from soma.workspace import AgentIdentity, Workspace

STEPS_PER_RUN = 20
RUNS = 250
OUTPUT_SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}


class EchoArgs(ToolArgs):
    text: str


@tool("bench.echo", "Echo the text back.", EchoArgs)
async def echo(args: EchoArgs, ctx: ToolContext) -> ToolResult:
    return ToolResult(ok=True, output=args.text)


def scripted_reply(request: ModelRequest) -> Message:
    turn = sum(1 for m in request.messages if m.role == "assistant")
    if turn + 1 < STEPS_PER_RUN:
        call = ToolCall(id=f"c{turn}", name="bench.echo", arguments={"text": f"step {turn}"})
        return Message.assistant(tool_calls=[call])
    return Message.assistant(json.dumps({"n": turn}))


async def one_run(index: int, registry: ToolRegistry, context: ToolContext) -> int:
    task = AgentTask(
        run_id=f"bench-{index}",
        system_prompt="bench",
        user_prompt="bench",
        tools=tuple(registry.specs(["bench.*"])),
        output_schema=OUTPUT_SCHEMA,
        max_steps=STEPS_PER_RUN,
    )

    async def execute(call: ToolCall) -> ToolOutcome:
        result = await registry.call(call.name, call.arguments, context)
        return ToolOutcome(call_id=call.id, name=call.name, ok=result.ok, output=result.output)

    result = await drive(AgentLoop(task), FunctionModel(scripted_reply), execute)
    assert result.ok, result.error
    return result.steps


async def measure(root: Path) -> tuple[int, float]:
    registry = ToolRegistry([echo])
    workspace = Workspace.open(root, "bench")
    context = ToolContext(workspace, make_sandbox("auto"), AgentIdentity(persona="bench"))
    await one_run(-1, registry, context)
    start = time.perf_counter()
    steps = 0
    for index in range(RUNS):
        steps += await one_run(index, registry, context)
    return steps, time.perf_counter() - start


def main() -> None:
    with TemporaryDirectory() as tmp:
        steps, elapsed = asyncio.run(measure(Path(tmp)))
    print_table(
        "Agent loop overhead (scripted zero-latency model, tool call every step)",
        ["workload", "steps", "seconds", "steps/s", "µs/step", "target"],
        [
            (
                f"{RUNS} runs x {STEPS_PER_RUN} steps",
                steps,
                round(elapsed, 3),
                steps / elapsed,
                1e6 * elapsed / steps,
                "≥ 5,000 steps/s",
            )
        ],
    )


if __name__ == "__main__":
    main()
