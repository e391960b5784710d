"""What every registry model served on onnxruntime shares (the reranker, the span reader): the setting's name and
version resolved on first use, the ``model.onnx`` it must hold, the version and spec it resolved to, and the
sequence length it was trained with (a setting may shorten it)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, ClassVar

from ragtune.errors import ConfigError

PREFIX = "registry:"
ONNX_FILE = "model.onnx"

Resolved = tuple[Path, int, dict[str, Any], dict[str, Any]]  # (model folder, version, card notes, card params)


class ServedRegistryModel:
    """Base of the registry models served on onnxruntime; config-only ``__init__``, resolved on first use.

    Subclasses set ``KIND`` (the card's method), ``TRAIN_COMMAND`` and ``UNSET_HINT`` (named in the error when the
    model is missing) and open their session in ``warm_up``."""

    KIND: ClassVar[str]
    TRAIN_COMMAND: ClassVar[str]
    UNSET_HINT: ClassVar[str]

    def __init__(self, models_dir: Path, model_name: str, version: int | None, *, threads: int,
                 max_length: int | None) -> None:
        self.models_dir = Path(models_dir)
        self.model_name, self.requested_version = model_name, version
        self.threads, self.requested_max_length = threads, max_length
        self._resolved: Resolved | None = None
        self._session: Any = None
        self._lock = threading.Lock()

    def _resolve(self) -> Resolved:
        """The registered version this setting names, or a clear error (no such model: ``ModelNotFoundError``
        naming the train command; another kind, or no ONNX export: ``ConfigError``)."""
        if self._resolved is None:
            from ragtune.tuning.registry import resolve_served

            folder, version, card = resolve_served(
                self.models_dir, f"{PREFIX}{self.model_name}", self.model_name, self.requested_version, self.KIND,
                self.TRAIN_COMMAND, self.UNSET_HINT)
            if not (folder / ONNX_FILE).is_file():
                raise ConfigError(f"{folder} has no {ONNX_FILE}: train it again with `{self.TRAIN_COMMAND} --name "
                                  f"{self.model_name}`")
            self._resolved = (folder, version, card.notes, card.params)
        return self._resolved

    @property
    def version(self) -> int:
        """The registry version the name resolved to (the requested, else promoted, else latest one)."""
        return self._resolve()[1]

    @property
    def spec(self) -> str:
        """``registry:NAME@VERSION``: the setting that keeps serving exactly this version."""
        return f"{PREFIX}{self.model_name}@{self.version}"

    @property
    def max_length(self) -> int:
        """Tokens per input: the ``max_length`` asked for if set and shorter, else the trained length."""
        trained = int(self._resolve()[3].get("max_length", 256))
        asked = self.requested_max_length
        return min(trained, asked) if asked else trained
