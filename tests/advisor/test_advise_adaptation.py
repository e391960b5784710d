"""`ragtune advise` measures retrieval recall with and without the project's adaptation models (issue #17): a
real reranker trained (tiny) on a real corpus, the figure checked against a HybridRetriever that uses it, the
suggestion to adapt retrieval when a project has no such model, and a run with no project at all."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from ragtune.advisor.adaptation import (
    NO_PROJECT,
    AdaptedRecall,
    newest_model,
    plan_adaptation,
    retrieval_warning,
)
from ragtune.advisor.bakeoff import QABakeoff
from ragtune.advisor.evidence import decide
from ragtune.advisor.run import gather_evidence
from ragtune.cli import app
from ragtune.config import init_project
from ragtune.core import Acl, Principal
from ragtune.project import Project
from ragtune.retrieval.hybrid import HybridRetriever
from ragtune.tuning.reranker.served import CrossEncoderReranker
from ragtune.tuning.reranker.train import train_reranker
from ragtune.tuning.retriever.biencoder import train_biencoder
from ragtune.tuning.retriever.pairs import generate_pairs
from ragtune.tuning.retriever.tuned import TunedEmbedder

POLICIES = Path(__file__).resolve().parents[2] / "examples" / "data" / "policies"
SMALL = ("eatchicken.com.md", "naturalnews.com.md", "dogbreedinfo.com.md", "sci-news.com.md",
         "cbsinteractive.com.md", "ted.com.md", "adweek.com.md", "yahoo.com.md")  # the 8 shortest policies
WIDE = {"COLUMNS": "400"}  # one terminal line per message, so the output can be searched


def _questions(path: Path, rows: list[tuple[str, str]]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["question", "source"])
        w.writerows(rows)
    return path


@pytest.fixture(scope="module")
def policies(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(docs, questions.csv, project): 8 real privacy policies (ingested public), 4 questions each with
    their source, and an ingested project holding reranker ``rr`` v1 (1 layer, trained for ~15 s). The project
    reranks with the reranker's order alone, so a reranker that was not applied would show."""
    tmp = tmp_path_factory.mktemp("adapt")
    docs = tmp / "docs"
    docs.mkdir()
    for name in SMALL:
        shutil.copy(next(POLICIES.glob(f"corpus/*/{name}")), docs / name)
    per: dict[str, int] = {}
    rows = []
    with open(POLICIES / "advisor_questions.csv", encoding="utf-8", newline="") as fh:
        for r in csv.DictReader(fh):
            if r["source"] in SMALL and per.get(r["source"], 0) < 4:
                per[r["source"]] = per.get(r["source"], 0) + 1
                rows.append((r["question"], r["source"]))
    questions = _questions(tmp / "questions.csv", rows)
    project = tmp / "project"
    init_project(project)
    cfg = project / "ragtune.yaml"
    raw = yaml.safe_load(cfg.read_text(encoding="utf-8")) or {}
    raw["rerank"] = {"fused_weight": 0.0, "skip_when_agree": False, "candidates": 20}
    cfg.write_text(yaml.safe_dump(raw), encoding="utf-8")
    proj = Project.open(project)
    proj.ingest(docs, Acl(public=True))
    pairs = generate_pairs(proj.store, proj.embedder, max_pairs=60, seed=0)

    def base(query: str, texts: list[str]) -> np.ndarray:
        v = proj.embedder.embed([query, *texts])
        return np.asarray(v[1:] @ v[0])

    train_reranker(proj.registry, "rr", pairs, base_score=base, layers=1, max_length=64, group_size=6, epochs=2.0,
                   learning_rate=3e-4, holdout=0.25, seed=0, threads=2)
    return docs, questions, project


def _recall(retriever: HybridRetriever, rows: list[dict[str, str]], k: int = 5) -> tuple[float, list[list[str]]]:
    """recall@k of each row's source among the files of its first k chunks, computed here from scratch."""
    ranked = [[Path(h.chunk.source_path).name for h in retriever.retrieve(r["question"], Principal("t")).hits[:k]]
              for r in rows]
    return float(np.mean([r["source"] in top for r, top in zip(rows, ranked, strict=True)])), ranked


