"""The candidates of the generation bake-off (:mod:`ragtune.advisor.generation`), measured: each held-out example
generated one at a time by llama.cpp and scored, until the candidate's share of the budget is spent (but on at
least ``MIN_ITEMS`` examples); the documents indexed for rag+prompting; the LoRA fine-tune trained for what is
left once its libraries are loaded and its evaluation is reserved."""

from __future__ import annotations

import math
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ragtune.advisor.bakeoff import Tick, _cost_per_1k
from ragtune.advisor.generation import RAG_K, GenCandidate, GenerationBakeoff
from ragtune.errors import RagtuneError
from ragtune.models.embedder import Embedder
from ragtune.tuning.generator.data import GenExample

CHUNK_CHARS = 800  # each retrieved chunk is cut to this many characters in the prompt
MIN_ITEMS = 5  # a candidate is measured on at least this many held-out examples, budget or not
MIN_INGEST_S = 10.0  # and rag+prompting's documents get at least this long to be indexed
# Fine-tuning's cost beyond its training steps, on 2 cores: importing torch, transformers and trl (11 s cold;
# done and timed before the training budget is set), then loading the base, setting up the trainer, exporting and
# registering the adapter (about 5 s, measured; more while other work shares the cores).
IMPORT_S = 12.0
FT_SETUP_S = 10.0
TUNED_SLOWDOWN = 3.0  # an adapter served on the base took about 3x the base's latency per example
DEQUANTISE_S = 30.0  # the first load of the base model (cached afterwards)
MIN_TRAIN_S = 5.0  # below this many seconds of training, fine-tuning is not worth measuring
FT_EPOCHS = 2.0  # as the banking77 benchmark; the time budget usually stops it first
TUNED_NAME = "advisor-generator"


def warm(generator: Any) -> None:
    """Start the server and answer one request: the first one pages the weights in (seconds, once), which is
    not what an example costs in service."""
    generator.generate([{"role": "user", "content": "Hello"}], max_tokens=1, temperature=0.0)


def prompting_how(k: int, schema: dict[str, Any] | None, prefix: str = "") -> str:
    """How a prompted candidate was run, for the report's "how" column."""
    constrained = "; decoding constrained to the schema" if schema is not None else ""
    return f"{prefix}SmolLM2-135M, {k} training examples in the prompt{constrained}"


class Measure:
    """Generates the held-out examples with one generator and appends the candidate's measurements."""

    def __init__(self, out: GenerationBakeoff, test: list[GenExample], schema: dict[str, Any] | None,
                 max_tokens: int, cpu_hour_usd: float) -> None:
        self.out, self.test, self.schema, self.max_tokens, self.price = out, test, schema, max_tokens, cpu_hour_usd

    def __call__(self, generator: Any, name: str, how: str, *, shots: Sequence[GenExample], until: float,
                 items: Sequence[GenExample] | None = None, extra_s: Sequence[float] = (),
                 setup_s: float = 0.0, train_s: float = 0.0) -> GenCandidate:
        from ragtune.tuning.generator.evaluate import percentile, run_generator, score_outputs

        prompts = list(items if items is not None else self.test)
        outputs, latency, generation, chunks = [], [], [], []
        for i, example in enumerate(prompts):
            if i >= MIN_ITEMS and time.perf_counter() > until:
                break
            run = run_generator(generator, [example], schema=self.schema, constrained=self.schema is not None,
                                shots=shots, max_tokens=self.max_tokens)
            outputs.append(run.outputs[0])
            generation.append(run.latency_s[0])
            latency.append(run.latency_s[0] + (extra_s[i] if i < len(extra_s) else 0.0))
            chunks.append(run.output_tokens[0])
        n = len(outputs)
        if n < len(prompts):
            self.out.notes.append(f"the time budget ran out: {name} was measured on the first {n} of "
                                  f"{len(prompts)} held-out examples")
        refs = [e.target for e in self.test[:n]]
        metrics = score_outputs(outputs, refs, self.schema)
        metric = self.out.primary_metric
        structured = self.schema is not None or metric.startswith("field:")
        per_item = [score_outputs([o], [r], self.schema) for o, r in zip(outputs, refs, strict=True)]
        p50 = percentile(latency, 50)
        result = GenCandidate(
            name=name, how=how, validity=metrics["validity"], primary=metrics.get(metric, 0.0),
            latency_p50_ms=p50 * 1000, tokens_per_s=sum(chunks) / sum(generation) if sum(generation) else 0.0,
            setup_seconds=setup_s, train_seconds=train_s, cost_per_1k_usd=_cost_per_1k(p50, self.price),
            setup_cost_usd=setup_s / 3600 * self.price, n=n, metrics=metrics,
            valid=[s["validity"] if structured else 1.0 for s in per_item],
            scores=[s.get(metric) for s in per_item])
        self.out.results.append(result)
        return result


