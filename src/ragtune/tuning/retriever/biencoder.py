"""Fine-tune the packaged all-MiniLM-L6-v2 as a bi-encoder on generated pairs, check it on held-out documents
and register it as a model of kind ``embedder``.

The loss is sentence-transformers' ``MultipleNegativesRankingLoss``: each query against its positive, the other
positives of its batch and the mined hard negatives. Every batch holds pairs of **one ACL** (and no two pairs of
one document), so even the in-batch negatives never cross an ACL boundary. The loop is plain torch so that a
time budget can stop it cleanly after any step; the model is saved and registered all the same.
"""

from __future__ import annotations

import math
import random
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np

from ragtune.errors import EmptyCorpusError
from ragtune.models.embedder import minilm_model_dir
from ragtune.models.hf import export_onnx, ids_and_mask_module, offline, quiet, torch_threads
from ragtune.tuning.registry import ModelCard, Registry
from ragtune.tuning.retriever.loop import train_steps, training_sections
from ragtune.tuning.retriever.pairs import PairSet, TrainingPair, fold_text, holdout_unit, split_by_document
from ragtune.tuning.retriever.tuned import ENCODER_DIR, KIND, ONNX_FILE, weights_digest

Progress = Callable[[str, int, int, dict[str, float]], None]
RECALL_K = 10


@dataclass
class TrainedRetriever:
    """What one training run produced: the registered card and folder, and the held-out ranks (0 = first) of
    each held-out query's positive, before (base model) and after."""

    card: ModelCard
    folder: Path
    base_ranks: list[int] = field(default_factory=list)
    adapted_ranks: list[int] = field(default_factory=list)


class _OpenBatch:
    """A batch being filled, with what its members rule out for a newcomer."""

    def __init__(self) -> None:
        self.pairs: list[TrainingPair] = []
        self.docs: set[str] = set()  # every member's document
        self.whole_docs: set[str] = set()  # documents of document-level members: no other passage of them joins
        self.chunks: set[str] = set()
        self.queries: set[str] = set()
        self.folded: list[str] = []  # members' positives, folded

    def admits(self, p: TrainingPair, folded: str) -> bool:
        """Whether ``p`` may join: no query twice; a document-level pair (no answers) shares its document with
        nobody; an answer-level pair shares no chunk, holds no member's answer, and no member holds its answer."""
        if p.query in self.queries:
            return False
        if not p.answers:
            return p.doc_id not in self.docs
        if p.doc_id in self.whole_docs or p.chunk_id in self.chunks:
            return False
        if any(fold_text(a) in text for a in p.answers for text in self.folded):
            return False
        return not any(fold_text(a) in folded for m in self.pairs for a in m.answers)

    def add(self, p: TrainingPair, folded: str) -> None:
        """Take ``p`` in."""
        self.pairs.append(p)
        self.docs.add(p.doc_id)
        if not p.answers:
            self.whole_docs.add(p.doc_id)
        self.chunks.add(p.chunk_id)
        self.queries.add(p.query)
        self.folded.append(folded)


def make_batches(pairs: Sequence[TrainingPair], batch_size: int, rng: random.Random) -> list[list[TrainingPair]]:
    """Batches of one ACL each (and all with or all without a negative), in a shuffled order, in which no
    member's positive is a false negative of another: no query twice (its other gold document would be one of
    its in-batch negatives), no document twice for document-level pairs, and for answer-level pairs (labelled
    with the answer text, :attr:`TrainingPair.answers`) no chunk twice and no passage holding another member's
    answer — so a long document's passages can be each other's negatives. A lone pair without a negative
    teaches nothing and is left out."""
    groups: dict[tuple[tuple[str, ...], bool], list[TrainingPair]] = defaultdict(list)
    for p in pairs:
        groups[(p.acl, p.negative is not None)].append(p)
    batches: list[list[TrainingPair]] = []
    for key in sorted(groups):
        items = groups[key][:]
        rng.shuffle(items)
        open_: list[_OpenBatch] = []
        for p in items:
            folded = fold_text(p.positive)
            target = next((b for b in open_ if b.admits(p, folded)), None)
            if target is None:
                target = _OpenBatch()
                open_.append(target)
            target.add(p, folded)
            batches.extend(b.pairs for b in open_ if len(b.pairs) >= batch_size)
            open_ = [b for b in open_ if len(b.pairs) < batch_size]
        batches.extend(b.pairs for b in open_ if len(b.pairs) > 1 or b.pairs[0].negative is not None)
    rng.shuffle(batches)
    return batches


def heldout_ranks(encode: Callable[[list[str]], np.ndarray], held: Sequence[TrainingPair]) -> list[int]:
    """Rank (0 = first) of each held-out query's positive among every held-out positive, by cosine."""
    if not held:
        return []
    pool = sorted({p.positive for p in held})
    index = {text: i for i, text in enumerate(pool)}
    docs = encode(pool)
    queries = encode([p.query for p in held])
    scores = queries @ docs.T
    gold = np.array([index[p.positive] for p in held])
    return [int(r) for r in (scores > scores[np.arange(len(held)), gold][:, None]).sum(axis=1)]


def recall_at(ranks: Sequence[int], k: int = RECALL_K) -> float:
    """Share of ranks below ``k``."""
    return float(np.mean([r < k for r in ranks])) if ranks else float("nan")


class _Saved:
    """What ``Registry.register`` saves: the encoder folder, its ONNX export, and the weights' digest (put on the
    card before the registry writes it)."""

    def __init__(self, model: Any, card: ModelCard) -> None:
        self.model, self.card = model, card

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        with quiet():
            self.model.save(str(folder / ENCODER_DIR))
        ids = np.ones((2, 8), dtype=np.int64)
        bert = self.model[0].auto_model.eval()
        export_onnx(ids_and_mask_module(bert, "last_hidden_state"), ids, np.ones_like(ids), folder / ONNX_FILE,
                    "last_hidden_state", {0: "batch", 1: "sequence"})
        self.card.notes["weights_sha256"] = weights_digest(folder / ENCODER_DIR)


