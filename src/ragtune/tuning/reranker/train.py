"""Train a cross-encoder reranker from the packaged all-MiniLM-L6-v2 on retriever pairs and register it as a
model of kind ``reranker``.

The network reads query and passage **together** (``[CLS] query [SEP] passage [SEP]``, every token attending
to both) through MiniLM's first ``layers`` layers, and scores the pair by the cosine of the two segments' mean
token states times a learned scale. That head has no weights to learn from scratch, so it starts from the
bi-encoder's geometry and learns within hundreds of CPU steps; a fresh one-logit head on ``[CLS]`` stayed at
chance after 150 steps on SciFact (see docs/architecture.md). Each training query is scored against a
**group**: its positive, its mined hard negatives, and other positives of the same ACL (never another ACL's
text, never its own document's or query's), and the loss is the softmax cross-entropy of the positive within
the group. The loop is plain torch so that a time budget can stop it after any step; the model is saved,
exported to ONNX and registered all the same.
"""

from __future__ import annotations

import math
import random
import shutil
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np

from ragtune.errors import EmptyCorpusError
from ragtune.models.embedder import minilm_model_dir
from ragtune.models.hf import export_onnx, load_tokenizer, offline, quiet, torch_threads
from ragtune.tuning.registry import ModelCard, Registry
from ragtune.tuning.reranker.served import KIND, MODEL_DIR, ONNX_FILE, TOKENIZER, encode_pairs
from ragtune.tuning.retriever.loop import train_steps, training_sections
from ragtune.tuning.retriever.pairs import PairSet, TrainingPair, holdout_unit, split_by_document
from ragtune.tuning.retriever.tuned import weights_digest

Progress = Callable[[str, int, int, dict[str, float]], None]
Group = tuple[str, list[str]]  # (query, [positive, negatives...])


@dataclass
class TrainedReranker:
    """What one run produced: the card and folder, and each held-out query's rank (0 = first) of its positive
    within its group, by the base embedder's cosine and by the trained reranker."""

    card: ModelCard
    folder: Path
    base_ranks: list[int] = field(default_factory=list)
    reranker_ranks: list[int] = field(default_factory=list)


def make_groups(pairs: Sequence[TrainingPair], group_size: int, rng: random.Random) -> list[Group]:
    """One group per pair: the positive, the pair's hard negatives, then other positives of pairs with the same
    ACL (not of the same document or query, not the same text) until ``group_size``. A pair whose group would hold no
    negative teaches nothing and is left out."""
    by_acl: dict[tuple[str, ...], list[TrainingPair]] = defaultdict(list)
    for p in pairs:
        by_acl[p.acl].append(p)
    groups: list[Group] = []
    for p in pairs:
        texts = [p.positive]
        for neg in (p.negative, *getattr(p, "extra_negatives", ())):
            if neg and neg not in texts and len(texts) < group_size:
                texts.append(neg)
        pool = by_acl[p.acl]
        tries = 0
        while len(texts) < group_size and tries < 4 * group_size and len(pool) > 1:
            other = pool[rng.randrange(len(pool))]
            tries += 1
            if other.doc_id != p.doc_id and other.query != p.query and other.positive not in texts:
                texts.append(other.positive)
        if len(texts) > 1:
            groups.append((p.query, texts))
    rng.shuffle(groups)
    return groups


def group_ranks(score: Callable[[str, list[str]], np.ndarray], groups: Sequence[Group]) -> list[int]:
    """Rank (0 = first) of each group's positive (its first text) by ``score(query, texts)``."""
    ranks = []
    for query, texts in groups:
        s = score(query, texts)
        ranks.append(int((s[1:] > s[0]).sum()))
    return ranks


def mrr(ranks: Sequence[int]) -> float:
    """Mean reciprocal rank of 0-based ranks."""
    return float(np.mean([1.0 / (r + 1) for r in ranks])) if ranks else float("nan")


SCALE_FILE = "scorer.json"  # the learned cosine scale, beside the transformer's weights
INITIAL_SCALE = 20.0  # MultipleNegativesRankingLoss's scale: cosines times 20 make a usable softmax at once


