"""The served form of a trained span reader (``answer.kind: reader``, ``answer.reader: NAME[@VERSION]``).

A registered reader version holds ``model/reader/`` (the transformers folder with its tokenizer) and
``model/model.onnx`` (inputs ``input_ids``, ``attention_mask``, ``token_type_ids``; outputs ``start_logits``,
``end_logits``), which onnxruntime serves; torch is never loaded to read. Question and passage are encoded as one
pair, ``[CLS] question [SEP] passage window [SEP]``: the question cut to at most 64 tokens (half the length for
short models), a passage longer than the rest split into windows that overlap by the trained stride, every window
of every passage scored in one call. A span's score is its start and end logits minus those of ``[CLS]`` in its
window (the no-answer choice): above the reader's calibrated ``threshold`` it is an answer.

:class:`WindowEncoder` and :func:`spans_of` are what training uses too, so training, evaluation and serving
tokenise and decode alike.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ragtune.config import parse_registry_spec, reader_spec
from ragtune.errors import ConfigError
from ragtune.models.hf import load_tokenizer, onnx_session
from ragtune.tuning.served import ONNX_FILE, PREFIX, ServedRegistryModel

KIND = "reader"  # ModelCard.method of a trained span reader
MODEL_DIR = "reader"
TOKENIZER = "tokenizer.json"
N_BEST = 20  # start and end candidates per window (SQuAD's n-best)
MAX_QUESTION_TOKENS = 64
ONNX_BATCH = 64  # windows per onnxruntime call


@dataclass(frozen=True)
class Span:
    """An answer span: ``passages[passage][start:end] == text``; ``score``: span logits minus the no-answer
    logits of its window (comparable with :attr:`SpanReader.threshold`)."""

    passage: int
    start: int
    end: int
    text: str
    score: float


def question_tokens(max_length: int) -> int:
    """Most question tokens kept in a window of ``max_length`` tokens."""
    return min(MAX_QUESTION_TOKENS, max_length // 2)


def window_stride(max_length: int, stride: int) -> int:
    """Tokens two windows of one passage share: ``stride``, at most half the room the passage has."""
    room = max_length - question_tokens(max_length) - 3
    return max(0, min(stride, room // 2))


@dataclass
class Windows:
    """Encoded windows: token ids and segment ids, each token's character offsets in its passage, the pair each
    window comes from (``source``) and its first and last passage token (``context``)."""

    ids: list[np.ndarray] = field(default_factory=list)
    types: list[np.ndarray] = field(default_factory=list)
    offsets: list[np.ndarray] = field(default_factory=list)
    source: list[int] = field(default_factory=list)
    context: list[tuple[int, int]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    def feed(self, rows: Sequence[int]) -> dict[str, np.ndarray]:
        """``input_ids``, ``attention_mask``, ``token_type_ids`` (int64) of ``rows``, padded to the longest."""
        width = max((len(self.ids[r]) for r in rows), default=0)
        ids = np.zeros((len(rows), width), dtype=np.int64)
        mask, types = np.zeros_like(ids), np.zeros_like(ids)
        for i, r in enumerate(rows):
            n = len(self.ids[r])
            ids[i, :n], mask[i, :n], types[i, :n] = self.ids[r], 1, self.types[r]
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


class WindowEncoder:
    """(question, passage) pairs → :class:`Windows` of at most ``max_length`` tokens (the question truncated,
    the passage in windows overlapping by :func:`window_stride`); thread-safe."""

    def __init__(self, tokenizer_path: Path, max_length: int, stride: int) -> None:
        self.max_length, self.stride = max_length, window_stride(max_length, stride)
        self._pairs = load_tokenizer(tokenizer_path, None)
        self._pairs.enable_truncation(max_length=max_length, stride=self.stride, strategy="only_second")
        self._questions = load_tokenizer(tokenizer_path, question_tokens(max_length) + 2)

    def _cut(self, questions: list[str]) -> list[str]:
        out = []
        for q, e in zip(questions, self._questions.encode_batch(questions), strict=True):
            kept = [off for off, s in zip(e.offsets, e.sequence_ids, strict=True) if s == 0]
            out.append(q[: kept[-1][1]] if e.overflowing and kept else q)
        return out

    def encode(self, pairs: Sequence[tuple[str, str]]) -> Windows:
        """Every window of every pair, in order (a pair whose passage has no tokens gives none)."""
        windows = Windows()
        if not pairs:
            return windows
        questions = self._cut([q for q, _ in pairs])
        encodings = self._pairs.encode_batch([(q, p) for q, (_, p) in zip(questions, pairs, strict=True)])
        for source, e in enumerate(encodings):
            for w in (e, *e.overflowing):
                seq = np.array([-1 if s is None else s for s in w.sequence_ids])
                ctx = np.flatnonzero(seq == 1)
                if not len(ctx):
                    continue
                windows.ids.append(np.asarray(w.ids, dtype=np.int32))
                windows.types.append(np.asarray(w.type_ids, dtype=np.int8))
                windows.offsets.append(np.asarray(w.offsets, dtype=np.int32).reshape(-1, 2))
                windows.source.append(source)
                windows.context.append((int(ctx[0]), int(ctx[-1])))
        return windows


def spans_of(start_logits: Sequence[np.ndarray], end_logits: Sequence[np.ndarray], windows: Windows,
             passages: Sequence[str], *, max_answer_tokens: int = 30, n_best: int = N_BEST) -> list[list[Span]]:
    """For each of ``passages`` (the pairs' passages, by ``windows.source``), its candidate spans best first:
    the ``n_best`` start and end tokens of each window's passage part, start ≤ end, at most
    ``max_answer_tokens`` tokens; a span found by two overlapping windows keeps its best score."""
    best: list[dict[tuple[int, int], float]] = [{} for _ in passages]
    for w in range(len(windows)):
        c0, c1 = windows.context[w]
        s, e = np.asarray(start_logits[w][c0:c1 + 1]), np.asarray(end_logits[w][c0:c1 + 1])
        null = float(start_logits[w][0] + end_logits[w][0])
        k = min(n_best, len(s))
        top_s, top_e = np.argpartition(-s, k - 1)[:k], np.argpartition(-e, k - 1)[:k]
        i, j = top_s[:, None], top_e[None, :]
        ok = (j >= i) & (j - i < max_answer_tokens)
        scores = s[i] + e[j] - null
        offsets, found = windows.offsets[w], best[windows.source[w]]
        for a, b in zip(*np.nonzero(ok), strict=True):
            ti, tj = int(top_s[a]) + c0, int(top_e[b]) + c0
            start, end = int(offsets[ti][0]), int(offsets[tj][1])
            if end > start:
                score = float(scores[a, b])
                if score > found.get((start, end), -np.inf):
                    found[(start, end)] = score
    return [sorted((Span(p, s0, e0, passages[p][s0:e0], sc) for (s0, e0), sc in found.items()),
                   key=lambda sp: (-sp.score, sp.start, sp.end)) for p, found in enumerate(best)]


def onnx_sha256(path: Path) -> str:
    """SHA-256 of an exported model file (the served fingerprint's digest)."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class SpanReader(ServedRegistryModel):
    """A span reader from the project's registry (trained by ``ragtune tune reader``), resolved and loaded on
    first use. ``spec``: ``NAME``, ``NAME@VERSION`` or ``registry:NAME[@VERSION]``; ``max_length`` may shorten
    the trained window; ``max_answer_tokens`` bounds a span's length (default: the limit the card learnt from
    the training answers, 30 for a card without one).

    ``fingerprint``: ``registry:NAME@v<VERSION>+<12 hex of the ONNX file's SHA-256>``, part of the answer cache's
    key, so a new version never serves answers read by the old one.
    """

    KIND = KIND
    TRAIN_COMMAND = "ragtune tune reader DATA"
    UNSET_HINT = "set answer.kind back to extractive in ragtune.yaml"

    def __init__(self, models_dir: Path, spec: str, *, threads: int = 2, max_length: int | None = None,
                 max_answer_tokens: int | None = None) -> None:
        parsed = parse_registry_spec(reader_spec(spec))
        if parsed is None:
            raise ConfigError(f"answer.reader {spec!r}: write NAME or NAME@VERSION (NAME as trained by `ragtune tune "
                              "reader DATA --name NAME`)")
        super().__init__(models_dir, *parsed, threads=threads, max_length=max_length)
        self.name = self.model_name
        self._max_answer_tokens = max_answer_tokens
        self._threshold: float | None = None
        self._encoder: WindowEncoder | None = None

    @property
    def threshold(self) -> float:
        """The no-answer threshold calibrated on held-out questions at training (a span scoring below it is no
        answer), unless one was set on this reader."""
        if self._threshold is not None:
            return self._threshold
        return float(self._resolve()[3].get("threshold", 0.0))

    @threshold.setter
    def threshold(self, value: float) -> None:
        self._threshold = float(value)

    @property
    def max_answer_tokens(self) -> int:
        """The longest span read, in tokens: as set on this reader, else as the card records."""
        if self._max_answer_tokens is not None:
            return self._max_answer_tokens
        return int(self._resolve()[3].get("max_answer_tokens", 30))

    @property
    def fingerprint(self) -> str:
        """``registry:NAME@v<VERSION>+<12 hex of the ONNX file's SHA-256>``."""
        folder, version, notes, _ = self._resolve()
        digest = str(notes.get("onnx_sha256") or onnx_sha256(folder / ONNX_FILE))
        return f"{PREFIX}{self.name}@v{version}+{digest[:12]}"

    def warm_up(self) -> None:
        """Resolve the version, open the ONNX session and the tokenizer."""
        if self._session is None:
            folder, _, _, params = self._resolve()
            with self._lock:
                if self._session is None:
                    self._encoder = WindowEncoder(folder / MODEL_DIR / TOKENIZER, self.max_length,
                                                  int(params.get("stride", 64)))
                    self._session = onnx_session(folder / ONNX_FILE, self.threads)

    def logits(self, windows: Windows) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Start and end logits of each window (the ONNX model, :data:`ONNX_BATCH` windows per call)."""
        self.warm_up()
        starts: list[np.ndarray] = []
        ends: list[np.ndarray] = []
        for first in range(0, len(windows), ONNX_BATCH):
            rows = list(range(first, min(first + ONNX_BATCH, len(windows))))
            s, e = self._session.run(["start_logits", "end_logits"], windows.feed(rows))
            starts += [np.asarray(s[i], dtype=np.float32) for i in range(len(rows))]
            ends += [np.asarray(e[i], dtype=np.float32) for i in range(len(rows))]
        return starts, ends

    def read(self, question: str, passages: Sequence[str], *, top_n: int = 1) -> list[Span]:
        """The ``top_n`` best spans across ``passages`` (each read in windows), best first; a span lies in one
        passage, never in the question, and spans at most ``max_answer_tokens`` tokens."""
        self.warm_up()
        assert self._encoder is not None
        windows = self._encoder.encode([(question, p) for p in passages])
        if not len(windows):
            return []
        starts, ends = self.logits(windows)
        found = spans_of(starts, ends, windows, passages, max_answer_tokens=self.max_answer_tokens)
        return sorted((s for per in found for s in per), key=lambda s: (-s.score, s.passage, s.start))[:top_n]

    def to_dict(self) -> dict[str, Any]:
        """What is served, for status pages and answers: name, version, fingerprint, threshold and lengths."""
        params = self._resolve()[3]
        return {"kind": KIND, "name": self.name, "version": self.version, "spec": self.spec,
                "fingerprint": self.fingerprint, "threshold": self.threshold, "max_length": self.max_length,
                "stride": int(params.get("stride", 64)), "max_answer_tokens": self.max_answer_tokens}
