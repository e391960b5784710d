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

Warnings (common mistakes that the evidence shows) are attached whatever the winner — poor retrieval cites
recall@k with and without the project's adaptation models (:mod:`ragtune.advisor.adaptation`) — and so are
the limits of the evidence: too little sync history to tell how often documents change, a held-out set (or a
question set) too small for a firm figure (with its Wilson 95 % interval), and a simpler candidate that
scored higher than, or within noise of, the recommended one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from statistics import NormalDist

from scipy.stats import binomtest

from ragtune.advisor.adaptation import adapted_clause, retrieval_warning
from ragtune.advisor.bakeoff import CandidateResult, LabelBakeoff, QABakeoff
from ragtune.advisor.corpus import TOO_LITTLE_HISTORY, CorpusAudit
from ragtune.tuning.audit import AuditReport

ARCHITECTURES = ("rag", "fine-tuning", "hybrid")
LEARNABLE_MARGIN = 0.10  # a classifier must beat always-the-majority-class by this much accuracy
SIGNIFICANCE = 0.05
SMALL_SAMPLE = 30  # fewer held-out items (or questions) than this: a measured share is rough, say so
Z95 = NormalDist().inv_cdf(0.975)  # 1.95996…


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval (95 % by default) of the proportion ``successes / n``, as shares."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def share_with_interval(share: float, n: int) -> str:
    """``share`` of ``n`` items with its Wilson 95 % interval, e.g. "85.7 % (95 % interval 49–97 %)"."""
    lo, hi = wilson_interval(round(share * n), n)
    return f"{100 * share:.1f} % (95 % interval {100 * lo:.0f}–{100 * hi:.0f} %)"


def measured_items(r: CandidateResult, labels: LabelBakeoff) -> int:
    """How many held-out items ``r`` was measured on (fewer than the held-out set when the budget ran out)."""
    return len(r.correct) or labels.test_examples


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
                rag_vote = labels.result("rag")
                if rag_vote is not None:
                    warnings += _simpler_notes(clf, [rag_vote], labels, margin, "the label half of the hybrid",
                                               "the label could come from a vote over the same retrieval index, "
                                               "with no tuned model to retrain")
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
        warnings += _simpler_notes(tuned, [rag], labels, margin, "fine-tuning",
                                   "it was chosen for its lower cost per item; retrieval of labelled examples needs "
                                   "no training run and learns a new example at once")
        return EvidenceDecision("fine-tuning", reasons + [why] + ([hybrid_note] if hybrid_note else []), warnings)
    why = (f"retrieval of labelled examples {100 * rag.accuracy:.1f} % vs the tuned classifier "
           f"{100 * tuned.accuracy:.1f} % accuracy: new examples help at once, without retraining")
    return EvidenceDecision("rag", reasons + [why] + ([hybrid_note] if hybrid_note else []), warnings)


_NAMES = {"rag": "retrieval of labelled examples (rag)", "fine-tuning": "the tuned classifier",
          "hybrid": "the hybrid"}


def _simpler_notes(chosen: CandidateResult, simpler: list[CandidateResult], labels: LabelBakeoff, margin: float,
                   what: str, so: str) -> list[str]:
    """A note for each simpler candidate that scored higher than ``chosen`` or within noise of it."""
    out = []
    for r in simpler:
        if measurably_better(chosen, r, margin):
            continue
        how = "scored higher than" if r.accuracy > chosen.accuracy else "scored within noise of"
        out.append(f"a simpler system {how} {what}: {_NAMES.get(r.name, r.name)} "
                   f"{share_with_interval(r.accuracy, measured_items(r, labels))} vs "
                   f"{share_with_interval(chosen.accuracy, measured_items(chosen, labels))} accuracy, not measurably "
                   f"different (≥ {100 * margin:.0f} point(s) and McNemar p < {SIGNIFICANCE} needed); {so}")
    return out


def _small_samples(qa: QABakeoff | None, labels: LabelBakeoff | None) -> list[str]:
    """Warnings for measurements on fewer than ``SMALL_SAMPLE`` items: how many, and the Wilson interval."""
    out = []
    if labels is not None and labels.results:
        small = [r for r in labels.results if measured_items(r, labels) < SMALL_SAMPLE]
        if small:
            each = ", ".join(f"{r.name} {share_with_interval(r.accuracy, measured_items(r, labels))} on "
                             f"{measured_items(r, labels)}" for r in small)
            out.append(f"small held-out set: accuracy measured on fewer than {SMALL_SAMPLE} items ({each}), so "
                       "each figure's confidence interval is wide and small differences mean nothing; label more "
                       "examples for a firmer comparison")
    if qa is not None and 0 < qa.questions < SMALL_SAMPLE:
        out.append(f"only {qa.questions} questions were asked: answered with citations "
                   f"{share_with_interval(qa.answered_rate, qa.questions)}; the interval is wide, so add questions "
                   f"({SMALL_SAMPLE}+) for a firmer figure")
    return out


def _qa_reason(qa: QABakeoff) -> str:
    recall = ""
    if qa.recall_at_k is not None:
        adapted = adapted_clause(qa.recall_at_k, qa.adapted)
        recall = f"recall@{qa.k} of the gold source {100 * qa.recall_at_k:.0f} %" + (f" ({adapted})" if adapted
                                                                                       else "") + ", "
    return (f"question answering over {qa.documents} documents: {recall}{100 * qa.answered_rate:.0f} % of "
            f"{qa.questions} questions answered with citations, {qa.latency_p50_ms:.0f} ms median")


def _warnings(corpus: CorpusAudit | None, qa: QABakeoff | None, labels: LabelBakeoff | None,
              label_audit: AuditReport | None) -> list[str]:
    out = []
    if corpus is not None and not corpus.change_rate_known:
        out.append(f"{TOO_LITTLE_HISTORY} ({corpus.history()}); the recommendation does not count on a change "
                   "rate")
    out += _small_samples(qa, labels)
    if corpus is not None and corpus.no_acl:
        out.append(f"security: {len(corpus.no_acl)} documents have no ACL; ragtune keeps them from everyone "
                   "until you add `acl:` front matter or an `_acl.yaml`")
    if qa is not None and qa.recall_at_k is not None:  # poor retrieval, with and without adaptation models
        poor = retrieval_warning(qa.k, qa.recall_at_k, qa.adapted)
        out += [poor] if poor else []
    if qa is not None and qa.latency_p95_ms > 1000:
        out.append(f"latency: p95 {qa.latency_p95_ms:.0f} ms per question on this machine")
    if labels is not None and qa is None:
        out.append("the task is classification: answering it with RAG and an LLM would cost more per item for a "
                   "label that a small classifier assigns")
    if label_audit is not None:
        out.extend(f"labels: {w}" for w in label_audit.blocking + label_audit.warnings[:3])
    return out
