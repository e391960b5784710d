"""The compliance copilot on PolicyQA dev: retrieval, extractive answers, category accuracy, latency.

Each of the 20 dev policies becomes a Markdown document (``examples/build_demo_corpus.py``'s rendering)
readable only by its own group (the website), and each question is asked as a user of that group — so
"the latest accessible policies" are exactly the policy the question was annotated on, through ragtune's own
ACL filter. For every PolicyQA question with a whole-word gold answer:

- retrieval recall@5: a top-5 chunk contains a gold answer span (normalised whitespace);
- answer token-F1 (SQuAD normalisation, best over gold spans) of the copilot's extractive answer, with the
  copilot's answer (up to 3 sentences) and with 1 sentence (closer to span extraction; published BERT reader: F1 59.2);
- category accuracy of the `policy-category` classifier (`head`), two-fold by policy (trained on the questions
  of 10 policies, tested on the other 10, then swapped), so no policy's questions are in both;
- end-to-end latency of the pipeline (classify, retrieve, answer, route) per question, p50/p95; and with the
  groundedness check — the trained checker when the bench project has a `groundedness` model (train it with
  `ragtune verify train -p .bench/copilot/project`), else the lexical default a fresh project gets — and the
  hallucination rate: the share of answers with a sentence the check finds unsupported.

    RAGTUNE_DATA=../shared/data .venv/bin/python benchmarks/compliance_copilot.py [--limit N]
"""

from __future__ import annotations

import argparse
import csv
import re
import string
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

from _common import cache_dir, data_dir, emit, machine, median, percentile, write_row  # noqa: E402
from build_demo_corpus import Policy, load_policies, render_markdown  # noqa: E402

from ragtune.answer.extractive import ExtractiveAnswerer  # noqa: E402
from ragtune.config import init_project  # noqa: E402
from ragtune.core import Principal  # noqa: E402
from ragtune.pipelines.runner import PipelineRunner  # noqa: E402
from ragtune.pipelines.spec import BUILTIN_DIR, load_pipeline  # noqa: E402
from ragtune.project import Project  # noqa: E402
from ragtune.tuning.base import classifier_class  # noqa: E402
from ragtune.tuning.registry import Registry, new_card  # noqa: E402

SECTION = "Compliance copilot on PolicyQA dev"
COMMAND = "RAGTUNE_DATA=../shared/data .venv/bin/python benchmarks/compliance_copilot.py"


