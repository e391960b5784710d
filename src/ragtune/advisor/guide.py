"""Layer 1 of the advisor: the decision guide. Answers to eight questions → RAG, fine-tuning or hybrid.

Every answer falls into a bucket (``questions``), and ``GUIDE_TABLE`` gives each bucket a fit per architecture
with the reason shown to the user. Points: strong 2, moderate 1, weak 0, each times the question's weight (the
task counts twice; the rest once). "ruled out" scores 0 *and* removes the architecture from the choice:
fine-tuning and hybrid are ruled out when there are no labelled examples (the guide's "Required"). RAG is never
ruled out.

The winner is the eligible architecture with the most points. Ties go to the simpler system, in the order
RAG, fine-tuning, hybrid (``TIE_BREAK_ORDER``): RAG needs no labels and no training run, and a hybrid runs
two systems, so it has to earn that complexity. This mirrors Layer 2 (``evidence.py``), where the simpler
system wins unless a more complex one is measurably better.

``recommend`` is pure: the same answers always give the same ``Recommendation``. Layer 2 builds on it. The
answers files live in ``answers``, the pipeline to start from in ``pipeline_draft``, the rendering in ``render``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from ragtune.advisor.answers import load_answers, parse_answers, read_answers_file
from ragtune.advisor.mistakes import MISTAKES, Mistake, MistakeRule, detect_mistakes
from ragtune.advisor.pipeline_draft import pipeline_yaml
from ragtune.advisor.questions import (
    ARCHITECTURES,
    DISPLAY,
    FEW_SHOT_PER_CLASS,
    LABEL_TASKS,
    LATENCY_MODERATE,
    LATENCY_RELAXED,
    LATENCY_TIGHT,
    MIN_EXAMPLES_PER_CLASS,
    QUESTION_BY_KEY,
    QUESTIONS,
    RELAXED_MS,
    TIGHT_MS,
    GuideAnswers,
    KnowledgeChange,
    Question,
    Task,
    show_answer,
)

__all__ = [  # the guide's names, and those of its answers and questions that it has always exported
    "ARCHITECTURES", "DISPLAY", "FEW_SHOT_PER_CLASS", "GUIDE_TABLE", "MISTAKES", "MIN_EXAMPLES_PER_CLASS", "POINTS",
    "QUESTIONS", "QUESTION_BY_KEY", "RELAXED_MS", "TIE_BREAK_ORDER", "TIGHT_MS", "DriverRow", "Fit", "GuideAnswers",
    "GuideRow", "KnowledgeChange", "Mistake", "MistakeRule", "NextStep", "Question", "Recommendation", "Task",
    "detect_mistakes", "load_answers", "next_steps", "parse_answers", "pipeline_yaml", "rank", "read_answers_file",
    "recommend", "score",
]

TIE_BREAK_ORDER = ("rag", "fine-tuning", "hybrid")  # simplest first


class Fit(StrEnum):
    """How well an architecture fits one answer."""

    STRONG = "strong"
    MODERATE = "moderate"
    WEAK = "weak"
    RULED_OUT = "ruled out"


POINTS = {Fit.STRONG: 2, Fit.MODERATE: 1, Fit.WEAK: 0, Fit.RULED_OUT: 0}
S, M, W, X = Fit.STRONG, Fit.MODERATE, Fit.WEAK, Fit.RULED_OUT


@dataclass(frozen=True)
class GuideRow:
    """One cell row of the guide: for answers of ``key`` in ``bucket``, the fit of each architecture."""

    key: str
    bucket: str
    rag: Fit
    fine_tuning: Fit
    hybrid: Fit
    reason: str

    @property
    def fits(self) -> dict[str, Fit]:
        """Fit per architecture, keyed as in ``ARCHITECTURES``."""
        return {"rag": self.rag, "fine-tuning": self.fine_tuning, "hybrid": self.hybrid}


_NEUTRAL = "does not separate the architectures"
_T = GuideRow
GUIDE_TABLE: tuple[GuideRow, ...] = (
    # question, answer bucket, RAG, fine-tuning, hybrid, reason shown to the user
    _T("task", "answer-generation", S, W, M,
       "answers must come from your facts: retrieval supplies them at question time with their sources; a tuned "
       "model learns form and style, not reliable facts"),
    _T("task", "classification", W, S, M,
       "a label per item (category, intent, route) is a classifier's job: a tuned model labels in milliseconds "
       "with a calibrated probability; retrieval plus a prompt costs more per item for the same label"),
    _T("task", "answer-and-classification", M, W, S,
       "answers from documents plus a label per item: retrieval writes the answer, a tuned classifier assigns "
       "the label; either alone covers half the task"),
    _T("task", "extraction", M, S, M,
       "fields in a fixed schema from the given input: a tuned model is consistent and cheap; retrieval helps "
       "only when the fields are spread over many documents"),
    _T("task", "summarization", M, M, M,
       "depends on the source: summarising what your documents say is retrieval, summarising a given text in a "
       "house style is fine-tuning; the other answers decide"),
    _T("task", "agent-workflow", M, M, S,
       "an agent looks things up (retrieval as a tool) and makes fixed-format decisions (tool choice, routing) "
       "that a tuned model makes cheaply and consistently"),
    _T("knowledge_change", "weekly or faster", S, W, S,
       "retrieval picks up changed documents at the next sync; a tuned model must be retrained, evaluated and "
       "redeployed for every change"),
    _T("knowledge_change", "monthly", S, M, S,
       "monthly retraining is feasible but each refresh is a training run and an evaluation; retrieval just "
       "re-syncs"),
    _T("knowledge_change", "rarely", M, M, M,
       "stable knowledge removes the retraining cost, so it is no point against fine-tuning (but fine-tuning "
       "teaches behaviour, not facts: keep facts in documents); " + _NEUTRAL),
    _T("citations", "yes", S, W, S,
       "retrieved answers cite the passages they came from; a tuned model cannot say where a fact came from"),
    _T("citations", "no", M, M, M, "no traceability requirement: " + _NEUTRAL),
    _T("structured_output", "yes", M, S, S,
       "a tuned model learns the format and tone from examples; prompting retrieved answers into a format "
       "works but drifts"),
    _T("structured_output", "no", M, M, M, "free-form output is fine: " + _NEUTRAL),
    _T("examples_per_class", "none", S, X, X,
       "fine-tuning requires labelled examples and a hybrid needs them for its tuned side: both are ruled out; "
       "RAG needs none (a few labelled questions still make a good evaluation set)"),
    _T("examples_per_class", f"fewer than {MIN_EXAMPLES_PER_CLASS}", S, W, W,
       f"too few to train and evaluate a classifier reliably (the label audit flags classes under "
       f"{MIN_EXAMPLES_PER_CLASS}); RAG does not need them"),
    _T("examples_per_class", f"{MIN_EXAMPLES_PER_CLASS}-{FEW_SHOT_PER_CLASS - 1}", M, M, M,
       "enough for a few-shot classifier (ragtune train picks head), not yet for a strong classifier; RAG is "
       "helped by labels but does not need them: " + _NEUTRAL),
    _T("examples_per_class", f"{FEW_SHOT_PER_CLASS}+", M, S, S,
       "plenty for a tuned classifier (required for fine-tuning, and for the tuned side of a hybrid); RAG "
       "gains little from them beyond an evaluation set"),
    _T("fast_iteration", "yes", S, W, M,
       "a document, chunking or prompt change is live at the next sync; a tuned model needs a training run "
       "and an evaluation per change (slower); a hybrid iterates fast on its retrieval side only"),
    _T("fast_iteration", "no", M, M, M, "release cycles can absorb training runs: " + _NEUTRAL),
    _T("latency_ms", LATENCY_TIGHT, W, S, W,
       "a tuned classifier (a few ms on CPU) fits easily; retrieval adds tens of ms and "
       "a generated answer hundreds of ms to seconds (RAG fits only with extractive answers); a hybrid runs both"),
    _T("latency_ms", LATENCY_MODERATE, M, S, M,
       "retrieval plus a short answer from a small, fast generator fits; a tuned model has headroom"),
    _T("latency_ms", LATENCY_RELAXED, M, M, M, "a generated answer fits in the budget: " + _NEUTRAL),
    _T("regulated", "yes", S, W, M,
       "regulation asks for audit trails, access control and deletion: retrieval shows the source of every "
       "answer, enforces per-document permissions and forgets a deleted document at the next sync; data "
       "trained into weights cannot be deleted without retraining and every tuned model needs validation "
       "(a hybrid carries that for its classifier)"),
    _T("regulated", "no", M, M, M, "no regulatory constraint: " + _NEUTRAL),
)
_ROWS = {(r.key, r.bucket): r for r in GUIDE_TABLE}


@dataclass
class DriverRow:
    """How one answer scored: the question, the answer given, each architecture's fit and why."""

    key: str
    question: str
    short: str
    answer: str
    bucket: str
    weight: int
    fits: dict[str, Fit]
    reason: str

    @property
    def points(self) -> dict[str, int]:
        """Points per architecture from this answer (fit points times the question's weight)."""
        return {a: POINTS[f] * self.weight for a, f in self.fits.items()}

    @property
    def decisive(self) -> bool:
        """Whether this answer separates the architectures at all (drove the recommendation)."""
        return len(set(self.points.values())) > 1 or Fit.RULED_OUT in self.fits.values()


