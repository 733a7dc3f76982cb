"""Text embeddings for memory: the packaged all-MiniLM-L6-v2 (int8 ONNX, offline), shared with
marketplace search; a hashing embedder stands in, with a warning, where it cannot load.

The fallback is a real embedder, not a stub: words and word pairs are hashed into the same 384
dimensions, so texts that share words are near. It only lacks synonyms.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import re
from collections.abc import Sequence

import numpy as np

from soma.marketplace.embeddings import Embedder, Vectors, default_embedder

log = logging.getLogger(__name__)
DIMENSIONS = 384
_WORD = re.compile(r"[a-z0-9]+")


class HashingEmbedder:
    name = "hashing-384"
    dim = DIMENSIONS

    def embed(self, texts: Sequence[str]) -> Vectors:
        out = np.zeros((len(texts), DIMENSIONS), dtype=np.float32)
        for row, text in enumerate(texts):
            words = _WORD.findall(text.lower())
            for feature in [*words, *(f"{a} {b}" for a, b in itertools.pairwise(words))]:
                digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
                bucket = int.from_bytes(digest[:4], "little") % DIMENSIONS
                out[row, bucket] += 1.0 if digest[4] & 1 else -1.0
            norm = float(np.linalg.norm(out[row]))
            if norm > 0:
                out[row] /= norm
        return out


def memory_embedder() -> Embedder:
    found = default_embedder()
    if found is not None:
        return found
    log.warning("memory: the packaged embedding model is unavailable; using word hashing")
    return HashingEmbedder()
