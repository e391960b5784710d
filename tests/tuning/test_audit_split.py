"""Issue 19, bugs 1 and 16: the label audit covers the whole file and names the file's lines; the train/test
splits (``ragtune train``'s and the advisor's bake-off) keep every duplicate group on one side."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import read_labelled, write_labelled

from ragtune.advisor.bakeoff import bakeoff_labels, holdout_by_group
from ragtune.errors import DataError
from ragtune.models.embedder import MiniLMEmbedder
from ragtune.tuning.audit import AuditReport, audit_labels, excerpt
from ragtune.tuning.data import LabelledData, load_labelled
from ragtune.tuning.groups import duplicate_groups, group_split, near_pairs, normalize
from ragtune.tuning.registry import Registry
from ragtune.tuning.train import split_data, train_classifier

DATA = Path(__file__).resolve().parents[2] / "examples" / "data" / "banking77"
CONFLICT = "How long until my new card gets here?"


def banking() -> list[tuple[str, str]]:
    return read_labelled(DATA / "train.csv")


def with_duplicates() -> LabelledData:
    """banking77's slice plus 40 exact copies (case and spacing changed) and 40 near copies (no final
    punctuation)."""
    rows = banking()
    texts, labels = [t for t, _ in rows], [lab for _, lab in rows]
    for i in range(0, 320, 8):
        texts.append("  " + texts[i].upper() + " ")
        labels.append(labels[i])
        texts.append(texts[i + 1].rstrip("?.!"))
        labels.append(labels[i + 1])
    return LabelledData(texts, labels, "dups", "")


def test_audit_of_the_whole_file_reports_a_conflict_across_the_split_with_both_file_lines(
        tmp_path: Path, embedder: MiniLMEmbedder) -> None:
    rows = banking()[:120]
    # Line 2 holds the conflicting text; line 3 a quoted field spanning two lines, so every later record
    # starts one line further down than its row number suggests.
    planted = [(CONFLICT, "card_arrival"), ("my card\nwas stolen yesterday", "lost_or_stolen_card"), *rows,
               (CONFLICT, "lost_or_stolen_card")]
    path = write_labelled(tmp_path / "data.csv", planted)
    last_line = 2 + len(planted)  # header 1, conflict 2, two-line field 3-4, then one line per row
    assert path.read_text().count("\n") == last_line
    seen: list[AuditReport] = []
    result = train_classifier(Registry(tmp_path / "models"), path, "m", method="head", embedder=embedder,
                              on_audit=lambda audit, data: seen.append(audit))
    audit = seen[0]
    assert audit.examples == len(planted)  # the whole file, not the 80 % training split
    (conflict,) = audit.conflicts
    assert conflict["lines"] == [2, last_line] and conflict["labels"] == ["card_arrival", "lost_or_stolen_card"]
    assert conflict["line_labels"] == ["card_arrival", "lost_or_stolen_card"]
    assert any("conflicting labels, first at lines 2, " + str(last_line) in w for w in audit.warnings)
    # The same finding, by line, in audit.json and report.md next to the model.
    folder = tmp_path / "models" / "m" / "v1"
    assert json.loads((folder / "audit.json").read_text())["conflicts"][0]["lines"] == [2, last_line]
    assert f"| 2, {last_line} | card\\_arrival (line 2), lost\\_or\\_stolen\\_card (line {last_line})" in \
        result.report_md.read_text()


def test_suspected_label_errors_name_the_file_line(tmp_path: Path, embedder: MiniLMEmbedder) -> None:
    rows = banking()
    classes = sorted({lab for _, lab in rows})
    flipped = list(range(5, 300, 60))
    for i in flipped:  # a clearly wrong label
        rows[i] = (rows[i][0], classes[(classes.index(rows[i][1]) + 3) % len(classes)])
    rows.insert(0, ("a text\nover two lines about my refund", "request_refund"))
    data = load_labelled(write_labelled(tmp_path / "noisy.csv", rows))
    audit = audit_labels(data, embedder)
    # Record k starts after the header and every line of the records before it (some span two lines).
    starts = [2 + sum(t.count("\n") + 1 for t, _ in rows[:k]) for k in range(len(rows))]
    lines = {s["line"] for s in audit.suspected_label_errors}
    assert len(lines & {starts[i + 1] for i in flipped}) >= 3, audit.suspected_label_errors
    for s in audit.suspected_label_errors:
        assert s["line"] == starts[s["index"]] and s["text"] == excerpt(data.texts[s["index"]])


def test_jsonl_lines_skip_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "same words", "label": "a"}\n\n{"text": "other", "label": "b"}\n'
                    '{"text": "Same  words", "label": "b"}\n', encoding="utf-8")
    data = load_labelled(path)
    assert data.lines == [1, 3, 4]
    assert audit_labels(data).conflicts[0]["lines"] == [1, 4]


def test_leakage_into_a_test_file_names_both_files_lines_and_a_changed_label(tmp_path: Path) -> None:
    train = load_labelled(write_labelled(tmp_path / "train.csv", [("alpha beta", "a"), ("gamma delta", "b")]))
    test = load_labelled(write_labelled(tmp_path / "test.csv", [("x y", "a"), ("Gamma Delta", "a")]))
    (leak,) = audit_labels(train, None, test).leakage_exact
    assert (leak["line"], leak["test_line"], leak["label"], leak["test_label"]) == (3, 3, "b", "a")


def sides(groups: list[int], train: np.ndarray, test: np.ndarray) -> set[int]:
    return {groups[i] for i in train} & {groups[i] for i in test}


def test_duplicate_groups_join_exact_and_near_copies(embedder: MiniLMEmbedder) -> None:
    data = with_duplicates()
    x = embedder.embed(data.texts)
    groups = duplicate_groups(data.texts, x)
    for i in range(0, 320, 8):  # each exact copy is in its original's group
        assert groups[i] == groups[320 + i // 8 * 2]
    near = sum(groups[i + 1] == groups[321 + i // 8 * 2] for i in range(0, 320, 8))
    assert near >= 30  # most near copies reach cosine 0.95 (the rest are not near duplicates)
    for i, j, _ in near_pairs(x, None):
        assert groups[i] == groups[j]
    assert duplicate_groups(["A  b", "a b", "c"]) == [0, 0, 1]  # exact only without embeddings


@pytest.mark.parametrize(("test_size", "seed"), [(0.2, 0), (0.2, 1), (0.3, 2), (0.05, 3)])
def test_train_split_never_puts_a_duplicate_group_on_both_sides(embedder: MiniLMEmbedder, test_size: float,
                                                                 seed: int) -> None:
    data = with_duplicates()
    groups = duplicate_groups(data.texts, embedder.embed(data.texts))
    assert len(groups) - len(set(groups)) >= 80  # the data really has duplicates to leak
    tr, te = group_split(data.labels, groups, test_size, seed)
    assert not sides(groups, tr, te) and len(tr) + len(te) == len(data)
    assert abs(len(te) / len(data) - test_size) < 0.05
    assert set(data.labels[i] for i in te) <= set(data.labels[i] for i in tr)
    train, test = split_data(data, test_size, seed, groups)
    assert not {normalize(t) for t in train.texts} & {normalize(t) for t in test.texts}  # no exact copy leaks


def test_a_class_that_is_one_group_stays_in_training() -> None:
    labels = ["a"] * 10 + ["b"] * 10 + ["c", "c"]
    groups = list(range(20)) + [20, 20]  # the two "c" examples are copies of one text
    tr, te = group_split(labels, groups, 0.5, 0)
    assert {20, 21} <= set(tr.tolist()) and "c" not in {labels[i] for i in te}
    with pytest.raises(DataError, match="too few to hold out"):
        group_split(["a", "b", "a"], [0, 0, 0], 0.2)


def test_bakeoff_holds_out_by_duplicate_group(embedder: MiniLMEmbedder) -> None:
    data = with_duplicates()
    groups = duplicate_groups(data.texts, embedder.embed(data.texts))
    usable = list(range(len(data)))
    tr, te, capped = holdout_by_group(data.labels, groups, usable, 80, max_train=150, max_test=50, seed=0)
    assert capped and len(tr) == 150 and len(te) == 50
    assert not ({groups[i] for i in tr} & {groups[i] for i in te})
    # The bake-off itself groups its examples (budget: stop after the classifier, the fast part).
    b = bakeoff_labels(data.texts, data.labels, budget_s=0.01, embedder=embedder)
    assert any("held out by duplicate group" in n for n in b.notes), b.notes
    assert b.train_examples + b.test_examples == len(data)
