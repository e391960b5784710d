"""The common mistakes the decision guide warns about, and when each applies to a set of answers and a winner."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ragtune.advisor.questions import DISPLAY, KNOWLEDGE_TASKS, LABEL_TASKS, RELAXED_MS, GuideAnswers, KnowledgeChange


@dataclass(frozen=True)
class Mistake:
    """A common mistake that the answers make likely, and why it applies."""

    key: str
    title: str
    detail: str
    because: str


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
        "measure what is retrieved (`ragtune search`); adapting retrieval to your documents (`ragtune tune "
        "reranker`, `ragtune tune retriever`) comes before tuning a generator, and `ragtune advise --docs DIR "
        "--questions FILE` measures recall with and without the project's adapted models; a tuned generator "
        "does not learn changing facts and cannot cite them", _finetune_for_retrieval),
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
