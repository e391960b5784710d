"""Groundedness checks out of the box (issue 19): the packaged training pairs and their licenses, and the lexical
scorer every project gets before `ragtune verify train` has run. No model is trained here."""

from __future__ import annotations

import csv
import glob
import json
import tomllib
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score
from typer.testing import CliRunner

from ragtune.config import init_project
from ragtune.core import Answer, Chunk, Citation
from ragtune.errors import ModelNotFoundError
from ragtune.tuning.registry import Registry
from ragtune.verify.cli import verify_app
from ragtune.verify.data import (
    PACKAGED,
    begin_files,
    load_begin,
    load_training_pairs,
    packaged_data_dir,
    split_pairs,
)
from ragtune.verify.default import (
    LEXICAL_NAME,
    LexicalOverlapChecker,
    default_lexical_threshold,
    lexical_threshold,
    load_checker,
)
from ragtune.verify.evaluate import balanced_accuracies, choose_threshold

REPO = Path(__file__).resolve().parents[2]
KNOWLEDGE = "Cheerleading is an activity in which the participants cheer for their team as a form of encouragement."


def packaged(*parts: str) -> Path:
    return Path(str(resources.files("ragtune").joinpath(*PACKAGED, *parts)))


# -- packaged data --------------------------------------------------------------------------------------------------
def test_the_packaged_pairs_load_with_both_labels_and_every_source() -> None:
    pairs = load_training_pairs()  # no folder: the data inside the installed package
    assert packaged_data_dir() == packaged()
    assert len(pairs) > 1000 and {p.label for p in pairs} == {"supported", "unsupported"}
    assert {p.source for p in pairs} == {"begin/wow", "begin/cmu", "scifact"}
    assert {p.kind for p in pairs if p.source == "scifact"} == {"support", "contradict", "other"}
    # every BEGIN row that makes a claim is a pair (Generic rows are dropped), counted from the packaged files
    files = sorted(packaged("begin").glob("*.tsv"))
    rows = [r for f in files for r in csv.DictReader(f.open(encoding="utf-8"), delimiter="\t",
                                                       quoting=csv.QUOTE_NONE)]
    claims = [r for r in rows if r["begin_label"] != "Generic" and r["knowledge"].strip() and r["response"].strip()]
    begin = [p for p in pairs if p.source.startswith("begin")]
    assert len(begin) == len(claims) > 700
    assert sum(p.supported for p in begin) == sum(r["begin_label"] == "Fully attributable" for r in claims)


def test_the_packaged_data_keeps_its_licenses_beside_it() -> None:
    cc_by = "Attribution 4.0 International"
    for name in ("wow_LICENSE", "cmu-dog_LICENSE"):
        assert cc_by in packaged("begin", name).read_text(encoding="utf-8")
    assert "Facebook" in packaged("begin", "wow_NOTICE").read_text(encoding="utf-8")
    scifact = packaged("scifact", "original", "LICENSE").read_text(encoding="utf-8")
    assert "CC BY 4.0" in scifact and "ODC-By 1.0" in scifact and "opendatacommons.org" in scifact
    readme = packaged("README.md").read_text(encoding="utf-8")
    assert "BEGIN" in readme and "SciFact" in readme and "license" in readme.lower()
    total = sum(f.stat().st_size for f in packaged().rglob("*") if f.is_file())
    assert total < 2_000_000, f"the packaged data grew to {total} bytes"


