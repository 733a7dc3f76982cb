"""Benchmark the embedded local model(s): load time, generation speed, structured-output validity.

    .venv/bin/python bench/bench_local_model.py [--models smollm2-135m gemma3-270m] [--runs 3]

For each model it prints: load time; tokens/s through our provider (``LocalModel.complete``) and
tokens/s calling ``llama_cpp.Llama.create_chat_completion`` directly on the same loaded weights
with the same messages (target: ours >= 90 % of direct); the valid-JSON rate over 10 constrained
prompts (5 with an output schema, 5 with tools); and the mean seconds per constrained call.
Greedy decoding (temperature 0) so both paths generate the same tokens; speeds are the best of
``--runs`` alternated runs (the cores may be shared with other work).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from typing import Any

import jsonschema

from soma.errors import ModelError, ModelUnavailable
from soma.models.local import KNOWN_LOCAL_MODELS, LocalModel, clear_cache, load_local_model
from soma.models.types import Message, ModelRequest, OutputSchema, ToolSpec
from soma.settings import Settings

SPEED_PROMPT = "Write a short story about a robot who learns to paint. Make it about 150 words."
SPEED_TOKENS = 128

SPEC_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"spec": {"type": "string"}},
    "required": ["spec"],
}
SPEC_PROMPTS = [
    "Write a one-sentence spec for a command-line todo app.",
    "Write a one-sentence spec for a function that reverses a string.",
    "Write a one-sentence spec for a REST endpoint that returns the current time.",
    "Write a one-sentence spec for a script that counts words in a file.",
    "Write a one-sentence spec for a password strength checker.",
]

TOOLS = [
    ToolSpec(
        name="read_file",
        description="Read a text file from the workspace.",
        parameters={
            "type": "object",
            "properties": {"path": {"type": "string"}},
            "required": ["path"],
        },
    ),
    ToolSpec(
        name="run_shell",
        description="Run a shell command in the workspace and return its output.",
        parameters={
            "type": "object",
            "properties": {"command": {"type": "string"}},
            "required": ["command"],
        },
    ),
]
# (prompt, the sensible first move: a tool name or "final")
TOOL_PROMPTS = [
    ("What is in the file README.md?", "read_file"),
    ("List the files in the current directory.", "run_shell"),
    ("What is 2 + 2?", "final"),
    ("Show me the contents of setup.py.", "read_file"),
    ("Say hello.", "final"),
]


def _speed_request() -> ModelRequest:
    return ModelRequest(
        messages=[Message.user(SPEED_PROMPT)], temperature=0.0, max_tokens=SPEED_TOKENS
    )


async def _ours_tps(model: LocalModel) -> tuple[float, int]:
    started = time.perf_counter()
    response = await model.complete(_speed_request())
    elapsed = time.perf_counter() - started
    return response.usage.output_tokens / elapsed, response.usage.output_tokens


def _direct_tps(model: LocalModel) -> tuple[float, int]:
    """The same prompt text, sampling settings and stops, straight into llama.cpp."""
    runtime = model._runtime
    formatted = runtime.formatter(messages=[{"role": "user", "content": SPEED_PROMPT}])
    prompt = runtime.llama.tokenize(formatted.prompt.encode(), add_bos=False, special=True)
    started = time.perf_counter()
    out: Any = runtime.llama.create_completion(
        prompt=prompt,
        max_tokens=SPEED_TOKENS,
        temperature=0.0,
        seed=model.seed,
        repeat_penalty=model.repeat_penalty,
        stop=[runtime.eos_token, "<end_of_turn>", "<|im_end|>"],
    )
    elapsed = time.perf_counter() - started
    tokens = int(out["usage"]["completion_tokens"])
    return tokens / elapsed, tokens


def _tool_call_ok(response: Any) -> bool:
    message = response.message
    if message.tool_calls:
        call = message.tool_calls[0]
        spec = next((t for t in TOOLS if t.name == call.name), None)
        if spec is None:
            return False
        try:
            jsonschema.validate(call.arguments, spec.parameters)
        except jsonschema.ValidationError:
            return False
        return True
    return isinstance(message.content, str)


async def _json_rate(model: LocalModel, verbose: bool) -> tuple[int, int, int, float, list[str]]:
    ok = 0
    sensible = 0
    total = 0
    seconds: list[float] = []
    kinds: list[str] = []
    for prompt in SPEC_PROMPTS:
        total += 1
        started = time.perf_counter()
        try:
            response = await model.complete(
                ModelRequest(
                    messages=[Message.user(prompt)],
                    output=OutputSchema(json_schema=SPEC_SCHEMA),
                    max_tokens=128,
                )
            )
            jsonschema.validate(json.loads(response.message.content or ""), SPEC_SCHEMA)
            ok += 1
            kinds.append("json")
            if verbose:
                print(f"  {prompt!r}: {response.message.content}", file=sys.stderr)
        except (ModelError, ValueError, jsonschema.ValidationError) as exc:
            kinds.append(f"bad:{type(exc).__name__}")
            if verbose:
                print(f"  {prompt!r}: {exc}", file=sys.stderr)
        seconds.append(time.perf_counter() - started)
    for prompt, expected in TOOL_PROMPTS:
        total += 1
        started = time.perf_counter()
        try:
            response = await model.complete(
                ModelRequest(
                    messages=[
                        Message.system("You are a helpful coding agent."),
                        Message.user(prompt),
                    ],
                    tools=TOOLS,
                    max_tokens=128,
                )
            )
            good = _tool_call_ok(response)
            ok += good
            calls = response.message.tool_calls
            kinds.append(calls[0].name if calls else "final" if good else "bad")
            sensible += good and kinds[-1] == expected
        except ModelError as exc:
            kinds.append(f"bad:{type(exc).__name__}")
            if verbose:
                print(f"  {prompt!r}: {exc}", file=sys.stderr)
        seconds.append(time.perf_counter() - started)
    return ok, sensible, total, statistics.mean(seconds), kinds


async def bench(name: str, runs: int, settings: Settings, verbose: bool) -> dict[str, Any]:
    clear_cache()
    started = time.perf_counter()
    model = load_local_model(settings, name)
    load_s = time.perf_counter() - started
    # Warm-up (first call pays for lazy allocations), then alternate the two paths.
    await _ours_tps(model)
    ours: list[float] = []
    direct: list[float] = []
    tokens = (0, 0)
    for _ in range(runs):
        o, ot = await _ours_tps(model)
        d, dt = _direct_tps(model)
        ours.append(o)
        direct.append(d)
        tokens = (ot, dt)
    ok, sensible, total, per_call, kinds = await _json_rate(model, verbose)
    return {
        "model": name,
        "load_s": load_s,
        "llama_load_s": model.load_seconds,
        # Best of N: the 2 cores are shared, so the fastest run is the least disturbed one.
        "ours_tps": max(ours),
        "direct_tps": max(direct),
        "tokens": tokens,
        "json_ok": ok,
        "json_total": total,
        "sensible": sensible,
        "s_per_json_call": per_call,
        "kinds": kinds,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--models", nargs="+", default=list(KNOWN_LOCAL_MODELS))
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("-v", "--verbose", action="store_true", help="print each failure")
    args = parser.parse_args()
    settings = Settings()
    rows = []
    for name in args.models:
        try:
            rows.append(asyncio.run(bench(name, args.runs, settings, args.verbose)))
        except ModelUnavailable as exc:
            print(f"{name}: unavailable: {exc}", file=sys.stderr)
    header = (
        f"{'model':<16} {'load s':>7} {'ours tok/s':>10} {'direct tok/s':>12} {'ours/direct':>11} "
        f"{'valid JSON':>10} {'sensible tool use':>17} {'s/JSON call':>11}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        ratio = r["ours_tps"] / r["direct_tps"] if r["direct_tps"] else 0.0
        print(
            f"{r['model']:<16} {r['load_s']:>7.2f} {r['ours_tps']:>10.1f} {r['direct_tps']:>12.1f} "
            f"{ratio:>10.0%} {r['json_ok']:>5}/{r['json_total']:<4} {r['sensible']:>15}/5 "
            f"{r['s_per_json_call']:>11.2f}"
        )
    for r in rows:
        print(
            f"{r['model']}: tokens generated (ours, direct) = {r['tokens']}; "
            f"constrained answers: {', '.join(r['kinds'])}"
        )
    return 0 if rows else 1


if __name__ == "__main__":
    raise SystemExit(main())
