"""Retrieval recall with the project's adaptation models, beside the figure without them.

Before the advisor points at fine-tuning for poor answers, it measures whether adapting *retrieval* fixes them:
on the questions with a gold source, recall@k with the project's newest trained reranker (``ragtune tune
reranker``; over the bake-off's own index, cheap) and with its newest tuned embedder (``ragtune tune retriever``;
a second private index embedded with it, only when the time budget allows). "Newest" is the version a name
serves (promoted, else latest); among several names, the one configured (``rerank.kind`` / ``embedder.model``),
else the most recently trained. The texts the evidence cites are built here too.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ragtune.advisor.sandbox import SANDBOX, ingest_public, source_recall
from ragtune.config import Settings
from ragtune.errors import RagtuneError
from ragtune.models.embedder import embedding_cache_bypassed
from ragtune.project import Project
from ragtune.retrieval.hybrid import HybridRetriever
from ragtune.tuning.registry import ModelCard, Registry

RERANKER = "reranker"  # ModelCard.method of `ragtune tune reranker` (ragtune.tuning.reranker.served.KIND)
EMBEDDER = "embedder"  # ModelCard.method of `ragtune tune retriever` (ragtune.tuning.retriever.tuned.KIND)
# Below this recall@k the right source is missing for most questions: the answers cannot be better than what is
# retrieved, so retrieval (not the generator) is what to fix first.
LOW_RECALL = 0.5
# An adapted recall at least this far above the figure without it counts as a fix: on a few dozen questions a
# smaller difference is one or two questions, within noise.
ADAPTATION_GAIN = 0.05
# A measurement stopped at the deadline still covers at least this many questions (as the bake-off does).
MIN_QUESTIONS = 10
NO_PROJECT = ("no ragtune project to read adaptation models from (pass --project DIR, or run inside a project "
              "folder): recall with a trained reranker or tuned embedder was not measured")
Say = Callable[[str], None]


@dataclass
class AdaptedRecall:
    """recall@k of the gold sources with one adaptation model, and without it on the same questions."""

    model: str  # registry:NAME@VERSION
    kind: str  # reranker or embedder
    recall_at_k: float
    latency_p50_ms: float  # retrieval alone per question, the question embedded afresh
    questions: int  # questions with a gold source it was measured on
    base_recall_at_k: float  # recall@k without adaptation on the same questions

    @property
    def short(self) -> str:
        """``NAME@VERSION``."""
        return self.model.removeprefix("registry:")

    @property
    def label(self) -> str:
        """``reranker NAME@VERSION`` or ``tuned embedder NAME@VERSION``."""
        return f"{'reranker' if self.kind == RERANKER else 'tuned embedder'} {self.short}"

    @property
    def setting(self) -> str:
        """The ragtune.yaml setting that serves it."""
        if self.kind == RERANKER:
            return f"rerank.kind: {self.model}"
        return f"embedder.model: {self.model}, then `ragtune reindex`"


def _spec_name(spec: str) -> str | None:
    return spec.removeprefix("registry:").split("@")[0] if spec.startswith("registry:") else None


def newest_model(cards: list[ModelCard], kind: str, configured: str) -> str | None:
    """``registry:NAME@VERSION`` of the model of ``kind`` to measure: among ``cards`` (one per name, the version it
    serves), the name ``configured`` names, else the most recently trained; None when there is none."""
    of_kind = [c for c in cards if c.method == kind]
    if not of_kind:
        return None
    chosen = next((c for c in of_kind if c.name == _spec_name(configured)), None)
    chosen = chosen or max(of_kind, key=lambda c: (c.created, c.version, c.name))
    return f"registry:{chosen.name}@{chosen.version}"


def find_current_project() -> Project | None:
    """The project found from ``$RAGTUNE_PROJECT_DIR`` or the current folder, or None (none, or unreadable)."""
    try:
        return Project.open()
    except RagtuneError:
        return None


def _served_from(folder: Settings, project: Project, **sections: Any) -> Settings:
    """``folder``'s settings (its index, its retrieval section) with models read from ``project``'s registry."""
    return folder.model_copy(update={"models_path": project.settings.models_dir, **sections})


@dataclass
class AdaptationPlan:
    """The adaptation models of a project that the question bake-off measures (none without a project)."""

    project: Project | None
    reranker: str | None = None
    embedder: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def has_models(self) -> bool:
        """Whether there is anything to measure."""
        return self.reranker is not None or self.embedder is not None

    def measure(self, sandbox: Project, docs: Path, questions: dict[str, str], qrels: dict[str, dict[str, int]],
                base_run: dict[str, list[str]], *, k: int, deadline: float, budget_s: float, ingest_s: float,
                ingest_complete: bool, retrieval_ms: float, tick: Say | None = None
                ) -> tuple[list[AdaptedRecall], list[str]]:
        """recall@k on ``questions`` (id → text; gold sources in ``qrels``) with each model, beside ``base_run``
        (the file names of each question's first k chunks without adaptation); notes say what was not measured."""
        say = tick or (lambda _msg: None)
        notes, out = list(self.notes), list[AdaptedRecall]()
        if self.project is None:
            return out, notes
        project = self.project
        if self.reranker is not None:
            say(f"recall with the reranker {self.reranker}")
            rerank = project.settings.rerank.model_copy(update={"kind": self.reranker})
            variant = Project(_served_from(sandbox.settings, project, rerank=rerank), embedder=sandbox.embedder)
            try:
                out.append(_recall(variant.retriever, self.reranker, RERANKER, questions, qrels, base_run, k,
                                   deadline, notes))
            except RagtuneError as exc:
                notes.append(f"the reranker {self.reranker} could not be measured: {exc}")
        if self.embedder is not None:
            measured = self._measure_embedder(sandbox, docs, questions, qrels, base_run, k, deadline, budget_s,
                                              ingest_s + len(questions) * retrieval_ms / 1000, ingest_complete,
                                              notes, say)
            out += [measured] if measured is not None else []
        if out and sandbox.embedder.fingerprint.startswith("registry:"):
            notes.append(f"the figures without adaptation use the project's own tuned embedder "
                         f"({sandbox.embedder.fingerprint.split('+')[0]})")
        return out, notes

    def _measure_embedder(self, sandbox: Project, docs: Path, questions: dict[str, str],
                          qrels: dict[str, dict[str, int]], base_run: dict[str, list[str]], k: int, deadline: float,
                          budget_s: float, needed_s: float, ingest_complete: bool, notes: list[str],
                          say: Say) -> AdaptedRecall | None:
        assert self.project is not None and self.embedder is not None
        spec, project = self.embedder, self.project
        if not ingest_complete:
            notes.append(f"the tuned embedder {spec} was not measured: the documents could not all be ingested "
                         "once within the budget, so a second index embedded with it would not compare")
            return None
        remaining = deadline - time.perf_counter()
        if remaining < needed_s:
            more = budget_s + math.ceil(needed_s - remaining)
            notes.append(f"the tuned embedder {spec} was not measured: it needs a second index of the documents "
                         f"(about {needed_s:.0f} s, as the first took) and {max(remaining, 0):.0f} s of the budget "
                         f"remained; rerun with --budget {more} or more to measure it")
            return None
        embedder = project.settings.embedder.model_copy(update={"model": spec})
        with Project.temporary(retrieval=sandbox.settings.retrieval.model_dump()) as folder:
            tuned = Project(_served_from(folder.settings, project, embedder=embedder))
            try:
                if tuned.embedder.fingerprint == sandbox.embedder.fingerprint:
                    notes.append(f"the tuned embedder {spec} is the one the figures without adaptation use")
                    return None
                say(f"recall with the tuned embedder {spec}: ingesting {docs} again")
                if not ingest_public(tuned, docs, deadline):
                    notes.append(f"the tuned embedder {spec} was not measured: the time budget ran out while "
                                 "ingesting the documents with it")
                    return None
                return _recall(tuned.retriever, spec, EMBEDDER, questions, qrels, base_run, k, deadline, notes)
            except RagtuneError as exc:
                notes.append(f"the tuned embedder {spec} could not be measured: {exc}")
                return None


def plan_adaptation(project: Project | None) -> AdaptationPlan:
    """The newest reranker and tuned embedder in ``project``'s registry (a note instead without a project)."""
    if project is None:
        return AdaptationPlan(None, notes=[NO_PROJECT])
    registry: Registry = project.registry
    cards = registry.list()
    return AdaptationPlan(project, newest_model(cards, RERANKER, project.settings.rerank.kind),
                          newest_model(cards, EMBEDDER, project.settings.embedder.model))


def _recall(retriever: HybridRetriever, model: str, kind: str, questions: dict[str, str],
            qrels: dict[str, dict[str, int]], base_run: dict[str, list[str]], k: int, deadline: float,
            notes: list[str]) -> AdaptedRecall:
    run: dict[str, list[str]] = {}
    lat: list[float] = []
    for qid, text in questions.items():
        if len(run) >= MIN_QUESTIONS and time.perf_counter() > deadline:
            notes.append(f"the time budget ran out: {model} was measured on the first {len(run)} of "
                         f"{len(questions)} questions with a gold source, beside recall without it on the same ones")
            break
        t = time.perf_counter()
        with embedding_cache_bypassed():  # the cost of a new question: its embedding included
            hits = retriever.retrieve(text, SANDBOX).hits
        lat.append((time.perf_counter() - t) * 1000)
        run[qid] = [Path(h.chunk.source_path).name for h in hits[:k]]  # the first k chunks, as without it
    asked = {qid: qrels[qid] for qid in run}
    return AdaptedRecall(model, kind, source_recall(asked, run, k), statistics.median(lat), len(run),
                         source_recall(asked, base_run, k))


# --- what the evidence says about it -------------------------------------------------------------------------


def _with(a: AdaptedRecall, base: float, fmt: Callable[[float], str]) -> str:
    same = "" if math.isclose(a.base_recall_at_k, base) else \
        f" ({fmt(a.base_recall_at_k)} without it on the same {a.questions} questions)"
    return f"{a.label} {fmt(a.recall_at_k)}{same}"


def adapted_clause(recall: float, adapted: list[AdaptedRecall]) -> str:
    """``with reranker rr@1 71 %; with tuned embedder ret@1 60 %`` (empty without measurements)."""
    return "; ".join("with " + _with(a, recall, lambda x: f"{100 * x:.0f} %") for a in adapted)


def retrieval_warning(k: int, recall: float, adapted: list[AdaptedRecall]) -> str | None:
    """The warning for poor retrieval (recall@k below :data:`LOW_RECALL`), citing recall with and without each
    adaptation model and what to do before fine-tuning a generator; None when retrieval is not poor."""
    if recall >= LOW_RECALL:
        return None
    head = f"retrieval recall@{k} is {recall:.2f}"
    rule = "fine-tuning does not compensate for bad retrieval"
    if not adapted:
        return (f"{head} and no adaptation model was measured: fix chunking or the corpus, or adapt retrieval to "
                "your documents with `ragtune tune reranker` (the index stays as it is) or `ragtune tune "
                "retriever` (then `ragtune reindex`) and measure it with `ragtune advise --project DIR`, before "
                f"fine-tuning a generator — {rule}")
    withs = "; ".join("with " + _with(a, recall, lambda x: f"{x:.2f}") for a in adapted)
    best = max(adapted, key=lambda a: a.recall_at_k - a.base_recall_at_k)
    if best.recall_at_k < best.base_recall_at_k + ADAPTATION_GAIN:
        return (f"{head}; {withs}: the project's adaptation models do not fix it — fix chunking or the corpus "
                f"first; {rule}")
    still = (f" (still below {LOW_RECALL:.2f} with it: fix chunking or the corpus too)"
             if best.recall_at_k < LOW_RECALL else "")
    return f"{head}; {withs}: improve retrieval first ({best.setting}) before fine-tuning a generator{still} — {rule}"
