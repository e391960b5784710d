"""banking77 as structured output: few-shot prompting vs LoRA vs full fine-tuning of the packaged SmolLM2-135M,
with and without schema-constrained decoding, against the classifier trained on the same examples.

The task (``examples/generator/triage.py``, where the fixed priority rule is written down): a customer message
in, ``{"intent": ..., "priority": ...}`` out, over all 77 intents; the schema enumerates the intents and the
three priorities.

Usage:

    RAGTUNE_DATA=../shared/data .venv/bin/python benchmarks/banking77_generator.py
    RAGTUNE_DATA=../shared/data .venv/bin/python benchmarks/banking77_generator.py --per-class 10 --test 400

Training examples: ``--per-class`` seeded messages per intent from banking77's training set. Scored on a seeded
``--test`` sample of the test set (the same messages for every configuration). No setting is chosen on the
test sample: the defaults of ``ragtune tune generator`` are used as they are.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cache_dir, command_line, data_dir, emit, machine, write_row  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "generator"))
from triage import per_intent, read_csv, schema, write_jsonl  # noqa: E402

SECTION = "banking77 structured output (generator fine-tuning)"
HEADER = ["configuration", "validity", "intent accuracy", "priority accuracy", "exact match", "latency p50",
          "tokens/s", "train time", "peak RSS", "measured"]
def load(split: str) -> list[tuple[str, str]]:
    return read_csv(data_dir() / "banking77" / f"{split}.csv")


def classifier_accuracy(train: list[tuple[str, str]], test: list[tuple[str, str]]) -> float:
    """The specialist the generator must match: ragtune's frozen-embedding classifier on the same examples."""
    from ragtune.tuning.base import classifier_class

    clf = classifier_class("head")()
    clf.fit([t for t, _ in train], [y for _, y in train])
    predicted = clf.predict([t for t, _ in test])
    return sum(p == y for p, (_, y) in zip(predicted, test, strict=True)) / len(test)


def _kept_row() -> str:
    """The classifier row as an earlier run wrote it (``--skip-baseline`` keeps it)."""
    from _common import DOCS_FILE

    key = "| classifier (head), same training messages |"
    rows = [ln for ln in DOCS_FILE.read_text(encoding="utf-8").splitlines() if ln.startswith(key)]
    if not rows:
        raise SystemExit("--skip-baseline needs an earlier run's rows in docs/benchmarks.md: run without it first")
    return rows[0]


def pct(value: Any) -> str:
    return f"{100 * value:.1f} %" if isinstance(value, float) else "—"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-class", type=int, default=8, help="training messages per intent")
    parser.add_argument("--test", type=int, default=300, help="test messages scored (seeded sample)")
    parser.add_argument("--methods", default="lora,full", help="comma-separated: lora, full")
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--shots", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-baseline", action="store_true",
                        help="keep the base-model and classifier rows of an earlier run with the same data and test "
                             "sample (add a method's rows without measuring the base again)")
    args = parser.parse_args()

    from ragtune.tuning.generator.data import load_gen_examples
    from ragtune.tuning.generator.train import train_generator
    from ragtune.tuning.registry import Registry
    from ragtune.tuning.train import PlainProgress

    work = cache_dir("banking77_generator")
    train_rows = per_intent(load("train"), args.per_class, args.seed)
    test_rows = random.Random(args.seed).sample(load("test"), args.test)
    intents = sorted({y for _, y in load("train")})
    train = load_gen_examples(write_jsonl(work / "train.jsonl", train_rows))
    test = load_gen_examples(write_jsonl(work / "test.jsonl", test_rows))
    (work / "schema.json").write_text(json.dumps(schema(intents)), encoding="utf-8")
    registry = Registry(work / "models")
    progress = PlainProgress(lambda line: print(line, file=sys.stderr, flush=True), interval=60)
    command = command_line()
    intro = (f"banking77, all 77 intents, as structured output ({{intent, priority}} JSON; the priority by a fixed "
             f"rule in the script). Trained on {len(train)} messages ({args.per_class} per intent) from the training "
             f"set; scored on the same {len(test)} test messages (seeded sample) for every row. Base model: the "
             "packaged SmolLM2-135M-Instruct (Q4_1 GGUF), served by llama.cpp (xllamacpp) on 2 threads; the base "
             f"rows prompt it with {args.shots} training examples. 'schema' rows constrain decoding to the JSON "
             "schema enumerating the intents. The classifier row is ragtune's frozen-embedding classifier (`ragtune "
             "train --method head`) on the same training messages: the specialist the generator must match. "
             f"Defaults of `ragtune tune generator` except --epochs {args.epochs:g}; nothing tuned on the test "
             f"sample. {machine()}")
    today = time.strftime("%Y-%m-%d")
    if args.skip_baseline:  # the section's command stays the first run's; this run is named in the intro
        intro += f" The rows of {args.methods} were added by a second run: `{command}`."
        write_row(SECTION, "classifier (head), same training messages", _kept_row(), header=HEADER, intro=intro)
    else:
        accuracy = classifier_accuracy(train_rows, test_rows)
        write_row(SECTION, "classifier (head), same training messages",
                  f"| classifier (head), same training messages | — | {pct(accuracy)} | — | — | — | — | — | — | "
                  f"{today} |", header=HEADER, command=command, intro=intro)
        emit("classifier", accuracy=accuracy)
    base_written = args.skip_baseline
    for method in [m.strip() for m in args.methods.split(",") if m.strip()]:
        started = time.monotonic()
        result = train_generator(registry, f"banking77-{method}", train, validation=test, schema=schema(intents),
                                 method=method, epochs=args.epochs, shots=args.shots, eval_limit=len(test),
                                 max_new_tokens=48, seed=args.seed, data_source="banking77 train sample",
                                 baseline=not base_written, progress=progress)
        seconds = time.monotonic() - started
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024
        train_s = result.card.metrics["train_seconds"]
        for row in result.rows:
            tuned = row["config"].startswith("tuned")
            if not tuned and base_written:
                continue
            key = f"{method}: {row['config']}" if tuned else row["config"]
            write_row(SECTION, key,
                      f"| {key} | {pct(row.get('validity'))} | {pct(row.get('field:intent'))} | "
                      f"{pct(row.get('field:priority'))} | {pct(row.get('exact_match'))} | "
                      f"{row['latency_p50_ms']:.0f} ms | {row['tokens_per_s']:.0f} | "
                      f"{f'{train_s:.0f} s' if tuned else '—'} | {f'{rss:.1f} GB' if tuned else '—'} | {today} |")
            emit(key, **{k: v for k, v in row.items() if k != "config"})
        base_written = True
        emit(f"{method} run", seconds=round(seconds, 1), train_seconds=train_s, peak_rss_gb=round(rss, 2),
             steps=result.card.metrics["steps"], version=result.card.version)


if __name__ == "__main__":
    main()
