"""Before and after, in the same run: the base model prompted with a few training examples against the tuned
model, each with and without schema-constrained decoding, on the same held-out examples, all served by
llama.cpp the way ``generator.kind: tuned`` serves the result."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ragtune.tuning.generator.data import GenExample

Progress = Callable[[str, int, int, dict[str, float]], None]
SAMPLES = 5


def served_generator(info: Any, gguf: Path | None, served_as: str, threads: int) -> Any:
    """The llama.cpp generator of a configuration: the base alone (``gguf`` None), the base with a LoRA adapter
    (``served_as`` ``lora``), or a whole tuned model (``full``: fully tuned, or a LoRA merged at export)."""
    from ragtune.models.generator import LlamaCppGenerator

    if gguf is None:
        return LlamaCppGenerator(model_path=info.gguf, threads=threads)
    if served_as == "lora":
        return LlamaCppGenerator(model_path=info.gguf, lora_path=gguf, threads=threads)
    return LlamaCppGenerator(model_path=gguf, threads=threads)


def configurations(shots: int, schema: bool) -> list[tuple[str, bool, bool]]:
    """(name, tuned, constrained) of each configuration measured."""
    out = [(f"base, {shots}-shot prompt", False, False), ("tuned", True, False)]
    if schema:
        out[1:1] = [(f"base, {shots}-shot prompt + schema", False, True)]
        out.append(("tuned + schema", True, True))
    return out


def before_after(info: Any, tuned_gguf: Path, served_as: str, train: Sequence[GenExample], held: Sequence[GenExample],
                 *, schema: dict[str, Any] | None, shots: int, seed: int, threads: int, max_new_tokens: int,
                 progress: Progress | None = None, count_tokens: Callable[[str], int] | None = None,
                 baseline: bool = True) -> tuple[list[dict[str, Any]], list[tuple[str, str, str]]]:
    """The comparison rows (``config`` and its metrics) and a few (input, reference, tuned output) samples;
    ``baseline=False``: the tuned model's rows only. Nothing held out: no rows."""
    from ragtune.tuning.generator.evaluate import pick_shots, run_generator

    if not held:
        return [], []
    examples = pick_shots(train, shots, seed) if shots else []
    rows: list[dict[str, Any]] = []
    samples: list[tuple[str, str, str]] = []
    for config, tuned, constrained in configurations(shots, schema is not None):
        if not tuned and not baseline:
            continue
        generator = served_generator(info, tuned_gguf if tuned else None, served_as, threads)
        try:
            def step(done: int, total: int, _c: str = config) -> None:
                if progress is not None:
                    progress(f"evaluate {_c}", done, total, {})

            run = run_generator(generator, held, schema=schema, constrained=constrained,
                                shots=() if tuned else examples, max_tokens=max_new_tokens, progress=step,
                                count_tokens=count_tokens)
        finally:
            generator.close()
        rows.append({"config": config, **run.metrics})
        if tuned and not samples:
            samples = [(e.user_text, e.target, out) for e, out in zip(held[:SAMPLES], run.outputs, strict=False)]
    return rows, samples
