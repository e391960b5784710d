"""``generator.kind: tuned``: a generator fine-tuned by ``ragtune tune generator``, served by llama.cpp.

The registry version's ``model/`` holds either ``adapter.gguf`` (LoRA, applied on the base GGUF its card names)
or ``model.gguf`` (full fine-tuning, or a LoRA merged into the base at export: served alone), and
``schema.json`` when it was trained with an output schema. An adapter is only ever served on the base it was
trained on: the card's base fingerprint is checked against the base file before the server starts, so a replaced
base fails with a clear error instead of writing nonsense.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ragtune.errors import ConfigError
from ragtune.models.generator import LlamaCppGenerator

TRAIN_COMMAND = "ragtune tune generator DATA.jsonl"
UNSET_HINT = "set generator.kind back to extractive or llamacpp in ragtune.yaml"


def resolve_tuned(models_dir: Path, spec: str) -> tuple[Path, int, Any]:
    """(``model/`` folder, version, card) of the tuned generator ``spec`` (``NAME`` or ``NAME@VERSION``) names."""
    from ragtune.config import parse_registry_spec, reader_spec
    from ragtune.tuning.registry import resolve_served

    parsed = parse_registry_spec(reader_spec(spec))
    if parsed is None:
        raise ConfigError(f"generator.model {spec!r}: expected NAME or NAME@VERSION of a model trained by "
                          f"`{TRAIN_COMMAND}`")
    name, version = parsed
    return resolve_served(Path(models_dir), f"registry:{spec}", name, version, "generator", TRAIN_COMMAND,
                          UNSET_HINT)


class TunedGenerator(LlamaCppGenerator):
    """A fine-tuned generator served by llama.cpp: the base GGUF with a LoRA adapter, or a whole tuned GGUF.
    ``schema``: the output schema it was trained with (None without one); ``spec``: ``NAME@VERSION``;
    ``system_prompt``: the system turn all its training examples shared (None when they did not)."""

    def __init__(self, model_path: Path | None, *, lora_path: Path | None, schema: dict[str, Any] | None, spec: str,
                 system_prompt: str | None = None, n_ctx: int = 4096, threads: int = 2) -> None:
        super().__init__(model_path=model_path, lora_path=lora_path, n_ctx=n_ctx, threads=threads)
        self.schema, self.spec, self.system_prompt = schema, spec, system_prompt
        self.name = f"tuned:{spec}"


def tuned_generator(models_dir: Path, spec: str, *, threads: int = 2, n_ctx: int = 4096) -> TunedGenerator:
    """The generator serving the tuned model ``spec`` names (config only: nothing loads until ``warm_up``)."""
    from ragtune.tuning.generator.base import resolve_base
    from ragtune.tuning.generator.train import ADAPTER_FILE

    folder, version, card = resolve_tuned(models_dir, spec)
    served = folder / str(card.notes.get("served_file", ""))
    if not served.is_file():
        raise ConfigError(f"{folder} has no {served.name or 'GGUF file'}: train it again with `{TRAIN_COMMAND} "
                          f"--name {card.name}`")
    schema_file = folder / "schema.json"
    schema = json.loads(schema_file.read_text(encoding="utf-8")) if schema_file.is_file() else None
    system = card.params.get("system_prompt")
    if served.name != ADAPTER_FILE:  # a whole model: fully tuned, or a LoRA merged at export
        return TunedGenerator(served, lora_path=None, schema=schema, spec=f"{card.name}@{version}",
                              system_prompt=system, n_ctx=n_ctx, threads=threads)
    base_path = card.params.get("base_gguf")
    info = resolve_base(Path(base_path) if base_path else None)
    if info.fingerprint != card.params.get("base_fingerprint"):
        raise ConfigError(f"{card.name} v{version} is an adapter for the base model {card.params.get('base')} "
                          f"with fingerprint {str(card.params.get('base_fingerprint'))[:12]}…, but "
                          f"{info.gguf} now has {info.fingerprint[:12]}…: restore that base or train again")
    return TunedGenerator(info.gguf, lora_path=served, schema=schema, spec=f"{card.name}@{version}",
                          system_prompt=system, n_ctx=n_ctx, threads=threads)
