"""Search relevance on a fixed corpus, with the packaged all-MiniLM-L6-v2: each query's best
hit is the note it is about, though they share few or no words."""

from __future__ import annotations

import pytest

from soma.memory.embed import HashingEmbedder
from soma.memory.gateway import Memory

CORPUS = {
    "db": "The service stores its data in PostgreSQL 15; migrations run with Alembic at start.",
    "deploy": "Releases are deployed to Kubernetes with a Helm chart through Argo CD.",
    "tests": "Run the unit tests with pytest; the slow end-to-end tests are marked slow.",
    "style": "Python code follows ruff's rules and mypy strict typing.",
    "auth": "Users sign in with OpenID Connect; API keys are hashed with sha256.",
    "cache": "Redis caches rate-limit buckets shared by every gateway replica.",
    "queue": "Durable workflows run on Temporal; every tool call is an activity.",
    "ui": "The web console is server-rendered HTML with one small script.",
    "billing": "Invoices are monthly, priced from a per-model table of token prices.",
    "email": "Notification emails go out through SMTP with STARTTLS.",
}
QUERIES = {
    "which database do we use": "db",
    "how do we ship a new version to the cluster": "deploy",
    "how to execute the test suite": "tests",
    "formatting and type checking conventions": "style",
    "how do people log in": "auth",
    "where are throttling counters kept": "cache",
    "what runs long-running jobs reliably": "queue",
    "how is the frontend built": "ui",
    "how much do customers pay": "billing",
}


@pytest.fixture
def filled(memory: Memory) -> Memory:
    for key, text in CORPUS.items():
        memory.remember("acme", text, key=key, kind="fact")
    return memory


def test_each_query_finds_its_note_first(filled: Memory) -> None:
    misses = []
    for query, expected in QUERIES.items():
        hits = filled.search("acme", query, limit=3)
        if hits[0].item.text != CORPUS[expected]:
            misses.append((query, hits[0].item.text))
        assert hits == sorted(hits, key=lambda h: -h.score)
    assert not misses, misses


def test_other_tenants_never_see_the_notes(filled: Memory) -> None:
    assert filled.search("globex", "which database do we use") == []
    filled.remember("globex", "Globex keeps its data in MySQL.", key="db", kind="fact")
    (hit,) = filled.search("globex", "which database do we use", limit=5)
    assert "MySQL" in hit.item.text
    assert filled.index.count("acme") == len(CORPUS)


def test_the_word_hashing_fallback_still_ranks_shared_words_first() -> None:
    embedder = HashingEmbedder()
    vectors = embedder.embed(
        ["pytest runs the unit tests", "Helm deploys the chart", "run the unit tests"]
    )
    scores = vectors @ vectors[2]
    assert scores[0] > scores[1]
