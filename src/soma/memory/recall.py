"""What memory adds to a capsule run's prompt: answers to the capsule's ``knowledge: memory:``
queries, and the lessons of earlier runs of the same capsule and persona."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from soma.agents.untrusted import wrap_untrusted
from soma.memory.gateway import Memory
from soma.memory.lessons import recall_lessons
from soma.memory.types import TENANT_SCOPE, capsule_scope, project_scope
from soma.specs.models import Capsule

KNOWLEDGE_HITS = 3


def recall_for_run(
    memory: Memory,
    tenant_id: str,
    capsule: Capsule,
    persona: str,
    inputs: Mapping[str, Any],
    project_id: str | None,
) -> list[tuple[str, str]]:
    """(title, text) pairs for the prompt, after the capsule's own knowledge."""
    recalled: list[tuple[str, str]] = []
    scopes = [capsule_scope(capsule.name), TENANT_SCOPE]
    if project_id:
        scopes.insert(0, project_scope(project_id))
    for item in capsule.knowledge:
        if item.memory is None:
            continue
        hits = memory.search(tenant_id, item.memory, scopes=scopes, limit=KNOWLEDGE_HITS)
        text = "\n".join(f"- {hit.item.text}" for hit in hits) or "(nothing remembered yet)"
        recalled.append((f"memory: {item.memory}", wrap_untrusted("memory", text)))
    task = f"{capsule.instructions}\n{json.dumps(dict(inputs), default=str)[:2000]}"
    lessons = recall_lessons(memory, tenant_id, capsule.name, persona, task)
    if lessons:
        text = "\n".join(f"- {hit.item.text}" for hit in lessons)
        recalled.append(("lessons from earlier runs", wrap_untrusted("memory", text)))
    return recalled
