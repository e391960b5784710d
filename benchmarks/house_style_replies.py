"""House-style support replies as free text: the packaged SmolLM2-135M prompted with 3 examples against the same
model fine-tuned (LoRA) on 88 hand-written replies, scored on ROUGE-L and on compliance with the house style.

The task (``examples/generator/replies.py``, where the house style is written down and checked): a banking77
customer message and the matching help article in, a reply in a fixed format out (``Hi there,``; one paragraph
of 2 to 3 sentences, 40 to 90 words, second person, no exclamation marks; ``See: <article title>``;
``— Support team``). The data is the committed ``examples/generator/replies_train.jsonl`` (88 examples) and
``replies_test.jsonl`` (32 held-out messages, 4 per intent); no benchmark data folder is needed.

Usage:

    .venv/bin/python benchmarks/house_style_replies.py
    .venv/bin/python benchmarks/house_style_replies.py --epochs 5 --threads 2

Both configurations generate every test message greedily through llama.cpp (xllamacpp), the way
``generator.kind: tuned`` serves the model: the base with 3 training examples in its prompt (the same for every
message, ``pick_shots``), and the tuned adapter on the same base with none. Per configuration: ROUGE-L against the
reference replies, the share of replies with no house-style problem, the mean body length, latency p50 and output
tokens per second; the outputs are kept in ``.bench/house_style_replies/outputs-*.jsonl``. No setting is chosen on
the test messages.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cache_dir, command_line, emit, machine, write_row  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "generator"
sys.path.insert(0, str(EXAMPLES))
from replies import (  # noqa: E402
    TEST_FILE,
    TRAIN_FILE,
    article_title,
    body_words,
    house_style_problems,
    load_references,
    split,
)

SECTION = "House-style replies (generator fine-tuning, free text)"
HEADER = ["configuration", "ROUGE-L", "house style", "body words (mean)", "latency p50", "tokens/s", "train time",
          "peak RSS", "measured"]


def token_counter(folder: Path) -> Callable[[str], int] | None:
    """Output tokens counted with the base model's own tokenizer (None: counted as streamed chunks)."""
    from ragtune.models.hf import load_tokenizer

    path = folder / "tokenizer.json"
    if not path.is_file():
        return None
    tokenizer = load_tokenizer(path, None)
    return lambda text: len(tokenizer.encode(text, add_special_tokens=False).ids)


def generate(info: Any, gguf: Path | None, method: str, held: Sequence[Any], shots: Sequence[Any], *, threads: int,
             max_new_tokens: int, count_tokens: Callable[[str], int] | None) -> Any:
    """One configuration's run over ``held``: the base (``gguf`` None, with ``shots``) or the tuned model."""
    from ragtune.tuning.generator.compare import served_generator
    from ragtune.tuning.generator.evaluate import run_generator

    generator = served_generator(info, gguf, method, threads)
    try:
        return run_generator(generator, held, shots=shots, max_tokens=max_new_tokens, count_tokens=count_tokens)
    finally:
        generator.close()


def style_scores(outputs: Sequence[str], titles: Sequence[str]) -> tuple[float, float, Counter[str]]:
    """(share of outputs with no house-style problem, mean body words, how many outputs break each rule)."""
    problems = [house_style_problems(o, t) for o, t in zip(outputs, titles, strict=True)]
    kinds: Counter[str] = Counter(k for p in problems for k in dict.fromkeys(x.split(":", 1)[0] for x in p))
    share = sum(not p for p in problems) / len(problems)
    return share, statistics.mean(body_words(o) for o in outputs), kinds


