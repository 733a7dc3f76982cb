"""Lessons learned: what a capsule run's outcome teaches the next run of the same capsule and
persona.

Outcomes are distilled by rules, not by a model: a failure's reason, a reviewer's comment and a
failed eval check each become one lesson, stated as advice. That keeps lessons faithful to what
happened (a summariser could invent one) and makes the mechanism testable. Lessons are kept in
the capsule's and the persona's scopes and recalled by similarity to the next task.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from soma.constitution import Subject
from soma.memory.gateway import Memory, MemoryDenied
from soma.memory.types import MemoryHit, MemoryItem, capsule_scope, persona_scope

MAX_LESSON = 500
RECALL_LIMIT = 5
RECALL_MIN_SCORE = 0.2


@dataclass(frozen=True)
class RunOutcome:
    capsule: str
    persona: str
    ok: bool
    error: str | None = None
    review_comment: str | None = None
    failed_checks: Sequence[str] = field(default_factory=tuple)


def distill(outcome: RunOutcome) -> list[str]:
    """The lessons of one outcome; none from a clean success (nothing to correct)."""
    name = outcome.capsule.split("@")[0]
    found: list[str] = []
    if outcome.review_comment:
        found.append(f"A reviewer of {name} asked: {outcome.review_comment.strip()}")
    for check in outcome.failed_checks:
        found.append(f"An eval of {name} failed because: {check.strip()}. Make sure it holds.")
    if not outcome.ok and outcome.error:
        found.append(f"A run of {name} failed with: {outcome.error.strip()}. Avoid that.")
    return [lesson[:MAX_LESSON] for lesson in dict.fromkeys(found)]


def record_lessons(
    memory: Memory,
    tenant_id: str,
    outcome: RunOutcome,
    *,
    key: str,
    project_id: str | None = None,
    node_id: str | None = None,
) -> list[MemoryItem]:
    """Keep the outcome's lessons in the capsule's and the persona's scopes. A lesson the
    constitution refuses (it quoted a credential) is dropped, not fatal: the run is over."""
    kept: list[MemoryItem] = []
    subject = Subject(persona=outcome.persona, capsule=outcome.capsule, tenant=tenant_id)
    for index, lesson in enumerate(distill(outcome)):
        for scope in (capsule_scope(outcome.capsule), persona_scope(outcome.persona)):
            try:
                kept.append(
                    memory.remember(
                        tenant_id,
                        lesson,
                        key=f"{key}/lesson/{index}/{scope}",
                        scope=scope,
                        kind="lesson",
                        subject=subject,
                        metadata={"capsule": outcome.capsule, "ok": outcome.ok},
                        project_id=project_id,
                        node_id=node_id,
                    )
                )
            except MemoryDenied:
                break
    return kept


def recall_lessons(
    memory: Memory, tenant_id: str, capsule: str, persona: str, task: str
) -> list[MemoryHit]:
    """The lessons nearest to the task, from this capsule's and this persona's past runs."""
    hits = memory.search(
        tenant_id,
        task,
        scopes=(capsule_scope(capsule), persona_scope(persona)),
        kinds=("lesson",),
        limit=RECALL_LIMIT * 2,
        min_score=RECALL_MIN_SCORE,
    )
    unique: dict[str, MemoryHit] = {}
    for hit in hits:
        unique.setdefault(hit.item.text, hit)
    return list(unique.values())[:RECALL_LIMIT]
