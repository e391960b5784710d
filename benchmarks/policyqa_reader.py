"""PolicyQA dev: a span reader (``ragtune tune reader``) trained on 16 policies, tested on the other 4, five folds.

Issue 13's measure, all through ragtune's own code:

1. Five folds by policy (the 20 dev policies sorted by name, fold *i* tests policies *i*, *i*+5, *i*+10, *i*+15,
   as in ``policyqa_reranker.py``).
2. For each fold, a JSONL training file from the other 16 policies: every question with its paragraph and gold
   span (``answer``, ``answer_start``, ``group`` = the website), plus — for every ``--negative-every``-th
   question — the same question with another paragraph of its policy that holds none of its answers and
   ``answer: null``, so the reader learns to say "not here". ``load_reader_examples`` reads it (with its audit)
   and ``train_reader`` trains with the command's defaults (``--epochs``, ``--max-length`` as given; the
   calibrated threshold is chosen on the training policies' own held-out split, never on the test policies).
3. **Reader alone**: each test question with its gold paragraph; token-F1 and exact match (SQuAD normalisation,
   best over the gold answers), always answering, and at the calibrated threshold (answered share, F1 on the
   answered ones).
4. **End to end** (the copilot setting): the copilot project of ``compliance_copilot.py`` with ``answer.kind:
   reader`` and the fold's model; each test question with a whole-word gold answer asked with ``Project.ask`` as
   a user who may read only its policy. F1 of the answer's span (empty when it abstains), answered share, and
   ``ask`` latency p50/p95. Each question is asked once with the threshold off (``answer.reader_min_score``
   very low), which gives the F1 when always answering; the calibrated figures apply the fold's threshold to
   the span's score (the threshold only gates the answer, so this is what ``ask`` with it would return).

    RAGTUNE_DATA=../shared/data .venv/bin/python benchmarks/policyqa_reader.py [--epochs 2] [--quick]
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import random
import re
import resource
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
os.environ.setdefault("LANCE_LOG", "error")

from _common import cache_dir, command_line, data_dir, emit, machine, median, percentile, write_row  # noqa: E402
from build_demo_corpus import load_policies  # noqa: E402
from compliance_copilot import build_project, group_of, normalize, token_f1  # noqa: E402

from ragtune.core import Principal  # noqa: E402
from ragtune.project import Project  # noqa: E402
from ragtune.tuning.reader.cli import tune_reader  # noqa: E402
from ragtune.tuning.reader.data import load_reader_examples  # noqa: E402
from ragtune.tuning.reader.served import SpanReader  # noqa: E402
from ragtune.tuning.reader.train import train_reader  # noqa: E402
from ragtune.tuning.registry import Registry  # noqa: E402

SECTION = "Span reader trained on other policies (PolicyQA dev)"
FOLDS = 5
GOAL_ALONE, GOAL_E2E = 55.0, 45.0
ALWAYS = -1e9  # answer.reader_min_score that lets every span through (the calibrated cut is applied after)


def cli_defaults() -> dict[str, Any]:
    """The defaults of `ragtune tune reader`, read from the command itself."""
    return {k: p.default for k, p in inspect.signature(tune_reader).parameters.items()}


def progress(phase: str, done: int, total: int, extra: dict[str, float] | None = None) -> None:
    """A progress line every 50 steps."""
    if done == total or done % 50 == 0:
        figures = "".join(f", {k} {v:.4f}" for k, v in (extra or {}).items())
        print(f"  {phase}: {done}/{total}{figures}", file=sys.stderr, flush=True)


def exact(prediction: str, gold: str) -> float:
    """SQuAD exact match (after the same normalisation as token-F1)."""
    return float(normalize(prediction) == normalize(gold))


def articles() -> list[dict[str, Any]]:
    """PolicyQA dev's articles (one per policy), sorted by title."""
    raw = json.loads((data_dir() / "policyqa" / "dev.json").read_text(encoding="utf-8"))
    return sorted(raw["data"], key=lambda a: a["title"].strip())


def training_file(path: Path, arts: Sequence[dict[str, Any]], negative_every: int, seed: int) -> Path:
    """The training JSONL of ``arts``: each question with its paragraph and span, and some with another
    paragraph of the same policy (none of its answers in it) and no answer."""
    rng = random.Random(seed)
    n = 0
    with path.open("w", encoding="utf-8") as fh:
        for a in arts:
            site, paragraphs = a["title"].strip(), [p["context"] for p in a["paragraphs"]]
            for p in a["paragraphs"]:
                for qa in p["qas"]:
                    first = qa["answers"][0]
                    fh.write(json.dumps({"question": qa["question"], "passage": p["context"], "answer": first["text"],
                                         "answer_start": first["answer_start"], "group": site}) + "\n")
                    n += 1
                    if negative_every and n % negative_every == 0:
                        others = [c for c in paragraphs if c != p["context"]
                                  and not any(x["text"] in c for x in qa["answers"])]
                        if others:
                            fh.write(json.dumps({"question": qa["question"], "passage": rng.choice(others),
                                                 "answer": None, "group": site}) + "\n")
    return path


