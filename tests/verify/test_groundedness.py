"""The groundedness checker: pairs from BEGIN, a tiny checker that learns on a committed slice, registry round
trip, answer checking with citations, and clear errors. One tiny checker is trained for the module."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from ragtune.config import init_project
from ragtune.core import Answer, Chunk, Citation, Principal
from ragtune.errors import DataError, ModelNotFoundError, RagtuneError
from ragtune.models.embedder import MiniLMEmbedder
from ragtune.tuning.registry import Registry
from ragtune.verify import (
    EmbeddingCosineScorer,
    GroundednessChecker,
    LexicalOverlapScorer,
    check_answer,
    cited_sentences,
    hallucination_rate,
    train_groundedness,
)
from ragtune.verify.cli import verify_app
from ragtune.verify.data import LabelledPair, group_split, knowledge_groups, load_begin, load_training_pairs
from ragtune.verify.pairs import SEP, evidence_windows, pair_text

SLICE = Path(__file__).resolve().parents[2] / "examples" / "data" / "begin"
# Sized for 2 CPU cores: ~140 short WoW/CMU pairs, 3 epochs, 96 tokens, frozen word embeddings.
TINY: dict[str, Any] = {"epochs": 3, "batch_size": 16, "max_length": 96, "freeze_embeddings": True, "threads": 2}


def chunk(cid: str, text: str) -> Chunk:
    return Chunk(chunk_id=cid, doc_id=cid, source_path=f"/{cid}.md", title=cid, section_path=(), page=None,
                 char_start=0, char_end=len(text), text=text, content_hash="", doc_hash="", mtime=0.0,
                 acl=("public",))


def answer(text: str, *chunks: str) -> Answer:
    cites = tuple(Citation(n, chunk(f"c{n}", t), t[:40]) for n, t in enumerate(chunks, start=1))
    return Answer("q", text, cites, False, {})


def write_begin(path: Path, pairs: list[LabelledPair]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    names = {"supported": "Fully attributable", "unsupported": "Not fully attributable"}
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\")
        w.writerow(["model_name", "data_source", "knowledge", "message", "response", "begin_label"])
        for p in pairs:
            w.writerow(["t5", p.source.split("/")[-1], p.evidence, "", p.sentence, names[p.label]])


@pytest.fixture(scope="module")
def split() -> tuple[list[LabelledPair], list[LabelledPair]]:
    """The slice split by knowledge group: (train part, held-out part)."""
    return group_split(load_training_pairs(SLICE.parent), 0.3, seed=0)


@pytest.fixture(scope="module")
def trained(split: tuple[list[LabelledPair], list[LabelledPair]], tmp_path_factory: pytest.TempPathFactory
            ) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("groundedness")
    write_begin(root / "data" / "begin" / "train.tsv", split[0])
    init_project(root / "project")
    models = root / "project" / "models"
    result = train_groundedness(Registry(models), root / "data", params=TINY, validation_fraction=0.25)
    return {"result": result, "models": models, "project": root / "project", "data": root / "data"}


# -- data -----------------------------------------------------------------------------------------------------------
def test_begin_labels_map_and_generic_is_dropped() -> None:
    files = sorted(SLICE.glob("*.tsv"))
    rows = [r for f in files for r in csv.DictReader(f.open(encoding="utf-8"), delimiter="\t",
                                                       quoting=csv.QUOTE_NONE)]
    pairs = load_begin(files)
    generic = sum(r["begin_label"] == "Generic" for r in rows)
    assert generic > 0 and len(pairs) == len(rows) - generic
    assert {p.label for p in pairs} == {"supported", "unsupported"}
    assert sum(p.supported for p in pairs) == sum(r["begin_label"] == "Fully attributable" for r in rows)
    with_generic = load_begin(files, generic="unsupported")
    assert len(with_generic) == len(rows)
    assert sum(not p.supported for p in with_generic) == sum(not p.supported for p in pairs) + generic


def test_group_split_shares_no_knowledge(split: tuple[list[LabelledPair], list[LabelledPair]]) -> None:
    rest, held = split
    assert {p.evidence for p in rest}.isdisjoint({p.evidence for p in held})
    assert {p.group for p in rest}.isdisjoint({p.group for p in held})
    assert 0.2 < len(held) / (len(rest) + len(held)) < 0.4
    # texts sharing an 8-word run are one group, even when they differ
    a = "the quick brown fox jumps over the lazy dog near the river bank today"
    groups = knowledge_groups([a, "yesterday " + a[:50] + " and more words", "an unrelated snippet entirely"])
    assert len(set(groups.values())) == 2


def test_scifact_pairs_from_rationales(tmp_path: Path) -> None:
    from ragtune.verify.data import load_scifact

    folder = tmp_path / "original"
    folder.mkdir()
    abstract = ["Aspirin lowers fever in adults.", "The trial enrolled two hundred patients over a year.",
                "Aspirin raised the risk of bleeding in the stomach.", "Results were published in a journal."]
    (folder / "corpus_sentences.jsonl").write_text(
        '{"doc_id": 7, "title": "t", "abstract": ' + str(abstract).replace("'", '"') + ', "structured": false}\n')
    (folder / "claims_train.csv").write_text(
        "id,claim,evidence_doc_id,evidence_label,evidence_sentences,cited_doc_ids\n"
        "1,Aspirin reduces fever.,7,SUPPORT,[0],[7]\n"
        "2,Aspirin is free of side effects.,7,CONTRADICT,[2],[7]\n"
        "3,Aspirin cures colds.,,,[],[7]\n")
    pairs = load_scifact(folder, negatives_per_rationale=1, seed=0)
    by = {(p.sentence, p.evidence): p.label for p in pairs}
    assert by[("Aspirin reduces fever.", abstract[0])] == "supported"
    assert by[("Aspirin is free of side effects.", abstract[2])] == "unsupported"
    negatives = [p for p in pairs if p.sentence == "Aspirin reduces fever." and p.label == "unsupported"]
    assert len(negatives) == 1 and negatives[0].evidence in abstract[1:]  # never the rationale itself
    assert len(pairs) == 4  # the claim without evidence gives nothing


def test_bad_data_gives_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="data folder not found"):
        load_training_pairs(tmp_path / "nowhere")
    with pytest.raises(DataError, match="no groundedness data"):
        load_training_pairs(tmp_path)
    bad = tmp_path / "begin" / "x.tsv"
    bad.parent.mkdir()
    bad.write_text("text\tlabel\nhello\tyes\n")
    with pytest.raises(DataError, match="missing column"):
        load_training_pairs(tmp_path)
    bad.write_text("knowledge\tresponse\tbegin_label\nk\tr\tMaybe\n")
    with pytest.raises(DataError, match="unknown begin_label 'Maybe'"):
        load_training_pairs(tmp_path)
    with pytest.raises(RagtuneError, match="data folder not found"):
        train_groundedness(Registry(tmp_path / "models"), tmp_path / "missing")


# -- pair encoding --------------------------------------------------------------------------------------------------
def test_pair_text_uses_the_separator_token() -> None:
    from ragtune.models.embedder import minilm_model_dir
    from ragtune.tuning.finetune import _tokenizer

    tok = _tokenizer(minilm_model_dir() / "tokenizer.json", 128)
    ids = tok.encode(pair_text("Backups run nightly.", "Backups [SEP] run every night.")).ids
    sep = tok.token_to_id(SEP)
    assert ids.count(sep) == 2  # between the two texts and at the end; the one inside the evidence is defused
    assert ids[-1] == sep and tok.decode(ids[: ids.index(sep)]) == "backups run nightly."


def test_long_evidence_is_cut_into_overlapping_windows_that_fit() -> None:
    from ragtune.ingest.chunking import minilm_token_counts

    sentences = [f"Sentence number {i} talks about topic {i} in some detail here." for i in range(30)]
    windows = evidence_windows("A claim about topic 7.", " ".join(sentences), 96)
    assert len(windows) > 3
    assert all(n <= 96 for n in minilm_token_counts([pair_text("A claim about topic 7.", w) for w in windows]))
    assert windows[0].startswith(sentences[0]) and windows[-1].endswith(sentences[-1])
    for a, b in zip(windows, windows[1:], strict=False):  # consecutive windows share a sentence
        assert a.split(". ")[-1].rstrip(".") in b
    assert evidence_windows("short", "Just one sentence.", 96) == ["Just one sentence."]


# -- answers --------------------------------------------------------------------------------------------------------
def test_cited_sentences_keep_their_markers() -> None:
    extractive = "Backups are kept ninety days. [1] Restores take an hour. [2]"
    assert cited_sentences(extractive) == [("Backups are kept ninety days.", (1,)),
                                           ("Restores take an hour.", (2,))]
    generated = "Backups are kept ninety days [1][2]. Restores take an hour [2, 3]. Anything else?"
    assert cited_sentences(generated) == [("Backups are kept ninety days.", (1, 2)),
                                          ("Restores take an hour.", (2, 3)), ("Anything else?", ())]
    assert cited_sentences("Backups are kept ninety days [1] The office opens at nine [2]") == [
        ("Backups are kept ninety days", (1,)), ("The office opens at nine", (2,))]


def test_check_answer_marks_the_sentence_its_chunk_does_not_support() -> None:
    backups = "Backups run nightly. Backups are retained for ninety days in two regions."
    parking = "Parking is free on weekends. The cafeteria serves lunch from noon."
    ans = answer("Backups are retained for ninety days. [1] Backups are encrypted with quantum keys. [2]",
                 backups, parking)
    report = check_answer(ans, LexicalOverlapScorer(), threshold=0.5)
    first, second = report.sentences
    assert first.supported and first.checked == (1,) and first.probability == 1.0
    assert not second.supported and second.checked == (2,) and second.probability < 0.5
    assert report.unsupported == ("Backups are encrypted with quantum keys.",)
    assert report.hallucinated and report.score == second.probability
    assert report.mean == pytest.approx((first.probability + second.probability) / 2)
    # the same claim citing the chunk that states it is supported
    fixed = answer("Backups are retained for ninety days. [1]", backups, parking)
    assert not check_answer(fixed, LexicalOverlapScorer(), threshold=0.5).hallucinated


def test_uncited_sentences_are_checked_against_every_citation(embedder: MiniLMEmbedder) -> None:
    ans = answer("Backups are retained for ninety days.", "Lunch is at noon.",
                 "Backups are retained for ninety days in two regions.")
    (only,) = check_answer(ans, EmbeddingCosineScorer(embedder), threshold=0.8).sentences
    assert only.uncited and only.checked == (1, 2) and only.best == 2 and only.supported
    no_sources = Answer("q", "Backups are retained for ninety days.", (), False, {})
    (unchecked,) = check_answer(no_sources, LexicalOverlapScorer(), threshold=0.5).sentences
    assert unchecked.probability == 0.0 and not unchecked.supported
    # citing a source the answer does not have supports nothing, even when another source would
    (dangling,) = check_answer(answer("Lunch is at noon. [3]", "Lunch is at noon."), LexicalOverlapScorer(),
                               threshold=0.5).sentences
    assert dangling.cited == (3,) and dangling.checked == () and not dangling.supported


def test_abstentions_claim_nothing_and_the_rate_counts_answers() -> None:
    abstained = Answer("q", "No accessible source supports an answer.", (), True, {})
    report = check_answer(abstained, LexicalOverlapScorer(), threshold=0.5)
    assert report.sentences == () and report.score == 1.0 and not report.hallucinated
    bad = check_answer(answer("Quantum keys encrypt everything. [1]", "Lunch is at noon."),
                       LexicalOverlapScorer(), 0.5)
    assert hallucination_rate([report, bad, report, report]) == 0.25
    assert hallucination_rate([]) == 0.0


# -- the trained checker --------------------------------------------------------------------------------------------
def test_tiny_checker_learns_on_held_out_knowledge(trained: dict[str, Any],
                                                   split: tuple[list[LabelledPair], list[LabelledPair]]) -> None:
    checker: GroundednessChecker = trained["result"].checker
    held = split[1]
    pairs = [(p.sentence, p.evidence) for p in held]
    y = np.array([p.supported for p in held])
    model_auroc = roc_auc_score(y, checker.model_probability(pairs))
    auroc = roc_auc_score(y, checker.score(pairs))
    assert model_auroc > 0.65, f"cross-encoder alone: AUROC {model_auroc:.3f} on {len(y)} held-out pairs"
    assert auroc > 0.75, f"checker: AUROC {auroc:.3f} on {len(y)} held-out pairs"
    card = trained["result"].card
    assert card.name == "groundedness" and card.version == 1 and card.notes["kind"] == "groundedness"
    assert 0.0 < card.notes["threshold"] < 1.0 and card.notes["combiner"] is not None
    assert card.notes["validation_pairs"] and card.metrics["auroc"] > 0.5


def test_training_holds_out_a_test_split_and_scores_it(trained: dict[str, Any]) -> None:
    """`verify train` reports AUROC on pairs it neither trained on nor chose anything on (issue 19, bug 17)."""
    from ragtune.verify.data import split_pairs
    from ragtune.verify.default import lexical_threshold
    from ragtune.verify.train import pairs_sha256

    result = trained["result"]
    splits = split_pairs(load_training_pairs(trained["data"]), validation_fraction=0.25)
    assert splits.test and splits.validation
    trained_on = {(p.sentence, p.evidence) for p in splits.train}
    assert trained_on.isdisjoint((p.sentence, p.evidence) for p in splits.test + splits.validation)
    assert {p.group for p in splits.test}.isdisjoint(p.group for p in splits.train + splits.validation)
    card = result.card
    assert card.data_sha256 == pairs_sha256(splits.train)  # the card describes exactly the pairs trained on
    begin = result.test["begin"]
    assert begin["checker"]["examples"] == len(splits.test) == sum(sum(c.values()) for c in result.test_counts.values())
    assert card.notes["test"] == result.test and card.metrics["test_auroc"] == begin["checker"]["auroc"]
    assert begin["checker"]["threshold"] == card.notes["threshold"]  # the checker's own, chosen on validation
    assert not begin["checker"]["threshold_chosen_here"] and not begin["lexical"]["threshold_chosen_here"]
    # the lexical figure uses the threshold chosen on the BEGIN pairs outside the test split
    assert begin["lexical"]["threshold"] == lexical_threshold(splits.train + splits.validation)
    y = np.array([p.supported for p in splits.test])
    pairs = [(p.sentence, p.evidence) for p in splits.test]
    assert begin["checker"]["auroc"] == pytest.approx(roc_auc_score(y, result.checker.score(pairs)), abs=1e-6)


def test_registry_round_trip_gives_the_same_scores(trained: dict[str, Any],
                                                   split: tuple[list[LabelledPair], list[LabelledPair]]) -> None:
    fitted: GroundednessChecker = trained["result"].checker
    loaded = GroundednessChecker.from_registry(Registry(trained["models"]))
    pairs = [(p.sentence, p.evidence) for p in split[1][:40]]
    assert loaded.name == "groundedness v1" and loaded.threshold == fitted.threshold
    assert loaded.combiner == fitted.combiner
    np.testing.assert_allclose(loaded.score(pairs), fitted.score(pairs), atol=1e-4)
    np.testing.assert_allclose(loaded.score(pairs), loaded.score(pairs))  # deterministic


def test_trained_checker_flags_the_unsupported_sentence(trained: dict[str, Any]) -> None:
    checker = GroundednessChecker.from_registry(Registry(trained["models"]))
    knowledge = ("Cheerleading is an activity in which the participants cheer for their team as a form of "
                 "encouragement.")
    unrelated = "The Eiffel Tower was completed in 1889 and is located in Paris."
    ans = answer("Cheerleaders cheer for their team as a form of encouragement. [1] "
                 "Cheerleading was invented on the moon in 1820. [2]", knowledge, unrelated)
    report = checker.check_answer(ans)
    first, second = report.sentences
    assert first.probability > second.probability + 0.3, (first.probability, second.probability)
    assert first.supported and not second.supported
    assert report.unsupported == ("Cheerleading was invented on the moon in 1820.",)
    assert report.model == "groundedness v1" and report.threshold == checker.threshold


def test_missing_model_says_how_to_train_it(tmp_path: Path, trained: dict[str, Any]) -> None:
    with pytest.raises(ModelNotFoundError, match="train it with `ragtune verify train`") as missing:
        GroundednessChecker.from_registry(Registry(tmp_path / "models"))
    assert "shared/data" not in str(missing.value) and "--data" not in str(missing.value)  # it needs no data folder
    with pytest.raises(ModelNotFoundError, match="--name other"):
        GroundednessChecker.from_registry(Registry(trained["models"]), "other")


# -- command line ---------------------------------------------------------------------------------------------------
KNOWLEDGE = "Cheerleading is an activity in which the participants cheer for their team as a form of encouragement."


def test_cli_check_scores_a_sentence_against_evidence(trained: dict[str, Any]) -> None:
    runner = CliRunner()
    project = str(trained["project"])
    claim = "Cheerleaders cheer for their team as a form of encouragement."
    good = runner.invoke(verify_app, ["check", claim, "--evidence", KNOWLEDGE, "--project", project, "--json"])
    assert good.exit_code == 0, good.output
    data = json.loads(good.output)
    checker = GroundednessChecker.from_registry(Registry(trained["models"]))
    assert data["probability"] == pytest.approx(float(checker.score([(claim, KNOWLEDGE)])[0]), abs=1e-6)
    assert data["verdict"] == "supported" and data["model"] == "groundedness v1"
    bad = runner.invoke(verify_app, ["check", "The Eiffel Tower is in Rome.", "--evidence", KNOWLEDGE,
                                     "--project", project])
    assert bad.exit_code == 0 and bad.output.startswith("unsupported"), bad.output


def test_cli_errors_are_ragtune_errors(trained: dict[str, Any], tmp_path: Path) -> None:
    runner = CliRunner()
    project = str(trained["project"])
    both = runner.invoke(verify_app, ["check", "x", "--project", project])
    assert isinstance(both.exception, RagtuneError) and "--evidence" in str(both.exception)
    unknown = runner.invoke(verify_app, ["check", "x", "-e", "y", "--model", "nope", "--project", project])
    assert isinstance(unknown.exception, ModelNotFoundError) and "ragtune verify train" in str(unknown.exception)
    missing = runner.invoke(verify_app, ["train", "--data", str(tmp_path / "none"), "--project", project])
    assert isinstance(missing.exception, DataError) and "data folder not found" in str(missing.exception)
    helptext = runner.invoke(verify_app, ["train", "--help"]).output
    assert "BEGIN" in helptext and "--data" in helptext


def test_pipeline_verify_step_scores_marks_and_abstains(trained: dict[str, Any]) -> None:
    from ragtune.ingest.sync import Syncer
    from ragtune.pipelines.runner import PipelineRunner
    from ragtune.pipelines.spec import load_pipeline
    from ragtune.project import Project

    project_dir: Path = trained["project"]
    docs = project_dir.parent / "docs"
    (docs / "cheer.md").parent.mkdir(parents=True, exist_ok=True)
    (docs / "cheer.md").write_text("---\nacl: public\n---\n# Cheerleading\n\nCheerleading is an activity in which "
                                   "the participants cheer for their team as a form of encouragement.\n",
                                   encoding="utf-8")
    project = Project.open(project_dir)
    Syncer(project.store, project.embedder).sync(docs)
    spec_file = project_dir / "verify.yaml"
    spec_file.write_text("name: checked\nsteps:\n  - retrieve: {top_k: 3}\n  - answer: {}\n"
                         "  - verify: {abstain: true}\n  - route:\n      default: publish\n      rules:\n"
                         "        - {queue: review, when: {unsupported: true}}\n", encoding="utf-8")
    runner = PipelineRunner(load_pipeline(spec_file), project)
    result = runner.run("What do cheerleaders do for their team?", Principal("anyone"))
    assert result.groundedness is not None and 0.0 <= result.groundedness <= 1.0
    assert "3.verify" in result.latency_ms
    # Quoted sentences come from the cited chunk, so the checker should find them supported.
    assert result.answer is not None and not result.answer.abstained, result.unsupported_sentences
    assert result.route == "publish"


def test_each_verify_model_gets_its_own_checker(trained: dict[str, Any]) -> None:
    """The pipeline runner used to cache one checker whatever model a step named (issue 11)."""
    import json
    import shutil

    from ragtune.pipelines.runner import PipelineRunner
    from ragtune.pipelines.spec import load_pipeline
    from ragtune.project import Project

    models: Path = trained["models"]
    if not (models / "strict").exists():
        shutil.copytree(models / "groundedness", models / "strict")
        for card in (models / "strict").rglob("card.json"):
            data = json.loads(card.read_text())
            card.write_text(json.dumps({**data, "name": "strict"}))
    spec_file = trained["project"] / "two-checks.yaml"
    spec_file.write_text("name: two\nsteps:\n  - retrieve: {top_k: 3}\n  - answer: {}\n"
                         "  - verify: {model: groundedness}\n  - verify: {model: strict}\n", encoding="utf-8")
    runner = PipelineRunner(load_pipeline(spec_file), Project.open(trained["project"]))
    runner.warm_up()
    first, second = runner._groundedness("groundedness"), runner._groundedness("strict")
    assert first is not second
    assert first.name.startswith("groundedness v") and second.name.startswith("strict v")
    assert runner._groundedness("strict") is second  # loaded once per name