def test_advise_reports_recall_with_and_without_the_reranker(policies: tuple[Path, Path, Path],
                                                               tmp_path: Path) -> None:
    docs, questions, project = policies
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["advise", "--docs", str(docs), "--questions", str(questions), "--project",
                                      str(project), "--budget", "120", "--report-dir", str(out)], env=WIDE)
    assert result.exit_code == 0, result.output
    qa = json.loads((out / "evidence.json").read_text(encoding="utf-8"))["qa"]
    [adapted] = qa["adapted"]
    assert adapted["model"] == "registry:rr@1" and adapted["kind"] == "reranker"
    assert adapted["questions"] == 32 and adapted["base_recall_at_k"] == qa["recall_at_k"]

    # the same figures from a HybridRetriever built here: the same documents, the project's rerank settings
    with open(questions, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    with Project.temporary(retrieval={"top_k": 8}) as sandbox:
        sandbox.ingest(docs, Acl(public=True))  # as the advisor's sandbox: every document public
        plain = HybridRetriever(sandbox.store, sandbox.embedder, top_k=8)
        reranked = HybridRetriever(sandbox.store, sandbox.embedder, top_k=8, rerank_candidates=20,
                                   reranker=CrossEncoderReranker(project / "models", "registry:rr@1", threads=2),
                                   rerank_fused_weight=0.0, rerank_skip_when_agree=False)
        base_recall, base_ranked = _recall(plain, rows)
        rr_recall, rr_ranked = _recall(reranked, rows)
    assert rr_ranked != base_ranked  # the reranker changes what is retrieved, so the two figures are distinct
    assert qa["recall_at_k"] == pytest.approx(base_recall)
    assert adapted["recall_at_k"] == pytest.approx(rr_recall)

    md = (out / "report.md").read_text(encoding="utf-8")
    assert "### Retrieval with your adaptation models" in md
    assert f"| without adaptation | {100 * base_recall:.1f} % | 32 |" in md
    assert f"| reranker rr@1 (`rerank.kind: registry:rr@1`) | {100 * rr_recall:.1f} % | 32 |" in md
    assert "Retrieval with your adaptation models" in (out / "report.html").read_text(encoding="utf-8")
    assert f"Retrieval recall@5: {base_recall:.2f} without adaptation; {rr_recall:.2f} with reranker rr@1" \
        in result.output
    assert f"recall@5 of the gold source {100 * base_recall:.0f} % (with reranker rr@1 {100 * rr_recall:.0f} %)" \
        in result.output


@pytest.mark.slow
def test_a_tuned_embedder_is_measured_on_a_second_index_when_the_budget_allows(policies: tuple[Path, Path, Path],
                                                                                tmp_path: Path) -> None:
    """~1.5 min: a bi-encoder trained for real, a second sandbox index embedded with it, and a budget too short."""
    docs, questions, trained = policies
    project = tmp_path / "project"
    shutil.copytree(trained, project)  # the module's project keeps a reranker only
    proj = Project.open(project)
    pairs = generate_pairs(proj.store, proj.embedder, max_pairs=60, seed=0)
    train_biencoder(proj.registry, "ret", pairs, epochs=1.0, batch_size=8, learning_rate=1e-4, max_length=64,
                    holdout=0.25, seed=0, threads=2)
    qa = gather_evidence(docs=docs, questions=questions, budget_s=300, adaptation_project=proj).qa
    assert qa is not None
    assert [(a.kind, a.model) for a in qa.adapted] == [("reranker", "registry:rr@1"), ("embedder", "registry:ret@1")]
    with open(questions, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    tuned = TunedEmbedder(project / "models", "registry:ret@1", threads=2)
    with Project.temporary(embedder=tuned, retrieval={"top_k": 8}) as sandbox:
        sandbox.ingest(docs, Acl(public=True))
        recall, _ = _recall(HybridRetriever(sandbox.store, sandbox.embedder, top_k=8), rows)
    assert qa.adapted[1].recall_at_k == pytest.approx(recall) and qa.adapted[1].questions == 32
    short = gather_evidence(docs=docs, questions=questions, budget_s=0.5, adaptation_project=proj).qa
    assert short is not None and [a.kind for a in short.adapted] == ["reranker"]
    assert any(n.startswith("the tuned embedder registry:ret@1 was not measured") for n in short.adaptation_notes)


def test_the_newest_model_is_the_configured_name_else_the_latest_trained(policies: tuple[Path, Path, Path],
                                                                          tmp_path: Path) -> None:
    _, _, trained = policies
    project = tmp_path / "project"
    shutil.copytree(trained, project, ignore=shutil.ignore_patterns("index"))
    registry = Project.open(project).registry
    # a second name trained later: a copy of rr's files registered as "zz" v1, newer
    shutil.copytree(project / "models" / "rr", project / "models" / "zz")
    card_path = project / "models" / "zz" / "v1" / "card.json"
    card = json.loads(card_path.read_text(encoding="utf-8"))
    card_path.write_text(json.dumps({**card, "name": "zz", "created": card["created"] + 60}), encoding="utf-8")
    cards = registry.list()
    assert newest_model(cards, "reranker", "none") == "registry:zz@1"  # most recently trained
    assert newest_model(cards, "reranker", "registry:rr@7") == "registry:rr@1"  # the configured name's version
    assert newest_model(cards, "embedder", "minilm") is None
    plan = plan_adaptation(Project.open(project))
    assert (plan.reranker, plan.embedder, plan.has_models) == ("registry:zz@1", None, True)
    assert plan_adaptation(None).notes == [NO_PROJECT] and not plan_adaptation(None).has_models


@pytest.fixture
def copies(tmp_path: Path) -> tuple[Path, Path]:
    """20 files holding the same text, one question per file: no retrieval can tell which copy a question means,
    so recall@5 stays near 5 in 20."""
    docs = tmp_path / "copies"
    docs.mkdir()
    text = "# Refund policy\n\nRefunds are paid within 14 days of a return. Keep the receipt for the refund.\n"
    for i in range(20):
        (docs / f"policy-{i:02d}.md").write_text(text, encoding="utf-8")
    rows = [(f"How many days until refund number {i} is paid?", f"policy-{i:02d}.md") for i in range(20)]
    return docs, _questions(tmp_path / "copies.csv", rows)


def test_without_adaptation_models_poor_recall_suggests_tuning_retrieval(copies: tuple[Path, Path],
                                                                         tmp_path: Path) -> None:
    docs, questions = copies
    init_project(tmp_path / "bare")  # a project with an empty registry
    result = CliRunner().invoke(app, ["advise", "--docs", str(docs), "--questions", str(questions), "--project",
                                      str(tmp_path / "bare"), "--budget", "60", "--report-dir",
                                      str(tmp_path / "r"), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["qa"]["recall_at_k"] < 0.5 and data["qa"]["adapted"] == []
    [poor] = [w for w in data["warnings"] if "retrieval recall@5" in w]
    assert f"retrieval recall@5 is {data['qa']['recall_at_k']:.2f} and no adaptation model was measured" in poor
    assert "`ragtune tune reranker`" in poor and "`ragtune tune retriever`" in poor
    assert "does not compensate for bad retrieval" in poor


def test_without_any_project_advise_runs_and_says_adaptation_was_not_measured(
        copies: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    docs, questions = copies
    monkeypatch.chdir(tmp_path)  # no ragtune.yaml here or above
    monkeypatch.delenv("RAGTUNE_PROJECT_DIR", raising=False)
    out = tmp_path / "r"
    result = CliRunner().invoke(app, ["advise", "--docs", str(docs), "--questions", str(questions), "--budget",
                                      "60", "--report-dir", str(out)], env=WIDE)
    assert result.exit_code == 0, result.output
    assert "no ragtune project to read adaptation models from" in result.output
    qa = json.loads((out / "evidence.json").read_text(encoding="utf-8"))["qa"]
    assert qa["adapted"] == [] and qa["adaptation_notes"] == [NO_PROJECT]
    assert NO_PROJECT in (out / "report.md").read_text(encoding="utf-8")


def _qa(recall: float, adapted: list[AdaptedRecall]) -> QABakeoff:
    return QABakeoff(documents=8, chunks=60, questions=40, k=5, recall_at_k=recall, answered_rate=0.8,
                     latency_p50_ms=30, latency_p95_ms=40, budget_s=60, adapted=adapted)


def test_poor_recall_cites_both_figures_and_what_to_do_first() -> None:
    rr = AdaptedRecall("registry:rr@1", "reranker", 0.71, 45.0, 40, 0.35)
    helped = retrieval_warning(5, 0.35, [rr])
    assert helped is not None and helped.startswith("retrieval recall@5 is 0.35; with reranker rr@1 0.71: improve "
                                                    "retrieval first (rerank.kind: registry:rr@1) before fine-tuning")
    same = AdaptedRecall("registry:rr@1", "reranker", 0.37, 45.0, 40, 0.35)
    flat = " ".join(decide(qa=_qa(0.35, [same])).warnings)
    assert "with reranker rr@1 0.37: the project's adaptation models do not fix it" in flat
    low = AdaptedRecall("registry:ret@2", "embedder", 0.45, 20.0, 12, 0.25)  # measured on 12 questions only
    text = retrieval_warning(5, 0.3, [low])
    assert text is not None and "tuned embedder ret@2 0.45 (0.25 without it on the same 12 questions)" in text
    assert "embedder.model: registry:ret@2, then `ragtune reindex`" in text and "still below 0.50" in text
    assert retrieval_warning(5, 0.8, [rr]) is None  # good retrieval: no warning
    reason = decide(qa=_qa(0.8, [AdaptedRecall("registry:rr@1", "reranker", 0.9, 45.0, 40, 0.8)])).reasons[0]
    assert "recall@5 of the gold source 80 % (with reranker rr@1 90 %)" in reason