def with_reader(project: Project, spec: str) -> Project:
    """The project with ``answer.kind: reader`` and ``answer.reader: spec``."""
    s = project.settings
    answer = s.answer.model_copy(update={"kind": "reader", "reader": spec, "reader_min_score": ALWAYS})
    return Project(s.model_copy(update={"answer": answer}))


def main(argv: Sequence[str] | None = None) -> int:
    """Train one reader per fold, score it alone and end to end on its test policies, record."""
    defaults = cli_defaults()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=float, default=defaults["epochs"])
    ap.add_argument("--layers", type=int, default=defaults["layers"])
    ap.add_argument("--max-length", type=int, default=defaults["max_length"])
    ap.add_argument("--learning-rate", type=float, default=defaults["learning_rate"],
                    help="chosen on training policies by policyqa_reader_select.py")
    ap.add_argument("--negative-every", type=int, default=3, help="one no-answer example per N questions")
    ap.add_argument("--folds", type=int, default=FOLDS, help="run only the first N of the five folds")
    ap.add_argument("--reuse", action="store_true",
                    help="score a fold's newest trained model when one exists instead of training it again")
    ap.add_argument("--quick", action="store_true", help="check the script: 1 fold, 10 steps, 40 questions")
    ap.add_argument("--no-docs", action="store_true", help="do not write docs/benchmarks.md")
    args = ap.parse_args(argv)
    arts = articles()
    root = cache_dir("copilot")
    policies = sorted(load_policies(data_dir() / "policyqa" / "dev.json"), key=lambda p: p.website)
    assert [p.website for p in policies] == [a["title"].strip() for a in arts]
    project = build_project(root, policies)
    registry = Registry(project.settings.models_dir)
    threads = project.settings.embedder.threads
    rows: list[dict[str, Any]] = []
    alone_f1, alone_em, alone_ans, alone_ans_f1, e2e_f1, e2e_ans, latency = [], [], [], [], [], [], []
    e2e_always: list[float] = []
    for i in range(1 if args.quick else args.folds):
        test_idx = set(range(i, len(arts), FOLDS))
        train_arts = [a for j, a in enumerate(arts) if j not in test_idx]
        with tempfile.TemporaryDirectory() as tmp:
            examples = load_reader_examples(training_file(Path(tmp) / "train.jsonl", train_arts,
                                                          args.negative_every, defaults["seed"]))
        name = f"policyqa-reader-fold{i}"
        t0 = time.perf_counter()
        if args.reuse and registry.versions(name):
            card = registry.card(name)
        else:
            card = train_reader(registry, name, examples, layers=args.layers, max_length=args.max_length,
                                epochs=0.01 if args.quick else args.epochs, batch_size=defaults["batch_size"],
                                learning_rate=args.learning_rate, threads=threads, seed=defaults["seed"],
                                holdout=defaults["holdout"], data_source=f"PolicyQA dev, {len(train_arts)} policies",
                                progress=progress).card
        train_s = card.metrics.get("train_seconds", time.perf_counter() - t0)
        spec = f"{name}@{card.version}"
        reader = SpanReader(registry.root, spec, threads=threads)
        reader.warm_up()
        fold_alone: list[float] = []
        tests = [(a, p, qa) for j, a in enumerate(arts) if j in test_idx for p in a["paragraphs"] for qa in p["qas"]]
        for _, p, qa in tests[: 40 if args.quick else None]:
            golds = [x["text"] for x in qa["answers"]]
            spans = reader.read(qa["question"], [p["context"]])
            text = spans[0].text if spans else ""
            f1 = max(token_f1(text, g) for g in golds)
            fold_alone.append(f1)
            alone_em.append(max(exact(text, g) for g in golds))
            answered = bool(spans) and spans[0].score >= reader.threshold
            alone_ans.append(answered)
            if answered:
                alone_ans_f1.append(f1)
        alone_f1 += fold_alone
        asker = with_reader(project, spec)
        fold_e2e: list[float] = []
        items = [(p, q) for j, p in enumerate(policies) if j in test_idx for q in p.questions]
        for policy, q in items[: 40 if args.quick else None]:
            answer = asker.ask(q.question, Principal("bench", frozenset({group_of(policy)})))
            latency.append(answer.latency_ms["total"])
            span = answer.span if not answer.abstained else None
            f1 = max(token_f1(re.sub(r"\[\d+\]", "", span.text if span else ""), g) for g in q.answers)
            e2e_always.append(f1)
            answered = span is not None and span.score >= reader.threshold
            e2e_ans.append(answered)
            fold_e2e.append(f1 if answered else 0.0)
        e2e_f1 += fold_e2e
        m = card.metrics
        row = {"fold": i, "test_policies": [arts[j]["title"].strip() for j in sorted(test_idx)],
               "train_examples": len(examples), "train_s": round(train_s, 1), "steps": m.get("steps"),
               "threshold": round(reader.threshold, 3), "alone_f1": round(100 * sum(fold_alone) / len(fold_alone), 2),
               "e2e_f1": round(100 * sum(fold_e2e) / len(fold_e2e), 2),
               "e2e_always_f1": round(100 * sum(e2e_always[-len(fold_e2e):]) / len(fold_e2e), 2),
               "load_avg": round(os.getloadavg()[0], 2)}
        emit("policyqa_reader.fold", **row)
        rows.append(row)
        result = summary(rows, alone_f1, alone_em, alone_ans, alone_ans_f1, e2e_f1, e2e_ans, latency, args)
        result["e2e_always_f1"] = round(100 * sum(e2e_always) / len(e2e_always), 2)
        if not (args.quick or args.no_docs):
            record(result, rows)  # after every fold, so a stopped run keeps what it measured
    emit("policyqa_reader", **result)
    return 0


