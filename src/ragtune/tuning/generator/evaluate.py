"""Before/after evaluation of a generator, in one run: the base model with a few-shot prompt against the tuned
model, each with and without schema-constrained decoding.

Scores (all in [0, 1]): format ``validity`` (the schema, else "parses as a JSON object" when the references are
JSON objects), ``exact_match``, ``field:<name>`` accuracy per top-level field of JSON-object references, and
``rouge_l`` (F-measure, ``rouge_score``). Speed: latency p50/p95, time to the first token and output tokens per
second. Tokens are counted by ``count_tokens`` when given, else as the streamed chunks (llama.cpp's server
streams exactly one token per chunk); a generator that does not stream has its output counted in whitespace
words, reported as ``words_per_s`` instead of ``tokens_per_s``. :class:`GenEvaluator` follows
sentence-transformers' evaluators: a ``primary_metric`` and ``greater_is_better``.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from ragtune.errors import GenerationError
from ragtune.models.generator import Generator
from ragtune.tuning.generator.data import GenExample, Message, validate_output

Progress = Callable[[int, int], None]
STREAMED = "streamed chunks (one per token on llama.cpp's server)"
TOKENIZER = "tokenizer"
WORDS = "whitespace words (the generator did not stream)"


# ---------------------------------------------------------------- prompts


def few_shot_messages(example: GenExample, shots: Sequence[GenExample]) -> list[Message]:
    """The chat for ``example`` with ``shots`` as worked examples: the example's system turn(s), then for each
    shot its user turn and its target as an assistant turn, then the example's own turns (system excluded)."""
    system = [m for m in example.messages if m["role"] == "system"]
    worked: list[Message] = []
    for shot in shots:
        worked += [{"role": "user", "content": shot.user_text}, {"role": "assistant", "content": shot.target}]
    return system + worked + [m for m in example.messages if m["role"] != "system"]


def _as_object(text: str) -> dict[str, Any] | None:
    """``text`` parsed as a JSON object, or None (not JSON, or JSON but not an object)."""
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, TypeError):
        return None
    return value if isinstance(value, dict) else None


