"""The head classifier, calibration, the label audit, the registry and bad labelled data, on real banking77."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from ragtune.errors import DataError, ModelNotFoundError
from ragtune.tuning.audit import audit_labels
from ragtune.tuning.base import TextClassifier
from ragtune.tuning.calibration import expected_calibration_error, softmax
from ragtune.tuning.data import LabelledData, load_labelled
from ragtune.tuning.evaluate import ClassificationEvaluator
from ragtune.tuning.head import HeadClassifier
from ragtune.tuning.registry import Registry, new_card
from ragtune.tuning.train import choose_method, train_classifier

DATA = Path(__file__).resolve().parents[2] / "examples" / "data" / "banking77"


@pytest.fixture(scope="module")
def train() -> LabelledData:
    return load_labelled(DATA / "train.csv", "text", "category")


@pytest.fixture(scope="module")
def test() -> LabelledData:
    return load_labelled(DATA / "test.csv", "text", "category")


@pytest.fixture(scope="module")
def head(train: LabelledData) -> HeadClassifier:
    return HeadClassifier().fit(train.texts, train.labels)


def test_head_learns_and_follows_the_estimator_api(head: HeadClassifier, test: LabelledData) -> None:
    assert list(head.classes_) == sorted(set(test.labels))
    assert hasattr(head, "model_") and hasattr(head, "temperature_")
    acc = float(np.mean(head.predict(test.texts) == np.array(test.labels)))
    assert acc >= 0.85  # chance is 0.125; measured 0.98
    probs = head.predict_proba(test.texts[:5])
    assert probs.shape == (5, 8) and np.allclose(probs.sum(axis=1), 1.0)
    assert head.get_params()["C"] == 10.0


def test_save_load_round_trip_gives_identical_probabilities(head: HeadClassifier, test: LabelledData,
                                                             tmp_path: Path) -> None:
    head.save(tmp_path / "m")
    loaded = TextClassifier.load(tmp_path / "m")
    assert isinstance(loaded, HeadClassifier) and loaded.temperature_ == head.temperature_
    assert np.allclose(loaded.predict_proba(test.texts), head.predict_proba(test.texts), atol=1e-9)


def test_temperature_scaling_improves_calibration(train: LabelledData, test: LabelledData) -> None:
    # A strongly regularised head is underconfident; the fitted temperature must fix most of that.
    clf = HeadClassifier(C=0.3, calibration_fraction=0.25).fit(train.texts, train.labels)
    logits = clf._logits(test.texts)
    y = np.array([list(clf.classes_).index(label) for label in test.labels])
    before = expected_calibration_error(softmax(logits), y)
    after = expected_calibration_error(softmax(logits, clf.temperature_), y)
    assert clf.temperature_ < 1.0 and after < before * 0.7, (before, after, clf.temperature_)


class HeldOutHead(HeadClassifier):
    """The head with cross-fitting switched off, to exercise the held-out calibration split."""

    cross_fit_max = 0


def test_a_subclass_without_its_own_method_name_does_not_replace_the_method() -> None:
    # HeldOutHead above used to become what "head" builds for every later test (it inherits method = "head").
    from ragtune.tuning.base import classifier_class

    assert classifier_class("head") is HeadClassifier


def test_small_data_calibrates_out_of_fold_and_trains_on_every_example(train: LabelledData) -> None:
    cross = HeadClassifier().fit(train.texts, train.labels)
    held = HeldOutHead().fit(train.texts, train.labels)
    # Out-of-fold: every example calibrates; held out: only 10 %, and those are missing from training.
    assert cross.calibration_["examples"] == len(train.texts)
    assert held.calibration_["examples"] == round(0.1 * len(train.texts))
    refit = LogisticRegression(C=10.0, max_iter=3000, random_state=0).fit(cross.embed(train.texts),
                                                                         train.labels)
    assert np.allclose(cross.model_.coef_, refit.coef_, atol=1e-6)
    assert not np.allclose(held.model_.coef_, refit.coef_, atol=1e-3)
    assert 0.05 < cross.temperature_ < 20 and cross.calibration_["ece_after"] <= cross.calibration_["ece_before"]


def test_abstain_threshold_routes_to_review(head: HeadClassifier) -> None:
    label, p = head.predict_or_review(["my card still has not arrived after two weeks"], threshold=0.0)[0]
    assert label == "card_arrival" and p > 0.5
    assert head.predict_or_review(["my card still has not arrived"], threshold=1.01)[0][0] == "needs_review"


def test_evaluator_reports_metrics_and_primary(head: HeadClassifier, test: LabelledData) -> None:
    m = ClassificationEvaluator(test.texts, test.labels)(head)
    assert m["primary_metric"] == "macro_f1" and 0.85 <= m["accuracy"] <= 1.0
    assert sum(map(sum, m["confusion_matrix"])) == len(test.texts)
    assert set(m["per_class"]) == set(test.labels) and 0.0 <= m["ece"] <= 1.0


def test_audit_finds_planted_duplicates_conflicts_and_mislabels(train: LabelledData, embedder) -> None:  # type: ignore[no-untyped-def]
    texts, labels = list(train.texts), list(train.labels)
    classes = sorted(set(labels))
    flipped = []
    for i in range(0, 50, 10):  # relabel 5 examples to a wrong class
        labels[i] = classes[(classes.index(labels[i]) + 3) % len(classes)]
        flipped.append(i)
    texts += [texts[100], texts[101]]  # exact duplicates, same label
    labels += [labels[100], labels[101]]
    texts.append(texts[102].upper() + "  ")  # same text up to case/space, different label
    labels.append(classes[(classes.index(labels[102]) + 1) % len(classes)])
    report = audit_labels(LabelledData(texts, labels, "planted", ""), embedder)
    dup_groups = [set(g["indices"]) for g in report.exact_duplicates]
    assert {100, len(texts) - 3} in dup_groups and {101, len(texts) - 2} in dup_groups
    assert any(set(c["indices"]) == {102, len(texts) - 1} for c in report.conflicts)
    found = {s["index"] for s in report.suspected_label_errors}
    assert len(found & set(flipped)) >= 4, report.suspected_label_errors
    assert len(found - set(flipped)) <= 5  # few false alarms on clean data
    assert not report.blocking and any("suspected label error" in w for w in report.warnings)


def test_audit_flags_leakage_and_one_class(train: LabelledData, test: LabelledData) -> None:
    leaky = LabelledData(test.texts[:3] + ["something else entirely"], test.labels[:3] + ["x"], "t", "")
    report = audit_labels(train, None, leaky)
    assert report.leakage_exact == [] and not report.blocking
    report = audit_labels(LabelledData(train.texts + [test.texts[0]], train.labels + [test.labels[0]], "t", ""),
                          None, leaky)
    assert [p["test_index"] for p in report.leakage_exact] == [0]
    one = audit_labels(LabelledData(["a b", "c d"], ["x", "x"], "t", ""))
    assert one.blocking and "one class" in one.blocking[0]


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def test_bad_labelled_data_gives_clear_errors(tmp_path: Path) -> None:
    good = [{"text": f"text {i}", "category": "a" if i % 2 else "b"} for i in range(10)]
    with pytest.raises(DataError, match="no column 'label'.*--text-col/--label-col"):
        load_labelled(write_csv(tmp_path / "a.csv", good), "text", "label")
    with pytest.raises(DataError, match="empty 'text'.*line 3"):
        load_labelled(write_csv(tmp_path / "b.csv", [*good[:1], {"text": " ", "category": "a"}]), "text", "category")
    (tmp_path / "c.csv").write_bytes("text,category\ncaf\xe9 cr\xe8me,a\n".encode("latin-1"))
    assert load_labelled(tmp_path / "c.csv", "text", "category").texts == ["caf\xe9 cr\xe8me"]  # latin-1 is read
    with pytest.raises(DataError, match="one class"):
        HeadClassifier().fit(["x y", "z w"], ["a", "a"])
    one_class = write_csv(tmp_path / "d.csv", [{"text": f"t {i}", "category": "a"} for i in range(6)])
    with pytest.raises(DataError, match="cannot train: only one class"):
        train_classifier(Registry(tmp_path / "models"), one_class, "m", label_col="category", method="head")
    test_unknown = write_csv(tmp_path / "e.csv", [{"text": "new thing", "category": "zzz"}])
    with pytest.raises(DataError, match="never seen in training: zzz"):
        train_classifier(Registry(tmp_path / "models"), DATA / "train.csv", "m", label_col="category", method="head",
                         test_path=test_unknown)
    with pytest.raises(DataError, match="unknown method"):
        train_classifier(Registry(tmp_path / "models"), DATA / "train.csv", "m", label_col="category", method="magic")


def test_auto_method_choice_depends_on_examples_per_class() -> None:
    method, reason = choose_method(["a"] * 8 + ["b"] * 8)
    assert method == "head" and "few-shot" in reason
    assert choose_method(["a"] * 100 + ["b"] * 100)[0] == "head"
    assert choose_method(["a"] * 2000 + ["b"] * 2000)[0] == "finetune"


def test_registry_versions_cards_and_delete(head: HeadClassifier, tmp_path: Path) -> None:
    reg = Registry(tmp_path / "models")
    c1 = reg.register("triage", head, new_card("head", head, "abc", "train.csv"))
    c2 = reg.register("triage", head, new_card("head", head, "abc", "train.csv"))
    assert (c1.version, c2.version) == (1, 2)
    assert [c.version for c in reg.list()] == [2] and reg.card("triage", 1).classes == list(head.classes_)
    assert isinstance(reg.load("triage", 1), HeadClassifier)
    assert reg.delete("triage", 1) == [1]
    with pytest.raises(ModelNotFoundError, match="no version 1"):
        reg.load("triage", 1)
    reg.delete("triage")
    with pytest.raises(ModelNotFoundError, match="no model named 'triage'.*ragtune train"):
        reg.load("triage")
    assert not list((tmp_path / "models").glob("*/.tmp-*"))