@dataclass(frozen=True)
class NextStep:
    """A ragtune command to run next, and what it is for."""

    command: str
    why: str


@dataclass
class Recommendation:
    """The guide's recommendation. A plain dataclass: Layer 2 extends it with measured evidence."""

    winner: str
    totals: dict[str, int]
    rows: list[DriverRow]
    ruled_out: dict[str, str] = field(default_factory=dict)  # architecture → the reason
    mistakes: list[Mistake] = field(default_factory=list)
    next_steps: list[NextStep] = field(default_factory=list)
    pipeline_yaml: str = ""
    tie_break: str | None = None  # set when the winner was chosen by TIE_BREAK_ORDER
    notes: list[str] = field(default_factory=list)

    @property
    def ranking(self) -> list[str]:
        """Architectures best first: eligible ones by points then tie-break order, ruled-out ones last."""
        return rank(self.totals, set(self.ruled_out))

    @property
    def summary(self) -> str:
        """One sentence: the winner, its points, the others' points, and anything ruled out."""
        others = ", ".join(f"{DISPLAY[a]} {self.totals[a]}" + (" (ruled out)" if a in self.ruled_out else "")
                           for a in self.ranking[1:])
        text = f"{DISPLAY[self.winner]} ({self.totals[self.winner]} points; {others})"
        return text + (f"; {self.tie_break}" if self.tie_break else "")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "recommendation": self.winner,
            "summary": self.summary,
            "totals": dict(self.totals),
            "ruled_out": dict(self.ruled_out),
            "tie_break": self.tie_break,
            "rows": [{"key": r.key, "question": r.question, "answer": r.answer, "bucket": r.bucket,
                      "weight": r.weight, "fits": {a: f.value for a, f in r.fits.items()}, "points": r.points,
                      "decisive": r.decisive, "reason": r.reason} for r in self.rows],
            "mistakes": [asdict(m) for m in self.mistakes],
            "next_steps": [asdict(s) for s in self.next_steps],
            "pipeline_yaml": self.pipeline_yaml,
            "notes": list(self.notes),
        }

    def to_markdown(self) -> str:
        """A Markdown section for reports: recommendation, drivers table, mistakes, next steps, pipeline."""
        from ragtune.advisor.render import recommendation_markdown

        return recommendation_markdown(self)