def scorer_module(bert: Any, scale: float | Any) -> Any:
    """``(input_ids, attention_mask, token_type_ids) -> scores``: ``scale`` × the cosine of the mean token states
    of segment A (the query, type 0) and segment B (the passage, type 1), read jointly by ``bert``."""
    import torch

    class SegmentCosine(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert
            self.scale = scale if isinstance(scale, torch.nn.Parameter) else torch.nn.Parameter(
                torch.tensor(float(scale)))

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            states = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                               token_type_ids=token_type_ids).last_hidden_state
            mask = attention_mask.to(states.dtype)
            b = mask * token_type_ids.to(states.dtype)
            a = mask - b
            mean_a = (states * a[..., None]).sum(1) / a.sum(1, keepdim=True).clamp(min=1.0)
            mean_b = (states * b[..., None]).sum(1) / b.sum(1, keepdim=True).clamp(min=1.0)
            return self.scale * torch.nn.functional.cosine_similarity(mean_a, mean_b, dim=-1)

    return SegmentCosine()


def load_scorer(folder: Path) -> Any:
    """The torch scorer saved in ``folder`` (``model/crossencoder``), in eval mode: for checks against ONNX."""
    import json

    from transformers import AutoModel

    with quiet():
        bert = AutoModel.from_pretrained(str(folder))
    scale = json.loads((folder / SCALE_FILE).read_text(encoding="utf-8"))["scale"]
    return scorer_module(bert, scale).eval()


class _Saved:
    """What ``Registry.register`` saves: the transformer folder with its tokenizer and scale, the ONNX export of
    the whole scorer, and the weights' digest (put on the card before the registry writes it)."""

    def __init__(self, scorer: Any, card: ModelCard) -> None:
        self.scorer, self.card = scorer, card

    def save(self, folder: Path) -> None:
        import json

        target = folder / MODEL_DIR
        target.mkdir(parents=True, exist_ok=True)
        self.scorer.bert.save_pretrained(str(target))
        shutil.copyfile(minilm_model_dir() / TOKENIZER, target / TOKENIZER)
        (target / SCALE_FILE).write_text(json.dumps({"scale": float(self.scorer.scale.detach())}), encoding="utf-8")
        ids = np.ones((2, 8), dtype=np.int64)
        types = np.zeros_like(ids)
        types[:, 4:] = 1
        export_onnx(self.scorer.eval(), ids, np.ones_like(ids), folder / ONNX_FILE, "scores", {0: "batch"},
                    token_types=types)
        self.card.notes["weights_sha256"] = weights_digest(target)