def summary(rows: list[dict[str, Any]], alone_f1: list[float], alone_em: list[float], alone_ans: list[bool],
            alone_ans_f1: list[float], e2e_f1: list[float], e2e_ans: list[bool], latency: list[float],
            args: argparse.Namespace) -> dict[str, Any]:
    """The figures over every fold scored so far."""
    return {
        "questions_alone": len(alone_f1), "alone_f1": round(100 * sum(alone_f1) / len(alone_f1), 2),
        "alone_em": round(100 * sum(alone_em) / len(alone_em), 2),
        "alone_answered": round(sum(alone_ans) / len(alone_ans), 4),
        "alone_answered_f1": round(100 * sum(alone_ans_f1) / max(1, len(alone_ans_f1)), 2),
        "questions_e2e": len(e2e_f1), "e2e_f1": round(100 * sum(e2e_f1) / len(e2e_f1), 2),
        "e2e_answered": round(sum(e2e_ans) / len(e2e_ans), 4),
        "ask_p50_ms": round(median(latency), 1), "ask_p95_ms": round(percentile(latency, 95), 1),
        "train_s_median": round(median([r["train_s"] for r in rows]), 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "epochs": args.epochs, "learning_rate": args.learning_rate, "layers": args.layers,
        "max_length": args.max_length, "folds": len(rows),
    }


def record(r: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """The measures as rows of one table in docs/benchmarks.md."""
    intro = (f"PolicyQA dev, {r['folds']} of five folds by policy: a span reader trained on the questions of 16 "
             f"policies (plus one no-answer example per 3 questions: another paragraph of the same policy), "
             f"{r['layers']} layers of the packaged MiniLM, max length {r['max_length']}, {r['epochs']} epoch(s) at "
             f"learning rate {r['learning_rate']:g} (chosen on fold 0's training policies, table below), "
             f"every other setting at `ragtune tune reader`'s default; the abstention threshold calibrated on a "
             f"held-out split of the training policies. Scored on the other 4 policies. Peak RSS "
             f"{r['peak_rss_mb']} MB; training median {r['train_s_median']:.0f} s per fold. Machine: {machine()}.")
    header = ["measure", "value", "anchor"]
    measures = [
        ("reader alone on the gold paragraph, token-F1 / EM",
         f"{r['alone_f1']:.1f} / {r['alone_em']:.1f} ({r['questions_alone']} questions)",
         f"published BERT-base reader dev F1 59.2; goal ≥ {GOAL_ALONE:g}"),
        ("reader alone at the calibrated threshold: answered share, F1 on answered",
         f"{100 * r['alone_answered']:.1f} %, {r['alone_answered_f1']:.1f}", "–"),
        ("end to end, copilot setting (user reads only the question's policy), span token-F1",
         f"{r['e2e_f1']:.1f} ({r['questions_e2e']} questions)",
         f"sentence-quoting answer 14.1 (section above); goal ≥ {GOAL_E2E:g}"),
        ("end to end, answered share", f"{100 * r['e2e_answered']:.1f} %", "–"),
        ("end to end, span token-F1 when always answering (no threshold)", f"{r['e2e_always_f1']:.1f}", "–"),
        ("`ask` latency p50 / p95 with the reader", f"{r['ask_p50_ms']:.0f} / {r['ask_p95_ms']:.0f} ms", "–"),
    ]
    for measure, value, anchor in measures:
        write_row(SECTION, measure, f"| {measure} | {value} | {anchor} |", header=header, command=command_line(),
                  intro=intro)
    for row in rows:
        key = "fold " + ", ".join(row["test_policies"])
        write_row(SECTION, key, f"| {key} | F1 alone {row['alone_f1']:.1f}, end to end {row['e2e_f1']:.1f}; "
                  f"{row['steps']} steps, {row['train_s']:.0f} s, threshold {row['threshold']:.2f} | – |",
                  header=header, command=command_line(), intro=intro)


if __name__ == "__main__":
    raise SystemExit(main())