def normalize(text: str) -> list[str]:
    """SQuAD's answer normalisation: lower case, no punctuation or articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return text.split()


def token_f1(prediction: str, gold: str) -> float:
    """Token-level F1 between two answers."""
    p, g = normalize(prediction), normalize(gold)
    common = sum((Counter(p) & Counter(g)).values())
    if not p or not g or common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(g)
    return 2 * precision * recall / (precision + recall)


def group_of(policy: Policy) -> str:
    return "site-" + re.sub(r"[^a-z0-9]+", "-", policy.website.lower())


def build_project(root: Path, policies: list[Policy]) -> Project:
    """One document per policy, readable only by the website's group; ingested (re-synced when present)."""
    docs = root / "docs"
    for policy in policies:
        text = render_markdown(policy).replace("---\n", f"---\nacl: {{groups: [{group_of(policy)}]}}\n", 1)
        path = docs / f"{policy.website}.md"
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    if not (root / "project" / "ragtune.yaml").is_file():
        init_project(root / "project")
    project = Project.open(root / "project")
    project.ingest(docs)
    return project


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=None, help="only the first N questions (no docs row written)")
    args = ap.parse_args(argv)
    root = cache_dir("copilot")
    policies = load_policies(data_dir() / "policyqa" / "dev.json")
    project = build_project(root, policies)
    items = [(p, q) for p in policies for q in p.questions]
    if args.limit:
        items = items[: args.limit]

    # Category classifier, two folds by policy: each question is classified by a model that never saw its policy.
    halves = [policies[::2], policies[1::2]]
    predicted: dict[tuple[str, str], str] = {}
    for train_half, test_half in ((halves[0], halves[1]), (halves[1], halves[0])):
        texts = [q.question for p in train_half for q in p.questions]
        labels = [q.category for p in train_half for q in p.questions]
        clf = classifier_class("head")().fit(texts, labels)
        test = [(p.website, q.question) for p in test_half for q in p.questions]
        for (site, question), label in zip(test, clf.predict([t for _, t in test]), strict=True):
            predicted[(site, question)] = str(label)
    # The pipeline (timed below, not scored on categories) uses the last fold's classifier.
    Registry(project.settings.models_dir).register("policy-category", clf, new_card("head", clf, "", "PolicyQA dev"))
    category_acc = sum(predicted[(p.website, q.question)] == q.category for p, q in items) / len(items)

    one_sentence = ExtractiveAnswerer(project.embedder, max_sentences=1)
    runner = PipelineRunner(load_pipeline("compliance-copilot"), project)
    runner.warm_up()
    # The same pipeline with the groundedness check after the answer: the trained checker when the bench project
    # has one, else the lexical-overlap default a fresh project gets.
    scorer = "trained checker" if (project.settings.models_dir / "groundedness").is_dir() else "lexical default"
    text = (BUILTIN_DIR / "compliance-copilot.yaml").read_text(encoding="utf-8")
    spec_file = root / "copilot-verified.yaml"
    spec_file.write_text(text.replace("  - answer: {}\n", "  - answer: {}\n  - verify: {}\n"), encoding="utf-8")
    checked = PipelineRunner(load_pipeline(spec_file), project)
    checked.warm_up()
    found, f1_three, f1_one, latency, latency_checked, hallucinated, answered = 0, [], [], [], [], 0, 0
    for policy, q in items:
        principal = Principal("bench", frozenset({group_of(policy)}))
        result = runner.run(q.question, principal)
        latency.append(result.latency_ms["total"])
        verified = checked.run(q.question, principal)
        latency_checked.append(verified.latency_ms["total"])
        if verified.answer is not None and not verified.answer.abstained:
            answered += 1
            hallucinated += bool(verified.unsupported_sentences)
        retrieval = project.search(q.question, principal, top_k=5)
        hits = retrieval.hits
        gold = [" ".join(a.split()) for a in q.answers]
        found += any(g in " ".join(h.chunk.text.split()) for h in hits for g in gold)
        text = result.answer.text if result.answer is not None and not result.answer.abstained else ""
        f1_three.append(max(token_f1(re.sub(r"\[\d+\]", "", text), g) for g in gold))
        single = one_sentence.answer(q.question, retrieval, principal)
        f1_one.append(max(token_f1(re.sub(r"\[\d+\]", "", single.text if not single.abstained else ""), g)
                          for g in gold))
    n = len(items)
    recall = found / n
    f1_3, f1_1 = 100 * sum(f1_three) / n, 100 * sum(f1_one) / n
    p50, p95 = median(latency), percentile(latency, 95)
    emit("copilot", questions=n, recall_at_5=round(recall, 4), f1_3_sentences=round(f1_3, 2),
         f1_1_sentence=round(f1_1, 2), category_accuracy=round(category_acc, 4), p50_ms=round(p50, 1),
         p95_ms=round(p95, 1))
    if latency_checked:
        emit("copilot.verified", p50_ms=round(median(latency_checked), 1),
             p95_ms=round(percentile(latency_checked, 95), 1), hallucination_rate=round(hallucinated / answered, 4))
    with open(root / "per_question.csv", "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["website", "question", "category", "predicted", "f1_3", "f1_1", "latency_ms"])
        for (p, q), a, b, ms in zip(items, f1_three, f1_one, latency, strict=True):
            w.writerow([p.website, q.question, q.category, predicted[(p.website, q.question)], round(a, 3),
                        round(b, 3), round(ms, 1)])
    if args.limit:
        return 0
    intro = (f"PolicyQA dev: {len(policies)} policies, {n} questions with a whole-word gold answer. Each question "
             "is asked as a user whose group may read only its policy (ragtune's ACL filter scopes retrieval). "
             f"Classifier: `head`, two folds by policy. Machine: {machine()}.")
    rows = [
        ("retrieval recall@5 (a top-5 chunk holds a gold span)", f"{100 * recall:.1f} %", "–"),
        ("answer token-F1, copilot (up to 3 sentences, stops when one adds nothing)", f"{f1_3:.1f}",
         "published BERT reader (span) 59.2"),
        ("answer token-F1, 1 sentence", f"{f1_1:.1f}", "published BERT reader (span) 59.2"),
        ("category accuracy (held-out policies)", f"{100 * category_acc:.1f} %", "–"),
        ("pipeline latency p50 / p95, no groundedness check", f"{p50:.0f} / {p95:.0f} ms", "–"),
    ]
    if latency_checked:
        rows += [
            (f"pipeline latency p50 / p95, with the groundedness check ({scorer})",
             f"{median(latency_checked):.0f} / {percentile(latency_checked, 95):.0f} ms", "–"),
            (f"hallucination rate (answers with a sentence the {scorer} finds unsupported)",
             f"{100 * hallucinated / answered:.1f} % of {answered}", "extractive: every sentence is quoted"),
        ]
    for measure, value, anchor in rows:
        write_row(SECTION, measure, f"| {measure} | {value} | {anchor} |", header=["measure", "value", "anchor"],
                  command=COMMAND, intro=intro)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
