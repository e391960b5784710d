"""Layer 1 of the advisor: the decision guide. Answers to eight questions → RAG, fine-tuning or hybrid.

Every answer falls into a bucket, and ``GUIDE_TABLE`` gives each bucket a fit per architecture with the reason
shown to the user. Points: strong 2, moderate 1, weak 0, each times the question's weight (the task counts
twice; the rest once). "ruled out" scores 0 *and* removes the architecture from the choice: fine-tuning and
hybrid are ruled out when there are no labelled examples (the guide's "Required"). RAG is never ruled out.

The winner is the eligible architecture with the most points. Ties go to the simpler system, in the order
RAG, fine-tuning, hybrid (``TIE_BREAK_ORDER``): RAG needs no labels and no training run, and a hybrid runs
two systems, so it has to earn that complexity. This mirrors Layer 2 (``evidence.py``), where the simpler
system wins unless a more complex one is measurably better.

``recommend`` is pure: the same answers always give the same ``Recommendation``. Layer 2 builds on it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from rich.console import Console
from rich.table import Table

from ragtune.errors import ConfigError

ARCHITECTURES = ("rag", "fine-tuning", "hybrid")
DISPLAY = {"rag": "RAG", "fine-tuning": "fine-tuning", "hybrid": "hybrid"}
TIE_BREAK_ORDER = ("rag", "fine-tuning", "hybrid")  # simplest first

# Thresholds shared with ragtune's tuning: the label audit flags classes with fewer than 8 examples, and
# `ragtune train --method auto` treats fewer than 32 per class as few-shot (tuning/audit.py, tuning/train.py).
MIN_EXAMPLES_PER_CLASS = 8
FEW_SHOT_PER_CLASS = 32
# Latency budgets (per request): under TIGHT_MS only a tuned classifier or extractive answers fit; from
# RELAXED_MS on, a generated answer fits and the budget no longer separates the architectures.
TIGHT_MS = 300
RELAXED_MS = 2000


class Task(StrEnum):
    """The business task."""

    ANSWER_GENERATION = "answer-generation"
    CLASSIFICATION = "classification"
    ANSWER_AND_CLASSIFICATION = "answer-and-classification"
    EXTRACTION = "extraction"
    SUMMARIZATION = "summarization"
    AGENT_WORKFLOW = "agent-workflow"


class KnowledgeChange(StrEnum):
    """How often the knowledge the task relies on changes."""

    NEVER = "never"
    YEARLY = "yearly"
    MONTHLY = "monthly"
    WEEKLY = "weekly"
    DAILY = "daily"


# Tasks whose output is written from knowledge (so retrieval quality and generation latency matter).
KNOWLEDGE_TASKS = frozenset({Task.ANSWER_GENERATION, Task.ANSWER_AND_CLASSIFICATION, Task.SUMMARIZATION,
                             Task.AGENT_WORKFLOW})
LABEL_TASKS = frozenset({Task.CLASSIFICATION, Task.ANSWER_AND_CLASSIFICATION})


def _slug(value: Any) -> Any:
    return value.strip().lower().replace("_", "-").replace(" ", "-") if isinstance(value, str) else value


class GuideAnswers(BaseModel):
    """Answers to the decision guide. Every key is required; ``latency_ms`` may be null (no strict budget)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    task: Task = Field(..., description="The business task.")
    knowledge_change: KnowledgeChange = Field(..., description="How often the knowledge changes.")
    citations: bool = Field(..., description="Citations and source traceability are required.")
    structured_output: bool = Field(..., description="A consistent style or structured output is required.")
    examples_per_class: int = Field(..., ge=0, description="Labelled examples per class (0 = none).")
    fast_iteration: bool = Field(..., description="Changes must reach users within hours, not training runs.")
    latency_ms: int | None = Field(..., ge=0, description="Latency budget per request in ms (0/null = none).")
    regulated: bool = Field(..., description="Regulatory constraints apply (audit, deletion, model risk).")

    @field_validator("task", "knowledge_change", mode="before")
    @classmethod
    def _normalise(cls, value: Any) -> Any:
        return _slug(value)  # "Answer_Generation" → "answer-generation"

    @field_validator("latency_ms", mode="after")
    @classmethod
    def _zero_is_none(cls, value: int | None) -> int | None:
        return value or None