def _categorical_fields(train: Sequence[GenExample]) -> list[str]:
    """Top-level fields of JSON-object targets that take few distinct values (labels such as ``intent``)."""
    objects = [o for o in (_as_object(e.target) for e in train) if o is not None]
    if not objects or len(objects) < len(train):
        return []
    keys = dict.fromkeys(k for o in objects for k in o)
    out = []
    for key in keys:
        values = [json.dumps(o.get(key), sort_keys=True) for o in objects]
        if len(set(values)) <= max(1, len(values) // 2):
            out.append(key)
    return out


def pick_shots(train: Sequence[GenExample], k: int, seed: int) -> list[GenExample]:
    """``k`` training examples for a few-shot prompt, the same for the same ``seed``. Diverse targets first:
    the examples are grouped by target (for JSON objects, by their label-like fields, e.g. ``intent``; else by
    the whitespace-normalised text) and drawn one group at a time, in a seeded order."""
    if k <= 0 or not train:
        return []
    order = list(train)
    random.Random(seed).shuffle(order)
    labels = _categorical_fields(order)

    def key(e: GenExample) -> str:
        if labels:
            obj = _as_object(e.target) or {}
            return json.dumps([obj.get(f) for f in labels], sort_keys=True)
        return " ".join(e.target.split())

    groups: dict[str, list[GenExample]] = {}
    for e in order:
        groups.setdefault(key(e), []).append(e)
    picked: list[GenExample] = []
    while len(picked) < min(k, len(order)):
        for members in groups.values():
            if members and len(picked) < k:
                picked.append(members.pop(0))
    return picked


# ---------------------------------------------------------------- scores


def _same(a: Any, b: Any) -> bool:
    """JSON values equal, with ``true`` never equal to ``1`` (Python's ``True == 1``)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) or isinstance(b, dict):
        return isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k])
                                                                                          for k in a)
    if isinstance(a, list) or isinstance(b, list):
        return (isinstance(a, list) and isinstance(b, list) and len(a) == len(b)
                and all(_same(x, y) for x, y in zip(a, b, strict=True)))
    return bool(a == b)


_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_UNICODE_TOKEN = re.compile(f"[{_CJK}]|[^\\W_{_CJK}]+")


class _RougeTokenizer:
    """rouge_score's own tokenizer (lower case, ASCII letters and digits, Porter stems) for ASCII text. Other
    text keeps its letters (rouge_score would drop them all and score any two Cyrillic texts 0): Unicode word
    runs, Chinese and Japanese characters one by one, ASCII words stemmed as rouge_score does."""

    def __init__(self) -> None:
        from rouge_score import tokenizers

        self._default = tokenizers.DefaultTokenizer(use_stemmer=True)
        from nltk.stem import porter

        self._stemmer = porter.PorterStemmer()

    def tokenize(self, text: str) -> list[str]:
        if text.isascii():
            return list(self._default.tokenize(text))
        tokens = _UNICODE_TOKEN.findall(text.lower())
        return [self._stemmer.stem(t) if t.isascii() and len(t) > 3 else t for t in tokens]


@lru_cache(maxsize=1)
def _rouge() -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True, tokenizer=_RougeTokenizer())


def rouge_l(output: str, reference: str) -> float:
    """ROUGE-L F-measure of ``output`` against ``reference`` (rouge_score, Porter stemming)."""
    return float(_rouge().score(reference, output)["rougeL"].fmeasure)


def _mean(flags: Sequence[float]) -> float:
    return float(sum(flags) / len(flags)) if flags else 0.0


def score_outputs(outputs: Sequence[str], references: Sequence[str],
                  schema: dict[str, Any] | None = None) -> dict[str, float]:
    """Quality of ``outputs`` against ``references`` (same order), each in [0, 1]: ``validity``, ``exact_match``
    (parsed values for JSON-object references, else whitespace-normalised text), ``field:<name>`` per top-level
    key of JSON-object references (an unparsable output is wrong on every field; a reference without the key
    does not count) and ``rouge_l`` (mean F-measure on the raw texts)."""
    if len(outputs) != len(references):
        raise ValueError(f"{len(outputs)} outputs for {len(references)} references")
    refs = [_as_object(r) for r in references]
    structured = bool(refs) and all(r is not None for r in refs)
    outs = [_as_object(o) for o in outputs]
    if schema is not None:
        valid = [validate_output(o, schema) is None for o in outputs]
    else:
        valid = [o is not None for o in outs] if structured else [True] * len(outputs)
    if structured:
        exact = [o is not None and _same(o, r) for o, r in zip(outs, refs, strict=True)]
    else:
        exact = [" ".join(o.split()) == " ".join(r.split()) for o, r in zip(outputs, references, strict=True)]
    scores = {"validity": _mean(valid), "exact_match": _mean(exact)}
    if structured:
        for key in dict.fromkeys(k for r in refs if r is not None for k in r):
            hits = [o is not None and key in o and _same(o[key], r[key])
                    for o, r in zip(outs, refs, strict=True) if r is not None and key in r]
            scores[f"field:{key}"] = _mean(hits)
    scores["rouge_l"] = _mean([rouge_l(o, r) for o, r in zip(outputs, references, strict=True)])
    return scores


def primary_metric(references: Sequence[str]) -> str:
    """The metric that ranks configurations: the first field's accuracy (``field:intent``) when the references
    are JSON objects, else ``rouge_l``."""
    refs = [_as_object(r) for r in references]
    if refs and all(r is not None for r in refs):
        first = next((k for r in refs if r for k in r), None)
        if first is not None:
            return f"field:{first}"
    return "rouge_l"


# ---------------------------------------------------------------- runs


@dataclass
class GenRun:
    """One configuration's outputs and measurements. ``output_tokens`` counted as ``token_count`` says
    (``tokenizer``, streamed chunks, or whitespace words); ``first_token_s`` is the whole latency for an output
    that did not stream."""

    outputs: list[str]
    latency_s: list[float]
    first_token_s: list[float]
    output_tokens: list[int]
    token_count: str
    metrics: dict[str, float] = field(default_factory=dict)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation (numpy's default); 0.0 when empty."""
    import numpy as np

    return float(np.percentile(values, q)) if len(values) else 0.0


def _generate_one(generator: Generator, messages: list[Message], *, json_schema: dict[str, Any] | None,
                  max_tokens: int, where: str) -> tuple[str, float, float | None, int]:
    """Output, latency, time to first streamed chunk (None: nothing streamed), number of streamed chunks."""
    chunks = 0
    first: float | None = None
    start = time.perf_counter()

    def on_token(_: str) -> None:
        nonlocal chunks, first
        if first is None:
            first = time.perf_counter() - start
        chunks += 1

    try:
        text = generator.generate(messages, max_tokens=max_tokens, temperature=0.0, json_schema=json_schema,
                                  on_token=on_token)
    except GenerationError as exc:
        raise GenerationError(f"{where or 'an evaluation example'}: {exc}") from exc
    return text, time.perf_counter() - start, first, chunks


def run_generator(generator: Generator, examples: Sequence[GenExample], *, schema: dict[str, Any] | None = None,
                  constrained: bool = False, shots: Sequence[GenExample] = (), max_tokens: int = 256,
                  count_tokens: Callable[[str], int] | None = None, progress: Progress | None = None) -> GenRun:
    """Generate a reply to every example (greedy; with ``shots`` in a few-shot prompt; ``constrained`` passes
    ``schema`` to the generator to constrain decoding) and score them: :func:`score_outputs` plus
    ``latency_p50_ms``, ``latency_p95_ms``, ``time_to_first_token_p50_ms``, ``tokens_per_s`` (output tokens over
    generation seconds; ``words_per_s`` when only words could be counted) and ``n``."""
    if constrained and schema is None:
        raise ValueError("constrained decoding needs a schema")
    outputs: list[str] = []
    latency: list[float] = []
    first_token: list[float] = []
    chunk_counts: list[int] = []
    for i, example in enumerate(examples):
        messages = few_shot_messages(example, shots) if shots else example.messages
        text, seconds, first, chunks = _generate_one(generator, messages, json_schema=schema if constrained
                                                     else None, max_tokens=max_tokens, where=example.where)
        outputs.append(text)
        latency.append(seconds)
        first_token.append(seconds if first is None else first)
        chunk_counts.append(chunks)
        if progress is not None:
            progress(i + 1, len(examples))
    if count_tokens is not None:
        how, counts = TOKENIZER, [count_tokens(t) for t in outputs]
    elif sum(chunk_counts) or not any(outputs):
        how, counts = STREAMED, chunk_counts
    else:
        how, counts = WORDS, [len(t.split()) for t in outputs]
    metrics = score_outputs(outputs, [e.target for e in examples], schema)
    total = sum(latency)
    metrics |= {"latency_p50_ms": percentile(latency, 50) * 1000, "latency_p95_ms": percentile(latency, 95) * 1000,
                "time_to_first_token_p50_ms": percentile(first_token, 50) * 1000,
                ("words_per_s" if how == WORDS else "tokens_per_s"): sum(counts) / total if total > 0 else 0.0,
                "n": float(len(outputs))}
    return GenRun(outputs, latency, first_token, counts, how, metrics)


def best_config(rows: Sequence[Mapping[str, Any]], primary: str, greater_is_better: bool = True) -> str:
    """The name of the row with the best ``primary`` metric (the first of equals); rows without it are skipped."""
    scored = [r for r in rows if isinstance(r.get(primary), int | float)]
    if not scored:
        raise ValueError(f"no configuration has the metric {primary!r}")
    sign = 1.0 if greater_is_better else -1.0
    best = max(scored, key=lambda r: sign * float(r[primary]))  # max keeps the first of equals
    return str(best["config"])
