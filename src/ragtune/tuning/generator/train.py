"""Supervised fine-tuning of a local chat model (LoRA or full) and its registration as a model of kind
``generator``.

The base is the packaged SmolLM2-135M-Instruct GGUF unless ``base`` names another local model
(:mod:`~ragtune.tuning.generator.base`). Training is trl's ``SFTTrainer`` on prompt/completion conversations,
the loss on the reply's tokens only; checkpoints are written every ``save_every`` steps under the registry's
``.checkpoints/NAME`` so a crashed or stopped run resumes (``resume=True``) with the same data and settings. The
tuned weights are written back as GGUF (:mod:`~ragtune.tuning.generator.gguf_export`: a LoRA adapter served on
the base, or a whole model) and measured against the base model with a few-shot prompt in the same run
(:mod:`~ragtune.tuning.generator.evaluate`), with and without schema-constrained decoding.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from ragtune.errors import ConfigError, DataError
from ragtune.models.hf import offline, quiet, torch_threads
from ragtune.tuning.generator.audit import GenAudit, audit_examples
from ragtune.tuning.generator.data import GenExample, examples_digest
from ragtune.tuning.registry import ModelCard, Registry, check_name

Progress = Callable[[str, int, int, dict[str, float]], None]
KIND = "generator"
METHODS = ("lora", "full")
ADAPTER_FILE = "adapter.gguf"
FULL_FILE = "model.gguf"
SCHEMA_FILE = "schema.json"
DEFAULT_LR = {"lora": 2e-4, "full": 2e-5}


@dataclass
class TrainedGenerator:
    """What one run produced: the card, its registry folder and the before/after rows (also on the card)."""

    card: ModelCard
    folder: Path
    rows: list[dict[str, Any]] = field(default_factory=list)


def split_examples(examples: Sequence[GenExample], holdout: float, seed: int
                   ) -> tuple[list[GenExample], list[GenExample]]:
    """(train, held out): a seeded ``holdout`` share of the distinct prompts held out, every example of a prompt
    on the same side (duplicates never straddle the split); nothing held out below 5 prompts."""
    prompts = sorted({e.prompt_key() for e in examples})
    if holdout <= 0 or len(prompts) < 5:
        return list(examples), []
    random.Random(seed).shuffle(prompts)
    held = set(prompts[:max(1, round(holdout * len(prompts)))])
    return [e for e in examples if e.prompt_key() not in held], [e for e in examples if e.prompt_key() in held]


def _rows(examples: Sequence[GenExample]) -> list[dict[str, Any]]:
    return [{"prompt": e.messages, "completion": [{"role": "assistant", "content": e.target}]} for e in examples]


def _run_digest(data_sha: str, params: dict[str, Any], base_fingerprint: str) -> str:
    blob = json.dumps({"data": data_sha, "params": params, "base": base_fingerprint}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _checkpoint_dir(registry: Registry, name: str, digest: str, resume: bool) -> tuple[Path, bool]:
    """The run's checkpoint folder and whether a checkpoint in it is resumed. A folder left by another run (other
    data or settings) is an error when resuming and is cleared otherwise."""
    folder = registry.root / ".checkpoints" / name
    run_file = folder / "run.json"
    saved = json.loads(run_file.read_text(encoding="utf-8")).get("digest") if run_file.is_file() else None
    has_checkpoint = folder.is_dir() and any(p.name.startswith("checkpoint-") for p in folder.iterdir())
    if resume and has_checkpoint:
        if saved != digest:
            raise ConfigError(f"{folder} holds a checkpoint of a run with other data, settings or base model: run "
                              "again without --resume to start over (the old checkpoint is then removed)")
        return folder, True
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    run_file.write_text(json.dumps({"digest": digest}), encoding="utf-8")
    return folder, False


def _callbacks(total_hint: int, time_budget: float | None, progress: Progress | None) -> tuple[Any, dict[str, Any]]:
    """A transformers callback reporting progress (step, loss) and stopping at the time budget, and the dict it
    fills (``stopped``, ``losses``, ``seconds``)."""
    from transformers import TrainerCallback

    record: dict[str, Any] = {"stopped": "finished", "losses": [], "seconds": 0.0}

    class Report(TrainerCallback):
        started = 0.0

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.started = time.monotonic()

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
            if logs and "loss" in logs:  # logged every step, after on_step_end: the step's own loss
                record["losses"].append(float(logs["loss"]))
                if progress is not None:
                    progress("train", state.global_step, state.max_steps or total_hint, {"loss": record["losses"][-1]})

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            record["seconds"] = time.monotonic() - self.started
            if time_budget is not None and record["seconds"] >= time_budget and state.global_step < state.max_steps:
                record["stopped"] = "time budget"
                control.should_training_stop = True
                control.should_save = True
            return control

    return Report(), record


def train_generator(
    registry: Registry, name: str, examples: Sequence[GenExample], *,
    validation: Sequence[GenExample] | None = None, schema: dict[str, Any] | None = None, method: str = "lora",
    base: Path | None = None, epochs: float = 1.0, learning_rate: float | None = None, batch_size: int = 8,
    max_length: int = 256, lora_rank: int = 16, lora_alpha: int = 32, merge: bool = False, gguf_type: str = "f16",
    time_budget: float | None = None,
    holdout: float = 0.1, seed: int = 0, threads: int = 2, resume: bool = False, save_every: int = 50,
    shots: int = 5, eval_limit: int = 100, max_new_tokens: int = 128, baseline: bool = True, data_source: str = "",
    progress: Progress | None = None, audit: GenAudit | None = None, cache_dir: Path | None = None,
) -> TrainedGenerator:
    """Audit ``examples`` (``audit``: theirs when the caller already made it), fine-tune the base model on them
    (``method`` ``lora`` or ``full``), write the tuned weights as GGUF (a LoRA as an adapter, or with ``merge``
    merged into the base and written whole, which llama.cpp serves faster; a whole model's matrices in
    ``gguf_type``: f16, q8_0 or f32), measure base-with-``shots``-examples
    against the tuned model on the held-out examples (``validation``, else a ``holdout`` share of the prompts;
    at most ``eval_limit``), with and without ``schema``-constrained decoding, register the model as the next
    version of ``name`` (kind ``generator``) with ``report.md`` and ``report.html`` beside it, and return it.

    Targets that do not validate against ``schema`` are left out of training. ``time_budget`` (seconds of
    training) stops after the step that crosses it; the model trained so far is saved and registered, and the
    card says it was stopped. A crash leaves the last checkpoint: the same call with ``resume=True`` goes on
    from it. ``baseline=False`` measures the tuned model only (when the base's rows are known already)."""
    check_name(name)
    if method not in METHODS:
        raise ConfigError(f"unknown --method {method!r}: use lora (an adapter on the base) or full (all weights)")
    if merge and method != "lora":
        raise ConfigError("--merge merges a LoRA into the base: it applies to --method lora only (a full "
                          "fine-tune is already a whole model)")
    from ragtune.tuning.generator.gguf_export import FULL_DTYPES

    if gguf_type not in FULL_DTYPES:
        raise ConfigError(f"--gguf-type {gguf_type!r}: choose one of {', '.join(FULL_DTYPES)}")
    if gguf_type != "f16" and method == "lora" and not merge:
        raise ConfigError("--gguf-type sets the type of a whole model file: add --merge (or use --method full); "
                          "an adapter is always float32")
    train_all = list(examples)
    held_given = list(validation) if validation is not None else None
    if audit is None:
        audit = audit_examples(train_all, held_given, schema)
    if audit.blocking:
        raise DataError("cannot train the generator: " + "; ".join(audit.blocking))
    invalid = {i["where"] for i in audit.invalid}
    usable = [e for e in train_all if e.where not in invalid]
    train, held = (usable, held_given) if held_given is not None else split_examples(usable, holdout, seed)
    if not train:
        raise DataError("no training example left once the held-out prompts are set aside: add examples, or lower "
                        "--holdout")
    lr = learning_rate if learning_rate is not None else DEFAULT_LR[method]
    params: dict[str, Any] = dict(method=method, epochs=epochs, learning_rate=lr, batch_size=batch_size,
                                  max_length=max_length, seed=seed, holdout=holdout if validation is None else None,
                                  time_budget=time_budget, shots=shots)
    if method == "lora":
        params |= dict(lora_rank=lora_rank, lora_alpha=lora_alpha)

    from ragtune.tuning.generator.base import load_base, resolve_base

    info = resolve_base(base, cache_dir)
    if info.gguf is None:  # before the training, not after it
        raise ConfigError(f"{info.folder}: a Hugging Face folder cannot be served by llama.cpp after tuning; convert "
                          "it with llama.cpp's convert_hf_to_gguf.py and pass the .gguf as --base")
    data_sha = examples_digest(train)
    folder, resuming = _checkpoint_dir(registry, name, _run_digest(data_sha, params, info.fingerprint), resume)
    if method == "lora":
        params["merged"] = merge  # how it is exported, not how it trains: a checkpoint resumes either way
    if served_as(params) == "full":
        params["gguf_type"] = gguf_type
    if progress is not None:
        progress("load", 0, 1, {})
    offline()
    with torch_threads(threads):
        model, tokenizer = load_base(info)
        trainer, state = _trainer(model, tokenizer, train, folder, params, save_every, time_budget, progress)
        with quiet():
            trainer.train(resume_from_checkpoint=True if resuming else None)
        tuned = trainer.model.eval()
        staging = Path(tempfile.mkdtemp(prefix=".stage-", dir=registry.root))
        try:
            served = _export(tuned, info, staging, method, lora_alpha, lora_rank, schema, merge, gguf_type)
            from ragtune.tuning.generator.compare import before_after

            rows, samples = before_after(info, served, served_as(params), train, held[:eval_limit], schema=schema,
                                         shots=shots, seed=seed, threads=threads, max_new_tokens=max_new_tokens,
                                         progress=progress, count_tokens=_token_counter(tokenizer),
                                         baseline=baseline)
            card = _card(name, info, train, held, audit, trainer.state, state, params, rows, data_source, staging,
                         validation is not None, data_sha)
            card = registry.register(name, cast(Any, _Staged(staging)), card)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    out = registry.path(name, card.version)
    _write_reports(out, card, rows, audit, samples)
    shutil.rmtree(folder, ignore_errors=True)  # registered: the checkpoints are no longer needed
    return TrainedGenerator(card, out, rows)


def _token_counter(tokenizer: Any) -> Callable[[str], int]:
    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    return count


def _trainer(model: Any, tokenizer: Any, train: list[GenExample], folder: Path, params: dict[str, Any],
             save_every: int, time_budget: float | None, progress: Progress | None) -> tuple[Any, dict[str, Any]]:
    import datasets
    import torch
    from datasets import Dataset
    from transformers import PrinterCallback
    from trl import SFTConfig, SFTTrainer

    datasets.disable_progress_bars()  # the caller's progress bar is the one shown

    total = max(1, math.ceil(len(train) / params["batch_size"] * params["epochs"]))
    callback, state = _callbacks(total, time_budget, progress)
    config = SFTConfig(
        output_dir=str(folder), per_device_train_batch_size=params["batch_size"], num_train_epochs=params["epochs"],
        learning_rate=params["learning_rate"], lr_scheduler_type="linear", warmup_steps=total // 10,
        weight_decay=0.0, logging_steps=1, save_strategy="steps", save_steps=max(1, save_every), save_total_limit=1,
        report_to="none", use_cpu=not torch.cuda.is_available(), gradient_checkpointing=False,
        max_length=params["max_length"], dataloader_pin_memory=False, disable_tqdm=True, seed=params["seed"],
        data_seed=params["seed"], completion_only_loss=True, log_level="error")
    peft_config = None
    if params["method"] == "lora":
        from peft import LoraConfig

        peft_config = LoraConfig(r=params["lora_rank"], lora_alpha=params["lora_alpha"], lora_dropout=0.0,
                                 target_modules="all-linear", task_type="CAUSAL_LM")
    with quiet():
        trainer = SFTTrainer(model=model, args=config, train_dataset=Dataset.from_list(_rows(train)),
                             processing_class=tokenizer, peft_config=peft_config, callbacks=[callback])
    trainer.remove_callback(PrinterCallback)  # it prints every log dict; the caller's progress shows the loss
    return trainer, state


def served_as(params: dict[str, Any]) -> str:
    """How a run's tuned weights are served: ``lora`` (an adapter applied on the base at run time) or ``full``
    (one whole GGUF: a full fine-tune, or a LoRA merged into the base at export)."""
    return "lora" if params["method"] == "lora" and not params.get("merged") else "full"


def _export(model: Any, info: Any, staging: Path, method: str, alpha: int, rank: int,
            schema: dict[str, Any] | None, merge: bool = False, gguf_type: str = "f16") -> Path:
    """Write the served GGUF (adapter, or whole model: fully tuned or a merged LoRA) and the schema into
    ``staging``; returns the GGUF's path."""
    from ragtune.tuning.generator.gguf_export import export_full_gguf, export_lora_gguf

    if schema is not None:
        (staging / SCHEMA_FILE).write_text(json.dumps(schema, indent=2), encoding="utf-8")
    if method == "lora":
        model.save_pretrained(str(staging / "peft"))  # the adapter in peft's format too, for merging elsewhere
        if not merge:
            return cast(Path, export_lora_gguf(model, info, staging / ADAPTER_FILE, alpha=float(alpha), rank=rank))
        model = model.merge_and_unload()  # base + B·A·alpha/r in every adapted matrix; the peft copy is saved
    return cast(Path, export_full_gguf(model, info, staging / FULL_FILE, dtype=gguf_type))


class _Staged:
    """What ``Registry.register`` saves: the staging folder's files, moved into the new version's ``model/``."""

    def __init__(self, staging: Path) -> None:
        self.staging = staging

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        for item in self.staging.iterdir():
            shutil.move(str(item), folder / item.name)


def _card(name: str, info: Any, train: list[GenExample], held: list[GenExample], audit: GenAudit, trainer_state: Any,
          state: dict[str, Any], params: dict[str, Any], rows: list[dict[str, Any]], data_source: str, staging: Path,
          validation_file: bool, data_sha: str) -> ModelCard:
    from ragtune.tuning.generator.base import files_sha256

    gguf = staging / (ADAPTER_FILE if served_as(params) == "lora" else FULL_FILE)
    planned = int(trainer_state.max_steps or 0)
    metrics: dict[str, Any] = {"train_examples": len(train), "heldout_examples": len(held),
                               "steps": int(trainer_state.global_step), "planned_steps": planned,
                               "final_loss": state["losses"][-1] if state["losses"] else math.nan,
                               "train_seconds": round(state["seconds"], 1)}
    tuned = [r for r in rows if r["config"].startswith("tuned")]
    for r in tuned:
        suffix = "_schema" if "schema" in r["config"] else ""
        metrics |= {f"heldout_{k}{suffix}": v for k, v in r.items() if k != "config" and isinstance(v, float)}
    return ModelCard(
        name=name, version=0, method=KIND, classes=[], data_sha256=data_sha, data_source=data_source,
        created=time.time(), metrics=metrics,
        params={**params, "base": info.name, "base_fingerprint": info.fingerprint,
                "base_gguf": _base_path(info), "architecture": info.architecture,
                "schema": SCHEMA_FILE if (staging / SCHEMA_FILE).is_file() else None,
                "system_prompt": shared_system_prompt(train)},
        notes={"kind": KIND, "stopped": state["stopped"], "audit": audit.counts(), "comparison": rows,
               "holdout_unit": "validation file" if validation_file else "prompt",
               "served_file": gguf.name, "gguf_sha256": files_sha256([gguf]), "gguf_bytes": gguf.stat().st_size},
    )


def shared_system_prompt(examples: Sequence[GenExample]) -> str | None:
    """The system turn every example starts with, when they all share one (a pipeline's generate step then
    sends it before the input, as in training); else None."""
    first = {e.prompt[0][1] if e.prompt and e.prompt[0][0] == "system" else None for e in examples}
    return next(iter(first)) if len(first) == 1 else None


def _base_path(info: Any) -> str | None:
    """The base GGUF's path for the card, or None for the packaged model (found again wherever it is installed)."""
    from ragtune.models.generator import local_gguf_path

    if info.gguf is None or Path(info.gguf).resolve() == local_gguf_path().resolve():
        return None
    return str(info.gguf)


def _write_reports(folder: Path, card: ModelCard, rows: list[dict[str, Any]], audit: GenAudit,
                   samples: list[tuple[str, str, str]]) -> None:
    from dataclasses import asdict

    from ragtune.tuning.generator.report import report_html, report_markdown

    card_like = asdict(card) | {"base": card.params["base"], "method": card.params["method"]}
    (folder / "report.md").write_text(report_markdown(card_like, rows, audit.lines(), samples), encoding="utf-8")
    (folder / "report.html").write_text(report_html(card_like, rows, audit.lines(), samples), encoding="utf-8")
