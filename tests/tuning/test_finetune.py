"""Full fine-tuning of the packaged MiniLM on a banking77 slice: it learns, saves, loads (ONNX and torch) and
reports progress. One small model is trained for the whole module (about a minute on 2 CPU cores)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from sklearn.base import clone

from ragtune.errors import ConfigError
from ragtune.tuning.base import TextClassifier
from ragtune.tuning.data import LabelledData, load_labelled
from ragtune.tuning.finetune import ONNX_FILE, FineTuneClassifier, _progress_callback

DATA = Path(__file__).resolve().parents[2] / "examples" / "data" / "banking77"
# Sized for 2 CPU cores: 20 examples per intent, 3 epochs (27 steps); the word-embedding table stays frozen
# because its optimizer updates cost as much as the forward pass at this batch size.
FAST: dict[str, Any] = {"epochs": 3, "batch_size": 16, "max_length": 32, "freeze_embeddings": True, "threads": 1}
PER_CLASS = 20


@pytest.fixture(scope="module")
def train() -> LabelledData:
    """The first ``PER_CLASS`` training rows of each intent."""
    data = load_labelled(DATA / "train.csv", label_col="category")
    seen: dict[str, int] = {}
    keep = []
    for i, label in enumerate(data.labels):
        seen[label] = seen.get(label, 0) + 1
        if seen[label] <= PER_CLASS:
            keep.append(i)
    return LabelledData([data.texts[i] for i in keep], [data.labels[i] for i in keep], data.source, data.sha256)


@pytest.fixture(scope="module")
def test() -> LabelledData:
    return load_labelled(DATA / "test.csv", label_col="category")


@pytest.fixture(scope="module")
def fitted(train: LabelledData, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    calls: list[tuple[str, int, int, dict[str, float]]] = []
    clf = FineTuneClassifier(**FAST)
    start = time.perf_counter()
    clf.fit(train.texts, train.labels, progress=lambda *call: calls.append(call))
    seconds = time.perf_counter() - start
    folder = clf.save(tmp_path_factory.mktemp("finetune") / "model")
    return {"clf": clf, "calls": calls, "folder": folder, "seconds": seconds}


def test_learns_the_intents(fitted: dict[str, Any], test: LabelledData) -> None:
    clf: FineTuneClassifier = fitted["clf"]
    accuracy = float(np.mean(clf.predict(test.texts) == np.array(test.labels)))
    assert len(clf.classes_) == 8
    assert accuracy >= 0.90, f"accuracy {accuracy:.3f} on 160 test rows (chance is 0.125)"
    probs = clf.predict_proba(test.texts[:5])
    assert probs.shape == (5, 8)
    assert np.allclose(probs.sum(axis=1), 1.0)
    assert clf.calibration_["examples"] == 16


def test_reports_training_progress(fitted: dict[str, Any]) -> None:
    calls = fitted["calls"]
    assert {phase for phase, *_ in calls} == {"train"}
    assert calls[0][1:3] == (0, calls[0][2]) and calls[0][2] > 0
    with_loss = [c for c in calls if "loss" in c[3]]
    assert len(with_loss) >= 5
    steps = [c[1] for c in calls]
    assert steps == sorted(steps) and steps[-1] == calls[-1][2]  # ends at the last step
    assert with_loss[-1][3]["epoch"] == pytest.approx(FAST["epochs"])
    assert with_loss[-1][3]["loss"] < with_loss[0][3]["loss"]


def test_progress_reaches_the_last_step_between_logging_steps() -> None:
    calls: list[tuple[str, int, int, dict[str, float]]] = []
    report = _progress_callback(lambda *call: calls.append(call))
    args, state = SimpleNamespace(logging_steps=10), SimpleNamespace(max_steps=25, global_step=0, epoch=0.0)
    report.on_train_begin(args, state, None)
    for step in range(1, 26):
        state.global_step, state.epoch = step, step / 5
        if step % 10 == 0:
            report.on_log(args, state, None, logs={"loss": 1.0 / step, "learning_rate": 1e-4})
    report.on_train_end(args, state, None)
    assert [c[1] for c in calls] == [0, 10, 20, 25]
    assert calls[-1][3] == {"loss": 0.05, "epoch": 5.0}


def test_save_writes_a_transformers_checkpoint_and_onnx(fitted: dict[str, Any]) -> None:
    folder: Path = fitted["folder"]
    assert (folder / ONNX_FILE).is_file()
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        assert (folder / "model" / name).is_file()
    assert not list(Path.cwd().glob("tmp_trainer*"))


def test_load_dispatches_and_round_trips(fitted: dict[str, Any], test: LabelledData) -> None:
    clf: FineTuneClassifier = fitted["clf"]
    loaded = TextClassifier.load(fitted["folder"])
    assert isinstance(loaded, FineTuneClassifier)
    assert loaded.get_params() == clf.get_params()
    assert loaded.backend == "onnxruntime"
    assert loaded.model_ is None  # serving from ONNX does not load the torch weights
    texts = test.texts[:40]
    as_torch = TextClassifier.load(fitted["folder"])
    as_torch.set_params(runtime="torch")
    np.testing.assert_allclose(as_torch.predict_proba(texts), clf.predict_proba(texts), atol=1e-5)
    np.testing.assert_allclose(loaded.predict_proba(texts), clf.predict_proba(texts), atol=1e-4)
    assert list(loaded.predict(test.texts)) == list(clf.predict(test.texts))


def test_serving_from_onnx_never_imports_torch(fitted: dict[str, Any]) -> None:
    script = (
        "import sys\n"
        "from ragtune.tuning.base import TextClassifier\n"
        f"clf = TextClassifier.load({str(fitted['folder'])!r})\n"
        "print(clf.predict(['my card has not arrived yet'])[0], clf.backend, 'torch' in sys.modules)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
    label, backend, torch_loaded = out.stdout.split()
    assert label in fitted["clf"].classes_
    assert (backend, torch_loaded) == ("onnxruntime", "False")


def test_onnx_logits_match_torch(fitted: dict[str, Any], test: LabelledData) -> None:
    loaded = TextClassifier.load(fitted["folder"])
    assert isinstance(loaded, FineTuneClassifier)
    ids, mask = loaded.encode(test.texts)  # one padded batch: the dynamic axes must cover batch and length
    onnx = loaded._forward(ids, mask)
    torch_logits = loaded.torch_logits(ids, mask)
    assert onnx.shape == (len(test.texts), 8)
    assert float(np.abs(onnx - torch_logits).max()) < 1e-4
    single = loaded.encode(["I still have not received my new card"])
    assert float(np.abs(loaded._forward(*single) - loaded.torch_logits(*single)).max()) < 1e-4


def test_save_of_a_loaded_model_copies_it(fitted: dict[str, Any], tmp_path: Path, test: LabelledData) -> None:
    loaded = TextClassifier.load(fitted["folder"])
    again = TextClassifier.load(loaded.save(tmp_path / "copy"))
    np.testing.assert_allclose(again.predict_proba(test.texts[:10]), loaded.predict_proba(test.texts[:10]))


def test_same_seed_same_model(train: LabelledData) -> None:
    texts, labels = train.texts[::5], train.labels[::5]  # 32 rows, 2 steps: determinism, not accuracy
    params = {**FAST, "epochs": 1, "max_length": 16, "calibration_fraction": 0.0}
    a = FineTuneClassifier(**params).fit(texts, labels)
    b = clone(a).fit(texts, labels)
    np.testing.assert_array_equal(a._logits(texts), b._logits(texts))
    c = FineTuneClassifier(**{**params, "random_state": 1}).fit(texts, labels)
    assert not np.allclose(a._logits(texts), c._logits(texts))


def test_bad_settings_are_user_errors(train: LabelledData, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="pooling"):
        FineTuneClassifier(pooling="max").fit(train.texts[:40], train.labels[:40])
    with pytest.raises(ConfigError, match="runtime"):
        FineTuneClassifier(runtime="tensorrt").fit(train.texts[:40], train.labels[:40])
    with pytest.raises(ConfigError, match="cosine needs pooling 'mean'"):
        FineTuneClassifier(head="cosine", pooling="cls").fit(train.texts[:40], train.labels[:40])


def test_cosine_head_learns_and_survives_onnx(train: LabelledData, test: LabelledData, tmp_path: Path) -> None:
    clf = FineTuneClassifier(**{**FAST, "head": "cosine", "scale": 25.0}).fit(train.texts, train.labels)
    assert clf.model_.classifier.bias is None  # scores are scale * cosine, no offset per class
    accuracy = float(np.mean(clf.predict(test.texts) == np.array(test.labels)))
    assert accuracy >= 0.85, f"accuracy {accuracy:.3f} on 160 test rows (chance is 0.125)"
    loaded = TextClassifier.load(clf.save(tmp_path / "cosine"))
    assert loaded.backend == "onnxruntime"
    np.testing.assert_allclose(loaded.predict_proba(test.texts[:20]), clf.predict_proba(test.texts[:20]), atol=1e-4)
    assert loaded._torch_model().cosine and loaded._torch_model().scale == 25.0  # rebuilt from config.json


@pytest.mark.slow
def test_onnx_serves_one_text_fast(fitted: dict[str, Any]) -> None:
    loaded = TextClassifier.load(fitted["folder"])
    assert loaded.backend == "onnxruntime"
    text = ["How do I top up my account with a card?"]
    loaded.predict_proba(text)
    times = []
    for _ in range(50):
        start = time.perf_counter()
        loaded.predict_proba(text)
        times.append(time.perf_counter() - start)
    assert float(np.median(times)) < 0.010, f"p50 {np.median(times) * 1000:.1f} ms per text"
