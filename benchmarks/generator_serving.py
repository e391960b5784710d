"""Serving cost of a tuned generator: time to first token and tokens/s of the base model, the base with a LoRA
adapter, the same LoRA merged into the base at export (``--merge``, as f16 and as q8_0) and a fully fine-tuned
model under llama.cpp (xllamacpp), on the same prompts.

Issue 14's serving measure. A LoRA adapter and a full fine-tune of the packaged SmolLM2-135M-Instruct are trained
for ``--epochs`` (default a quarter of an epoch: serving speed does not depend on it; the quality of a full run is
the section "House-style replies") on ``examples/generator/replies_train.jsonl``, what ``ragtune tune generator
--method lora|full`` runs. Each of the three is then served the way ``generator.kind`` serves it (``llamacpp``:
the Q4_1 base; ``tuned`` with an adapter: the same base with the adapter GGUF applied at run time; ``tuned``
after ``--merge`` or full fine-tuning: the whole model written as an f16 GGUF) and asked the first ``--limit``
(16) held-out messages of ``replies_test.jsonl`` with the same chat (the house style as the system turn, no examples),
greedily, at most ``--max-new-tokens`` tokens. ``--rounds`` rounds, the three models taking turns within each;
per model the median over rounds of: time to first token p50, decode tokens/s (output tokens after the first over
the time after the first) and overall tokens/s (output tokens over the whole latency), and the ratio of each to
the base model's in the same round. Output tokens are counted with the base's tokenizer.

    .venv/bin/python benchmarks/generator_serving.py [--rounds 3] [--limit 16] [--threads 2] [--epochs 0.25]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cache_dir, command_line, emit, machine, write_row  # noqa: E402
from house_style_replies import EXAMPLES, token_counter  # noqa: E402
from replies import TEST_FILE, TRAIN_FILE  # noqa: E402  (house_style_replies put examples/generator on the path)

SECTION = "Serving a tuned generator (llama.cpp, same prompts)"
HEADER = ["model", "served as", "TTFT p50", "decode tokens/s", "tokens/s overall", "vs base (TTFT / decode)",
          "output tokens (mean)", "measured"]


def round_figures(run: Any) -> dict[str, float]:
    """TTFT p50 (ms) and overall tokens/s as ``run_generator`` measured them, decode tokens/s, mean output tokens
    of one configuration's run."""
    decode_tokens = sum(max(0, n - 1) for n in run.output_tokens)
    decode_s = sum(max(0.0, t - f) for t, f in zip(run.latency_s, run.first_token_s, strict=True))
    return {"ttft_ms": run.metrics["time_to_first_token_p50_ms"],
            "decode_tps": decode_tokens / decode_s if decode_s > 0 else 0.0,
            "overall_tps": run.metrics["tokens_per_s"],
            "tokens_mean": statistics.mean(run.output_tokens)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--limit", type=int, default=16, help="held-out messages asked per round")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=float, default=0.25, help="training epochs of each tuned model (serving "
                        "speed does not depend on them; the quality of a full run is the house-style section)")
    args = parser.parse_args()

    from ragtune.models.generator import LlamaCppGenerator
    from ragtune.tuning.generator.base import resolve_base
    from ragtune.tuning.generator.data import load_gen_examples
    from ragtune.tuning.generator.evaluate import run_generator
    from ragtune.tuning.generator.served import tuned_generator
    from ragtune.tuning.generator.train import train_generator
    from ragtune.tuning.registry import Registry
    from ragtune.tuning.train import PlainProgress

    work = cache_dir("generator_serving")
    registry = Registry(work / "models")
    train = load_gen_examples(EXAMPLES / TRAIN_FILE)
    held = load_gen_examples(EXAMPLES / TEST_FILE)[: args.limit]
    progress = PlainProgress(lambda line: print(line, file=sys.stderr, flush=True), 60)
    specs: dict[str, str] = {}
    for key, method, merge, gguf_type in (("lora", "lora", False, "f16"), ("merged", "lora", True, "f16"),
                                          ("merged-q8", "lora", True, "q8_0"), ("full", "full", False, "f16")):
        result = train_generator(registry, f"serving-{key}", train, validation=held, method=method, merge=merge,
                                 gguf_type=gguf_type, epochs=args.epochs, max_length=512, eval_limit=0,
                                 threads=args.threads, progress=progress,
                                 data_source=f"examples/generator/{TRAIN_FILE}")
        specs[key] = f"{result.card.name}@{result.card.version}"
        emit(f"{key} trained", seconds=result.card.metrics["train_seconds"], steps=result.card.metrics["steps"])

    info = resolve_base(None)
    count = token_counter(info.folder)
    generators = {
        "base": (LlamaCppGenerator(model_path=info.gguf, threads=args.threads), "Q4_1 GGUF (generator.kind: llamacpp)"),
        "LoRA": (tuned_generator(registry.root, specs["lora"], threads=args.threads),
                 "Q4_1 base + adapter GGUF applied at run time"),
        "LoRA merged at export": (tuned_generator(registry.root, specs["merged"], threads=args.threads),
                                  "whole model, f16 GGUF (`--merge`)"),
        "LoRA merged at export, q8_0": (tuned_generator(registry.root, specs["merged-q8"], threads=args.threads),
                                        "whole model, Q8_0 GGUF (`--merge --gguf-type q8_0`)"),
        "full fine-tune": (tuned_generator(registry.root, specs["full"], threads=args.threads),
                           "whole model, f16 GGUF"),
    }
    rounds: dict[str, list[dict[str, float]]] = {name: [] for name in generators}
    try:
        for generator, _ in generators.values():
            generator.warm_up()
            run_generator(generator, held[:3], max_tokens=args.max_new_tokens, count_tokens=count)  # warm-up
        for r in range(args.rounds):
            for name, (generator, _) in generators.items():
                run = run_generator(generator, held, max_tokens=args.max_new_tokens, count_tokens=count)
                rounds[name].append(round_figures(run))
                emit("serving round", round=r, model=name, **rounds[name][-1])
    finally:
        for generator, _ in generators.values():
            generator.close()

    def med(name: str, key: str) -> float:
        return statistics.median(f[key] for f in rounds[name])

    def ratio(name: str, key: str) -> float:
        return statistics.median(a[key] / b[key] for a, b in zip(rounds[name], rounds["base"], strict=True))

    intro = (f"{len(held)} held-out messages of `examples/generator/{TEST_FILE}` (house-style replies: the style as "
             f"the system turn, message and help article as the user turn, no examples), asked of each model "
             f"greedily, at most {args.max_new_tokens} new tokens, llama.cpp (xllamacpp) on {args.threads} threads. "
             f"The tuned models: `ragtune tune generator --method lora|full` (and `--method lora --merge "
             f"[--gguf-type q8_0]`), "
             f"{args.epochs:g} epoch on `{TRAIN_FILE}`. {args.rounds} rounds, the models taking turns in each; "
             f"each figure is the median over rounds, the ratios the median of the per-round ratios to the base "
             f"model. Decode tokens/s: output tokens after the first over the time after the first. {machine()}; load "
             f"{os.getloadavg()[0]:.2f} at the end.")
    today = time.strftime("%Y-%m-%d")
    for name, (_, served_as) in generators.items():
        versus = "1.00 / 1.00" if name == "base" else f"{ratio(name, 'ttft_ms'):.2f} / {ratio(name, 'decode_tps'):.2f}"
        write_row(SECTION, name,
                  f"| {name} | {served_as} | {med(name, 'ttft_ms'):.0f} ms | {med(name, 'decode_tps'):.1f} | "
                  f"{med(name, 'overall_tps'):.1f} | {versus} | {med(name, 'tokens_mean'):.0f} | {today} |",
                  header=HEADER, command=command_line(), intro=intro)


if __name__ == "__main__":
    main()
