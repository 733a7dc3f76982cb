"""Memory: write and search cost on the embedded index and on Qdrant, and lessons measured.

    .venv/bin/python bench/bench_memory.py [--items 2000] [--queries 200] [--rounds 4]

Writes go through the whole gateway (secret masking, constitution, audit record, embedding,
index); searches embed the query and rank the tenant's items in the searched scope. Lessons:
capsule evals run round after round with a model that only does what the recalled lessons say,
so the success rate per round is the mechanism's effect (see tests/memory/test_improve.py).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from pathlib import Path

from qdrant_client import QdrantClient

from _table import print_table
from soma.constitution import Constitution
from soma.memory.embed import memory_embedder
from soma.memory.gateway import Memory
from soma.memory.improve import eval_and_learn
from soma.memory.index import VectorIndex
from soma.memory.qdrant_index import QdrantIndex
from soma.memory.sql_index import SqlIndex
from soma.models.function import FunctionModel
from soma.specs.library import Library
from soma.store import Store
from soma.tools import default_registry
from soma.tools.sandbox import make_sandbox

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.memory.test_improve import CAPSULE_YAML, learner

SUBJECTS = (
    "database deploy tests style login cache queue console billing email".split()  # noqa: SIM905
)
VERBS = ["uses", "prefers", "requires", "avoids", "documents", "monitors", "migrates", "caches"]


def notes(count: int) -> list[str]:
    rng = random.Random(3)
    return [
        f"The {rng.choice(SUBJECTS)} layer {rng.choice(VERBS)} {rng.choice(SUBJECTS)} item {n}."
        for n in range(count)
    ]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def memory_for(index: VectorIndex, store: Store) -> Memory:
    constitution = Constitution.compile(Library.builtin().constitution("default"))
    return Memory(
        index, memory_embedder(), store=store, constitution_for=lambda tenant: constitution
    )


def measure(name: str, memory: Memory, items: list[str], queries: int) -> list[object]:
    start = time.perf_counter()
    for n, text in enumerate(items):
        memory.remember("bench", text, key=f"k{n}", kind="fact")
    write_s = time.perf_counter() - start
    rng = random.Random(5)
    samples = []
    for _ in range(queries):
        query = f"which layer {rng.choice(VERBS)} the {rng.choice(SUBJECTS)}"
        began = time.perf_counter()
        memory.search("bench", query, limit=5)
        samples.append(time.perf_counter() - began)
    return [
        name,
        len(items),
        f"{len(items) / write_s:,.0f}",
        f"{1e3 * percentile(samples, 0.5):.2f}",
        f"{1e3 * percentile(samples, 0.99):.2f}",
    ]


async def lessons(root: Path, memory: Memory, rounds: int) -> list[list[object]]:
    folder = root / "lib" / "capsules" / "release-notes-lite"
    folder.mkdir(parents=True)
    (folder / "capsule.yaml").write_text(CAPSULE_YAML)
    library = Library.from_dirs(root / "lib", builtin=True)
    capsule = library.capsule("release-notes-lite")
    persona = library.persona(capsule.persona)
    model = FunctionModel(learner, name="learner")
    rows: list[list[object]] = []
    for number in range(1, rounds + 1):
        passed = 0
        for case in capsule.evals:
            result = await eval_and_learn(
                memory,
                "lessons",
                capsule,
                persona,
                case,
                model=model,
                registry=default_registry(),
                sandbox=make_sandbox("subprocess"),
                workspaces_root=root / "ws",
            )
            passed += result.passed
        rate = passed / len(capsule.evals)
        rows.append(
            [number, f"{passed}/{len(capsule.evals)}", f"{rate:.0%}", memory.index.count("lessons")]
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--items", type=int, default=2_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    texts = notes(args.items)
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(f"sqlite:///{tmp}/soma.db")
        rows = [
            measure(
                "store table (SQLite)", memory_for(SqlIndex(store), store), texts, args.queries
            ),
            measure(
                "Qdrant (local mode)",
                memory_for(QdrantIndex(QdrantClient(":memory:")), store),
                texts,
                args.queries,
            ),
        ]
        print_table(
            "Memory: gateway writes and searches (MiniLM int8 embeddings)",
            ["index", "items", "writes/s", "search p50 ms", "search p99 ms"],
            rows,
        )
        learned = asyncio.run(lessons(Path(tmp), memory_for(SqlIndex(store), store), args.rounds))
        print_table(
            "Lessons: eval success per round (scripted learner)",
            ["round", "passed", "success rate", "lessons kept"],
            learned,
        )


if __name__ == "__main__":
    main()