@dataclass(frozen=True)
class Question:
    """One question of the guide: its text, its weight, how answers fall into the table's buckets."""

    key: str
    text: str
    short: str  # the label in the terminal table
    weight: int
    bucket: Callable[[Any], str]
    hint: str  # what a valid answer looks like, for error messages


def _yes_no(value: bool) -> str:
    return "yes" if value else "no"


def _change_bucket(value: KnowledgeChange) -> str:
    if value in (KnowledgeChange.WEEKLY, KnowledgeChange.DAILY):
        return "weekly or faster"
    return "monthly" if value is KnowledgeChange.MONTHLY else "rarely"


def _examples_bucket(n: int) -> str:
    if n == 0:
        return "none"
    if n < MIN_EXAMPLES_PER_CLASS:
        return f"fewer than {MIN_EXAMPLES_PER_CLASS}"
    return f"{MIN_EXAMPLES_PER_CLASS}-{FEW_SHOT_PER_CLASS - 1}" if n < FEW_SHOT_PER_CLASS else f"{FEW_SHOT_PER_CLASS}+"


_TIGHT, _MODERATE, _RELAXED = (f"under {TIGHT_MS} ms", f"{TIGHT_MS} ms to {RELAXED_MS // 1000} s",
                                f"{RELAXED_MS // 1000} s or more, or none")


def _latency_bucket(ms: int | None) -> str:
    if ms is None or ms >= RELAXED_MS:
        return _RELAXED
    return _TIGHT if ms < TIGHT_MS else _MODERATE


QUESTIONS: tuple[Question, ...] = (
    # key, question, short label, weight, answer → bucket, what a valid answer looks like
    Question("task", "What is the business task?", "task", 2, str, "one of " + ", ".join(t.value for t in Task)),
    Question("knowledge_change", "How often does the knowledge change?", "knowledge changes", 1, _change_bucket,
             "one of " + ", ".join(k.value for k in KnowledgeChange)),
    Question("citations", "Do you need citations and source traceability?", "citations", 1, _yes_no,
             "true or false"),
    Question("structured_output", "Do you need consistent style or structured output?", "style / structure", 1,
             _yes_no, "true or false"),
    Question("examples_per_class", "How many labelled examples per class do you have?", "labels per class", 1,
             _examples_bucket, "a whole number, 0 for none"),
    Question("fast_iteration", "Do you need fast iteration?", "fast iteration", 1, _yes_no, "true or false"),
    Question("latency_ms", "What is the latency budget per request (ms)?", "latency budget", 1, _latency_bucket,
             "milliseconds per request, e.g. 500; 0 or null for no strict budget"),
    Question("regulated", "Are there regulatory constraints (audit, data deletion, model risk)?", "regulated", 1,
             _yes_no, "true or false"),
)
QUESTION_BY_KEY = {q.key: q for q in QUESTIONS}


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
    _T("latency_ms", _TIGHT, W, S, W,
       "a tuned classifier (a few ms on CPU) fits easily; retrieval adds tens of ms and "
       "a generated answer hundreds of ms to seconds (RAG fits only with extractive answers); a hybrid runs both"),
    _T("latency_ms", _MODERATE, M, S, M,
       "retrieval plus a short answer from a small, fast generator fits; a tuned model has headroom"),
    _T("latency_ms", _RELAXED, M, M, M, "a generated answer fits in the budget: " + _NEUTRAL),
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
class Mistake:
    """A common mistake that the answers make likely, and why it applies."""

    key: str
    title: str
    detail: str
    because: str


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
        lines = [f"## Decision guide: {DISPLAY[self.winner]}", "", f"Recommendation: **{self.summary}**.", "",
                 "Points: strong 2, moderate 1, weak 0, times the question's weight (the task counts twice); "
                 "a ruled-out architecture cannot win. Rows marked ● drove the recommendation.", "",
                 "| | Question | Answer | RAG | Fine-tuning | Hybrid | Why |", "|---|---|---|---|---|---|---|"]
        for r in self.rows:
            cells = [f.value for f in r.fits.values()]
            lines.append(f"| {'●' if r.decisive else ''} | {r.question} | {r.answer} | " + " | ".join(cells)
                         + f" | {r.reason.replace('|', '/')} |")
        lines += ["| | **Total** | | " + " | ".join(f"**{self.totals[a]}**" for a in ARCHITECTURES) + " | |", ""]
        if self.mistakes:
            lines += ["### Common mistakes that apply", ""]
            lines += [f"- **{m.title}** ({m.because}): {m.detail}" for m in self.mistakes]
            lines.append("")
        lines += ["### Next steps", ""]
        lines += [f"{i}. `{s.command}` — {s.why}" for i, s in enumerate(self.next_steps, start=1)]
        lines += [f"- {n}" for n in self.notes]
        lines += ["", "Pipeline to start from (save as `pipeline.yaml`):", "", "```yaml",
                  self.pipeline_yaml.rstrip(), "```", ""]
        return "\n".join(lines)


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
        rows.append(DriverRow(q.key, q.text, q.short, _show(q.key, value), bucket, q.weight, row.fits, row.reason))
    return rows


