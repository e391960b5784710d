"""The ``ensemble`` method on the committed banking77 slice: members train on the same data, their
log-probabilities are averaged, the whole is calibrated once, and a saved ensemble loads back identically."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.base import clone

from ragtune.errors import ConfigError, ModelNotFoundError
from ragtune.tuning.base import TextClassifier, build_classifier
from ragtune.tuning.data import LabelledData, load_labelled
from ragtune.tuning.ensemble import EnsembleClassifier

DATA = Path(__file__).resolve().parents[2] / "examples" / "data" / "banking77"
TINY_FINETUNE = {"method": "finetune", "epochs": 2, "batch_size": 16, "max_length": 24, "freeze_embeddings": True,
                 "threads": 1}


@pytest.fixture(scope="module")
def train() -> LabelledData:
    return load_labelled(DATA / "train.csv", label_col="category")


@pytest.fixture(scope="module")
def test() -> LabelledData:
    return load_labelled(DATA / "test.csv", label_col="category")


@pytest.fixture(scope="module")
def fitted(train: LabelledData) -> dict[str, Any]:
    calls: list[tuple[str, int, int, dict[str, float]]] = []
    members = [{"method": "head", "C": 10.0}, {"method": "head", "C": 0.5}]
    clf = EnsembleClassifier(members=members).fit(train.texts, train.labels, progress=lambda *c: calls.append(c))
    return {"clf": clf, "calls": calls}


def test_averages_member_log_probabilities_and_calibrates_once(fitted: dict[str, Any], test: LabelledData) -> None:
    clf: EnsembleClassifier = fitted["clf"]
    assert len(clf.members_) == 2
    assert [m.get_params()["C"] for m in clf.members_] == [10.0, 0.5]  # members keep their own settings
    assert all(m.calibration_["examples"] == 0 for m in clf.members_)  # only the ensemble holds data out
    assert clf.calibration_["examples"] > 0 and clf.temperature_ != 1.0
    texts = test.texts[:20]
    mean_log = np.mean([np.log(m.predict_proba(texts)) for m in clf.members_], axis=0)
    np.testing.assert_allclose(clf._logits(texts), mean_log, atol=1e-9)
    accuracy = float(np.mean(clf.predict(test.texts) == np.array(test.labels)))
    assert accuracy >= 0.85, f"accuracy {accuracy:.3f} on 160 test rows (chance is 0.125)"


def test_reports_each_members_progress(fitted: dict[str, Any]) -> None:
    phases = {phase for phase, *_ in fitted["calls"]}
    assert {"member 1/2: embed", "member 2/2: fit"} <= phases


def test_mixed_members_save_and_load_identically(train: LabelledData, test: LabelledData, tmp_path: Path) -> None:
    texts, labels = train.texts[::4], train.labels[::4]  # 40 rows: a save/load check, not accuracy
    clf = EnsembleClassifier(members=[TINY_FINETUNE, {"method": "head"}]).fit(texts, labels)
    folder = clf.save(tmp_path / "ens")
    assert (folder / "members" / "0" / "model.onnx").is_file() and (folder / "members" / "1" / "head.npz").is_file()
    loaded = TextClassifier.load(folder)
    assert isinstance(loaded, EnsembleClassifier)
    assert [m.method for m in loaded.members_] == ["finetune", "head"]
    np.testing.assert_allclose(loaded.predict_proba(test.texts[:10]), clf.predict_proba(test.texts[:10]), atol=1e-5)


def test_members_with_the_same_settings_get_different_seeds() -> None:
    specs = EnsembleClassifier(members=[{"method": "finetune"}, {"method": "finetune"}], random_state=3).member_specs()
    assert [s["random_state"] for s in specs] == [3, 4]
    assert clone(EnsembleClassifier()).member_specs()[0]["method"] == "finetune"  # the default members


def test_bad_members_are_user_errors(train: LabelledData, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="at least one member"):
        EnsembleClassifier(members=[]).fit(train.texts, train.labels)
    with pytest.raises(ConfigError, match="give its method"):
        EnsembleClassifier(members=[{"C": 1.0}]).fit(train.texts, train.labels)
    with pytest.raises(ConfigError, match="head has no setting 'epochs'.*C, max_iter"):
        EnsembleClassifier(members=[{"method": "head", "epochs": 3}]).fit(train.texts, train.labels)
    with pytest.raises(ConfigError, match="finetune has no setting 'lr'"):
        build_classifier("finetune", {"lr": 1e-4})
    broken = tmp_path / "broken"
    EnsembleClassifier(members=[{"method": "head"}]).fit(train.texts, train.labels).save(broken)
    shutil.rmtree(broken / "members" / "0")
    with pytest.raises(ModelNotFoundError, match="member folder"):
        TextClassifier.load(broken)


def test_label_names_add_one_example_per_class(train: LabelledData) -> None:
    augmented = train.with_label_names()
    names = sorted(set(train.labels))
    assert augmented.texts[len(train):] == [n.replace("_", " ") for n in names]
    assert augmented.labels[len(train):] == names and augmented.texts[: len(train)] == train.texts
