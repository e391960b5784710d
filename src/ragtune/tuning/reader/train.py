"""Fine-tune an extractive span reader from the packaged all-MiniLM-L6-v2 and register it as a model of kind
``reader``.

The network is MiniLM's first ``layers`` layers with a fresh two-logit head (``AutoModelForQuestionAnswering``:
a start and an end logit per token), trained the standard SQuAD way: question and passage read together in
windows (:class:`~ragtune.tuning.reader.served.WindowEncoder`), the loss the mean of the start and end
cross-entropies, a window whose passage part does not hold the answer (or a question the passage does not
answer) pointing at ``[CLS]``. The word embeddings (30k rows, half the weights of a 6-layer model) stay frozen:
a small training set would otherwise move the vectors of the words it contains away from those of the words it
does not, and the optimiser step is cheaper. The loop is plain torch
(:func:`~ragtune.tuning.retriever.loop.train_steps`), so a time budget can stop it after any step; the model is
saved, exported to ONNX and registered all the same.

Held-out examples (a ``holdout`` share of the groups — a SQuAD article, a JSONL ``group``/``document``, else a
passage — so no group is on both sides; or a separate validation file) measure exact match and F1 after training
and calibrate the no-answer threshold (:func:`~ragtune.tuning.reader.squad.best_threshold`), which the card keeps.
"""

from __future__ import annotations

import math
import os
import random
import shutil
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np

from ragtune.errors import DataError
from ragtune.models.embedder import minilm_model_dir
from ragtune.models.hf import offline, quiet, torch_threads
from ragtune.tuning.reader.data import ReaderAudit, ReaderExample, audit_examples, examples_digest, pair_key
from ragtune.tuning.reader.served import (
    KIND,
    MODEL_DIR,
    ONNX_FILE,
    TOKENIZER,
    Span,
    WindowEncoder,
    Windows,
    onnx_sha256,
    spans_of,
)
from ragtune.tuning.reader.squad import evaluate
from ragtune.tuning.registry import ModelCard, Registry, check_name
from ragtune.tuning.retriever.loop import train_steps, training_sections
from ragtune.tuning.retriever.tuned import weights_digest

Progress = Callable[[str, int, int, dict[str, float]], None]
TOKENIZER_FILES = (TOKENIZER, "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")
MAX_ANSWER_TOKENS = 30  # the least span-length limit; a longer one is learnt from the training answers
ANSWER_COVERAGE = 98.0  # percentile of the training answers' token lengths the limit covers
BUCKET_POOL = 50  # batches sorted by length together (see length_bucketed_batches)
EVAL_BATCH = 32


@dataclass
class TrainedReader:
    """What one run produced: the card, its registry folder and the held-out metrics (also on the card)."""

    card: ModelCard
    folder: Path
    metrics: dict[str, Any] = field(default_factory=dict)


def split_by_group(examples: Sequence[ReaderExample], holdout: float, seed: int
                   ) -> tuple[list[ReaderExample], list[ReaderExample]]:
    """(train, held out): whole groups held out (seeded) until ``holdout`` of the examples; nothing held out
    with fewer than 2 groups. A held-out example whose (question, passage) is also in train is dropped."""
    groups = sorted({e.group for e in examples})
    if holdout <= 0 or len(groups) < 2:
        return list(examples), []
    random.Random(seed).shuffle(groups)
    want, held_groups, count = holdout * len(examples), set(), 0
    sizes = {g: 0 for g in groups}
    for e in examples:
        sizes[e.group] += 1
    for g in groups[:-1]:  # always leave one group to train on
        if count >= want:
            break
        held_groups.add(g)
        count += sizes[g]
    train = [e for e in examples if e.group not in held_groups]
    seen = {pair_key(e) for e in train}
    return train, [e for e in examples if e.group in held_groups and pair_key(e) not in seen]


def answer_positions(windows: Windows, examples: Sequence[ReaderExample]) -> tuple[np.ndarray, np.ndarray]:
    """Start and end token of each window's answer (its example's first), or 0 (``[CLS]``) when the window's
    passage part does not hold all of it or the example has no answer."""
    starts, ends = np.zeros(len(windows), dtype=np.int64), np.zeros(len(windows), dtype=np.int64)
    for w in range(len(windows)):
        answers = examples[windows.source[w]].answers
        if not answers:
            continue
        char_start, text = answers[0]
        char_end = char_start + len(text)
        c0, c1 = windows.context[w]
        off = windows.offsets[w]
        if off[c0][0] > char_start or off[c1][1] < char_end:
            continue
        t0 = c0 + int(np.flatnonzero(off[c0:c1 + 1, 0] <= char_start)[-1])
        t1 = t0 + int(np.flatnonzero(off[t0:c1 + 1, 1] >= char_end)[0])
        starts[w], ends[w] = t0, t1
    return starts, ends


