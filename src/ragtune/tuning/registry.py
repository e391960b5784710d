"""The model registry: ``<project>/models/<name>/v<N>/`` holding the model and its card (``card.json``).

A version is written to a temporary folder and renamed into place, so a crash never leaves a half-written
version behind. Loading reads only local files.
"""

from __future__ import annotations

import builtins
import json
import re
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ragtune.errors import ModelNotFoundError, RagtuneError
from ragtune.tuning.base import TextClassifier

CARD = "card.json"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass
class ModelCard:
    """What is known about one registered model version."""

    name: str
    version: int
    method: str
    classes: list[str]
    data_sha256: str
    data_source: str
    created: float
    metrics: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)


def check_name(name: str) -> str:
    """Model names are path-safe: letters, digits, ``_ . -``."""
    if not _NAME.match(name):
        raise RagtuneError(f"invalid model name {name!r}: use letters, digits, _ . - (max 64, no slashes)")
    return name


class Registry:
    """Versioned classifiers in one folder."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _versions(self, name: str) -> list[int]:
        folder = self.root / check_name(name)
        if not folder.is_dir():
            return []
        return sorted(int(p.name[1:]) for p in folder.iterdir() if re.fullmatch(r"v\d+", p.name) and
                      (p / CARD).is_file())

    def register(self, name: str, clf: TextClassifier, card: ModelCard) -> ModelCard:
        """Save ``clf`` as the next version of ``name``; returns the card with its version set."""
        versions = self._versions(name)
        card.version = (versions[-1] + 1) if versions else 1
        card.name = name
        (self.root / name).mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=self.root / name))
        try:
            clf.save(tmp / "model")
            (tmp / CARD).write_text(json.dumps(asdict(card), indent=2, default=str), encoding="utf-8")
            tmp.rename(self.root / name / f"v{card.version}")
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return card

    def path(self, name: str, version: int | None = None) -> Path:
        """Folder of a version (default: the latest)."""
        versions = self._versions(name)
        if not versions:
            known = ", ".join(c.name for c in self.list()) or "none yet"
            raise ModelNotFoundError(f"no model named {name!r} (models: {known}); train one with `ragtune train`")
        v = versions[-1] if version is None else version
        if v not in versions:
            raise ModelNotFoundError(f"model {name!r} has no version {v} (versions: {versions})")
        return self.root / name / f"v{v}"

    def card(self, name: str, version: int | None = None) -> ModelCard:
        """The card of a version (default: the latest)."""
        data = json.loads((self.path(name, version) / CARD).read_text(encoding="utf-8"))
        return ModelCard(**data)

    def load(self, name: str, version: int | None = None) -> TextClassifier:
        """Load a registered classifier (no network)."""
        return TextClassifier.load(self.path(name, version) / "model")

    def list(self) -> builtins.list[ModelCard]:
        """The latest card of every model."""
        if not self.root.is_dir():
            return []
        cards = []
        for folder in sorted(p for p in self.root.iterdir() if p.is_dir() and _NAME.match(p.name)):
            if self._versions(folder.name):
                cards.append(self.card(folder.name))
        return cards

    def delete(self, name: str, version: int | None = None) -> builtins.list[int]:
        """Delete one version, or every version when ``version`` is None; returns the versions deleted."""
        versions = self._versions(name)
        if not versions:
            raise ModelNotFoundError(f"no model named {name!r}")
        doomed = versions if version is None else [version]
        for v in doomed:
            shutil.rmtree(self.path(name, v))
        if version is None:
            shutil.rmtree(self.root / name, ignore_errors=True)
        return doomed


def new_card(method: str, clf: TextClassifier, data_sha256: str, data_source: str) -> ModelCard:
    """A card for a freshly trained classifier (name and version are set on registration)."""
    return ModelCard(
        name="", version=0, method=method, classes=[str(c) for c in clf.classes_], data_sha256=data_sha256,
        data_source=data_source, created=time.time(), params=clf.get_params(),
    )
