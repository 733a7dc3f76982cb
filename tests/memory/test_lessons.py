"""Lessons: distilled by rules from an outcome, kept per capsule and persona, recalled by
similarity for the next run of either."""

from __future__ import annotations

from soma.memory.gateway import Memory
from soma.memory.lessons import RunOutcome, distill, recall_lessons, record_lessons


def test_outcomes_become_advice() -> None:
    assert distill(RunOutcome(capsule="write-spec@1.0.0", persona="pm", ok=True)) == []
    lessons = distill(
        RunOutcome(
            capsule="write-spec@1.0.0",
            persona="pm",
            ok=False,
            error="the output lacked a title",
            review_comment="List the acceptance criteria.",
            failed_checks=("summary lacks 'edge cases'",),
        )
    )
    assert lessons == [
        "A reviewer of write-spec asked: List the acceptance criteria.",
        "An eval of write-spec failed because: summary lacks 'edge cases'. Make sure it holds.",
        "A run of write-spec failed with: the output lacked a title. Avoid that.",
    ]


def test_lessons_are_recalled_by_the_same_capsule_or_persona_only(memory: Memory) -> None:
    outcome = RunOutcome(
        capsule="write-spec@1.0.0",
        persona="pm",
        ok=True,
        review_comment="Always list acceptance criteria as a checklist.",
    )
    kept = record_lessons(memory, "acme", outcome, key="p1/spec/gate0")
    assert {item.scope for item in kept} == {"capsule:write-spec", "persona:pm"}
    again = record_lessons(memory, "acme", outcome, key="p1/spec/gate0")
    assert [i.id for i in again] == [i.id for i in kept], "the same decision is kept once"

    task = "Write a product spec with acceptance criteria for a todo CLI"
    same_capsule = recall_lessons(memory, "acme", "write-spec@^1", "someone-else", task)
    assert [h.item.text for h in same_capsule] == [
        "A reviewer of write-spec asked: Always list acceptance criteria as a checklist."
    ]
    assert recall_lessons(memory, "acme", "write-docs", "pm", task), "the persona's own lesson"
    assert recall_lessons(memory, "acme", "write-docs", "writer", task) == []
    assert recall_lessons(memory, "globex", "write-spec", "pm", task) == []


def test_a_lesson_quoting_a_credential_is_dropped(memory: Memory) -> None:
    outcome = RunOutcome(
        capsule="deploy", persona="ops", ok=False, error="auth failed for token=abcd1234efgh5678"
    )
    assert record_lessons(memory, "acme", outcome, key="k") == []
    assert memory.index.count("acme") == 0