def answer_token_limit(starts: np.ndarray, ends: np.ndarray, max_length: int) -> int:
    """The longest span the reader may return: :data:`ANSWER_COVERAGE` % of the training windows' answers (in
    tokens) fit within it, never below :data:`MAX_ANSWER_TOKENS` nor above half a window."""
    lengths = (ends - starts + 1)[starts > 0]
    learnt = math.ceil(float(np.percentile(lengths, ANSWER_COVERAGE))) if len(lengths) else MAX_ANSWER_TOKENS
    return int(min(max(MAX_ANSWER_TOKENS, learnt), max(MAX_ANSWER_TOKENS, max_length // 2)))


def length_bucketed_batches(lengths: Sequence[int], batch_size: int, rng: np.random.Generator,
                            pool: int = BUCKET_POOL) -> Iterator[list[int]]:
    """Endless batches of row indices, each epoch a new random order: ``pool`` batches' worth of rows at a time
    are sorted by length and cut into batches, which are then shuffled. Batches pad to their longest window, so
    grouping windows of like length saves most of the padding (PolicyQA's windows: median 90 tokens, longest
    256) while every batch still mixes rows from all over the data."""
    size = np.asarray(lengths)
    while True:
        order = rng.permutation(len(size))
        for first in range(0, len(order), batch_size * pool):
            block = order[first:first + batch_size * pool]
            block = block[np.argsort(size[block], kind="stable")]
            cut = [block[i:i + batch_size] for i in range(0, len(block), batch_size)]
            for b in rng.permutation(len(cut)):
                yield [int(r) for r in cut[b]]


def torch_logits(model: Any, windows: Windows, batch: int = EVAL_BATCH) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Start and end logits of each window by the torch model (eval mode, no gradients)."""
    import torch

    starts: list[np.ndarray] = []
    ends: list[np.ndarray] = []
    with torch.no_grad():
        for first in range(0, len(windows), batch):
            rows = list(range(first, min(first + batch, len(windows))))
            out = model(**{k: torch.from_numpy(v) for k, v in windows.feed(rows).items()})
            starts += list(out.start_logits.numpy())
            ends += list(out.end_logits.numpy())
    return starts, ends


def best_per_example(model: Any, encoder: WindowEncoder, examples: Sequence[ReaderExample],
                     max_answer_tokens: int = MAX_ANSWER_TOKENS) -> list[tuple[str, float]]:
    """(best span text, score) of each example by the torch model ("", -inf when no span is possible)."""
    windows = encoder.encode([(e.question, e.passage) for e in examples])
    starts, ends = torch_logits(model, windows)
    found = spans_of(starts, ends, windows, [e.passage for e in examples], max_answer_tokens=max_answer_tokens)
    return [(spans[0].text, spans[0].score) if spans else ("", -math.inf) for spans in found]


def read_with_torch(model: Any, encoder: WindowEncoder, question: str, passages: Sequence[str], *, top_n: int = 1,
                    max_answer_tokens: int = MAX_ANSWER_TOKENS) -> list[Span]:
    """What :meth:`SpanReader.read` gives, computed by the torch model (for checks of the ONNX export)."""
    windows = encoder.encode([(question, p) for p in passages])
    starts, ends = torch_logits(model, windows)
    found = spans_of(starts, ends, windows, passages, max_answer_tokens=max_answer_tokens)
    return sorted((s for per in found for s in per), key=lambda s: (-s.score, s.passage, s.start))[:top_n]


def load_reader_model(folder: Path) -> Any:
    """The torch model saved in ``folder`` (``model/reader``), in eval mode."""
    offline()
    from transformers import AutoModelForQuestionAnswering

    with quiet():
        return AutoModelForQuestionAnswering.from_pretrained(str(folder)).eval()


def export_reader_onnx(model: Any, target: Path) -> Path:
    """Trace ``model`` into ``target`` (opset 17; inputs ``input_ids``, ``attention_mask``, ``token_type_ids``,
    outputs ``start_logits``, ``end_logits``, batch and sequence axes dynamic), written to a temporary name and
    renamed."""
    import torch

    class Logits(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = model

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            out = self.inner(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
            return out.start_logits, out.end_logits

    ids = torch.ones((2, 8), dtype=torch.long)
    types = torch.zeros_like(ids)
    types[:, 4:] = 1
    names, outputs = ["input_ids", "attention_mask", "token_type_ids"], ["start_logits", "end_logits"]
    axes = {n: {0: "batch", 1: "sequence"} for n in names + outputs}
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter is deprecated but needs no onnxscript
            torch.onnx.export(Logits().eval(), (ids, torch.ones_like(ids), types), str(tmp), input_names=names,
                              output_names=outputs, dynamic_axes=axes, opset_version=17, do_constant_folding=True,
                              dynamo=False)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


class _Saved:
    """What ``Registry.register`` saves: the transformers folder with the tokenizer files, the ONNX export, and
    the digests (put on the card before the registry writes it)."""

    def __init__(self, model: Any, card: ModelCard) -> None:
        self.model, self.card = model, card

    def save(self, folder: Path) -> None:
        target = folder / MODEL_DIR
        target.mkdir(parents=True, exist_ok=True)
        with quiet():
            self.model.save_pretrained(str(target))
        for name in TOKENIZER_FILES:
            if (minilm_model_dir() / name).is_file():
                shutil.copyfile(minilm_model_dir() / name, target / name)
        export_reader_onnx(self.model.eval(), folder / ONNX_FILE)
        self.card.notes["weights_sha256"] = weights_digest(target)
        self.card.notes["onnx_sha256"] = onnx_sha256(folder / ONNX_FILE)


def train_reader(
    registry: Registry, name: str, examples: Sequence[ReaderExample], *,
    validation: Sequence[ReaderExample] | None = None, layers: int = 6, max_length: int = 256, stride: int = 64,
    batch_size: int = 16, epochs: float = 1.0, learning_rate: float = 3e-4, time_budget: float | None = None,
    threads: int = 2, seed: int = 0, holdout: float = 0.1, data_source: str = "", progress: Progress | None = None,
    audit: ReaderAudit | None = None, max_answer_tokens: int | None = None,
) -> TrainedReader:
    """Audit ``examples`` (and ``validation``; ``audit``: their audit when the caller already made it), train on
    them (``holdout`` of their groups held out unless ``validation`` is given), calibrate the no-answer threshold on
    the held-out examples, register the model as the next version of ``name`` (kind ``reader``), write
    ``report.md`` beside it and return the result.

    Blocking audit findings (nothing answerable to learn from) raise :class:`DataError` before any model loads.
    ``time_budget`` (seconds of training steps) stops the loop after the step that crosses it; the model trained
    so far is saved, and the card says it was stopped. ``max_answer_tokens`` bounds the spans it returns; by
    default it is learnt from the training answers (:func:`answer_token_limit`) and kept on the card."""
    def as_list(data: Sequence[ReaderExample]) -> list[ReaderExample]:
        return data if isinstance(data, list) else list(data)  # a ReaderData keeps what its loader dropped

    check_name(name)  # before the hours of training, not after
    if audit is None:
        audit = audit_examples(as_list(examples), as_list(validation) if validation is not None else None)
    if audit.blocking:
        raise DataError("cannot train the reader: " + "; ".join(audit.blocking))
    if validation is not None:
        train, held = list(examples), list(validation)
    else:
        train, held = split_by_group(examples, holdout, seed)
    offline()
    import torch
    from transformers import AutoModelForQuestionAnswering

    torch.manual_seed(seed)
    encoder = WindowEncoder(minilm_model_dir() / TOKENIZER, max_length, stride)
    windows = encoder.encode([(e.question, e.passage) for e in train])
    starts, ends = answer_positions(windows, train)
    if not any(e.answers for e in train):
        raise DataError("no training example left with an answer once the held-out groups are set aside: add "
                        "answered questions, or lower --holdout")
    if not int((starts > 0).sum()):
        raise DataError(f"no training window holds a whole answer within {max_length} tokens: raise --max-length")
    span_limit = max_answer_tokens or answer_token_limit(starts, ends, max_length)
    with torch_threads(threads):
        with quiet():
            model = AutoModelForQuestionAnswering.from_pretrained(str(minilm_model_dir()), num_hidden_layers=layers)
        model.get_input_embeddings().weight.requires_grad_(False)  # frozen: see the module's docstring
        total = max(1, math.ceil(len(windows) / batch_size * epochs))
        batches = length_bucketed_batches([len(ids) for ids in windows.ids], batch_size,
                                          np.random.default_rng(seed))

        def loss_of(rows: list[int]) -> Any:
            feed = {k: torch.from_numpy(v) for k, v in windows.feed(rows).items()}
            return model(**feed, start_positions=torch.from_numpy(starts[rows]),
                         end_positions=torch.from_numpy(ends[rows])).loss

        run = train_steps(model, batches, loss_of, total=total, learning_rate=learning_rate,
                          time_budget=time_budget, progress=progress)
        if progress is not None and held:
            progress("evaluate", 0, len(held), {})
        held_metrics = evaluate(best_per_example(model, encoder, held, span_limit),
                                [[t for _, t in e.answers] for e in held]) if held else {}
        if progress is not None and held:
            progress("evaluate", len(held), len(held), {})
        card = _card(name, train, held, audit, windows, run, total, held_metrics, data_source, validation is not None,
                     dict(layers=layers, max_length=max_length, stride=encoder.stride, batch_size=batch_size,
                          epochs=epochs, learning_rate=learning_rate, time_budget=time_budget, seed=seed,
                          holdout=holdout if validation is None else None, max_answer_tokens=span_limit))
        card = registry.register(name, cast(Any, _Saved(model, card)), card)
    folder = registry.path(name, card.version)
    (folder / "report.md").write_text(report_markdown(card, audit), encoding="utf-8")
    return TrainedReader(card, folder, card.metrics)


def _card(name: str, train: list[ReaderExample], held: list[ReaderExample], audit: ReaderAudit, windows: Windows,
          run: Any, total: int, held_metrics: dict[str, float], data_source: str, validation_file: bool,
          params: dict[str, Any]) -> ModelCard:
    m = {f"heldout_{k}": v for k, v in held_metrics.items() if k != "threshold"}
    threshold = held_metrics.get("threshold", 0.0)
    metrics = {"heldout_examples": len(held), "heldout_answerable": sum(bool(e.answers) for e in held), **m,
               "train_examples": len(train), "train_windows": len(windows), "steps": run.steps,
               "planned_steps": total,
               "final_loss": run.final_loss, "train_seconds": round(run.seconds, 1)}
    return ModelCard(
        name=name, version=0, method=KIND, classes=[], data_sha256=examples_digest(train), data_source=data_source,
        created=time.time(), metrics=metrics,
        params={**params, "threshold": float(threshold), "threshold_calibrated": bool(held),
                "base": "all-MiniLM-L6-v2",
                "head": "start and end logits per token (AutoModelForQuestionAnswering)"},
        notes={"kind": KIND, "stopped": run.stopped, "audit": audit.counts(),
               "holdout_unit": "validation file" if validation_file else "group",
               "pairs": {"train_pairs": len(train), "heldout_pairs": len(held), "train_windows": len(windows),
                         "train_no_answer": sum(not e.answers for e in train)}},
    )


def report_markdown(card: ModelCard, audit: ReaderAudit | None = None) -> str:
    """The small report written beside a trained reader: data, audit, training, held-out check, how to serve it."""
    m, p = card.metrics, card.params
    lines = [f"# {card.name} v{card.version}: an extractive span reader", "",
             f"{p['layers']} layers of the packaged all-MiniLM-L6-v2 with a start/end head, trained on "
             f"(question, passage) pairs from {card.data_source or 'the data given'}, {p['max_length']}-token "
             f"windows overlapping by {p['stride']}.", ""]
    if audit is not None:
        lines += ["## Audit", ""] + [f"- {line}" for line in audit.lines()] + [""]
    unit = "a validation file" if card.notes["holdout_unit"] == "validation file" else "groups never trained on"
    lines += training_sections(card)[:-2] + [f"## Held-out check ({unit})", ""]
    if m["heldout_examples"]:
        lines += ["| held-out (at the threshold) | value |", "|---|---|",
                  f"| exact match | {m['heldout_em']:.4f} |", f"| F1 | {m['heldout_f1']:.4f} |",
                  f"| F1 on the questions answered | {m['heldout_f1_answered']:.4f} |",
                  f"| answered share | {m['heldout_answered_share']:.4f} |",
                  f"| F1 on answerable questions, never abstaining | {m['heldout_f1_has_answer_always']:.4f} |", "",
                  f"{m['heldout_examples']} held-out examples ({m['heldout_answerable']} answerable). "
                  f"No-answer threshold **{p['threshold']:.4f}** (span logits minus the no-answer logits), chosen "
                  "on them to maximise F1 (SQuAD v2's best_f1_thresh)."]
    else:
        lines += ["Nothing held out (one group only, or --holdout 0): the threshold is 0, not calibrated."]
    lines += ["", "## Serve it", "", "In ragtune.yaml:", "", "    answer:", "      kind: reader",
              f"      reader: {card.name}@{card.version}", ""]
    return "\n".join(lines)
