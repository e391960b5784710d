"""The decision guide's eight questions: the answers model, how each answer falls into a bucket of the guide's
table, and how an answer is shown. Shared by the scoring (``guide``), the answers files and prompts
(``answers``) and the pipeline draft (``pipeline_draft``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

ARCHITECTURES = ("rag", "fine-tuning", "hybrid")
DISPLAY = {"rag": "RAG", "fine-tuning": "fine-tuning", "hybrid": "hybrid"}

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


# The latency buckets (rows of the guide's table).
LATENCY_TIGHT, LATENCY_MODERATE, LATENCY_RELAXED = (
    f"under {TIGHT_MS} ms", f"{TIGHT_MS} ms to {RELAXED_MS // 1000} s", f"{RELAXED_MS // 1000} s or more, or none")


def _latency_bucket(ms: int | None) -> str:
    if ms is None or ms >= RELAXED_MS:
        return LATENCY_RELAXED
    return LATENCY_TIGHT if ms < TIGHT_MS else LATENCY_MODERATE


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


def show_answer(key: str, value: Any) -> str:
    """An answer as the tables show it: yes/no, "no strict budget", "none" for no labelled examples."""
    if isinstance(value, bool):
        return _yes_no(value)
    if key == "latency_ms":
        return "no strict budget" if value is None else f"{value} ms"
    if key == "examples_per_class":
        return "none" if value == 0 else str(value)
    return str(value)
