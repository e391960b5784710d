"""The advisor: RAG, fine-tuning or hybrid? Layer 1 is the decision guide (``guide``); Layer 2 measures
evidence on your data (``evidence``, ``run``). Importing this package stays light: it loads only the guide."""

from __future__ import annotations

from ragtune.advisor.guide import (
    ARCHITECTURES,
    Fit,
    GuideAnswers,
    KnowledgeChange,
    Recommendation,
    Task,
    load_answers,
    parse_answers,
    recommend,
)

__all__ = [
    "ARCHITECTURES",
    "Fit",
    "GuideAnswers",
    "KnowledgeChange",
    "Recommendation",
    "Task",
    "load_answers",
    "parse_answers",
    "recommend",
]
