"""Score a candidate persona: run every eval of the capsule with it and count what passes.

A candidate's score is the fraction of eval cases whose checks all pass; between equal scores
the candidate that used fewer tokens ranks first (it reached the same result more cheaply). Each
case runs in a fresh workspace through :func:`soma.agents.evals.run_eval`, exactly as
``soma capsule eval`` runs it, so a synthesized persona's score means what an eval run means.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from soma.agents.evals import run_eval
from soma.errors import SomaError
from soma.models.protocol import Model
from soma.specs.models import Capsule, ModelPreference, Persona
from soma.synthesis.candidates import CandidateDraft, CandidateFeedback
from soma.tools import ToolRegistry
from soma.tools.sandbox import Sandbox


class CaseScore(BaseModel):
    """One eval case run with one candidate."""

    eval: str
    passed: bool
    checks_passed: int
    checks_total: int
    failures: list[str] = Field(default_factory=list, description="Each failed check's detail.")
    tokens: int = 0
    output: Any = None
    workspace: str | None = None


class CandidateScore(BaseModel):
    """A candidate, the persona built from it and how it did on every eval case."""

    id: str = Field(description="'r<round>c<index>', e.g. r2c1: stable across runs.")
    round: int
    index: int
    draft: CandidateDraft
    persona: Persona
    cases: list[CaseScore]

    @property
    def passed(self) -> int:
        return sum(case.passed for case in self.cases)

    @property
    def total(self) -> int:
        return len(self.cases)

    @property
    def score(self) -> float:
        return self.passed / self.total if self.total else 0.0

    @property
    def tokens(self) -> int:
        return sum(case.tokens for case in self.cases)

    @property
    def rank_key(self) -> tuple[float, int, int, int]:
        """Sorts best first: higher score, then fewer tokens, then earlier round and index."""
        return (-self.score, self.tokens, self.round, self.index)

    def failures(self) -> list[str]:
        return [f"{case.eval}: {detail}" for case in self.cases for detail in case.failures]

    def feedback(self) -> CandidateFeedback:
        return CandidateFeedback(
            candidate=self.draft,
            score=self.score,
            passed=self.passed,
            total=self.total,
            failures=self.failures(),
        )


CaseCallback = Callable[[str, int, int, CaseScore], None]
"""Called after each case with (candidate id, case number from 1, case count, result)."""


def build_persona(
    draft: CandidateDraft,
    *,
    name: str,
    version: str = "1.0.0",
    tools: list[str],
    model: ModelPreference | None = None,
) -> Persona:
    """The Persona a candidate stands for: the generator's words plus a name, version and tools."""
    return Persona(
        name=name,
        version=version,
        role=draft.role,
        goal=draft.goal,
        backstory=draft.backstory,
        skills=list(draft.skills),
        model=model or ModelPreference(),
        tools=list(tools),
    )


async def score_persona(
    capsule: Capsule,
    persona: Persona,
    *,
    model: Model,
    registry: ToolRegistry,
    sandbox: Sandbox,
    workspaces_root: Path,
    candidate_id: str = "",
    on_case: CaseCallback | None = None,
) -> list[CaseScore]:
    """Run each of the capsule's evals with ``persona``, one after the other, in eval order.

    Sequential on purpose: with a deterministic model the whole synthesis is then reproducible,
    and a local model serves one request at a time anyway. A run that raises a SomaError (a bad
    tool grant, an input the capsule rejects) counts as a failed case with the error as detail.
    """
    scores: list[CaseScore] = []
    for number, case in enumerate(capsule.evals, start=1):
        try:
            outcome = await run_eval(
                capsule,
                persona,
                case,
                model=model,
                registry=registry,
                sandbox=sandbox,
                workspaces_root=workspaces_root,
            )
        except SomaError as exc:
            result = CaseScore(
                eval=case.name,
                passed=False,
                checks_passed=0,
                checks_total=len(case.checks),
                failures=[f"the run could not start: {exc}"],
            )
        else:
            failed = [c for c in outcome.checks if not c.passed]
            failures = [_describe(c.kind, c.field, c.detail) for c in failed]
            if not outcome.run.ok and outcome.run.error:
                failures.insert(0, f"the run failed: {outcome.run.error}")
            result = CaseScore(
                eval=case.name,
                passed=outcome.passed,
                checks_passed=len(outcome.checks) - len(failed),
                checks_total=len(outcome.checks),
                failures=failures,
                tokens=outcome.run.usage.total_tokens,
                output=outcome.run.output,
                workspace=outcome.workspace,
            )
        scores.append(result)
        if on_case is not None:
            on_case(candidate_id, number, len(capsule.evals), result)
    return scores


def _describe(kind: str, field: str | None, detail: str) -> str:
    where = f" {field}" if field else ""
    return f"{kind}{where}: {detail}"
