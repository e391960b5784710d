"""Choose the span reader's learning rate and epochs for PolicyQA on training policies only.

For fold 0 of ``policyqa_reader.py`` (its 16 training policies; its 4 test policies are never read), each
candidate (learning rate × epochs) trains ``ragtune tune reader``'s model on 14 of the 16 policies and is scored
on the other 2 (``train_reader``'s own group hold-out, the same split for every candidate): token-F1 on the
answerable held-out questions, always answering (``heldout_f1_has_answer_always``), and at the calibrated
threshold. Every candidate trains a fixed number of steps, so the comparison does not depend on the machine's
load. The choice is then passed to ``policyqa_reader.py --learning-rate --epochs``.

    RAGTUNE_DATA=../shared/data .venv/bin/python benchmarks/policyqa_reader_select.py --candidates 5e-5:2,1e-4:2
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import cache_dir, command_line, emit, machine, write_row  # noqa: E402
from policyqa_reader import FOLDS, articles, cli_defaults, progress, training_file  # noqa: E402

from ragtune.tuning.reader.data import load_reader_examples  # noqa: E402
from ragtune.tuning.reader.train import train_reader  # noqa: E402
from ragtune.tuning.registry import Registry  # noqa: E402

SECTION = "Span reader: learning rate and epochs chosen on training policies (PolicyQA dev, fold 0)"


def parse_candidates(text: str) -> list[tuple[float, float]]:
    """``LR:EPOCHS,LR:EPOCHS`` → [(lr, epochs)]."""
    out = []
    for part in text.split(","):
        lr, _, epochs = part.partition(":")
        out.append((float(lr), float(epochs or 1)))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Train each candidate on fold 0's training policies and score it on their held-out groups."""
    defaults = cli_defaults()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--candidates", default="5e-5:2,1e-4:2,2e-4:2", help="LR:EPOCHS pairs, comma-separated")
    ap.add_argument("--layers", type=int, default=defaults["layers"])
    ap.add_argument("--negative-every", type=int, default=3)
    ap.add_argument("--no-docs", action="store_true", help="do not write docs/benchmarks.md")
    args = ap.parse_args(argv)
    arts = articles()
    test_idx = set(range(0, len(arts), FOLDS))
    train_arts = [a for j, a in enumerate(arts) if j not in test_idx]
    with tempfile.TemporaryDirectory() as tmp:
        examples = load_reader_examples(training_file(Path(tmp) / "train.jsonl", train_arts, args.negative_every,
                                                      defaults["seed"]))
    registry = Registry(cache_dir("reader-select") / "models")
    rows: list[dict[str, Any]] = []
    for lr, epochs in parse_candidates(args.candidates):
        card = train_reader(registry, "select", examples, layers=args.layers, max_length=defaults["max_length"],
                            epochs=epochs, batch_size=defaults["batch_size"], learning_rate=lr, seed=defaults["seed"],
                            holdout=defaults["holdout"], data_source="PolicyQA dev fold 0 training policies",
                            progress=progress).card
        m = card.metrics
        row = {"learning_rate": lr, "epochs": epochs, "steps": m["steps"], "train_s": m["train_seconds"],
               "heldout_f1_always": round(100 * m["heldout_f1_has_answer_always"], 2),
               "heldout_f1": round(100 * m["heldout_f1"], 2), "heldout_examples": m["heldout_examples"],
               "max_answer_tokens": card.params["max_answer_tokens"]}
        emit("policyqa_reader_select", **row)
        rows.append(row)
        if not args.no_docs:
            key = f"lr {lr:g}, {epochs:g} epochs"
            write_row(SECTION, key, f"| {key} | {row['heldout_f1_always']:.1f} | {row['heldout_f1']:.1f} | "
                      f"{row['steps']} | {row['train_s']:.0f} s |",
                      header=["candidate", "held-out F1, always answering", "held-out F1 at the threshold", "steps",
                              "training"], command=command_line(),
                      intro=f"Fold 0's 16 training policies: 14 trained on, 2 held out (the same for every "
                            f"candidate, {row['heldout_examples']} questions); {args.layers} layers, every other "
                            f"setting at `ragtune tune reader`'s default. Machine: {machine()}.")
    best = max(rows, key=lambda r: r["heldout_f1_always"])
    emit("policyqa_reader_select.best", **best)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
