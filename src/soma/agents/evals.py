"""Capsule evals: run a capsule on its eval inputs and apply the machine checks.

Evals are how a capsule proves it works with a given model and persona; tests use them with a
scripted model and persona synthesis scores candidates with them, so checks are plain functions
of the run's output and workspace, with a one-line explanation each.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from pydantic import BaseModel

from soma.agents.capsule_runner import CapsuleRunResult, run_capsule
from soma.errors import WorkspaceError
from soma.models.protocol import Model
from soma.specs.models import Capsule, Eval, EvalCheck, Persona
from soma.tools import ToolRegistry
from soma.tools.sandbox import Sandbox
from soma.workspace import Workspace


class CheckResult(BaseModel):
    kind: str
    field: str | None = None
    passed: bool
    detail: str


class EvalResult(BaseModel):
    capsule: str
    eval: str
    passed: bool
    checks: list[CheckResult]
    run: CapsuleRunResult
    workspace: str

    @property
    def score(self) -> float:
        return sum(c.passed for c in self.checks) / len(self.checks) if self.checks else 0.0


def apply_check(
    check: EvalCheck, capsule: Capsule, result: CapsuleRunResult, workspace: Workspace
) -> CheckResult:
    output = result.output if isinstance(result.output, dict) else {}
    if check.kind == "file_exists":
        return _file_exists(check, workspace)
    if not result.ok:
        return CheckResult(kind=check.kind, field=check.field, passed=False, detail="run failed")
    if check.kind == "schema":
        error = next(iter(Draft202012Validator(capsule.outputs).iter_errors(result.output)), None)
        detail = "output matches the schema" if error is None else error.message
        return CheckResult(kind="schema", passed=error is None, detail=detail)
    value = _text(output.get(check.field or ""))
    if check.kind == "contains":
        passed = str(check.value).lower() in value.lower()
        detail = f"{'contains' if passed else 'lacks'} {check.value!r}"
    elif check.kind == "regex":
        passed = re.search(str(check.value), value) is not None
        detail = f"{'matches' if passed else 'does not match'} /{check.value}/"
    else:
        passed = len(value) >= int(check.value)
        detail = f"{len(value)} characters, need {check.value}"
    return CheckResult(kind=check.kind, field=check.field, passed=passed, detail=detail)


def _file_exists(check: EvalCheck, workspace: Workspace) -> CheckResult:
    try:
        passed = workspace.resolve(str(check.value)).is_file()
    except WorkspaceError as exc:
        return CheckResult(kind="file_exists", passed=False, detail=str(exc))
    detail = f"{check.value} {'exists' if passed else 'is missing'}"
    return CheckResult(kind="file_exists", passed=passed, detail=detail)


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


async def run_eval(
    capsule: Capsule,
    persona: Persona,
    case: Eval,
    *,
    model: Model,
    registry: ToolRegistry,
    sandbox: Sandbox,
    workspaces_root: Path,
    recalled: Sequence[tuple[str, str]] = (),
) -> EvalResult:
    """Run one eval in a fresh workspace, so evals never see each other's files."""
    workspace = Workspace.open(
        workspaces_root, f"eval-{capsule.name}-{case.name}-{uuid.uuid4().hex[:6]}"
    )
    run = await run_capsule(
        capsule,
        persona,
        case.input,
        model=model,
        registry=registry,
        workspace=workspace,
        sandbox=sandbox,
        recalled=recalled,
    )
    checks = [apply_check(check, capsule, run, workspace) for check in case.checks]
    return EvalResult(
        capsule=capsule.ref,
        eval=case.name,
        passed=all(c.passed for c in checks),
        checks=checks,
        run=run,
        workspace=str(workspace.path),
    )
