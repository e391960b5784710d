"""The served form of a trained cross-encoder: ``rerank.kind: registry:NAME[@VERSION]``.

A registered reranker version holds ``model/crossencoder/`` (the transformer's folder, ``tokenizer.json`` and the
learned cosine scale in ``scorer.json``) and ``model/model.onnx`` (the whole scorer exported with its three
inputs: token ids, attention mask, segment ids), which onnxruntime serves; torch is never loaded to rerank. Query and
passage are encoded as one pair, ``[CLS] query [SEP] passage [SEP]``, truncated longest-first to the length it
was trained with (``rerank.max_length`` may shorten it, trading quality for speed).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ragtune.config import parse_registry_spec
from ragtune.errors import ConfigError
from ragtune.models.hf import load_tokenizer, onnx_session
from ragtune.tuning.served import ONNX_FILE, PREFIX, ServedRegistryModel

KIND = "reranker"  # ModelCard.method of a trained cross-encoder
MODEL_DIR = "crossencoder"
TOKENIZER = "tokenizer.json"


def parse_reranker_spec(spec: str) -> tuple[str, int | None]:
    """``registry:NAME`` or ``registry:NAME@VERSION`` → (name, version or None)."""
    parsed = parse_registry_spec(spec)
    if parsed is None:
        raise ConfigError(f"rerank.kind {spec!r}: write none, registry:NAME or registry:NAME@VERSION (NAME as "
                          "trained by `ragtune tune reranker --name NAME`)")
    return parsed


def encode_pairs(tokenizer: Any, pairs: Sequence[tuple[str, str]]) -> dict[str, np.ndarray]:
    """``input_ids``, ``attention_mask`` and ``token_type_ids`` (int64, padded to the longest pair) for each
    (query, passage) pair: what the exported model takes, in training and in serving alike."""
    encodings = tokenizer.encode_batch(list(pairs))
    width = max((len(e.ids) for e in encodings), default=0)
    ids = np.zeros((len(encodings), width), dtype=np.int64)
    mask = np.zeros_like(ids)
    types = np.zeros_like(ids)
    for i, e in enumerate(encodings):
        n = len(e.ids)
        ids[i, :n], mask[i, :n], types[i, :n] = e.ids, e.attention_mask, e.type_ids
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


class CrossEncoderReranker(ServedRegistryModel):
    """A cross-encoder from the project's registry (trained by ``ragtune tune reranker``), resolved and loaded on
    first use; implements :class:`ragtune.retrieval.rerank.Reranker`.

    ``fingerprint``: ``registry:NAME@v<VERSION>+<12 hex of the weights' SHA-256>/<max_length>``, part of the
    answer cache's key, so a new version never serves answers ranked by the old one.
    """

    KIND = KIND
    TRAIN_COMMAND = "ragtune tune reranker"
    UNSET_HINT = "set rerank.kind to none in ragtune.yaml"

    def __init__(self, models_dir: Path, spec: str, *, threads: int = 2, max_length: int | None = None,
                 batch_size: int = 32) -> None:
        super().__init__(models_dir, *parse_reranker_spec(spec), threads=threads, max_length=max_length)
        self.name = spec
        self.batch_size = batch_size
        self._tokenizer: Any = None

    @property
    def fingerprint(self) -> str:
        """``registry:NAME@v<VERSION>+<weights digest>/<max_length>``."""
        _, version, notes, _ = self._resolve()
        return f"{PREFIX}{self.model_name}@v{version}+{str(notes.get('weights_sha256', ''))[:12]}/{self.max_length}"

    def warm_up(self) -> None:
        """Open the ONNX session and the tokenizer."""
        if self._session is None:
            folder = self._resolve()[0]
            with self._lock:
                if self._session is None:
                    self._tokenizer = load_tokenizer(folder / MODEL_DIR / TOKENIZER, self.max_length)
                    self._session = onnx_session(folder / ONNX_FILE, self.threads)

    def score(self, query: str, passages: Sequence[str]) -> np.ndarray:
        """One relevance score per passage (higher: more relevant), in the order given."""
        self.warm_up()
        out: list[np.ndarray] = []
        for start in range(0, len(passages), self.batch_size):
            feed = encode_pairs(self._tokenizer, [(query, p) for p in passages[start:start + self.batch_size]])
            out.append(np.asarray(self._session.run(None, feed)[0], dtype=np.float32).reshape(-1))
        return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)

    def rerank(self, query: str, candidates: Sequence[tuple[str, str]]) -> list[tuple[str, float]]:
        """(chunk id, score) best first; ties keep the fused order."""
        if not candidates:
            return []
        scores = self.score(query, [text for _, text in candidates])
        order = sorted(range(len(candidates)), key=lambda i: (-float(scores[i]), i))
        return [(candidates[i][0], float(scores[i])) for i in order]