def rank(totals: Mapping[str, int], ruled_out: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """Architectures best first: eligible before ruled out, then most points, then ``TIE_BREAK_ORDER``."""
    return sorted(TIE_BREAK_ORDER, key=lambda a: (a in ruled_out, -totals[a], TIE_BREAK_ORDER.index(a)))


def score(answers: GuideAnswers) -> list[DriverRow]:
    """Look every answer up in ``GUIDE_TABLE``: one row per question, in the guide's order."""
    rows = []
    for q in QUESTIONS:
        value = getattr(answers, q.key)
        bucket = q.bucket(value)
        row = _ROWS[(q.key, bucket)]
        rows.append(DriverRow(q.key, q.text, q.short, show_answer(q.key, value), bucket, q.weight, row.fits,
                              row.reason))
    return rows


def recommend(answers: GuideAnswers) -> Recommendation:
    """Score the answers against the guide and pick RAG, fine-tuning or hybrid (pure and deterministic)."""
    rows = score(answers)
    totals = {a: sum(r.points[a] for r in rows) for a in ARCHITECTURES}
    ruled_out = {a: f"{r.question} {r.answer}: {r.reason}" for r in rows for a, f in r.fits.items()
                 if f is Fit.RULED_OUT}
    order = rank(totals, set(ruled_out))
    winner = order[0]
    tied = [a for a in order if a not in ruled_out and totals[a] == totals[winner]]
    tie_break = None
    if len(tied) > 1:
        tie_break = (f"tied with {', '.join(DISPLAY[a] for a in tied[1:])} on points: the simpler system wins "
                     f"(order {', '.join(DISPLAY[a] for a in TIE_BREAK_ORDER)})")
    notes = []
    best = max(ARCHITECTURES, key=lambda a: (totals[a], -TIE_BREAK_ORDER.index(a)))
    if best in ruled_out and totals[best] > totals[winner]:
        notes.append(f"{DISPLAY[best]} scores highest ({totals[best]}) but is ruled out: {ruled_out[best]}")
    steps, pipeline, step_notes = next_steps(winner, answers)
    return Recommendation(winner=winner, totals=totals, rows=rows, ruled_out=ruled_out,
                          mistakes=detect_mistakes(answers, winner), next_steps=steps, pipeline_yaml=pipeline,
                          tie_break=tie_break, notes=notes + step_notes)


# --- next steps --------------------------------------------------------------------------------------------


def next_steps(winner: str, answers: GuideAnswers) -> tuple[list[NextStep], str, list[str]]:
    """The ragtune commands to run next, a pipeline YAML to start from, and notes for this case."""
    retrieval, tuned = winner in ("rag", "hybrid"), winner in ("fine-tuning", "hybrid")
    steps = [NextStep("ragtune init .", "create ragtune.yaml (store, embedder, chunking, retrieval, generator)")]
    if retrieval:
        steps.append(NextStep("ragtune ingest ./docs", "index your documents; give each an ACL (`acl:` front "
                                                       "matter or an _acl.yaml), or nobody can retrieve it"))
    if tuned:
        steps.append(NextStep("ragtune train labelled.csv --text-col text --label-col label --name my-classifier",
                              "audit the labels, train a calibrated classifier and write its report"))
    if retrieval:
        steps.append(NextStep('ragtune ask "a real question" --user alice --groups staff',
                              "check answers, citations and latency as a real user"))
    if tuned:
        steps.append(NextStep('ragtune classify "a real input" --model my-classifier',
                              "check labels and probabilities"))
    steps.append(NextStep('ragtune run pipeline.yaml "a real input" --user alice --groups staff',
                          "run the pipeline below end to end"))
    if retrieval and answers.knowledge_change is not KnowledgeChange.NEVER:
        steps.append(NextStep("ragtune sync", f"re-sync changed documents ({answers.knowledge_change.value}; "
                                              "schedule it)"))
    notes = []
    if tuned and answers.task not in LABEL_TASKS:
        notes.append("ragtune trains classifiers; to tune a generator for your format, fine-tune it elsewhere and "
                     "point `generator` in ragtune.yaml at it (OpenAI-compatible endpoint)")
    if tuned and 0 < answers.examples_per_class < FEW_SHOT_PER_CLASS:
        notes.append(f"with {answers.examples_per_class} examples per class `ragtune train` picks the few-shot `head`; "
                     f"label {FEW_SHOT_PER_CLASS}+ per class for a stronger classifier")
    return steps, pipeline_yaml(winner, answers), notes