def train_reranker(
    registry: Registry, name: str, pair_set: PairSet, *, base_score: Callable[[str, list[str]], np.ndarray],
    layers: int = 2, max_length: int = 128, group_size: int = 8, groups_per_step: int = 4, epochs: float = 1.0,
    learning_rate: float = 1e-4, time_budget: float | None = None, threads: int = 2, seed: int = 0,
    holdout: float = 0.1, data_source: str = "", progress: Progress | None = None,
) -> TrainedReranker:
    """Train on ``pair_set`` (``holdout`` of its labelled queries, else of its documents, held out), register the
    model as the next version of ``name`` (kind ``reranker``), write ``report.md`` beside it and return the result.

    ``base_score(query, texts)`` scores the held-out groups without a reranker (the base embedder's cosine), so
    the card shows what the reranker adds. ``time_budget`` (seconds of training steps) stops the loop after the
    step that crosses it; the model trained so far is saved, and the card says it was stopped."""
    train, held = split_by_document(pair_set.pairs, holdout, seed)
    if not train:
        raise EmptyCorpusError("no training pairs could be made from the index (every chunk too short, or none "
                               "readable by anyone): ingest documents with headings or several sentences first")
    rng = random.Random(seed)
    per_epoch = make_groups(train, group_size, random.Random(seed))
    if not per_epoch:
        raise EmptyCorpusError(f"the {len(train)} training pair(s) give no group with a negative (each ACL needs "
                               "pairs from two documents, or a mined hard negative): ingest more documents")
    held_groups = make_groups(held, group_size, random.Random(seed + 1))
    offline()
    import torch
    from transformers import AutoModel

    torch.manual_seed(seed)
    tokenizer = load_tokenizer(minilm_model_dir() / TOKENIZER, max_length)
    with torch_threads(threads):
        with quiet():
            model = scorer_module(AutoModel.from_pretrained(str(minilm_model_dir()), num_hidden_layers=layers),
                                  INITIAL_SCALE)

        def logits(pairs: list[tuple[str, str]]) -> Any:
            feed = {k: torch.from_numpy(v) for k, v in encode_pairs(tokenizer, pairs).items()}
            return model(**feed)

        def score(query: str, texts: list[str]) -> np.ndarray:
            with torch.no_grad():
                return cast(np.ndarray, logits([(query, t) for t in texts]).numpy())

        base_ranks = group_ranks(base_score, held_groups)
        model.eval()
        untrained_ranks = group_ranks(score, held_groups)  # what the training itself adds
        total = max(1, math.ceil(len(per_epoch) / groups_per_step * epochs))

        def steps_of_groups() -> Iterator[list[Group]]:
            queue = list(per_epoch)
            while True:
                if len(queue) < groups_per_step:
                    queue += make_groups(train, group_size, rng)
                yield queue[:groups_per_step]
                queue = queue[groups_per_step:]

        def loss_of(step_groups: list[Group]) -> Any:
            # every pair of the step in one forward pass, then one softmax per group (its positive first)
            flat = logits([(q, t) for q, texts in step_groups for t in texts])
            parts = flat.split([len(texts) for _, texts in step_groups])
            return torch.stack([torch.nn.functional.cross_entropy(part[None, :], torch.zeros(1, dtype=torch.long))
                                for part in parts]).mean()

        run = train_steps(model, steps_of_groups(), loss_of, total=total, learning_rate=learning_rate,
                          time_budget=time_budget, progress=progress)
        reranker_ranks = group_ranks(score, held_groups)
        card = ModelCard(
            name=name, version=0, method=KIND, classes=[], data_sha256=pair_set.digest(), data_source=data_source,
            created=time.time(),
            metrics={"heldout_queries": len(held_groups), "heldout_mrr_base": mrr(base_ranks),
                     "heldout_mrr_reranker": mrr(reranker_ranks), "heldout_mrr_untrained": mrr(untrained_ranks),
                     "heldout_top1_base": float(np.mean([r == 0 for r in base_ranks])) if base_ranks else math.nan,
                     "heldout_top1_reranker": (float(np.mean([r == 0 for r in reranker_ranks]))
                                               if reranker_ranks else math.nan),
                     "train_pairs": len(train), "train_groups": len(per_epoch), "steps": run.steps,
                     "planned_steps": total, "final_loss": run.final_loss, "train_seconds": round(run.seconds, 1)},
            params={"layers": layers, "max_length": max_length, "group_size": group_size,
                    "groups_per_step": groups_per_step, "epochs": epochs, "learning_rate": learning_rate,
                    "time_budget": time_budget, "seed": seed, "holdout": holdout,
                    "loss": "softmax cross-entropy over (positive, negatives)", "base": "all-MiniLM-L6-v2",
                    "head": "scaled cosine of the segments' mean token states"},
            notes={"kind": KIND, "stopped": run.stopped, "pairs": pair_set.counts,
                   "holdout_unit": holdout_unit(pair_set.pairs)},
        )
        card = registry.register(name, cast(Any, _Saved(model, card)), card)
    folder = registry.path(name, card.version)
    (folder / "report.md").write_text(report_markdown(card), encoding="utf-8")
    return TrainedReranker(card, folder, base_ranks, reranker_ranks)


def report_markdown(card: ModelCard) -> str:
    """The small report written beside a trained reranker: data, training, held-out check, how to serve it."""
    m = card.metrics
    lines = [f"# {card.name} v{card.version}: a cross-encoder reranker trained on the corpus", "",
             f"{card.params['layers']} layers of the packaged all-MiniLM-L6-v2 reading query and passage together, "
             "scored by the scaled cosine of the two segments' mean token states, trained on "
             f"pairs from {card.data_source or 'the index'}.", ""]
    lines += training_sections(card)
    if m["heldout_queries"]:
        lines += ["| ranking of each group | MRR | top-1 |", "|---|---|---|",
                  f"| base embedder cosine | {m['heldout_mrr_base']:.4f} | {m['heldout_top1_base']:.4f} |",
                  f"| reranker | {m['heldout_mrr_reranker']:.4f} | {m['heldout_top1_reranker']:.4f} |",
                  f"| the same network before training | {m['heldout_mrr_untrained']:.4f} | |", "",
                  f"{m['heldout_queries']} held-out queries, each ranking its positive among up to "
                  f"{card.params['group_size']} texts of its ACL (its hard negatives and other positives)."]
    else:
        lines += ["Too few documents to hold any out (5 or more are needed)."]
    lines += ["", "## Serve it", "", "In ragtune.yaml:", "",
              "    rerank:", f"      kind: registry:{card.name}@{card.version}", ""]
    return "\n".join(lines)
