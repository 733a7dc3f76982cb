"""The synthesis loop: propose personas, score them on the capsule's evals, feed back, repeat.

This is prompt optimisation in the spirit of DSPy, not weight training: the only thing that
changes between rounds is the text of the candidates, chosen by a generator model that is shown
the best candidate so far and the checks the others failed. The global best over all rounds
wins. With deterministic models (the test doubles, or a local model at temperature 0) the whole
search is reproducible: eval cases run one after another and ties are broken by a fixed order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, Field

from soma.errors import ModelError, SomaError
from soma.models.protocol import Model
from soma.models.types import Usage
from soma.specs.models import Capsule, ModelPreference, Persona
from soma.synthesis.candidates import Feedback, generate_candidates
from soma.synthesis.scoring import CandidateScore, CaseScore, build_persona, score_persona
from soma.tools import ToolRegistry
from soma.tools.sandbox import Sandbox

MAX_CANDIDATES = 10
MAX_ROUNDS = 10


class SynthesisError(SomaError):
    """A synthesis request that cannot run: no evals to score on, or out-of-range counts."""


class SynthesisSpec(BaseModel):
    """What to synthesize: for which description and capsule, how many, and with which tools."""

    description: str
    capsule: Capsule
    name: str = Field(description="The persona's name while it is scored and when written.")
    candidates: int = 3
    rounds: int = 2
    tools: list[str] = Field(default_factory=list)
    model: ModelPreference = Field(default_factory=ModelPreference)


class SynthesisResult(BaseModel):
    """Every round's scored candidates, the global best, and the generator's token use."""

    rounds: list[list[CandidateScore]]
    best: CandidateScore
    generator_usage: Usage = Field(default_factory=Usage)
    stopped: str = Field(description="Why the search ended, in words.")

    @property
    def candidates(self) -> list[CandidateScore]:
        return [candidate for round_ in self.rounds for candidate in round_]

    @property
    def agent_tokens(self) -> int:
        return sum(candidate.tokens for candidate in self.candidates)


@dataclass(frozen=True)
class RoundStarted:
    round: int
    rounds: int


@dataclass(frozen=True)
class CaseScored:
    candidate: str
    number: int
    total: int
    case: CaseScore


@dataclass(frozen=True)
class CandidateReused:
    """A candidate proposed again: scored from the runs of ``earlier``, not run again."""

    candidate: str
    earlier: str


@dataclass(frozen=True)
class RoundFinished:
    round: int
    candidates: list[CandidateScore]
    best: CandidateScore


@dataclass(frozen=True)
class Stopped:
    reason: str


SynthesisEvent = RoundStarted | CaseScored | CandidateReused | RoundFinished | Stopped
EventSink = Callable[[SynthesisEvent], None]


def check_request(description: str, capsule: Capsule, candidates: int, rounds: int) -> None:
    """Refuse, before any model call, what cannot give a meaningful search."""
    if not description.strip():
        raise SynthesisError(
            "the persona description is empty",
            hint='say what the persona is for, e.g. "a QA engineer who writes pytest suites"',
        )
    if not capsule.evals:
        raise SynthesisError(
            f"capsule {capsule.ref} has no evals, so candidates cannot be scored",
            hint="add an 'evals:' section to the capsule (see docs/capsules.md) or pick a "
            "capsule that has one (`soma capsule show <name>`)",
        )
    if not 1 <= candidates <= MAX_CANDIDATES:
        raise SynthesisError(
            f"--candidates must be between 1 and {MAX_CANDIDATES}, not {candidates}",
            hint="each candidate runs every eval once per round; 3 to 5 is usually enough",
        )
    if not 1 <= rounds <= MAX_ROUNDS:
        raise SynthesisError(
            f"--rounds must be between 1 and {MAX_ROUNDS}, not {rounds}",
            hint="round 1 proposes candidates; each later round improves on the best so far",
        )


def persona_tools(capsule: Capsule, base: Persona | None) -> list[str]:
    """The tool patterns a candidate gets: the capsule's own persona's, or the capsule's tools."""
    if base is not None and base.tools:
        return list(base.tools)
    return list(dict.fromkeys(grant.name for grant in capsule.tools))


async def synthesize(
    spec: SynthesisSpec,
    *,
    generator: Model,
    agent: Model,
    registry: ToolRegistry,
    sandbox: Sandbox,
    workspaces_root: Path,
    on_event: EventSink | None = None,
) -> SynthesisResult:
    """Run up to ``spec.rounds`` rounds of ``spec.candidates`` candidates; return the best.

    The search ends early when a candidate passes every eval. A generator that fails in round 1
    raises (there is nothing to return); in a later round it ends the search with the best so
    far, and ``stopped`` says why.
    """
    check_request(spec.description, spec.capsule, spec.candidates, spec.rounds)

    def emit(event: SynthesisEvent) -> None:
        if on_event is not None:
            on_event(event)

    def on_case(candidate: str, number: int, total: int, case: CaseScore) -> None:
        emit(CaseScored(candidate, number, total, case))

    rounds: list[list[CandidateScore]] = []
    seen: dict[str, tuple[str, list[CaseScore]]] = {}
    usage = Usage()
    best: CandidateScore | None = None
    feedback: Feedback | None = None
    stopped = f"ran all {spec.rounds} round(s)"
    for number in range(1, spec.rounds + 1):
        emit(RoundStarted(number, spec.rounds))
        try:
            generation = await generate_candidates(
                generator, spec.description, spec.capsule, spec.candidates, feedback=feedback
            )
        except ModelError as exc:
            if best is None:
                raise
            stopped = f"the generator failed in round {number}: {exc}"
            break
        usage = usage + generation.usage
        scored: list[CandidateScore] = []
        for index, draft in enumerate(generation.candidates, start=1):
            candidate_id = f"r{number}c{index}"
            persona = build_persona(draft, name=spec.name, tools=spec.tools, model=spec.model)
            key = draft.model_dump_json()
            if key in seen:  # a candidate proposed again is not run again: same text, same runs
                earlier, cases = seen[key]
                emit(CandidateReused(candidate_id, earlier))
            else:
                cases = await score_persona(
                    spec.capsule,
                    persona,
                    model=agent,
                    registry=registry,
                    sandbox=sandbox,
                    workspaces_root=workspaces_root,
                    candidate_id=candidate_id,
                    on_case=on_case,
                )
                seen[key] = (candidate_id, cases)
            scored.append(
                CandidateScore(
                    id=candidate_id,
                    round=number,
                    index=index,
                    draft=draft,
                    persona=persona,
                    cases=cases,
                )
            )
        rounds.append(scored)
        best = min([*scored, *([best] if best else [])], key=lambda c: c.rank_key)
        emit(RoundFinished(number, scored, best))
        if best.passed == best.total:
            if number < spec.rounds:
                stopped = f"{best.id} passed every eval in round {number}"
            break
        feedback = _feedback(number, best, scored)
    assert best is not None  # round 1 either scored candidates or raised
    emit(Stopped(stopped))
    return SynthesisResult(rounds=rounds, best=best, generator_usage=usage, stopped=stopped)


def _feedback(number: int, best: CandidateScore, scored: list[CandidateScore]) -> Feedback:
    others = [c.feedback() for c in sorted(scored, key=lambda c: c.rank_key) if c.id != best.id]
    return Feedback(round=number, best=best.feedback(), others=others)
