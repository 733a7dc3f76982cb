"""Running a capsule's evals with memory in the loop: lessons recalled before each run, lessons
kept from each failed check after it. Run the evals again and again and the success rate should
rise, which `tests/memory/test_improve.py` and `bench/lessons.py` measure."""

from __future__ import annotations

import uuid
from pathlib import Path

from soma.agents.evals import EvalResult, run_eval
from soma.memory.gateway import Memory
from soma.memory.lessons import RunOutcome, record_lessons
from soma.memory.recall import recall_for_run
from soma.models.protocol import Model
from soma.specs.models import Capsule, Eval, Persona
from soma.tools.registry import ToolRegistry
from soma.tools.sandbox import Sandbox


async def eval_and_learn(
    memory: Memory,
    tenant_id: str,
    capsule: Capsule,
    persona: Persona,
    case: Eval,
    *,
    model: Model,
    registry: ToolRegistry,
    sandbox: Sandbox,
    workspaces_root: Path,
) -> EvalResult:
    recalled = recall_for_run(memory, tenant_id, capsule, persona.name, case.input, None)
    result = await run_eval(
        capsule,
        persona,
        case,
        model=model,
        registry=registry,
        sandbox=sandbox,
        workspaces_root=workspaces_root,
        recalled=recalled,
    )
    failed = [
        f"{c.field} {c.detail}" if c.field else c.detail for c in result.checks if not c.passed
    ]
    outcome = RunOutcome(
        capsule=capsule.name,
        persona=persona.name,
        ok=result.run.ok,
        error=result.run.error,
        failed_checks=failed,
    )
    record_lessons(
        memory, tenant_id, outcome, key=f"eval/{capsule.name}/{case.name}/{uuid.uuid4().hex[:8]}"
    )
    return result