def with_context(example: GenExample, passages: Sequence[str]) -> GenExample:
    """``example`` with the retrieved ``passages`` appended to its system turn (or in a new one)."""
    context = "Passages from the documents that may help:\n" + "\n".join(
        f"[{i}] {' '.join(p.split())[:CHUNK_CHARS]}" for i, p in enumerate(passages, 1))
    turns = list(example.prompt)
    if turns and turns[0][0] == "system":
        turns[0] = ("system", f"{turns[0][1]}\n\n{context}")
    else:
        turns.insert(0, ("system", context))
    return GenExample(tuple(turns), example.target, example.where)


def measure_rag(out: GenerationBakeoff, measure: Measure, base: Any, docs: Path, demos: list[GenExample],
                schema: dict[str, Any] | None, embedder: Embedder | None, say: Tick, start: float,
                budget_s: float) -> None:
    """rag+prompting: index ``docs`` privately, retrieve for each held-out input, generate with ``base``."""
    from ragtune.advisor.sandbox import SANDBOX, ingest_public
    from ragtune.models.embedder import embedding_cache_bypassed
    from ragtune.project import Project

    say(f"rag+prompting: ingesting {docs} into a private temporary index")
    t0 = time.perf_counter()
    with Project.temporary(embedder=embedder, retrieval={"top_k": RAG_K}) as sandbox:
        # Until 30 % of the budget, but at least MIN_INGEST_S from now (like MIN_ITEMS): a batch of files is
        # written only once it is embedded, so an ingest stopped at once would index nothing.
        complete = ingest_public(sandbox, docs, max(start + 0.3 * budget_s, t0 + MIN_INGEST_S))
        if not sandbox.store.documents():
            out.skipped["rag+prompting"] = (f"no document under {docs} could be ingested" if complete else
                                            "the time budget ran out before the documents were indexed")
            return
        if not complete:
            out.notes.append("the time budget ran out while ingesting: rag+prompting retrieved from the documents "
                             "ingested by then")
        ingest_s = time.perf_counter() - t0
        items, retrieval_s = [], []
        for example in measure.test:
            t = time.perf_counter()
            with embedding_cache_bypassed():  # latency includes embedding each new input
                hits = sandbox.retriever.retrieve(example.user_text, SANDBOX).hits[:RAG_K]
            retrieval_s.append(time.perf_counter() - t)
            items.append(with_context(example, [h.chunk.text for h in hits]))
    say(f"rag+prompting: generating {len(items)} held-out examples with retrieved passages")
    measure(base, "rag+prompting", prompting_how(len(demos), schema, f"the {RAG_K} chunks retrieved for the "
            "input in the system message, then "), shots=demos, until=start + 0.45 * budget_s, items=items,
            extra_s=retrieval_s, setup_s=ingest_s)


