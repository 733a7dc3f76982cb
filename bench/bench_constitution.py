"""Constitution check latency: the default constitution plus 1,000 generated rules.

Every tool call, model output and agent message passes ``Constitution.check`` before it
happens, so the check must stay far below a tool's or a model's own latency even with a large
tenant policy. The generated rules mix exact tool names and patterns, subject scopes and every
condition kind; the actions mix safe and dangerous shell commands, file writes, pushes, calls
of generated tools and model outputs with and without secrets. Target: p99 < 100 µs.
"""

from __future__ import annotations

import random
import time
from typing import Any

from _table import print_table
from soma.constitution import Action, Constitution, Subject
from soma.specs.library import Library
from soma.specs.models import Constitution as ConstitutionSpec

GENERATED_RULES = 1_000
TOOLS = 100
CHECKS = 50_000
PERSONAS = ("developer", "code-reviewer", "tester", "writer", "architect")


def generated_layer(count: int = GENERATED_RULES, seed: int = 7) -> ConstitutionSpec:
    """A tenant layer of ``count`` restricting rules (stricter layers may not allow)."""
    rng = random.Random(seed)
    rules: list[dict[str, Any]] = []
    for index in range(count):
        effect = rng.choice(["deny", "require_approval", "redact"])
        tool_number = rng.randrange(TOOLS)
        shape = rng.random()
        action: dict[str, Any]
        if shape < 0.6:
            action = {"tool": f"gen.tool{tool_number}"}
        elif shape < 0.8:
            action = {"tool": f"gen.tool{tool_number}*"}  # gen.tool1* covers tool1, tool10...
        elif shape < 0.9:
            action = {"tool": "shell.exec"}
        elif shape < 0.95:
            action = {"kind": "model_output"}
        else:
            action = {"kind": "message"}
        when: dict[str, Any] = {}
        kind = action.get("kind", "tool_call")
        condition = rng.randrange(7) if kind == "tool_call" else 6
        if condition == 0:
            when["command_matches"] = f"*forbidden-{index}*"
        elif condition == 1:
            when["arguments_match"] = {"target": f"^prod-{index}$"}
        elif condition == 2:
            when["url_host_not_in"] = ["example.com", "*.example.org"]
        elif condition == 3:
            when["amount_over"] = rng.randrange(100, 10_000)
        elif condition == 4:
            when["path_matches"] = f"secret-{index}/*"
        elif condition == 5:
            when["path_outside_workspace"] = True
        else:
            when["text_matches"] = f"code-word-{index}\\b"
        rule: dict[str, Any] = {
            "id": f"gen-rule-{index}",
            "effect": effect,
            "reason": f"generated rule {index}",
            "action": action,
            "when": when,
        }
        if rng.random() < 0.3:
            rule["subject"] = {"persona": rng.choice(PERSONAS)}
        rules.append(rule)
    return ConstitutionSpec.model_validate(
        {"name": "bench-tenant", "version": "1.0.0", "rules": rules}
    )


def actions(seed: int = 11) -> list[tuple[Subject, Action]]:
    """A repeating mix of realistic actions."""
    rng = random.Random(seed)
    mix: list[tuple[Subject, Action]] = []
    for _ in range(500):
        subject = Subject(persona=rng.choice(PERSONAS), role="engineer", capsule="implement")
        pick = rng.random()
        if pick < 0.25:
            command = rng.choice(
                ["pytest -q tests", "ls -la src", "rm -rf /", "git push origin main", "make lint"]
            )
            action = Action(kind="tool_call", tool="shell.exec", arguments={"command": command})
        elif pick < 0.4:
            action = Action(
                kind="tool_call",
                tool="fs.write",
                arguments={"path": rng.choice(["src/app.py", "../etc/passwd"]), "content": "x=1\n"},
            )
        elif pick < 0.45:
            action = Action(kind="tool_call", tool="git.push", arguments={})
        elif pick < 0.8:
            action = Action(
                kind="tool_call",
                tool=f"gen.tool{rng.randrange(TOOLS)}",
                arguments={
                    "url": rng.choice(["https://example.com/a", "https://evil.test/x"]),
                    "amount": rng.randrange(0, 20_000),
                    "target": f"prod-{rng.randrange(1000)}",
                    "path": f"secret-{rng.randrange(1000)}/key.txt",
                },
            )
        else:
            text = rng.choice(
                [
                    "All 42 tests pass; the parser now handles empty input.",
                    "Deployed with key AKIAIOSFODNN7EXAMPLE, ping ops@example.com",
                    "Review: the retry loop in client.py never backs off (code-word-17).",
                ]
            )
            action = Action(kind=rng.choice(["model_output", "message"]), text=text)
        mix.append((subject, action))
    return mix


def measure(engine: Constitution, mix: list[tuple[Subject, Action]]) -> tuple[float, list[float]]:
    for subject, action in mix:  # warm the candidate cache, as a long-running worker would
        engine.check(subject, action)
    latencies: list[float] = []
    clock = time.perf_counter
    start = clock()
    for index in range(CHECKS):
        subject, action = mix[index % len(mix)]
        before = clock()
        engine.check(subject, action)
        latencies.append(clock() - before)
    return clock() - start, latencies


def percentile(sorted_values: list[float], fraction: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))]


def main() -> None:
    default = Library.builtin().constitution("default")
    mix = actions()
    rows = []
    for label, engine in (
        ("default", Constitution.compile(default)),
        (f"default + {GENERATED_RULES:,} rules", Constitution.compile(default, generated_layer())),
    ):
        elapsed, latencies = measure(engine, mix)
        latencies.sort()
        rows.append(
            (
                label,
                len(engine.rules),
                CHECKS,
                CHECKS / elapsed,
                1e6 * percentile(latencies, 0.50),
                1e6 * percentile(latencies, 0.99),
                "p99 < 100 µs",
            )
        )
    print_table(
        "Constitution.check (mixed tool calls, outputs and messages)",
        ["constitution", "rules", "checks", "decisions/s", "p50 µs", "p99 µs", "target"],
        rows,
    )


if __name__ == "__main__":
    main()
