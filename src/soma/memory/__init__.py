"""Memory: what a tenant's agents have learned, kept as text with embeddings and searched by
meaning. Scoped per tenant (never crossing) and, within it, per project, capsule or persona.

The :class:`~soma.memory.gateway.Memory` gateway is the one way in: writes pass the
constitution (``memory_write``) and are audited; reads are scoped. Storage is a
:class:`~soma.memory.index.VectorIndex`: the store's own table by default (SQLite or
PostgreSQL, nothing else to run), or a Qdrant server at scale. See ``docs/memory.md``.
"""