def fine_tune(out: GenerationBakeoff, measure: Measure, train: list[GenExample], test: list[GenExample],
               schema: dict[str, Any] | None, registry_root: Path | None, threads: int, seed: int, say: Tick,
               deadline: float) -> None:
    """fine-tuning: train a LoRA adapter for what is left before ``deadline`` (or say why not), then measure it."""
    from ragtune.tuning.generator.base import is_cached, load_base, resolve_base
    from ragtune.tuning.generator.served import tuned_generator
    from ragtune.tuning.generator.train import train_generator
    from ragtune.tuning.registry import Registry

    info = resolve_base()
    first = out.results[0]
    per_item = first.latency_p50_ms / 1000 if first.n else 1.0
    reserve = 3.0 + TUNED_SLOWDOWN * per_item * len(test)  # its evaluation: server start, then each example
    unknown = (0.0 if "trl" in sys.modules else IMPORT_S) + (0.0 if is_cached(info) else DEQUANTISE_S)
    if no_time(out, deadline, reserve + unknown):
        return
    t0 = time.perf_counter()
    # The slow, one-off parts happen here, so the time left for training is measured rather than guessed.
    say("fine-tuning: loading torch, transformers and trl")
    from trl import SFTTrainer  # noqa: F401  (trl loads its trainer, and transformers, lazily: load them now)
    if not is_cached(info):
        say("fine-tuning: converting the base model for training (once; cached afterwards)")
        load_base(info)
    if no_time(out, deadline, reserve):
        return
    budget = deadline - time.perf_counter() - reserve - FT_SETUP_S
    say(f"fine-tuning: LoRA on {len(train)} examples for up to {budget:.0f} s")

    def progress(stage: str, done: int, total: int, _metrics: dict[str, float]) -> None:
        say(f"fine-tuning: {stage} {done}/{total}")

    with tempfile.TemporaryDirectory(prefix="ragtune-advisor-") as tmp:
        registry = Registry(Path(registry_root) if registry_root is not None else Path(tmp))
        registry.root.mkdir(parents=True, exist_ok=True)
        try:
            with warnings.catch_warnings():  # transformers' deprecation notices are not the user's business
                warnings.simplefilter("ignore", FutureWarning)
                trained = train_generator(registry, TUNED_NAME, train, validation=test, schema=schema,
                                          epochs=FT_EPOCHS, time_budget=budget, seed=seed, threads=threads, shots=0,
                                          eval_limit=0, baseline=False, data_source=out.source, progress=progress)
        except RagtuneError as exc:
            out.skipped["fine-tuning"] = f"training failed: {exc}"
            return
        setup_s = time.perf_counter() - t0
        card, m = trained.card, trained.card.metrics
        stopped = " (stopped by the time budget)" if card.notes.get("stopped") == "time budget" else ""
        how = (f"LoRA adapter on SmolLM2-135M: {m['steps']} of {m['planned_steps']} steps ({FT_EPOCHS:g} epochs "
               f"planned) on {m['train_examples']} examples in {m['train_seconds']:.0f} s{stopped}; no examples in "
               "the prompt" + ("; decoding constrained to the schema" if schema is not None else ""))
        if stopped:
            out.notes.append(f"fine-tuning trained {m['steps']} of {m['planned_steps']} planned steps before the "
                             "time budget stopped it: a larger --budget may train a better model")
        if registry_root is not None:
            out.notes.append(f"the tuned adapter is registered as {TUNED_NAME} v{card.version} in {registry.root}")
        generator = tuned_generator(registry.root, f"{TUNED_NAME}@{card.version}", threads=threads)
        try:
            warm(generator)
            say(f"fine-tuning: generating {len(test)} held-out examples with the tuned model")
            measure(generator, "fine-tuning", how, shots=(), until=deadline, setup_s=setup_s,
                    train_s=float(m["train_seconds"]))
        finally:
            generator.close()


def no_time(out: GenerationBakeoff, deadline: float, more: float) -> bool:
    """Whether the budget is too short for fine-tuning (``more``: seconds needed besides the set-up and the
    shortest training worth measuring); if so, fine-tuning is marked skipped with the --budget that would do."""
    left = deadline - time.perf_counter()
    needed = more + FT_SETUP_S + MIN_TRAIN_S
    if left >= needed:
        return False
    out.skipped["fine-tuning"] = (f"the time budget ran out: {max(left, 0):.0f} s were left and fine-tuning needs "
                                  f"about {needed:.0f} s (loading the libraries and the model, {MIN_TRAIN_S:.0f} s of "
                                  "training at least, exporting the adapter, evaluating it); give --budget "
                                  f"{math.ceil(out.budget_s + needed - left + 30)} or more")
    return True
