"""The trained span reader: it really learns (held-out F1 far above trivial), the ONNX served reader reads like the
torch model, spans are exact passage offsets, no-answer passages score below the calibrated threshold, and bad
settings are clear."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
from reader_synth import SEED, Trained, questions

from ragtune.errors import ConfigError, ModelNotFoundError
from ragtune.models.embedder import minilm_model_dir
from ragtune.tuning.reader.served import MODEL_DIR, ONNX_FILE, TOKENIZER, SpanReader, WindowEncoder, onnx_sha256
from ragtune.tuning.reader.train import load_reader_model, read_with_torch
from ragtune.tuning.registry import ModelCard


def _held_groups(trained: Trained) -> list[str]:
    from ragtune.tuning.reader.train import split_by_group

    return sorted({e.group for e in split_by_group(trained.data, 0.25, SEED)[1]})


def test_training_learns_the_task(trained_reader: Trained) -> None:
    card, m = trained_reader.result.card, trained_reader.result.metrics
    assert card.method == "reader" and card.version == 1 and m["steps"] == m["planned_steps"] == 63
    assert m["heldout_examples"] >= 15 and card.notes["holdout_unit"] == "group"
    no_answer_share = 1 - m["heldout_answerable"] / m["heldout_examples"]
    # abstaining everywhere scores the no-answer share; the trained reader, on notes it never saw, far more
    assert m["heldout_f1"] > max(0.6, no_answer_share + 0.3) and m["heldout_em"] > 0.5
    assert m["heldout_f1_has_answer_always"] > 0.6 and 0 < m["heldout_answered_share"] <= 1
    assert m["final_loss"] < 1.5
    assert card.params["threshold_calibrated"] and isinstance(card.params["threshold"], float)
    assert card.params["layers"] == 2 and card.params["max_length"] == 64
    assert card.notes["audit"]["examples"] == 84 and card.notes["audit"]["no_answer"] == 21
    assert len(card.notes["onnx_sha256"]) == 64 and card.notes["weights_sha256"]
    folder = trained_reader.result.folder
    assert (folder / "model" / ONNX_FILE).is_file() and (folder / "model" / MODEL_DIR / TOKENIZER).is_file()
    report = (folder / "report.md").read_text()
    assert "kind: reader" in report and "reader: rd@1" in report and f"{card.params['threshold']:.4f}" in report
    assert "## Audit" in report and "84 examples" in report and "| F1 |" in report


def test_served_reader_matches_torch_and_gives_exact_offsets(trained_reader: Trained) -> None:
    reader = SpanReader(trained_reader.models, "rd", threads=1)
    held = [e for e in trained_reader.data if e.group in _held_groups(trained_reader)]
    passages = sorted({e.passage for e in held})[:4]
    folder = trained_reader.result.folder / "model" / MODEL_DIR
    model = load_reader_model(folder)
    encoder = WindowEncoder(folder / TOKENIZER, 64, int(trained_reader.result.card.params["stride"]))
    for e in held[:6]:
        got = reader.read(e.question, passages, top_n=3)
        want = read_with_torch(model, encoder, e.question, passages, top_n=3)
        assert [(s.passage, s.start, s.end) for s in got][:1] == [(s.passage, s.start, s.end) for s in want][:1]
        assert got[0].score == pytest.approx(want[0].score, abs=1e-3)
        assert [s.score for s in got] == sorted((s.score for s in got), reverse=True) and len(got) == 3
        for s in got:
            assert passages[s.passage][s.start:s.end] == s.text and s.start < s.end
    assert reader.read("anything", []) == [] and reader.read("q", [""]) == []


def test_answers_and_no_answers_across_windows(trained_reader: Trained) -> None:
    reader = SpanReader(trained_reader.models, "registry:rd@1", threads=1)
    reader.warm_up()
    thing = _held_groups(trained_reader)[0]
    filler = " ".join(f"The canteen serves soup number {i} on weekdays." for i in range(14))
    note = f"{thing.title()} data. The {thing} records are kept for 321 days. They are stored in Porto."
    long = f"{filler} {note}"
    assert len(reader._encoder.encode([("q", long)])) > 2  # type: ignore[union-attr]
    ask = questions(thing)
    best = reader.read(ask["days"], ["Parking is free after six.", long])[0]
    assert (best.passage, best.text) == (1, "321 days") and long[best.start:best.end] == "321 days"
    assert best.score >= reader.threshold
    where = reader.read(ask["city"], [note])[0]
    assert where.text == "Porto" and where.score >= reader.threshold
    assert reader.read(ask["owner"], [note])[0].score < reader.threshold  # the note does not say who approves
    spans = reader.read(f"{ask['days']} 777 days or 778 days?", [note], top_n=50)  # never a span of the question
    assert len(spans) > 10 and all(note[s.start:s.end] == s.text and "77" not in s.text for s in spans)


def test_held_out_no_answer_questions_mostly_abstain(trained_reader: Trained) -> None:
    reader = SpanReader(trained_reader.models, "rd@1", threads=1)
    held = [e for e in trained_reader.data if e.group in _held_groups(trained_reader)]
    scores = [(bool(e.answers), reader.read(e.question, [e.passage])[0].score) for e in held]
    unanswerable = [s for a, s in scores if not a]
    answerable = [s for a, s in scores if a]
    assert unanswerable and sum(s < reader.threshold for s in unanswerable) >= 0.5 * len(unanswerable)
    assert sum(answerable) / len(answerable) > sum(unanswerable) / len(unanswerable)
    assert sum(s >= reader.threshold for s in answerable) >= 0.7 * len(answerable)


def test_fingerprint_threshold_and_settings(trained_reader: Trained, tmp_path: Path) -> None:
    reader = SpanReader(trained_reader.models, "rd", max_length=48)
    digest = onnx_sha256(trained_reader.result.folder / "model" / ONNX_FILE)
    assert re.fullmatch(r"registry:rd@v1\+[0-9a-f]{12}", reader.fingerprint) and digest.startswith(
        reader.fingerprint.split("+")[1])
    assert reader.threshold == trained_reader.result.card.params["threshold"] and reader.max_length == 48
    reader.threshold = 1.25  # answer.reader_min_score may override the calibrated threshold
    assert reader.threshold == 1.25 and SpanReader(trained_reader.models, "rd").threshold != 1.25
    d = reader.to_dict()
    assert d["spec"] == "registry:rd@1" and d["name"] == "rd" and d["version"] == 1 and d["max_answer_tokens"] == 30
    json.dumps(d)
    with pytest.raises(ModelNotFoundError, match="ragtune tune reader DATA --name nosuch"):
        SpanReader(trained_reader.models, "nosuch").warm_up()
    with pytest.raises(ModelNotFoundError, match="has no version 7"):
        SpanReader(trained_reader.models, "rd@7").warm_up()
    with pytest.raises(ConfigError, match="NAME or NAME@VERSION"):
        SpanReader(trained_reader.models, "two words")
    other = trained_reader.models / "emb" / "v1"
    other.mkdir(parents=True)
    (other / "card.json").write_text(json.dumps(asdict(ModelCard("emb", 1, "embedder", [], "", "", 0.0))))
    with pytest.raises(ConfigError, match="embedder model, not a reader"):
        SpanReader(trained_reader.models, "emb").warm_up()


def test_serving_never_loads_torch(trained_reader: Trained) -> None:
    code = ("import sys; from pathlib import Path; from ragtune.tuning.reader.served import SpanReader; "
            f"r = SpanReader(Path({str(trained_reader.models)!r}), 'rd', threads=1); "
            "s = r.read('How long are billing records kept?', ['The billing records are kept for 9 days.']); "
            "assert s and 'torch' not in sys.modules and 'transformers' not in sys.modules, sorted(sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_tokenizer_is_minilms() -> None:
    a = WindowEncoder(minilm_model_dir() / TOKENIZER, 64, 16).encode([("a question", "a passage")])
    assert a.ids[0][0] == 101 and list(a.types[0]).count(1) == 3  # [CLS] ... [SEP] passage [SEP]
