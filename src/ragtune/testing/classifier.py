"""Checks every :class:`~ragtune.tuning.base.TextClassifier` must pass, in the manner of scikit-learn's
``check_estimator`` / ``parametrize_with_checks``::

    from ragtune.testing.classifier import parametrize_with_checks

    @parametrize_with_checks({"mine": lambda: MyClassifier(epochs=1)})
    def test_my_classifier(make, check, tmp_path):
        check(make, tmp_path)

A check is ``check(make, folder)``: ``make`` returns a new, unfitted classifier and ``folder`` is an empty
scratch folder. The data are 3 classes x 6 short texts. The checks that need a fitted model share one fit per
factory (fitting is the slow part and no check changes a fitted model); ``clear_fit_cache()`` drops them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import clone

from ragtune.errors import DataError
from ragtune.tuning.base import NEEDS_REVIEW, TextClassifier

ClassifierFactory = Callable[[], TextClassifier]
Check = Callable[[ClassifierFactory, Path], None]

_EXAMPLES = {
    "billing": ["I was charged twice for my invoice", "please refund the payment on my credit card",
                "my bill shows the wrong amount", "how do I pay this invoice", "the card payment failed at checkout",
                "send me a copy of the payment receipt"],
    "shipping": ["where is my parcel", "the delivery is a week late", "track the shipment of my package",
                 "the courier lost my parcel", "change the delivery address of my order",
                 "when will my package be delivered"],
    "login": ["I forgot my password", "reset the password of my account", "I cannot sign in to my account",
              "the login page rejects my password", "my account is locked after failed logins",
              "enable two-factor authentication for sign in"],
}
# Interleaved so that the order labels first appear in (shipping, login, billing) is not the sorted order.
TEXTS: list[str] = [_EXAMPLES[c][i] for i in range(6) for c in ("shipping", "login", "billing")]
LABELS: list[str] = [c for _ in range(6) for c in ("shipping", "login", "billing")]
CLASSES = ["billing", "login", "shipping"]  # what classes_ must be: the sorted labels
UNSEEN = ["refund my double charge", "my parcel has not arrived", "I cannot log in", "hello there", ""]


@dataclass
class FitRecord:
    """One fit of a new classifier and what it changed."""

    classifier: TextClassifier
    returned: object
    params_before: dict[str, Any]
    attributes_before: set[str]


_FITS: dict[ClassifierFactory, FitRecord] = {}


def fit_once(make: ClassifierFactory) -> FitRecord:
    """Fit ``make()`` on the check data, once per factory."""
    if make not in _FITS:
        clf = make()
        params, attributes = _params_copy(clf), set(vars(clf))
        _FITS[make] = FitRecord(clf, clf.fit(TEXTS, LABELS), params, attributes)
    return _FITS[make]


def clear_fit_cache() -> None:
    """Drop the shared fitted classifiers."""
    _FITS.clear()


def _params_copy(clf: TextClassifier) -> dict[str, Any]:
    return {k: repr(v) for k, v in clf.get_params(deep=False).items()}


def _texts() -> list[str]:
    return [t for t in UNSEEN if t] + TEXTS[:3]


# -- checks that fit nothing ------------------------------------------------------------------------------------
def check_params_round_trip(make: ClassifierFactory, folder: Path) -> None:
    """``__init__`` stores its parameters verbatim: get_params/set_params round-trip and ``clone`` works."""
    clf = make()
    params = clf.get_params(deep=False)
    assert clf.set_params(**params) is clf, "set_params must return self"
    assert _params_copy(clf) == {k: repr(v) for k, v in params.items()}
    twin = clone(clf)  # scikit-learn raises if a parameter was changed or validated in __init__
    assert type(twin) is type(clf) and _params_copy(twin) == _params_copy(clf)


def check_unfitted_use_raises(make: ClassifierFactory, folder: Path) -> None:
    """predict, predict_proba and save before fit raise DataError saying to call fit() or load()."""
    clf = make()
    for call in (lambda: clf.predict(["x"]), lambda: clf.predict_proba(["x"]), lambda: clf.save(folder / "m")):
        try:
            call()
        except DataError as exc:
            assert "fit" in str(exc), f"the error should say to fit first: {exc}"
        else:
            raise AssertionError(f"{type(clf).__name__} answered before fit")


def check_one_class_is_refused(make: ClassifierFactory, folder: Path) -> None:
    """Fitting on a single label raises DataError (a classifier needs two)."""
    try:
        make().fit(TEXTS[:4], ["billing"] * 4)
    except DataError:
        return
    raise AssertionError("fit on one class must raise DataError")


# -- checks on the shared fit ----------------------------------------------------------------------------------
def check_fit_returns_self(make: ClassifierFactory, folder: Path) -> None:
    """``fit`` returns the classifier itself."""
    record = fit_once(make)
    assert record.returned is record.classifier


def check_fit_keeps_params_and_adds_only_fitted_attributes(make: ClassifierFactory, folder: Path) -> None:
    """Fitting changes no parameter, and every public attribute it adds ends in ``_``."""
    record = fit_once(make)
    assert _params_copy(record.classifier) == record.params_before, "fit must not change parameters"
    added = set(vars(record.classifier)) - record.attributes_before
    public = sorted(a for a in added if not a.startswith("_") and not a.endswith("_"))
    assert not public, f"fitted attributes must end in '_': {public}"


def check_classes_are_the_sorted_labels(make: ClassifierFactory, folder: Path) -> None:
    """``classes_`` is the sorted distinct labels, as strings, and prediction columns follow it."""
    clf = fit_once(make).classifier
    assert [str(c) for c in clf.classes_] == CLASSES
    probs = clf.predict_proba(_texts())
    assert probs.shape == (len(_texts()), len(CLASSES))
    assert list(clf.predict(_texts())) == [clf.classes_[j] for j in probs.argmax(axis=1)]


def check_predict_proba_is_calibrated_distribution(make: ClassifierFactory, folder: Path) -> None:
    """Calibrated probabilities: finite, in [0, 1], rows summing to 1; a positive finite temperature; an empty
    input gives an empty (0, n_classes) array."""
    clf = fit_once(make).classifier
    probs = clf.predict_proba(_texts())
    assert np.isfinite(probs).all() and (probs >= 0).all() and (probs <= 1).all()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    assert np.isfinite(clf.temperature_) and clf.temperature_ > 0
    assert clf.predict_proba([]).shape == (0, len(CLASSES))


def check_predict_or_review_honours_the_threshold(make: ClassifierFactory, folder: Path) -> None:
    """Below the threshold a text goes to review; at threshold 0 every text gets its predicted label."""
    clf = fit_once(make).classifier
    texts = _texts()
    assert [label for label, _ in clf.predict_or_review(texts, threshold=1.01)] == [NEEDS_REVIEW] * len(texts)
    assert [label for label, _ in clf.predict_or_review(texts, threshold=0.0)] == list(clf.predict(texts))


def check_learns_separable_data(make: ClassifierFactory, folder: Path) -> None:
    """At least 80 % of the 18 training texts (3 well separated classes) are predicted right."""
    clf = fit_once(make).classifier
    accuracy = float(np.mean(clf.predict(TEXTS) == np.array(LABELS)))
    assert accuracy >= 0.8, f"training accuracy {accuracy:.2f} on 3 well separated classes"


def check_save_load_round_trip(make: ClassifierFactory, folder: Path) -> None:
    """``TextClassifier.load`` of a saved model gives the same class, parameters, classes, temperature,
    predictions and (to 1e-4) probabilities."""
    clf = fit_once(make).classifier
    loaded = TextClassifier.load(clf.save(folder / "model"))
    assert type(loaded) is type(clf)
    assert _params_copy(loaded) == _params_copy(clf)
    assert list(loaded.classes_) == list(clf.classes_) and loaded.temperature_ == clf.temperature_
    texts = _texts()
    assert list(loaded.predict(texts)) == list(clf.predict(texts))
    np.testing.assert_allclose(loaded.predict_proba(texts), clf.predict_proba(texts), atol=1e-4)


def check_clone_of_a_fitted_classifier_is_unfitted(make: ClassifierFactory, folder: Path) -> None:
    """``clone`` copies parameters only: the copy must be fitted again."""
    twin = clone(fit_once(make).classifier)
    assert not hasattr(twin, "classes_")
    check_unfitted_use_raises(lambda: twin, folder)


CHECKS: tuple[Check, ...] = (
    check_params_round_trip,
    check_unfitted_use_raises,
    check_one_class_is_refused,
    check_fit_returns_self,
    check_fit_keeps_params_and_adds_only_fitted_attributes,
    check_classes_are_the_sorted_labels,
    check_predict_proba_is_calibrated_distribution,
    check_predict_or_review_honours_the_threshold,
    check_learns_separable_data,
    check_save_load_round_trip,
    check_clone_of_a_fitted_classifier_is_unfitted,
)


def classifier_checks(make: ClassifierFactory, checks: Iterable[Check] = CHECKS) -> list[Callable[[Path], None]]:
    """Every check bound to ``make``: call each with an empty scratch folder (scikit-learn's check_estimator)."""
    out: list[Callable[[Path], None]] = []
    for check in checks:
        bound = partial(check, make)
        bound.__name__ = check.__name__  # type: ignore[attr-defined]
        out.append(bound)
    return out


def parametrize_with_checks(factories: Mapping[str, ClassifierFactory], checks: Iterable[Check] = CHECKS) -> Any:
    """A ``pytest.mark.parametrize("make, check", ...)`` over every (factory, check) pair, ids
    ``<name>-<check>``. The decorated test calls ``check(make, tmp_path)``. Needs pytest."""
    import pytest

    checks = tuple(checks)
    pairs = [(name, make, check) for name, make in factories.items() for check in checks]
    return pytest.mark.parametrize(
        "make, check", [(make, check) for _, make, check in pairs],
        ids=[f"{name}-{check.__name__.removeprefix('check_')}" for name, _, check in pairs],
    )


__all__ = [
    "CHECKS", "CLASSES", "LABELS", "TEXTS", "Check", "ClassifierFactory", "FitRecord",
    "check_classes_are_the_sorted_labels", "check_clone_of_a_fitted_classifier_is_unfitted",
    "check_fit_keeps_params_and_adds_only_fitted_attributes", "check_fit_returns_self",
    "check_learns_separable_data", "check_one_class_is_refused", "check_params_round_trip",
    "check_predict_or_review_honours_the_threshold", "check_predict_proba_is_calibrated_distribution",
    "check_save_load_round_trip", "check_unfitted_use_raises", "classifier_checks", "clear_fit_cache", "fit_once",
    "parametrize_with_checks",
]