def train_biencoder(
    registry: Registry, name: str, pair_set: PairSet, *, epochs: float = 1.0, batch_size: int = 32,
    learning_rate: float = 3e-5, max_length: int = 128, time_budget: float | None = None, threads: int = 2,
    seed: int = 0, holdout: float = 0.1, data_source: str = "", base_fingerprint: str = "",
    progress: Progress | None = None,
) -> TrainedRetriever:
    """Train on ``pair_set`` (``holdout`` of its documents held out for the before/after check), register the model
    as the next version of ``name`` (kind ``embedder``), write ``report.md`` beside it and return the result.

    ``time_budget`` (seconds of training steps): the loop stops after the step that crosses it, and the model
    trained so far is saved. The card records whether it finished or was stopped, steps, loss and recall@10."""
    train, held = split_by_document(pair_set.pairs, holdout, seed)
    if not train:
        raise EmptyCorpusError("no training pairs could be made from the index (every chunk too short, or none "
                               "readable by anyone): ingest documents with headings or several sentences first")
    offline()
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    rng = random.Random(seed)
    torch.manual_seed(seed)
    with torch_threads(threads):
        with quiet():
            model = SentenceTransformer(str(minilm_model_dir()), device="cpu")
        model.max_seq_length = max_length

        def encode(texts: list[str]) -> np.ndarray:
            return cast(np.ndarray, model.encode(texts, batch_size=64, normalize_embeddings=True,
                                                 convert_to_numpy=True, show_progress_bar=False))

        base_ranks = heldout_ranks(encode, held)
        per_epoch = make_batches(train, batch_size, random.Random(seed))
        if not per_epoch:
            raise EmptyCorpusError(f"the {len(train)} training pair(s) make no batch (each ACL needs two pairs from "
                                   "different documents, or one with a hard negative): ingest more documents")
        total = max(1, math.ceil(len(per_epoch) * epochs))
        loss_fn = MultipleNegativesRankingLoss(model)

        def batches() -> Iterator[list[TrainingPair]]:
            yield from per_epoch
            while True:
                yield from make_batches(train, batch_size, rng)

        def loss_of(batch: list[TrainingPair]) -> Any:
            columns = [[p.query for p in batch], [p.positive for p in batch]]
            if batch[0].negative is not None:
                columns.append([cast(str, p.negative) for p in batch])
            return loss_fn([model.preprocess(c) for c in columns], torch.zeros(len(batch)))

        run = train_steps(model, batches(), loss_of, total=total, learning_rate=learning_rate,
                          time_budget=time_budget, progress=progress)
        adapted_ranks = heldout_ranks(encode, held)
        card = ModelCard(
            name=name, version=0, method=KIND, classes=[], data_sha256=pair_set.digest(), data_source=data_source,
            created=time.time(),
            metrics={"heldout_queries": len(held), f"heldout_recall@{RECALL_K}_base": recall_at(base_ranks),
                     f"heldout_recall@{RECALL_K}_adapted": recall_at(adapted_ranks),
                     "heldout_mean_rank_base": float(np.mean(base_ranks)) if held else float("nan"),
                     "heldout_mean_rank_adapted": float(np.mean(adapted_ranks)) if held else float("nan"),
                     "train_pairs": len(train), "steps": run.steps, "planned_steps": total,
                     "final_loss": run.final_loss, "train_seconds": round(run.seconds, 1)},
            params={"epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate,
                    "max_length": max_length, "time_budget": time_budget, "seed": seed, "holdout": holdout,
                    "loss": "MultipleNegativesRankingLoss", "base": "all-MiniLM-L6-v2"},
            notes={"kind": KIND, "stopped": run.stopped, "pairs": pair_set.counts, "base_fingerprint": base_fingerprint,
                   "holdout_unit": holdout_unit(pair_set.pairs),
                   "dim": int(model.get_embedding_dimension() or 384)},
        )
        card = registry.register(name, cast(Any, _Saved(model, card)), card)
    folder = registry.path(name, card.version)
    (folder / "report.md").write_text(report_markdown(card), encoding="utf-8")
    return TrainedRetriever(card, folder, base_ranks, adapted_ranks)


def report_markdown(card: ModelCard) -> str:
    """The small report written beside a tuned embedder: data, training, held-out check, how to serve it."""
    m = card.metrics
    lines = [f"# {card.name} v{card.version}: a bi-encoder adapted to the corpus", "",
             f"Trained from the packaged all-MiniLM-L6-v2 on pairs generated from {card.data_source or 'the index'}.",
             ""]
    lines += training_sections(card)
    if m["heldout_queries"]:
        lines += [f"| model | recall@{RECALL_K} | mean rank |", "|---|---|---|",
                  f"| base | {m[f'heldout_recall@{RECALL_K}_base']:.4f} | {m['heldout_mean_rank_base']:.2f} |",
                  f"| adapted | {m[f'heldout_recall@{RECALL_K}_adapted']:.4f} | "
                  f"{m['heldout_mean_rank_adapted']:.2f} |",
                  "", f"{m['heldout_queries']} held-out queries, each ranked against every held-out positive."]
    else:
        lines += ["Too few documents to hold any out (5 or more are needed)."]
    lines += ["", "## Serve it", "", f"    ragtune reindex --embedder registry:{card.name}@{card.version}", ""]
    return "\n".join(lines)
