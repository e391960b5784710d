"""The reranking stage: an optional reordering of the fused candidates before the top-k are fetched.

:class:`Reranker` is the contract a trained cross-encoder (or any scorer) implements; it sees the candidates'
ids and their text, already filtered to what the principal may read, and returns them reordered. The
default :class:`NoReranker` keeps the fused order, so the stage costs nothing until a model is configured.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable


@runtime_checkable
class Reranker(Protocol):
    """Reorders fused candidates for one query."""

    name: str

    def rerank(self, query: str, candidates: Sequence[tuple[str, str]]) -> list[tuple[str, float]]:
        """(chunk id, score) best first, for ``candidates`` given as (chunk id, text) in fused order."""
        ...

    def warm_up(self) -> None:
        """Load the model now rather than on the first query."""
        ...


class NoReranker:
    """Keeps the fused order (the default)."""

    name = "none"

    def rerank(self, query: str, candidates: Sequence[tuple[str, str]]) -> list[tuple[str, float]]:
        """The candidates unchanged, scored by their fused rank."""
        return [(cid, 1.0 / rank) for rank, (cid, _) in enumerate(candidates, start=1)]

    def warm_up(self) -> None:
        """Nothing to load."""


def make_reranker(kind: str, models_dir: Path | None = None, *, threads: int = 2,
                  max_length: int | None = None) -> Reranker | None:
    """The reranker ``rerank.kind`` names: ``None`` for ``none`` (the stage is skipped), or the cross-encoder
    ``registry:NAME[@VERSION]`` from ``models_dir`` (loaded on first use)."""
    if kind == "none":
        return None
    if kind.startswith("registry:") and models_dir is not None:
        from ragtune.tuning.reranker.served import CrossEncoderReranker

        return CrossEncoderReranker(models_dir, kind, threads=threads, max_length=max_length)
    raise ValueError(f"unknown reranker kind {kind!r}")
