"""Marketplace search over 10,000 generated packages: index build time and query latency.

    .venv/bin/python bench/bench_market_search.py [--packages 10000] [--queries 1000]

Packages are generated deterministically from a vocabulary of technologies, actions and
objects (``python-review-api``, "Review the api of python projects: ..."), so postings have
realistic skew: a few words are in thousands of packages, most in a handful. Queries mix
keywords, two-word queries, typeahead prefixes and natural-language questions.

Lexical is the BM25 index alone (the fallback without a model); hybrid adds the packaged
embedding model, so a hybrid query includes embedding the query (shown on its own too) and the
build includes embedding every package. Lexical is measured twice: the first pass over the
queries pays for compiling each term's posting arrays, later passes do not. Target: lexical
p50 < 5 ms, hybrid p50 < 20 ms.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable

from _table import print_table
from soma.marketplace.embeddings import default_embedder
from soma.marketplace.search import SearchDoc, SearchIndex


def words(text: str) -> list[str]:
    return text.split()


TECH = words(
    "python rust go typescript java kotlin terraform kubernetes k8s helm docker postgres mysql "
    "redis kafka aws gcp azure react vue graphql grpc openapi sql spark airflow dbt pytest jest "
    "playwright ansible nginx linux git github gitlab jenkins prometheus grafana elasticsearch "
    "mongodb s3 lambda django flask fastapi rails spring node swift android"
)
ACTIONS = words(
    "review test deploy lint migrate audit scan build document refactor profile monitor backup "
    "release translate generate plan triage upgrade benchmark format validate scaffold optimise "
    "debug secure package publish analyse summarise"
)
OBJECTS = words(
    "api schema pipeline cluster module endpoint dashboard query container chart workflow "
    "dependencies changelog docs tests secrets logs alerts costs infrastructure frontend backend "
    "database service library cli notebook model dataset config"
)
CLAUSES = (
    "runs in the sandbox and reports every finding with a suggested fix",
    "opens a pull request with the change and a summary for reviewers",
    "keeps a log of each step so a human can audit what happened",
    "works offline and needs no credentials beyond the workspace",
    "checks the result against the team's conventions before finishing",
    "stops and asks for approval before touching production",
    "handles monorepos and large histories without running out of memory",
    "explains trade-offs in plain language for non-specialists",
    "caches intermediate results so reruns are fast",
    "produces a markdown report that links to the relevant lines",
    "retries flaky steps and flags them instead of hiding failures",
    "respects rate limits of the hosted services it calls",
)
NATURAL = (
    "find security problems in my terraform",
    "speed up slow postgres queries",
    "someone to review my pull requests",
    "write tests for a react app",
    "deploy a service to kubernetes safely",
    "why is my build failing",
    "keep dependencies up to date",
    "document an http api",
    "watch production for errors",
    "cut the cloud bill",
    "make the frontend accessible",
    "migrate mysql to postgres",
)


def generate(count: int, seed: int = 42) -> list[SearchDoc]:
    """``count`` distinct packages; the same ones for the same seed."""
    rng = random.Random(seed)
    combos = [(t, a, o) for t in TECH for a in ACTIONS for o in OBJECTS]
    docs = []
    for tech, action, obj in rng.sample(combos, count):
        clauses = rng.sample(CLAUSES, rng.randint(1, 2))
        description = f"{action.capitalize()} the {obj} of {tech} projects: " + "; ".join(clauses)
        extra = rng.sample(TECH + OBJECTS, rng.randint(0, 2))
        docs.append(
            SearchDoc(
                name=f"{tech}-{action}-{obj}",
                kind="persona" if rng.random() < 0.2 else "capsule",
                publisher=f"publisher{rng.randrange(200)}",
                description=description + ".",
                tags=(tech, action, *extra),
            )
        )
    return docs


def queries(count: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        shape = rng.random()
        if shape < 0.3:
            out.append(rng.choice(TECH + ACTIONS + OBJECTS))
        elif shape < 0.6:
            out.append(f"{rng.choice(TECH)} {rng.choice(ACTIONS)}")
        elif shape < 0.8:
            word = rng.choice(TECH + OBJECTS)
            out.append(word[: max(2, min(len(word), rng.randint(2, 5)))])
        else:
            out.append(rng.choice(NATURAL))
    return out


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def latencies(index: SearchIndex, batch: list[str]) -> tuple[str, str]:
    """(p50, p99) of ``index.search`` over ``batch``."""
    return spread(sorted(timed(lambda q=q: index.search(q)) for q in batch))


def spread(samples: list[float]) -> tuple[str, str]:
    """p50 and p99 of sorted seconds, in milliseconds to two places (lexical is sub-ms)."""
    return f"{1e3 * percentile(samples, 0.50):.2f}", f"{1e3 * percentile(samples, 0.99):.2f}"


def percentile(sorted_values: list[float], fraction: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--packages", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=1_000)
    args = parser.parse_args()
    docs = generate(args.packages)
    batch = queries(args.queries)
    extra = SearchDoc("zz-new-package", "capsule", "bench", "Review python api docs.", ("new",))
    rows: list[tuple[object, ...]] = []

    lexical = SearchIndex(None)
    build = timed(lambda: lexical.upsert_many(docs))
    first_pass = latencies(lexical, batch)
    rows.append(("lexical, first pass", len(lexical), build, len(batch), *first_pass))
    rows.append(("lexical", len(lexical), "", len(batch), *latencies(lexical, batch)))
    upsert = spread([timed(lambda: lexical.upsert(extra))])
    rows.append(("lexical, upsert one", len(lexical), "", 1, *upsert))

    embedder = default_embedder()
    if embedder is None:
        rows.append(("hybrid: no model installed", "", "", "", "", ""))
    else:
        hybrid = SearchIndex(embedder)
        build = timed(lambda: hybrid.upsert_many(docs))
        rows.append(("hybrid", len(hybrid), build, len(batch), *latencies(hybrid, batch)))
        embedding = spread(sorted(timed(lambda q=q: embedder.embed([q])) for q in batch))
        rows.append(("  of which: embed the query", "", "", len(batch), *embedding))
        upsert = spread([timed(lambda: hybrid.upsert(extra))])
        rows.append(("hybrid, upsert one", len(hybrid), "", 1, *upsert))

    model = embedder.name if embedder is not None else "none"
    print_table(
        f"Marketplace search: {args.packages:,} generated packages, model {model}"
        " (targets: p50 < 5 ms lexical, < 20 ms hybrid)",
        ["index", "packages", "build s", "queries", "p50 ms", "p99 ms"],
        rows,
    )


if __name__ == "__main__":
    main()
