"""The model registry: ``<project>/models/<name>/v<N>/`` holding the model and its card (``card.json``).

A version is written to a temporary folder and renamed into place, so a crash never leaves a half-written
version behind. Loading reads only local files.

A name resolves to its **promoted** version when one is set (``ragtune models promote NAME VERSION``), else to
its latest: training a new version never changes what a promoted name serves until that version is promoted.
The alias lives in ``<name>/aliases.json`` (``{"promoted": 3}``), replaced atomically.
"""

from __future__ import annotations

import builtins
import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ragtune.errors import ConfigError, ModelNotFoundError, RagtuneError
from ragtune.tuning.base import TextClassifier

CARD = "card.json"
ALIASES = "aliases.json"
PROMOTED = "promoted"
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

    def _aliases_path(self, name: str) -> Path:
        return self.root / check_name(name) / ALIASES

    def promoted(self, name: str) -> int | None:
        """The promoted version of ``name`` (None: the name follows its latest version)."""
        path = self._aliases_path(name)
        if not path.is_file():
            return None
        try:
            aliases = json.loads(path.read_text(encoding="utf-8"))
            version = aliases.get(PROMOTED) if isinstance(aliases, dict) else "?"
        except (OSError, json.JSONDecodeError) as exc:
            raise RagtuneError(f"{path} cannot be read ({exc}); fix it, or reset it with `ragtune models "
                               f"promote {name} --clear`") from exc
        if version is not None and (not isinstance(version, int) or isinstance(version, bool) or version < 1):
            raise RagtuneError(f"{path}: {PROMOTED!r} must be a version number, got {version!r}; fix it, or reset "
                               f"it with `ragtune models promote {name} --clear`")
        return version

    def promote(self, name: str, version: int | None) -> int | None:
        """Make ``name`` resolve to ``version`` (None: back to its latest); returns the version promoted before."""
        versions = self._versions(name)
        if not versions:
            raise ModelNotFoundError(f"no model named {name!r}; train one with `ragtune train`")
        if version is not None and version not in versions:
            raise ModelNotFoundError(f"model {name!r} has no version {version} (versions: {versions})")
        path = self._aliases_path(name)
        try:
            before = self.promoted(name)
        except RagtuneError:
            before = None  # an unreadable alias file is what this call replaces
        if version is None:
            path.unlink(missing_ok=True)
            return before
        fd, tmp = tempfile.mkstemp(prefix=".aliases-", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump({PROMOTED: version}, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return before

    def resolve(self, name: str, version: int | None = None) -> int:
        """The version ``name`` means: ``version`` when given, else the promoted one, else the latest."""
        versions = self._versions(name)
        if not versions:
            known = ", ".join(c.name for c in self.list()) or "none yet"
            raise ModelNotFoundError(f"no model named {name!r} (models: {known}); train one with `ragtune train`")
        if version is not None:
            if version not in versions:
                raise ModelNotFoundError(f"model {name!r} has no version {version} (versions: {versions})")
            return version
        promoted = self.promoted(name)
        if promoted is None:
            return versions[-1]
        if promoted not in versions:
            raise ModelNotFoundError(f"model {name!r} is promoted to version {promoted}, which is not in the registry "
                                     f"(versions: {versions}); promote another with `ragtune models promote {name} "
                                     f"VERSION` or follow the latest with `ragtune models promote {name} --clear`")
        return promoted

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
        """Folder of a version (default: the promoted one, else the latest)."""
        return self.root / name / f"v{self.resolve(name, version)}"

    def versions(self, name: str) -> builtins.list[int]:
        """The versions of ``name``, oldest first (empty when there is no such model)."""
        return self._versions(name)

    def card(self, name: str, version: int | None = None) -> ModelCard:
        """The card of a version (default: the promoted one, else the latest)."""
        data = json.loads((self.path(name, version) / CARD).read_text(encoding="utf-8"))
        return ModelCard(**data)

    def load(self, name: str, version: int | None = None) -> TextClassifier:
        """Load a registered classifier: ``version``, else the promoted one, else the latest (no network)."""
        return TextClassifier.load(self.path(name, version) / "model")

    def list(self) -> builtins.list[ModelCard]:
        """The card of the version every model name resolves to (promoted, else latest; latest when the
        promotion is broken, so one bad alias file never hides the others)."""
        if not self.root.is_dir():
            return []
        cards = []
        for folder in sorted(p for p in self.root.iterdir() if p.is_dir() and _NAME.match(p.name)):
            if versions := self._versions(folder.name):
                try:
                    cards.append(self.card(folder.name))
                except RagtuneError:
                    cards.append(self.card(folder.name, versions[-1]))
        return cards

    def delete(self, name: str, version: int | None = None) -> builtins.list[int]:
        """Delete one version, or every version when ``version`` is None; returns the versions deleted.

        Deleting the promoted version also drops the promotion (after the files are gone: a crash in between
        leaves an error naming the missing version, never a silent switch to another one)."""
        versions = self._versions(name)
        if not versions:
            raise ModelNotFoundError(f"no model named {name!r}")
        doomed = versions if version is None else [version]
        for v in doomed:
            shutil.rmtree(self.path(name, v))
        if version is None:
            shutil.rmtree(self.root / name, ignore_errors=True)
        else:
            try:
                promoted = self.promoted(name)
            except RagtuneError:
                promoted = None
            if promoted == version:
                self._aliases_path(name).unlink(missing_ok=True)
        return doomed


def new_card(method: str, clf: TextClassifier, data_sha256: str, data_source: str) -> ModelCard:
    """A card for a freshly trained classifier (name and version are set on registration)."""
    return ModelCard(
        name="", version=0, method=method, classes=[str(c) for c in clf.classes_], data_sha256=data_sha256,
        data_source=data_source, created=time.time(), params=clf.get_params(),
    )


def resolve_served(models_dir: Path, spec: str, name: str, version: int | None, kind: str, train_command: str,
                   unset_hint: str) -> tuple[Path, int, ModelCard]:
    """(``model/`` folder, version, card) of the registered model a setting (``spec``, e.g. ``registry:rr@2``)
    names for serving, or a clear error: no such model (:class:`ModelNotFoundError`, naming ``train_command`` and
    ``unset_hint``), or a model of another kind than ``kind`` (:class:`ConfigError`)."""
    registry = Registry(models_dir)
    try:
        resolved = registry.resolve(name, version)
    except ModelNotFoundError as exc:
        raise ModelNotFoundError(f"{kind} {spec!r}: {exc}. Train it with `{train_command} --name {name}`, or "
                                 f"{unset_hint}") from None
    card = registry.card(name, resolved)
    if card.method != kind:
        article = "an" if kind[0] in "aeiou" else "a"
        raise ConfigError(f"{name} v{resolved} in the registry is a {card.method} model, not {article} {kind}: "
                          f"name one trained by `{train_command}`")
    return registry.path(name, resolved) / "model", resolved, card
