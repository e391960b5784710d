"""The generator's before/after evaluation: scores on hand-made outputs, few-shot prompts and shot picking, and
runs against the real packaged SmolLM2 served by llama.cpp (a few short greedy generations)."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from ragtune.errors import GenerationError
from ragtune.models.generator import LlamaCppGenerator, Message
from ragtune.tuning.generator.data import GenExample
from ragtune.tuning.generator.evaluate import (
    STREAMED,
    TOKENIZER,
    WORDS,
    best_config,
    few_shot_messages,
    percentile,
    pick_shots,
    primary_metric,
    rouge_l,
    run_generator,
    score_outputs,
)

SCHEMA: dict[str, Any] = {"type": "object", "properties": {"intent": {"enum": ["refund", "greeting", "other"]}},
                          "required": ["intent"], "additionalProperties": False}
ORDER_SCHEMA: dict[str, Any] = {"type": "object", "required": ["intent", "order"],
                                "properties": {"intent": {"enum": ["refund", "track"]}, "order": {"type": "string"}}}


def ex(user: str, target: str, system: str | None = None, where: str = "") -> GenExample:
    turns = ((("system", system),) if system else ()) + (("user", user),)
    return GenExample(turns, target, where)


def obj(**fields: Any) -> str:
    return json.dumps(fields)


# ---------------------------------------------------------------- scores


def test_structured_scores_with_a_schema_count_schema_violations_and_fields() -> None:
    refs = [obj(intent="refund", order="A1"), obj(intent="track", order="B2"), obj(intent="refund", order="C3"),
            obj(intent="track", order="D4")]
    outputs = ['{"order": "A1",   "intent": "refund"}',  # same value, other key order and spacing: exact
               obj(intent="track", order="XX"),  # valid, intent right, order wrong
               obj(intent="cancel", order="C3"),  # parses but violates the enum: invalid, order still right
               "intent: track"]  # not JSON: invalid and wrong on every field
    s = score_outputs(outputs, refs, ORDER_SCHEMA)
    assert s["validity"] == 0.5
    assert s["exact_match"] == 0.25
    assert s["field:intent"] == 0.5 and s["field:order"] == 0.5
    assert list(s) == ["validity", "exact_match", "field:intent", "field:order", "rouge_l"]
    assert all(0.0 <= v <= 1.0 for v in s.values())


def test_without_a_schema_validity_is_parsing_as_json_objects_for_json_references_only() -> None:
    refs = [obj(intent="refund"), obj(intent="greeting")]
    s = score_outputs(['```json\n{"intent": "refund"}\n```', '["greeting"]'], refs, None)
    assert s["validity"] == 0.0 and s["exact_match"] == 0.0 and s["field:intent"] == 0.0
    assert score_outputs([obj(intent="refund"), obj(intent="other")], refs)["validity"] == 1.0
    free = score_outputs(["The  backups\nrun nightly.", "no idea"], ["The backups run nightly.", "Seven years."])
    assert free["validity"] == 1.0 and free["exact_match"] == 0.5  # whitespace-normalised
    assert not [k for k in free if k.startswith("field:")]


def test_json_true_is_not_one_and_a_missing_field_is_wrong() -> None:
    refs = [obj(ok=True, n=1), obj(ok=False, n=2)]
    s = score_outputs([obj(ok=1, n=1), obj(n=2)], refs)
    assert s["field:ok"] == 0.0 and s["field:n"] == 1.0 and s["exact_match"] == 0.0
    with pytest.raises(ValueError, match="2 outputs for 1 references"):
        score_outputs(["a", "b"], ["a"])


def test_rouge_l_prefers_the_closer_output_and_keeps_non_latin_words() -> None:
    from rouge_score import rouge_scorer

    ref = "Customer records are kept for seven years after the account closes."
    close = "Customer records are kept for seven years after closing the account."
    far = "Backups are deleted after ninety days."
    assert rouge_l(ref, ref) == 1.0
    assert rouge_l(close, ref) > rouge_l(far, ref) > 0.0
    plain = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)  # ASCII text: exactly rouge_score's score
    assert rouge_l(close, ref) == pytest.approx(plain.score(ref, close)["rougeL"].fmeasure)
    assert rouge_l("Резервные копии хранятся 90 дней", "Резервные копии хранятся 90 дней") == 1.0
    assert plain.score("Резервные копии", "Резервные копии")["rougeL"].fmeasure == 0.0  # what we avoid
    assert 0.0 < rouge_l("备份保存九十天", "备份保存三十天") < 1.0
    s = score_outputs([close, far], [ref, ref])
    assert s["rouge_l"] == pytest.approx((rouge_l(close, ref) + rouge_l(far, ref)) / 2)


# ---------------------------------------------------------------- prompts and shots


def test_few_shot_messages_put_the_system_turn_first_and_the_shots_as_turns() -> None:
    shots = [ex("hi there", obj(intent="greeting"), system="shot system, not shown"),
             ex("refund me", obj(intent="refund"))]
    example = GenExample((("system", "Classify the intent as JSON."), ("user", "earlier"),
                          ("assistant", "earlier reply"), ("user", "money back please")), obj(intent="refund"))
    msgs = few_shot_messages(example, shots)
    assert msgs == [
        {"role": "system", "content": "Classify the intent as JSON."},
        {"role": "user", "content": "hi there"}, {"role": "assistant", "content": obj(intent="greeting")},
        {"role": "user", "content": "refund me"}, {"role": "assistant", "content": obj(intent="refund")},
        {"role": "user", "content": "earlier"}, {"role": "assistant", "content": "earlier reply"},
        {"role": "user", "content": "money back please"}]
    assert few_shot_messages(ex("q", "a"), []) == [{"role": "user", "content": "q"}]


def test_pick_shots_is_seeded_and_covers_every_label_first() -> None:
    intents = ["refund"] * 6 + ["track"] * 3 + ["greeting"]
    train = [ex(f"message {i}", obj(intent=it, order=f"O{i}")) for i, it in enumerate(intents)]
    for seed in range(5):
        shots = pick_shots(train, 3, seed)
        assert shots == pick_shots(train, 3, seed)
        assert {json.loads(s.target)["intent"] for s in shots} == {"refund", "track", "greeting"}
    assert len({tuple(s.user_text for s in pick_shots(train, 3, seed)) for seed in range(5)}) > 1
    assert len(pick_shots(train, 50, 0)) == len(train) and pick_shots(train, 0, 0) == []
    free = [ex(f"q{i}", "yes") for i in range(5)] + [ex("q5", "no")]
    assert {s.target for s in pick_shots(free, 2, 1)} == {"yes", "no"}


def test_primary_metric_best_config_and_percentiles() -> None:
    assert primary_metric([obj(intent="a", order="1")]) == "field:intent"
    assert primary_metric(["free text", obj(intent="a")]) == "rouge_l"
    rows = [{"config": "base", "field:intent": 0.5, "latency_p50_ms": 90.0},
            {"config": "tuned", "field:intent": 0.9, "latency_p50_ms": 120.0},
            {"config": "tuned + schema", "field:intent": 0.9, "latency_p50_ms": 80.0}]
    assert best_config(rows, "field:intent") == "tuned"  # the first of equals
    assert best_config(rows, "latency_p50_ms", greater_is_better=False) == "tuned + schema"
    with pytest.raises(ValueError, match="rouge_l"):
        best_config(rows, "rouge_l")
    values = [5.0, 1.0, 9.0, 3.0, 7.5]
    for q in (0, 50, 95, 100):
        assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


# ---------------------------------------------------------------- runs against the real local model

TRAIN = [ex("Hello! Good morning.", obj(intent="greeting")), ex("I want my money back for order 12.",
                                                                  obj(intent="refund"))]
HELD = [ex("Hi, nice to meet you!", obj(intent="greeting"), system="Answer with the intent as JSON.",
           where="held.jsonl:1"),
        ex("Please refund my broken lamp.", obj(intent="refund"), where="held.jsonl:2"),
        ex("What is the weather today?", obj(intent="other"), where="held.jsonl:3")]


def _completion_tokens(gen: LlamaCppGenerator, messages: list[Message], max_tokens: int) -> int:
    """The server's own count of the tokens it generates for this request (``usage``, not streamed)."""
    body = {"model": "local", "messages": messages, "max_tokens": max_tokens, "temperature": 0.0,
            "response_format": {"type": "json_schema", "json_schema": {"name": "output", "schema": SCHEMA}}}
    req = urllib.request.Request(gen.base_url + "/chat/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as reply:
        return int(json.loads(reply.read())["usage"]["completion_tokens"])


def test_constrained_few_shot_run_is_always_valid_and_timed(local: LlamaCppGenerator) -> None:
    seen: list[tuple[int, int]] = []
    run = run_generator(local, HELD, schema=SCHEMA, constrained=True, shots=TRAIN, max_tokens=24,
                        progress=lambda d, t: seen.append((d, t)))
    assert seen == [(1, 3), (2, 3), (3, 3)]
    m = run.metrics
    assert m["validity"] == 1.0 and m["n"] == 3.0
    assert all(json.loads(o)["intent"] in {"refund", "greeting", "other"} for o in run.outputs)
    assert 0.0 <= m["field:intent"] <= 1.0 and m["exact_match"] == m["field:intent"]
    assert m["tokens_per_s"] > 0 and "words_per_s" not in m
    assert 0 < m["time_to_first_token_p50_ms"] <= m["latency_p50_ms"] <= m["latency_p95_ms"]
    assert all(0 < f <= s for f, s in zip(run.first_token_s, run.latency_s, strict=True))
    # one streamed chunk per generated token: the server's own count of the same (greedy) request, less the end
    # of generation token it also counts
    assert run.token_count == STREAMED
    usage = _completion_tokens(local, few_shot_messages(HELD[0], TRAIN), 24)
    assert usage - 1 <= run.output_tokens[0] <= usage
    assert m["tokens_per_s"] == pytest.approx(sum(run.output_tokens) / sum(run.latency_s))


class NonStreaming:
    """The real local model behind a generator that never streams (as a plain HTTP client might)."""

    def __init__(self, inner: LlamaCppGenerator) -> None:
        self.inner, self.name = inner, "non-streaming"

    def generate(self, messages: Sequence[Message], **kw: Any) -> str:
        kw.pop("on_token", None)
        return self.inner.generate(messages, **kw)

    def warm_up(self) -> None:
        self.inner.warm_up()


def test_token_counting_falls_back_to_a_tokenizer_or_words(local: LlamaCppGenerator) -> None:
    one = HELD[1:2]
    words = run_generator(NonStreaming(local), one, max_tokens=4)
    assert words.token_count == WORDS and words.output_tokens == [len(words.outputs[0].split())]
    assert words.metrics["words_per_s"] > 0 and "tokens_per_s" not in words.metrics
    assert words.first_token_s == words.latency_s  # nothing streamed: the first text came with the whole reply
    chars = run_generator(local, one, max_tokens=4, count_tokens=len)
    assert chars.token_count == TOKENIZER and chars.output_tokens == [len(chars.outputs[0])]
    assert chars.metrics["validity"] == score_outputs(chars.outputs, [one[0].target])["validity"]
    with pytest.raises(ValueError, match="needs a schema"):
        run_generator(local, one, constrained=True)


def test_a_failed_request_names_the_example(local: LlamaCppGenerator) -> None:
    too_long = ex("word " * 6000, obj(intent="other"), where="held.jsonl:7")
    with pytest.raises(GenerationError, match=r"held\.jsonl:7: .*context size"):
        run_generator(local, [too_long], max_tokens=4)