def _show(key: str, value: Any) -> str:
    if isinstance(value, bool):
        return _yes_no(value)
    if key == "latency_ms":
        return "no strict budget" if value is None else f"{value} ms"
    if key == "examples_per_class":
        return "none" if value == 0 else str(value)
    return str(value)


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


# --- common mistakes ---------------------------------------------------------------------------------------


def _finetune_for_retrieval(a: GuideAnswers, winner: str) -> str | None:
    if a.task in KNOWLEDGE_TASKS and (a.knowledge_change in (KnowledgeChange.MONTHLY, KnowledgeChange.WEEKLY,
                                                            KnowledgeChange.DAILY) or a.citations):
        return f"task {a.task.value} over knowledge that changes {a.knowledge_change.value}" + (
            " with citations required" if a.citations else "")
    return None


def _rag_for_classification(a: GuideAnswers, winner: str) -> str | None:
    if a.task in LABEL_TASKS:
        return f"task {a.task.value}" + (", recommended " + DISPLAY[winner] if winner == "rag" else "")
    return None


def _ignoring_security(a: GuideAnswers, winner: str) -> str | None:
    why = [w for w, on in (("regulated", a.regulated), ("citations required", a.citations),
                           (f"{DISPLAY[winner]} serves documents to users", winner != "fine-tuning")) if on]
    return ", ".join(why) or None


def _ignoring_latency(a: GuideAnswers, winner: str) -> str | None:
    if a.latency_ms is None:
        return "no latency budget given"
    if a.latency_ms < RELAXED_MS and (winner != "fine-tuning" or a.task in KNOWLEDGE_TASKS):
        return f"a {a.latency_ms} ms budget for {DISPLAY[winner]} on task {a.task.value}"
    return None


@dataclass(frozen=True)
class MistakeRule:
    """A common mistake; ``applies`` returns why it applies to these answers and this winner, or None."""

    key: str
    title: str
    detail: str
    applies: Callable[[GuideAnswers, str], str | None]


