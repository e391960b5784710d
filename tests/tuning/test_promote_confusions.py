"""Issue 19, bugs 13 and 15: promoted versions and pinned pipeline versions; the top confusions with example
texts and a whole number of calibration examples in the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import read_labelled, write, write_labelled

from ragtune.config import init_project
from ragtune.core import Principal
from ragtune.errors import ConfigError, ModelNotFoundError, RagtuneError
from ragtune.models.embedder import MiniLMEmbedder
from ragtune.pipelines.runner import PipelineRunner
from ragtune.pipelines.spec import load_pipeline
from ragtune.project import Project
from ragtune.tuning.evaluate import top_confusions
from ragtune.tuning.head import HeadClassifier
from ragtune.tuning.registry import ALIASES, Registry, new_card
from ragtune.tuning.report import calibration_line
from ragtune.tuning.train import train_classifier

DATA = Path(__file__).resolve().parents[2] / "examples" / "data" / "banking77"


@pytest.fixture(scope="module")
def two_heads() -> tuple[HeadClassifier, HeadClassifier]:
    """Two models told apart by their classes: one knows card_arrival, the other only pin_blocked and refunds."""
    data = read_labelled(DATA / "train.csv")
    a = [(t, lab) for t, lab in data if lab in ("card_arrival", "exchange_rate")]
    b = [(t, lab) for t, lab in data if lab in ("pin_blocked", "request_refund")]
    return (HeadClassifier().fit([t for t, _ in a], [lab for _, lab in a]),
            HeadClassifier().fit([t for t, _ in b], [lab for _, lab in b]))


def register(reg: Registry, clf: HeadClassifier, name: str = "triage") -> int:
    return reg.register(name, clf, new_card("head", clf, "sha", "train.csv")).version


def test_promoted_version_is_what_the_name_resolves_to(two_heads: tuple[HeadClassifier, HeadClassifier],
                                                       tmp_path: Path) -> None:
    a, b = two_heads
    reg = Registry(tmp_path / "models")
    assert [register(reg, a), register(reg, b)] == [1, 2]
    assert reg.promoted("triage") is None and reg.resolve("triage") == 2  # no promotion: the latest
    assert reg.promote("triage", 1) is None
    assert json.loads((tmp_path / "models" / "triage" / ALIASES).read_text()) == {"promoted": 1}
    assert not list((tmp_path / "models" / "triage").glob(".aliases-*"))  # written via a temporary file
    assert register(reg, b) == 3  # a new version does not move the promotion
    assert list(reg.load("triage").classes_) == ["card_arrival", "exchange_rate"]
    assert reg.card("triage").version == 1 and [c.version for c in reg.list()] == [1]
    assert reg.card("triage", 3).version == 3  # an explicit version wins
    assert reg.promote("triage", None) == 1 and reg.resolve("triage") == 3  # cleared: the latest again
    with pytest.raises(ModelNotFoundError, match="no version 7"):
        reg.promote("triage", 7)
    reg.promote("triage", 2)
    assert reg.delete("triage", 2) == [2] and reg.promoted("triage") is None  # deleting it drops the promotion


def test_broken_promotion_is_an_error_that_says_how_to_fix_it(two_heads: tuple[HeadClassifier, HeadClassifier],
                                                              tmp_path: Path) -> None:
    reg = Registry(tmp_path / "models")
    register(reg, two_heads[0])
    aliases = tmp_path / "models" / "triage" / ALIASES
    aliases.write_text('{"promoted": 4}')  # e.g. the version folder was removed by hand
    with pytest.raises(ModelNotFoundError, match=r"promoted to version 4.*models promote triage --clear"):
        reg.load("triage")
    assert [c.version for c in reg.list()] == [1]  # one bad alias file does not break the listing
    aliases.write_text("{oops")
    with pytest.raises(RagtuneError, match="aliases.json cannot be read.*--clear"):
        reg.resolve("triage")
    reg.promote("triage", None)
    assert reg.resolve("triage") == 1


def test_pipeline_step_pins_a_version_even_after_newer_ones(two_heads: tuple[HeadClassifier, HeadClassifier],
                                                            tmp_path: Path) -> None:
    a, b = two_heads
    proj = tmp_path / "proj"
    init_project(proj)
    project = Project.open(proj)
    register(project.registry, a)
    register(project.registry, b)  # v2, and newer than the pinned one
    pinned = load_pipeline(write(tmp_path / "p.yaml", "name: p\nsteps:\n"
                                 "  - classify: {model: triage, version: 1, output: intent}\n"))
    assert "version: 1" in pinned.to_yaml()
    follows = load_pipeline(write(tmp_path / "q.yaml", "name: q\nsteps:\n  - classify: {model: triage}\n"))
    text = "my new card has still not arrived, when will it come?"
    who = Principal("alice")
    assert PipelineRunner(pinned, project).run(text, who).labels["intent"].label == "card_arrival"
    assert PipelineRunner(follows, project).run(text, who).labels["triage"].label in ("pin_blocked", "request_refund")
    register(project.registry, b)  # v3
    fresh = Project.open(proj)
    assert PipelineRunner(pinned, fresh).run(text, who).labels["intent"].label == "card_arrival"
    with pytest.raises(ConfigError, match="greater than or equal to 1"):
        load_pipeline(write(tmp_path / "bad.yaml", "name: b\nsteps:\n  - classify: {model: triage, version: 0}\n"))


def test_top_confusions_count_errors_with_their_texts() -> None:
    texts = ["t1", "t2", "t3", "t4", "t5"]
    got = top_confusions(texts, ["a", "a", "a", "b", "b"], ["b", "b", "a", "a", "b"], examples=1)
    assert got == [{"true": "a", "predicted": "b", "count": 2, "examples": ["t1"]},
                   {"true": "b", "predicted": "a", "count": 1, "examples": ["t4"]}]


def test_training_reports_top_confusions_and_a_whole_calibration_count(tmp_path: Path,
                                                                        embedder: MiniLMEmbedder) -> None:
    labels = ("card_arrival", "pin_blocked", "exchange_rate")
    train = [(t, lab) for t, lab in read_labelled(DATA / "train.csv") if lab in labels]
    test = [(t, lab) for t, lab in read_labelled(DATA / "test.csv") if lab in labels]
    wrong = [i for i, (_, lab) in enumerate(test) if lab == "card_arrival"][:3]
    for i in wrong:  # labelled pin_blocked in the test file: the model says card_arrival
        test[i] = (test[i][0], "pin_blocked")
    test.insert(0, ("<b>[bold]When|will*my new card arrive?[/bold]</b>", "pin_blocked"))  # markup, HTML
    wrong = [0] + [i + 1 for i in wrong]
    result = train_classifier(Registry(tmp_path / "models"), write_labelled(tmp_path / "train.csv", train), "m",
                              method="head", test_path=write_labelled(tmp_path / "test.csv", test), embedder=embedder)
    top = result.metrics["top_confusions"][0]
    assert (top["true"], top["predicted"]) == ("pin_blocked", "card_arrival") and top["count"] >= 3
    assert top["examples"] == [test[i][0] for i in wrong[:2]]
    cal = result.card.notes["calibration"]["examples"]
    assert isinstance(cal, int) and cal == len(train)  # out of fold: every training example, a whole number
    md = result.report_md.read_text()
    assert "## Top confusions" in md and "| pin\\_blocked | card\\_arrival |" in md
    assert f"fitted on out-of-fold predictions for all {len(train)} training examples" in md
    html = result.report_html.read_text()
    assert "<b>[bold]" not in html and "&lt;b&gt;[bold]When|will*my new card arrive?[/bold]&lt;/b&gt;" in html


def test_calibration_line_of_an_older_card_shows_a_whole_number() -> None:
    card = {"notes": {"calibration": {"examples": 127.0}, "train_examples": 1270}}  # as older cards stored it
    assert calibration_line(card) == "fitted on 127 held-out training examples"
    assert calibration_line({"notes": {"calibration": {"examples": 0}}}) is None
