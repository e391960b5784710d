"""Peers side by side: SetFit's own trainer against ragtune's few-shot classifiers on banking77, in one run.

The training set is ``banking77_classifiers.py``'s ``few_shot`` sample (the same examples for the same
``--shots`` and ``--seed``). ragtune trains through its package API (``classifier_class(method)(...).fit``):

- ``head``: frozen MiniLM embeddings + logistic regression, ``C`` 100 (the value the validation sweep picks at
  10 per class, docs/benchmarks.md, banking77 classifiers);
- ``ensemble``: the banking77 classifiers table's 10-per-class ensemble (two
  cosine-head fine-tunes and the head) with label names added, ragtune's most accurate recipe at 10 per class.

SetFit (``benchmarks/peers/worker_setfit.py``, in the peers' environment) trains the same packaged MiniLM with
``setfit.Trainer`` at its defaults except ``num_iterations`` (default 5, as ragtune's ``setfit`` method) and
``num_epochs`` 1. Accuracy and macro-F1 on banking77 test (3,080 messages); train seconds from loading the body
to a fitted head (ragtune: ``fit()``, its embedding cache cleared first). ``--quick``: 2 examples per class,
every 10th test message, ``head`` only unless ``--methods`` says otherwise, 1 SetFit iteration.

    RAGTUNE_DATA=../shared/data .venv/bin/python benchmarks/peers_setfit.py [--methods head|ensemble|head,ensemble]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _peers  # noqa: E402
from _common import DOCS_FILE, clear_embedding_cache, command_line, emit, machine, write_row  # noqa: E402
from banking77_classifiers import few_shot, load  # noqa: E402

from ragtune.models.embedder import minilm_model_dir  # noqa: E402

SECTION = "Peers side by side: SetFit on banking77 (one run, same examples)"
HEADER = ["system / method, training set", "test messages", "accuracy", "macro-F1", "train s", "settings",
          "versions", "load avg", "measured"]
# ragtune's recipes at 10 per class, as the banking77 classifiers table records them.
RAGTUNE_METHODS: dict[str, tuple[dict[str, Any], bool]] = {
    "head": ({"C": 100}, False),
    "ensemble": ({"members": [
        {"method": "finetune", "head": "cosine", "epochs": 20, "batch_size": 32, "max_length": 64, "random_state": 0},
        {"method": "finetune", "head": "cosine", "epochs": 20, "batch_size": 32, "max_length": 64, "random_state": 1},
        {"method": "head", "C": 100}]}, True),
}
INTRO = (
    "SetFit's own trainer (`setfit.Trainer`, in the peers' environment: `bash benchmarks/peers/setup.sh`) and "
    "ragtune's classifiers (its package API) trained in the same run on the same banking77 sample "
    "(`banking77_classifiers.py`'s `few_shot`, same seed), all from the packaged all-MiniLM-L6-v2 on CPU. "
    "SetFit: its default `TrainingArguments` (batch 16, body learning rate 2e-5, CosineSimilarityLoss, "
    "LogisticRegression head) with the stated `num_iterations` and `num_epochs`. ragtune `head`: frozen "
    "embeddings + logistic regression (C 100, the validation sweep's pick); `ensemble`: the banking77 "
    "classifiers table's 10-per-class recipe (label names added). Train s: from loading the model to a fitted "
    "classifier. Load avg: the machine's 1-minute load when the system's training and scoring ended."
)


def macro_f1(gold: Sequence[str], predicted: Sequence[str]) -> float:
    """Macro-averaged F1 over the gold labels (scikit-learn's definition)."""
    from sklearn.metrics import f1_score

    return float(f1_score(list(gold), list(predicted), average="macro", labels=sorted(set(gold))))


def accuracy(gold: Sequence[str], predicted: Sequence[str]) -> float:
    """Share of exact label matches."""
    if len(gold) != len(predicted) or not gold:
        raise ValueError(f"{len(gold)} gold labels and {len(predicted)} predictions")
    return sum(g == p for g, p in zip(gold, predicted, strict=True)) / len(gold)


def train_ragtune(method: str, texts: list[str], labels: list[str], seed: int) -> tuple[Any, float, dict[str, Any]]:
    """One of ragtune's recipes, fitted through the package API; (classifier, seconds, params)."""
    from ragtune.tuning.base import classifier_class
    from ragtune.tuning.data import LabelledData

    params, label_names = RAGTUNE_METHODS[method]
    if label_names:
        augmented = LabelledData(texts, labels, "banking77", "").with_label_names()
        texts, labels = augmented.texts, augmented.labels
    clf = classifier_class(method)(random_state=seed, **params)
    clear_embedding_cache()
    t0 = time.perf_counter()
    clf.fit(texts, labels)
    return clf, time.perf_counter() - t0, {**params, "label_names": label_names}


def main(argv: Sequence[str] | None = None) -> int:
    """Train every system on the same sample, score on the same test messages, record the rows."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="Set up the peers first: bash benchmarks/peers/setup.sh")
    ap.add_argument("--shots", type=int, default=None, help="examples per class (default 10; --quick: 2)")
    ap.add_argument("--seed", type=int, default=0, help="sampling seed and every trainer's seed (default 0)")
    ap.add_argument("--methods", default=None,
                    help=f"ragtune methods, comma-separated, of: {', '.join(RAGTUNE_METHODS)} (default: both; "
                         "--quick: head)")
    ap.add_argument("--num-iterations", type=int, default=None, help="SetFit's num_iterations (default 5; quick 1)")
    ap.add_argument("--num-epochs", type=int, default=1, help="SetFit's num_epochs (body), default 1")
    ap.add_argument("--threads", type=int, default=2,
                    help="SetFit's torch threads (default 2, as ragtune's classifiers)")
    ap.add_argument("--quick", action="store_true",
                    help="2 per class, every 10th test message, 1 SetFit iteration: a fast check (no docs row)")
    ap.add_argument("--peers-venv", type=Path, default=None,
                    help="the peers' virtual environment (default $RAGTUNE_PEERS_VENV or .bench/peers-venv)")
    ap.add_argument("--docs-file", type=Path, default=None,
                    help=f"write the rows to this file instead of {DOCS_FILE.name} (also with --quick)")
    ap.add_argument("--no-docs", action="store_true", help="write no docs rows")
    args = ap.parse_args(argv)
    shots = args.shots or (2 if args.quick else 10)
    iterations = args.num_iterations or (1 if args.quick else 5)
    methods = [m.strip() for m in (args.methods or ("head" if args.quick else "head,ensemble")).split(",")
               if m.strip()]
    unknown = [m for m in methods if m not in RAGTUNE_METHODS]
    if unknown:
        ap.error(f"--methods: unknown {', '.join(unknown)}; choose from {', '.join(RAGTUNE_METHODS)}")
    python = _peers.peers_python(args.peers_venv)
    _peers.warn_if_busy(args.threads)

    train_texts, train_labels = load("train")
    texts, labels = few_shot(train_texts, train_labels, shots, args.seed)
    test_texts, test_labels = load("test")
    if args.quick:
        test_texts, test_labels = test_texts[::10], test_labels[::10]
    sample = f"{shots} per class (seed {args.seed})"
    rows: list[tuple[str, float, float, float, str, dict[str, str], float]] = []

    with _peers.Worker("setfit", "worker_setfit.py", python) as worker:
        init = worker.request("init", model_dir=str(minilm_model_dir()), threads=args.threads)
        _peers.progress(f"SetFit: training on {len(texts)} examples ({iterations} iterations)")
        trained = worker.request("train", texts=texts, labels=labels, seed=args.seed, num_iterations=iterations,
                                 num_epochs=args.num_epochs)
        predicted = worker.request("predict", texts=test_texts)["labels"]
        rows.append(("SetFit", accuracy(test_labels, predicted), macro_f1(test_labels, predicted),
                     float(trained["seconds"]), f"num_iterations {iterations}, num_epochs {args.num_epochs}, "
                     f"{trained['steps']} steps, other arguments SetFit's defaults", init["versions"],
                     _peers.load_avg()))
    for method in methods:
        _peers.progress(f"ragtune {method}: training")
        clf, seconds, params = train_ragtune(method, texts, labels, args.seed)
        predicted = [str(p) for p in clf.predict(test_texts)]
        rows.append((f"ragtune {method}", accuracy(test_labels, predicted), macro_f1(test_labels, predicted),
                     seconds, f"`{json.dumps(params)}`", _peers.versions("ragtune", "torch", "scikit-learn"),
                     _peers.load_avg()))

    docs_path = None if args.no_docs or (args.quick and args.docs_file is None) else (args.docs_file or DOCS_FILE)
    for name, acc, f1, seconds, settings, found, load_avg in rows:
        emit("peers.setfit", system=name, shots=shots, seed=args.seed, test=len(test_texts), accuracy=round(acc, 4),
             macro_f1=round(f1, 4), train_s=round(seconds, 1), settings=settings, versions=found, load_avg=load_avg)
        if docs_path is None:
            continue
        key = f"{name}, {sample}"
        write_row(SECTION, key,
                  f"| {key} | {len(test_texts)} | {100 * acc:.2f} % | {100 * f1:.2f} | {seconds:.0f} | {settings} "
                  f"| {_peers.version_text(found)} | {load_avg:.1f} | {time.strftime('%Y-%m-%d')} |",
                  header=HEADER, command=command_line(), intro=INTRO + f" Machine: {machine()}.", path=docs_path)
    if docs_path is None:
        print("(quick or --no-docs: docs/benchmarks.md not written)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