def pct(value: float) -> str:
    return f"{100 * value:.1f} %"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", default="lora", choices=["lora", "full"])
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--shots", type=int, default=3, help="training examples in the base model's prompt")
    parser.add_argument("--max-length", type=int, default=512, help="training tokens per example (the longest "
                        "example, article included, is under 400)")
    parser.add_argument("--max-new-tokens", type=int, default=160, help="the longest reference is 100 tokens")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from ragtune.tuning.generator.base import resolve_base
    from ragtune.tuning.generator.data import load_gen_examples
    from ragtune.tuning.generator.evaluate import pick_shots
    from ragtune.tuning.generator.train import ADAPTER_FILE, FULL_FILE, train_generator
    from ragtune.tuning.registry import Registry
    from ragtune.tuning.train import PlainProgress

    work = cache_dir("house_style_replies")
    train = load_gen_examples(EXAMPLES / TRAIN_FILE)
    test = load_gen_examples(EXAMPLES / TEST_FILE)
    _, test_refs = split(load_references())
    if [e.target for e in test] != [r.reply for r in test_refs]:
        raise SystemExit(f"{EXAMPLES / TEST_FILE} is out of date: run .venv/bin/python examples/generator/replies.py")
    titles = [article_title(r.article) for r in test_refs]
    registry = Registry(work / "models")
    command = command_line()
    intro = (f"Support replies in a fixed house style (free text; the rules and their checker are in "
             f"`examples/generator/replies.py`): a banking77 customer message and its help article in, the reply "
             f"out. {len(train)} hand-written training replies, {len(test)} held-out messages (4 per intent, 8 "
             "intents; no message in both). Base model: the packaged SmolLM2-135M-Instruct (Q4_1 GGUF), served by "
             f"llama.cpp (xllamacpp) on {args.threads} threads, greedy, at most {args.max_new_tokens} new tokens; "
             f"the base row prompts it with the house style and {args.shots} training examples, the tuned row has "
             f"the house style in its system prompt only. 'house style' is the share of replies with no problem "
             f"found by `house_style_problems` (greeting, layout, 40-90 words, 2-3 sentences, full stop, no '!', "
             f"'you' not 'I', no Markdown, `See: <article title>`, `— Support team`). ROUGE-L: F-measure against "
             f"the reference replies (rouge_score, stemmed). {args.method}, --epochs {args.epochs:g}, --max-length "
             f"{args.max_length}, otherwise the defaults of `ragtune tune generator`; nothing tuned on the test "
             f"messages. {machine()}")
    today = time.strftime("%Y-%m-%d")

    started = time.monotonic()
    result = train_generator(registry, f"replies-{args.method}", train, validation=test, method=args.method,
                             epochs=args.epochs, max_length=args.max_length, shots=args.shots, eval_limit=len(test),
                             max_new_tokens=args.max_new_tokens, seed=args.seed, threads=args.threads,
                             baseline=False, data_source=f"examples/generator/{TRAIN_FILE} (validation {TEST_FILE})",
                             progress=PlainProgress(lambda line: print(line, file=sys.stderr, flush=True), 60))
    seconds = time.monotonic() - started
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024
    train_s = float(result.card.metrics["train_seconds"])
    emit(f"{args.method} run", seconds=round(seconds, 1), train_seconds=train_s, peak_rss_gb=round(rss, 2),
         steps=result.card.metrics["steps"], final_loss=result.card.metrics["final_loss"],
         version=result.card.version, card_rows=result.rows)

    info = resolve_base(None)
    tuned_file = result.folder / "model" / (ADAPTER_FILE if args.method == "lora" else FULL_FILE)
    count = token_counter(info.folder)
    configs = [(f"base, {args.shots}-shot prompt", None, pick_shots(train, args.shots, args.seed)),
               (f"tuned ({args.method}, {args.epochs:g} epochs)", tuned_file, [])]
    for config, gguf, shots in configs:
        run = generate(info, gguf, args.method, test, shots, threads=args.threads,
                       max_new_tokens=args.max_new_tokens, count_tokens=count)
        share, words, kinds = style_scores(run.outputs, titles)
        slug = "tuned" if gguf is not None else "base"
        with (work / f"outputs-{slug}.jsonl").open("w", encoding="utf-8") as fh:
            for ref, out, title in zip(test_refs, run.outputs, titles, strict=True):
                fh.write(json.dumps({"message": ref.message, "reference": ref.reply, "output": out,
                                     "problems": house_style_problems(out, title)}, ensure_ascii=False) + "\n")
        m = run.metrics
        speed = m.get("tokens_per_s", m.get("words_per_s", 0.0))
        tuned = gguf is not None
        write_row(SECTION, config,
                  f"| {config} | {m['rouge_l']:.3f} | {pct(share)} | {words:.0f} | {m['latency_p50_ms']:.0f} ms | "
                  f"{speed:.0f} | {f'{train_s:.0f} s' if tuned else '—'} | {f'{rss:.1f} GB' if tuned else '—'} | "
                  f"{today} |", header=HEADER, command=command, intro=intro)
        emit(config, rouge_l=m["rouge_l"], house_style=share, body_words_mean=round(words, 1),
             latency_p50_ms=m["latency_p50_ms"], latency_p95_ms=m["latency_p95_ms"], tokens_per_s=speed,
             token_count=run.token_count, broken_rules=dict(kinds.most_common()), n=len(run.outputs))


if __name__ == "__main__":
    main()