MISTAKES: tuple[MistakeRule, ...] = (
    MistakeRule(
        "fine-tuning-for-retrieval", "Fine-tuning to compensate for bad retrieval",
        "when answers are wrong because the right passage is not found, fix the corpus, chunking and ACLs and "
        "measure what is retrieved (`ragtune search`); a tuned model does not learn changing facts and cannot "
        "cite them", _finetune_for_retrieval),
    MistakeRule(
        "rag-for-classification", "Using RAG when the task is really classification",
        "a label per item is a classifier's job: `ragtune train` gives calibrated probabilities and an abstain "
        "threshold at a few ms per item; asking a retrieval-augmented LLM for the label costs more and is harder "
        "to evaluate. Where answers are needed too, retrieval writes the answer and the classifier the label",
        _rag_for_classification),
    MistakeRule(
        "ignoring-security", "Ignoring security",
        "every document needs an ACL (ragtune retrieves a document without one for nobody) and every query a "
        "real user and groups; test that answers never cite what the user may not read. Text used for "
        "fine-tuning can leak to anyone who queries the model: train only on data every user may see",
        _ignoring_security),
    MistakeRule(
        "ignoring-latency", "Ignoring latency",
        "set a p95 budget per request before choosing a generator: an LLM answer takes hundreds of ms to "
        "seconds, retrieval tens of ms, a tuned classifier a few ms; `ragtune ask` and `ragtune run` print the "
        "latency of every step", _ignoring_latency),
)


def detect_mistakes(answers: GuideAnswers, winner: str) -> list[Mistake]:
    """The common mistakes that apply to these answers and this recommendation, in ``MISTAKES`` order."""
    found = []
    for rule in MISTAKES:
        because = rule.applies(answers, winner)
        if because:
            found.append(Mistake(rule.key, rule.title, rule.detail, because))
    return found


# --- next steps --------------------------------------------------------------------------------------------

_HEADER = ("# Starting point written by `ragtune advise` ({winner}): rename the model, queues and thresholds,\n"
           "# then run it with `ragtune run pipeline.yaml \"...\" --user U --groups G` (format: docs/pipelines.md).")


def pipeline_yaml(winner: str, answers: GuideAnswers) -> str:
    """A pipeline YAML to start from (valid for ``ragtune run``): classify/retrieve/answer/verify/route."""
    fast = answers.latency_ms is not None and answers.latency_ms < TIGHT_MS
    generator = "extractive" if fast else "project"
    verify = not fast and (answers.citations or answers.regulated)
    lines = [_HEADER.format(winner=DISPLAY[winner]), f"name: my-{winner}",
             f"description: {_PIPELINE_DESCRIPTIONS[winner]}", "steps:"]
    rules = []
    if winner in ("fine-tuning", "hybrid"):
        lines.append("  - classify: {model: my-classifier, output: label, threshold: 0.5}")
        rules.append("        - {queue: human-review, when: {low_confidence: label}}")
    if winner in ("rag", "hybrid"):
        lines += ["  - retrieve: {top_k: 5}",
                  f"  - answer: {{generator: {generator}}}  # extractive quotes sources; project = ragtune.yaml's "
                  "generator"]
        if verify:
            lines.append("  - verify: {threshold: 0.5}  # flags answer sentences their citations do not support")
            rules.append("        - {queue: human-review, when: {unsupported: true}}")
        rules.append("        - {queue: human-review, when: {abstained: true}}")
    lines += ["  - route:", "      default: automated", "      rules:", *rules]
    return "\n".join(lines) + "\n"


_PIPELINE_DESCRIPTIONS = {
    "rag": "Answer from the documents the asker may read, with citations; abstained or unsupported answers "
           "go to a person.",
    "fine-tuning": "A tuned classifier labels each input; low-confidence labels go to a person.",
    "hybrid": "A tuned classifier labels the input while retrieval answers it with citations; anything "
              "uncertain goes to a person.",
}


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


# --- rendering ---------------------------------------------------------------------------------------------

_STYLE = {Fit.STRONG: "green", Fit.MODERATE: "yellow", Fit.WEAK: "red", Fit.RULED_OUT: "bold red"}


def drivers_table(rec: Recommendation, reasons: bool = True) -> Table:
    """A Rich table of every answer with each architecture's fit (and the reason); decisive rows marked ●."""
    t = Table(title="Which answers drove it", show_header=True, show_footer=True)
    t.add_column("", footer="")
    t.add_column("Question", footer="Total", overflow="fold")
    t.add_column("Answer", overflow="fold")
    for a in ARCHITECTURES:
        t.add_column(DISPLAY[a], footer=str(rec.totals[a]), justify="center")
    if reasons:
        t.add_column("Why", overflow="fold", ratio=1)
    for r in rec.rows:
        fits = [f"[{_STYLE[f]}]{f.value}[/{_STYLE[f]}]" for f in r.fits.values()]
        t.add_row("●" if r.decisive else "", r.short, r.answer, *fits, *([r.reason] if reasons else []),
                  style=None if r.decisive else "dim")
    return t


