"""The served form of a tuned bi-encoder: ``embedder.model: registry:NAME[@VERSION]``.

A registered embedder version holds ``model/encoder/`` (a sentence-transformers folder: transformer, mean
pooling, normalisation, tokenizer) and ``model/model.onnx`` (its transformer exported like the base model's),
so it is served on onnxruntime with the base embedder's encoding code; torch is the fallback. It shares the base
embedder's process-wide vector cache, keyed by its own fingerprint.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ragtune.config import parse_registry_spec
from ragtune.errors import ConfigError
from ragtune.models.embedder import (
    REGISTRY_PREFIX,
    MiniLMEmbedder,
    _sentence_transformer_encoder,
    onnx_encoder,
)
from ragtune.models.hf import load_tokenizer

ENCODER_DIR = "encoder"
ONNX_FILE = "model.onnx"
KIND = "embedder"  # ModelCard.method of a tuned bi-encoder


def parse_spec(spec: str) -> tuple[str, int | None]:
    """``registry:NAME`` or ``registry:NAME@VERSION`` → (name, version or None)."""
    parsed = parse_registry_spec(spec)
    if parsed is None:
        raise ConfigError(f"embedder {spec!r} is not a registry model: write registry:NAME or registry:NAME@VERSION "
                          "(NAME as trained by `ragtune tune retriever --name NAME`)")
    return parsed


def weights_digest(folder: Path) -> str:
    """SHA-256 over the weight files of a saved encoder (names and bytes)."""
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*.safetensors")):
        h.update(path.name.encode() + b"\0")
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


@functools.cache
def _counting_tokenizer(path: str) -> Any:
    return load_tokenizer(path, None)


class TunedEmbedder(MiniLMEmbedder):
    """A bi-encoder from the project's registry (trained by ``ragtune tune retriever``), resolved on first use.

    ``fingerprint``: ``registry:NAME@v<VERSION>+<12 hex of the weights' SHA-256>/<runtime>/<dim>``, so an index
    embedded with the base model (or another version) is refused until it is re-indexed.
    """

    def __init__(self, models_dir: Path, spec: str, batch_size: int = 32, threads: int = 2,
                 runtime: str = "auto") -> None:
        super().__init__(batch_size=batch_size, threads=threads, runtime=runtime)
        self.requested_runtime = runtime
        self.models_dir = Path(models_dir)
        self.model_name, self.requested_version = parse_spec(spec)
        self.name = spec
        self._resolved: tuple[Path, int, dict[str, Any]] | None = None

    def _resolve(self) -> tuple[Path, int, dict[str, Any]]:
        if self._resolved is None:
            from ragtune.tuning.registry import resolve_served

            folder, version, card = resolve_served(
                self.models_dir, self.name, self.model_name, self.requested_version, KIND, "ragtune tune retriever",
                "set embedder.model back to minilm in ragtune.yaml")
            if not (folder / ENCODER_DIR).is_dir():
                raise ConfigError(f"{folder} has no {ENCODER_DIR}/: train the embedder again with `ragtune tune "
                                  "retriever`")
            if self.runtime == "onnx" and not (folder / ONNX_FILE).is_file():
                if self.requested_runtime == "onnx":
                    raise ConfigError(f"{folder} has no {ONNX_FILE}: use embedder.runtime torch or auto")
                self.runtime = "torch"
            self._resolved = (folder, version, card.notes)
        return self._resolved

    @property
    def folder(self) -> Path:
        """The registry folder holding ``encoder/`` and ``model.onnx``."""
        return self._resolve()[0]

    @property
    def version(self) -> int:
        """The registry version this name resolved to (the requested, else promoted, else latest one)."""
        return self._resolve()[1]

    @property
    def spec(self) -> str:
        """``registry:NAME@VERSION``: the setting that keeps serving exactly this version."""
        return f"{REGISTRY_PREFIX}{self.model_name}@{self.version}"

    @property
    def dim(self) -> int:
        """Vector length, from the card (written at training time)."""
        return int(self._resolve()[2].get("dim", 384))

    @property
    def fingerprint(self) -> str:
        """``registry:NAME@v<VERSION>+<weights digest>/<runtime>/<dim>``."""
        if self._fingerprint is None:
            folder, version, notes = self._resolve()
            digest = notes.get("weights_sha256") or weights_digest(folder / ENCODER_DIR)
            self._fingerprint = f"{REGISTRY_PREFIX}{self.model_name}@v{version}+{digest[:12]}/{self.runtime}/{self.dim}"
        return self._fingerprint

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Word-piece counts with the tuned model's tokenizer (the base model's vocabulary)."""
        if not texts:
            return []
        tok = _counting_tokenizer(str(self.folder / ENCODER_DIR / "tokenizer.json"))
        return [len(e.ids) for e in tok.encode_batch(list(texts), add_special_tokens=False)]

    def warm_up(self) -> None:
        """Open the ONNX session (or load the torch model), shared per process."""
        if self._encode is None:
            folder = self.folder
            with self._lock:
                if self.runtime == "onnx":
                    self._encode = onnx_encoder(str(folder / ONNX_FILE), str(folder / ENCODER_DIR), self.threads,
                                                self.window)
                else:
                    self._encode = _sentence_transformer_encoder(str(folder / ENCODER_DIR), self.threads)
