"""Every classifier method the registry knows against the checks shipped in ``ragtune.testing.classifier``.

``head`` runs in the default run; the methods that train an encoder run under ``slow`` with tiny settings.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from ragtune.testing.classifier import ClassifierFactory, classifier_checks, parametrize_with_checks
from ragtune.tuning.base import METHOD_MODULES, TextClassifier, build_classifier

TINY_FINETUNE = {"epochs": 8, "batch_size": 8, "max_length": 32, "freeze_embeddings": True, "threads": 1}


def _factory(method: str, **params: object) -> ClassifierFactory:
    def make() -> TextClassifier:
        return build_classifier(method, dict(params))

    make.__name__ = f"make_{method}"
    return make


FAST = {"head": _factory("head")}
SLOW = {
    "setfit": _factory("setfit", num_iterations=1, batch_size=16, max_length=32, threads=1),
    "finetune": _factory("finetune", **TINY_FINETUNE),
    "ensemble": _factory("ensemble", members=[{"method": "head"}, {"method": "finetune", **TINY_FINETUNE}]),
}


def test_every_registered_method_is_checked() -> None:
    assert set(FAST) | set(SLOW) == set(METHOD_MODULES)


@parametrize_with_checks(FAST)
def test_fast_classifiers(make: ClassifierFactory, check: Callable[[ClassifierFactory, Path], None],
                          tmp_path: Path) -> None:
    check(make, tmp_path)


@pytest.mark.slow
@parametrize_with_checks(SLOW)
def test_slow_classifiers(make: ClassifierFactory, check: Callable[[ClassifierFactory, Path], None],
                          tmp_path: Path) -> None:
    check(make, tmp_path)


def test_classifier_checks_are_bound_to_the_factory(tmp_path: Path) -> None:
    bound = classifier_checks(FAST["head"])
    assert [c.__name__ for c in bound][:2] == ["check_params_round_trip", "check_unfitted_use_raises"]
    bound[0](tmp_path)