def render(rec: Recommendation, console: Console) -> None:
    """Print the recommendation: winner, drivers table, mistakes that apply, next steps and a pipeline.

    On a console narrower than 140 columns the reasons follow the table instead of filling a column.
    """
    wide = console.width >= 140
    console.print(f"[bold]Recommendation: {rec.summary}[/bold]", highlight=False)
    console.print("[dim]points: strong 2, moderate 1, weak 0, times the weight (task ×2); ruled out cannot win; "
                  "● = drove the recommendation[/dim]")
    console.print(drivers_table(rec, reasons=wide))
    if not wide:
        for r in rec.rows:
            if r.decisive:
                console.print(f"  ● [bold]{r.short}[/bold] = {r.answer}: {r.reason}", highlight=False)
    for note in rec.notes:
        console.print(f"[yellow]note:[/yellow] {note}", highlight=False)
    if rec.mistakes:
        console.print("\n[bold]Common mistakes that apply[/bold]")
        for m in rec.mistakes:
            console.print(f"  • [bold]{m.title}[/bold] [dim]({m.because})[/dim]: {m.detail}", highlight=False)
    console.print("\n[bold]Next steps[/bold]")
    for i, s in enumerate(rec.next_steps, start=1):  # commands on one line each, to copy and paste
        console.print(f"  {i}. {s.command}", style="cyan", markup=False, highlight=False, soft_wrap=True)
        console.print(f"     {s.why}", style="dim", markup=False, highlight=False)
    console.print("\n[bold]Pipeline to start from[/bold] (save as pipeline.yaml):")
    console.print(rec.pipeline_yaml.rstrip(), markup=False, highlight=False, soft_wrap=True)


# --- answers files -----------------------------------------------------------------------------------------


def parse_answers(data: Mapping[str, Any], source: str = "answers") -> GuideAnswers:
    """Validate a mapping of answers (keys may use - or _); every problem becomes one ``ConfigError`` line."""
    normalised = {str(k).replace("-", "_"): v for k, v in data.items()}
    try:
        return GuideAnswers.model_validate(normalised)
    except ValidationError as exc:
        raise ConfigError(f"{source}: " + "; ".join(_describe(e) for e in exc.errors())) from exc


def _describe(error: Any) -> str:
    key = str(error["loc"][0]) if error["loc"] else ""
    if error["type"] == "extra_forbidden":
        return f"unknown key {key!r} (keys: {', '.join(q.key for q in QUESTIONS)})"
    q = QUESTION_BY_KEY.get(key)
    if error["type"] == "missing":
        return f"missing answer {key!r} ({q.text if q else key}): add `{key}: ...` ({q.hint if q else ''})"
    hint = f" — give {q.hint}" if q else ""
    return f"{key}: {error['input']!r} is not valid ({error['msg']}){hint}"


def read_answers_file(path: Path) -> dict[str, Any]:
    """The raw mapping in a YAML answers file (possibly incomplete; the CLI fills the gaps)."""
    if not path.is_file():
        raise ConfigError(f"answers file {path} not found: give the path of a YAML file of answers "
                          "(examples in examples/advisor/)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(exc).split())}): fix the syntax") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a UTF-8 text file: give a YAML file of answers") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected `key: value` answers (keys: {', '.join(q.key for q in QUESTIONS)}), "
                          f"got a {type(data).__name__}")
    return data


def load_answers(path: str | Path) -> GuideAnswers:
    """Load and validate a complete YAML answers file; any problem is one ``ConfigError`` line."""
    path = Path(path)
    return parse_answers(read_answers_file(path), str(path))
