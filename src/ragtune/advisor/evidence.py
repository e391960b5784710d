"""Layer 2 of the advisor: a recommendation drawn from measurements on the user's own data.

The rules, in order (each one cites the numbers that triggered it):

1. Documents with questions *and* labels that a classifier learns → **hybrid**: the task needs answers
   from documents (retrieval measured) and a label per item (classifier accuracy measured well above the
   majority baseline). If the classifier does not beat the baseline clearly, the labels are not learnable
   from the text and the recommendation falls back to RAG.
2. Documents with questions and no labels → **RAG**: nothing to fine-tune on; retrieval is measured.
3. Labels only → the bake-off decides between fine-tuning, RAG-style classification and hybrid. The simpler
   system wins unless a more complex one is *measurably* better: by at least ``margin`` accuracy and
   significantly so on the same held-out items (exact McNemar test, p < 0.05). A hybrid must beat both
   halves that way to justify running two systems; between fine-tuning and RAG-style classification, the
   measurably more accurate one wins, and without a measurable difference the cheaper one per item.

Warnings (common mistakes that the evidence shows) are attached whatever the winner.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from scipy.stats import binomtest

from ragtune.advisor.bakeoff import CandidateResult, LabelBakeoff, QABakeoff
from ragtune.advisor.corpus import CorpusAudit
from ragtune.tuning.audit import AuditReport

ARCHITECTURES = ("rag", "fine-tuning", "hybrid")
LEARNABLE_MARGIN = 0.10  # a classifier must beat always-the-majority-class by this much accuracy
SIGNIFICANCE = 0.05


def measurably_better(a: CandidateResult, b: CandidateResult, margin: float) -> bool:
    """``a`` beats ``b`` by at least ``margin`` accuracy and, where per-item results exist, significantly
    on the items both were measured on (exact McNemar: the items only one of them got right)."""
    if a.accuracy < b.accuracy + margin:
        return False
    n = min(len(a.correct), len(b.correct))
    if n == 0:
        return True
    only_a = sum(x and not y for x, y in zip(a.correct[:n], b.correct[:n], strict=True))
    only_b = sum(y and not x for x, y in zip(a.correct[:n], b.correct[:n], strict=True))
    if only_a <= only_b:
        return False
    return bool(binomtest(only_a, only_a + only_b, 0.5, alternative="greater").pvalue < SIGNIFICANCE)


@dataclass
class EvidenceDecision:
    """The architecture the measurements support, and why."""

    winner: str
    reasons: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def decide(
    corpus: CorpusAudit | None = None,
    qa: QABakeoff | None = None,
    labels: LabelBakeoff | None = None,
    label_audit: AuditReport | None = None,
    margin: float = 0.01,
) -> EvidenceDecision:
    """Recommend an architecture from whatever evidence was gathered (at least one of ``qa``/``labels``)."""
    if qa is None and labels is None:
        raise ValueError("decide() needs a question-answering or a labelled bake-off")
    warnings = _warnings(corpus, qa, labels, label_audit)
    clf = labels.result("fine-tuning") if labels else None
    learnable = bool(labels and clf and clf.accuracy >= labels.majority_accuracy + LEARNABLE_MARGIN)
    if qa is not None:
        reasons = [_qa_reason(qa)]
        if corpus is not None and corpus.knowledge_changes_weekly:
            reasons.append("the documents change weekly or faster: retrieval picks changes up at the next sync, "
                           "a tuned model would need retraining")
        if labels is not None and clf is not None:
            if learnable:
                return EvidenceDecision("hybrid", reasons + [
                    f"the labels are learnable: a classifier reaches {100 * clf.accuracy:.1f} % accuracy "
                    f"(always-the-majority-class: {100 * labels.majority_accuracy:.1f} %), so the label is "
                    "assigned by a tuned model while answers come from retrieval"], warnings)
            reasons.append(f"the labels are not learnable from the text (classifier {100 * clf.accuracy:.1f} % vs "
                           f"majority {100 * labels.majority_accuracy:.1f} %): no tuned half is justified")
        else:
            reasons.append("no labelled examples: there is nothing to fine-tune on")
        return EvidenceDecision("rag", reasons, warnings)

    assert labels is not None
    measured = {r.name: r for r in labels.results}
    rag, tuned, hyb = measured.get("rag"), measured.get("fine-tuning"), measured.get("hybrid")
    reasons = [f"classification task ({labels.classes} classes, {labels.train_examples} training and "
               f"{labels.test_examples} held-out examples)"]
    if rag is None or tuned is None:
        return EvidenceDecision("fine-tuning", reasons + ["only the classifier could be measured in the time "
                                                         "budget; give --budget more time to compare"], warnings)
    if hyb is not None and measurably_better(hyb, tuned, margin) and measurably_better(hyb, rag, margin):
        return EvidenceDecision("hybrid", reasons + [
            f"classifier with retrieval fallback {100 * hyb.accuracy:.1f} % beats the classifier alone "
            f"({100 * tuned.accuracy:.1f} %) and retrieval alone ({100 * rag.accuracy:.1f} %) by at least "
            f"{100 * margin:.0f} point(s), significantly (McNemar p < {SIGNIFICANCE})"], warnings)
    hybrid_note = (f"the hybrid ({100 * hyb.accuracy:.1f} %) is not measurably better than both single "
                   f"systems (≥ {100 * margin:.0f} point(s) and McNemar p < {SIGNIFICANCE}), so it does not "
                   "earn a second system") if hyb else ""
    if measurably_better(tuned, rag, margin) or (
        not measurably_better(rag, tuned, margin) and tuned.cost_per_1k_usd <= rag.cost_per_1k_usd
    ):
        why = (f"the tuned classifier {100 * tuned.accuracy:.1f} % vs retrieval of labelled examples "
               f"{100 * rag.accuracy:.1f} % accuracy, at {tuned.latency_ms:.1f} vs {rag.latency_ms:.1f} ms per item")
        return EvidenceDecision("fine-tuning", reasons + [why] + ([hybrid_note] if hybrid_note else []), warnings)
    why = (f"retrieval of labelled examples {100 * rag.accuracy:.1f} % vs the tuned classifier "
           f"{100 * tuned.accuracy:.1f} % accuracy: new examples help at once, without retraining")
    return EvidenceDecision("rag", reasons + [why] + ([hybrid_note] if hybrid_note else []), warnings)


def _qa_reason(qa: QABakeoff) -> str:
    recall = f"recall@{qa.k} of the gold source {100 * qa.recall_at_k:.0f} %, " if qa.recall_at_k is not None else ""
    return (f"question answering over {qa.documents} documents: {recall}{100 * qa.answered_rate:.0f} % of "
            f"{qa.questions} questions answered with citations, {qa.latency_p50_ms:.0f} ms median")


def _warnings(corpus: CorpusAudit | None, qa: QABakeoff | None, labels: LabelBakeoff | None,
              label_audit: AuditReport | None) -> list[str]:
    out = []
    if corpus is not None and corpus.no_acl:
        out.append(f"security: {len(corpus.no_acl)} documents have no ACL; ragtune keeps them from everyone "
                   "until you add `acl:` front matter or an `_acl.yaml`")
    if qa is not None and qa.recall_at_k is not None and qa.recall_at_k < 0.5:
        out.append(f"retrieval finds the right source for only {100 * qa.recall_at_k:.0f} % of questions: fix "
                   "chunking or the corpus first — fine-tuning does not compensate for bad retrieval")
    if qa is not None and qa.latency_p95_ms > 1000:
        out.append(f"latency: p95 {qa.latency_p95_ms:.0f} ms per question on this machine")
    if labels is not None and qa is None:
        out.append("the task is classification: answering it with RAG and an LLM would cost more per item for a "
                   "label that a small classifier assigns")
    if label_audit is not None:
        out.extend(f"labels: {w}" for w in label_audit.blocking + label_audit.warnings[:3])
    return out
