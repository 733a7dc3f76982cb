"""The memory gateway: every write passes the constitution and the audit log, every read is
scoped to one tenant.

A write is checked as a ``memory_write`` action of its subject (the persona and capsule that
learned it, or the system): denied writes raise :class:`MemoryDenied`, redacted ones keep the
masked text. The tenant's own secret values are masked before the constitution even sees the
text, so a credential an agent read from the vault cannot be remembered verbatim.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from soma.constitution import Action, Constitution, Subject
from soma.constitution.audit import record_decision
from soma.errors import SomaError
from soma.marketplace.embeddings import Embedder
from soma.memory.index import VectorIndex
from soma.memory.types import TENANT_SCOPE, MemoryHit, MemoryItem, MemoryKind, item_id
from soma.secrets import mask
from soma.store import Store
from soma.store.tables import utcnow

MAX_TEXT = 8_000
ConstitutionFor = Callable[[str], Constitution]
SecretValues = Callable[[str], Iterable[str]]


class MemoryDenied(SomaError):
    """The constitution refused a memory write (e.g. it held a credential)."""


class Memory:
    def __init__(
        self,
        index: VectorIndex,
        embedder: Embedder,
        *,
        store: Store,
        constitution_for: ConstitutionFor,
        secret_values: SecretValues | None = None,
    ) -> None:
        self.index = index
        self.embedder = embedder
        self.store = store
        self.constitution_for = constitution_for
        self.secret_values = secret_values

    def remember(
        self,
        tenant_id: str,
        text: str,
        *,
        key: str,
        scope: str = TENANT_SCOPE,
        kind: MemoryKind = "note",
        subject: Subject | None = None,
        metadata: dict[str, Any] | None = None,
        project_id: str | None = None,
        node_id: str | None = None,
    ) -> MemoryItem:
        """Keep ``text`` (idempotent under ``key``); MemoryDenied if the constitution refuses."""
        cleaned = text.strip()[:MAX_TEXT]
        if not cleaned:
            raise SomaError("a memory needs text", hint="pass a non-empty note or lesson")
        if self.secret_values is not None:
            cleaned = mask(cleaned, list(self.secret_values(tenant_id)))
        who = subject or Subject(persona="system", capsule="memory", tenant=tenant_id)
        decision = self.constitution_for(tenant_id).check(
            who, Action(kind="memory_write", text=cleaned)
        )
        record_decision(
            self.store,
            tenant_id=tenant_id,
            project_id=project_id,
            node_id=node_id,
            actor=f"{who.persona} ({who.capsule or 'memory'})",
            action_kind="memory_write",
            arguments=decision.text,
            rule_id=decision.rule_id,
            effect=decision.effect,
            reason=decision.reason,
            key=f"{key}#memory",
        )
        if decision.effect in ("deny", "require_approval"):
            raise MemoryDenied(
                f"memory write refused by the constitution ({decision.rule_id}): {decision.reason}",
                hint="remember what was learned without the credential or personal data",
            )
        kept = decision.text if decision.text is not None else cleaned
        item = MemoryItem(
            id=item_id(tenant_id, key),
            tenant_id=tenant_id,
            scope=scope,
            kind=kind,
            text=kept,
            metadata=metadata or {},
            created_at=utcnow(),
        )
        self.index.add(item, self.embedder.embed([kept])[0])
        return item

    def search(
        self,
        tenant_id: str,
        query: str,
        *,
        scopes: Sequence[str] = (TENANT_SCOPE,),
        kinds: Sequence[MemoryKind] | None = None,
        limit: int = 5,
        min_score: float = 0.0,
    ) -> list[MemoryHit]:
        if not query.strip():
            return []
        vector = self.embedder.embed([query])[0]
        hits = self.index.search(tenant_id, vector, scopes=scopes, kinds=kinds, limit=limit)
        return [hit for hit in hits if hit.score >= min_score]

    def forget(self, tenant_id: str, *, scope: str | None = None) -> int:
        return self.index.delete(tenant_id, scope=scope)