def test_pyproject_ships_every_packaged_file() -> None:
    """setuptools' package-data globs (relative to src/ragtune) must match every file, or a wheel lacks it."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = config["tool"]["setuptools"]["package-data"]["ragtune"]
    root = REPO / "src" / "ragtune"
    shipped = {Path(f) for pattern in patterns for f in glob.glob(str(root / pattern)) if Path(f).is_file()}
    files = {f for f in (root / Path(*PACKAGED)).rglob("*") if f.is_file() and "__pycache__" not in f.parts}
    assert files and files <= shipped, sorted(str(f.relative_to(root)) for f in files - shipped)


def test_scifact_reads_the_gzipped_corpus_subset(tmp_path: Path) -> None:
    """The packaged SciFact abstracts are a gzipped subset; the plain release file still reads the same way."""
    import gzip
    import shutil

    from ragtune.verify.data import load_scifact

    original = packaged("scifact", "original")
    plain = tmp_path / "original"
    plain.mkdir()
    for f in ("claims_train.csv", "claims_validation.csv"):
        shutil.copy(original / f, plain / f)
    with gzip.open(original / "corpus_sentences.jsonl.gz", "rb") as src:
        (plain / "corpus_sentences.jsonl").write_bytes(src.read())
    assert load_scifact(original) == load_scifact(plain) != []


# -- the default scorer ---------------------------------------------------------------------------------------------
def test_a_project_without_a_trained_checker_gets_lexical_overlap(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "models")
    checker = load_checker(registry)
    assert isinstance(checker, LexicalOverlapChecker) and not checker.trained and checker.name == LEXICAL_NAME
    assert "ragtune verify train" in checker.name  # what to run for the trained one
    good, bad = checker.score([("Cheerleaders cheer for their team.", KNOWLEDGE),
                               ("The Eiffel Tower was finished in 1889.", KNOWLEDGE)])
    assert good >= checker.threshold > bad
    # a name or version the user asked for is never replaced by the default scorer
    with pytest.raises(ModelNotFoundError, match="--name strict"):
        load_checker(registry, "strict")
    with pytest.raises(ModelNotFoundError):
        load_checker(registry, "groundedness", version=1)


def test_the_default_threshold_is_chosen_on_packaged_begin_outside_the_test_split() -> None:
    """The benchmark scores the lexical default on `verify train`'s test split: its threshold must not see it."""
    pairs = load_training_pairs()
    begin = load_begin(begin_files(packaged_data_dir()))
    full, alone = split_pairs(pairs), split_pairs(begin)
    # a source's split does not depend on the other sources: BEGIN alone splits as in `verify train`
    assert [(p.sentence, p.evidence) for p in alone.test] == [
        (p.sentence, p.evidence) for p in full.test if p.source.startswith("begin")]
    assert [(p.sentence, p.evidence) for p in alone.validation] == [(p.sentence, p.evidence) for p in full.validation]
    chosen_on = alone.train + alone.validation
    assert {p.group for p in chosen_on}.isdisjoint(p.group for p in alone.test)
    t = default_lexical_threshold()
    assert t == lexical_threshold(chosen_on) and 0.0 < t < 1.0
    assert LexicalOverlapChecker().threshold == t and LexicalOverlapChecker(0.3).threshold == 0.3


def test_the_lexical_checker_marks_unsupported_answer_sentences() -> None:
    backups = "Backups run nightly. Backups are retained for ninety days in two regions."

    def chunk(text: str) -> Chunk:
        return Chunk(chunk_id="c1", doc_id="d", source_path="/b.md", title="b", section_path=(), page=None,
                     char_start=0, char_end=len(text), text=text, content_hash="", doc_hash="", mtime=0.0,
                     acl=("public",))

    answer = Answer("q", "Backups are retained for ninety days. [1] Backups are encrypted with quantum keys. [1]",
                    (Citation(1, chunk(backups), backups[:40]),), False, {})
    report = LexicalOverlapChecker().check_answer(answer)
    assert report.model == LEXICAL_NAME and report.threshold == default_lexical_threshold()
    assert report.unsupported == ("Backups are encrypted with quantum keys.",)


def test_balanced_accuracies_match_scikit_learn() -> None:
    """choose_threshold sweeps every candidate in one numpy pass; it must agree with scikit-learn's definition."""
    rng = np.random.default_rng(0)
    for _ in range(50):
        y = rng.random(40) < 0.35
        y[:2] = [True, False]
        scores = np.round(rng.random(40), 2)
        candidates = np.concatenate([scores, scores + 0.005, [scores.max() + 1]])
        expected = [balanced_accuracy_score(y, scores >= t) for t in candidates]
        np.testing.assert_allclose(balanced_accuracies(y, scores, candidates), expected)
        t = choose_threshold(y, scores)
        assert balanced_accuracy_score(y, scores >= t) == pytest.approx(max(expected))


# -- command line ---------------------------------------------------------------------------------------------------
def test_verify_check_works_on_a_fresh_project_and_names_the_scorer(tmp_path: Path) -> None:
    init_project(tmp_path / "p")
    runner = CliRunner()
    args = ["--evidence", KNOWLEDGE, "--project", str(tmp_path / "p")]
    good = runner.invoke(verify_app, ["check", "Cheerleaders cheer for their team.", *args])
    assert good.exit_code == 0, good.output
    assert good.output.startswith("supported") and "lexical overlap (no trained checker; run `ragtune verify " \
        "train` for the trained one)" in " ".join(good.output.split())
    bad = runner.invoke(verify_app, ["check", "The Eiffel Tower is in Rome.", *args, "--json"])
    assert bad.exit_code == 0, bad.output
    data = json.loads(bad.output)
    assert data["verdict"] == "unsupported" and data["scorer"] == "lexical" and data["probability"] is None
    assert data["model"] == LEXICAL_NAME and data["threshold"] == pytest.approx(default_lexical_threshold())
    assert data["score"] < data["threshold"]


def test_verify_train_needs_no_data_folder() -> None:
    helptext = " ".join(CliRunner().invoke(verify_app, ["train", "--help"], env={"COLUMNS": "250"}).output.split())
    assert "packaged with ragtune" in helptext and "--test" in helptext
    assert "shared/data" not in helptext
