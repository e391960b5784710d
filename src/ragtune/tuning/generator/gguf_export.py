"""Tuned generator weights back to GGUF, for llama.cpp to serve.

Two forms, following llama.cpp's own converters (``convert_lora_to_gguf.py``, ``convert_hf_to_gguf.py``):

- :func:`export_lora_gguf`: a LoRA adapter GGUF (``general.type = adapter``, ``adapter.type = lora``,
  ``adapter.lora.alpha``) holding ``<tensor>.lora_a`` (peft's ``lora_A``, ``[rank, in]``) and ``<tensor>.lora_b``
  (``lora_B``, ``[out, rank]``) for each adapted matrix; llama.cpp serves it on top of the unchanged base GGUF and
  scales it by ``alpha / rank`` as peft does.
- :func:`export_full_gguf`: a standalone model GGUF of fully fine-tuned (or merged) weights, with every metadata
  field of the base GGUF (tokenizer and chat template included) except its file type and quantization version.

llama.cpp stores the query and key projections of llama models with their rows permuted (the rotary halves
interleaved); transformers undoes that when it reads a GGUF, so exported q/k weights (and a LoRA's ``lora_b`` for
them) are permuted back the same way. Only the ``llama`` architecture is supported.

Files are written under a temporary name and renamed: a failed export never leaves a half-written GGUF.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ragtune.errors import ConfigError
from ragtune.tuning.generator.base import SUPPORTED_ARCHITECTURES, BaseInfo, read_gguf_header

LORA_KEY = re.compile(r"^(?:base_model\.model\.)?(?P<module>.+)\.lora_(?P<part>[AB])(?:\.[^.]+)?\.weight$")
"""A peft LoRA tensor name: ``[base_model.model.]<module>.lora_A|lora_B[.<adapter name>].weight``."""
SKIPPED_KEYS = ("general.architecture", "general.file_type", "general.quantization_version")
"""Base GGUF metadata not copied into a full export (the writer sets the architecture and file type itself)."""
FULL_DTYPES = ("f16", "q8_0", "f32")
"""Matrix types of a whole-model export: f16 (the default), q8_0 (8-bit blocks of 32: half the size, served
faster on a CPU) or f32; norms stay f32."""
COPIED_TENSORS = ("rope_freqs.weight",)
"""Base GGUF tensors that are not model weights (llama 3's rope scaling factors): copied into a full export."""


def permute_qk(weights: np.ndarray, n_head: int, n_head_kv: int | None = None) -> np.ndarray:
    """Rows of a q (``n_head_kv`` None) or k projection in llama.cpp's order, as ``convert_hf_to_gguf.py``'s
    ``LlamaModel.permute`` writes them: within each head, the two rotary halves interleaved. Works on any
    ``[out, ...]`` array, so also on a LoRA's ``lora_b``."""
    heads = n_head_kv if n_head_kv is not None and n_head_kv != n_head else n_head
    return (weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:])
            .swapaxes(1, 2)
            .reshape(weights.shape))


class _Base:
    """What the exports need from the base GGUF: its architecture, head counts and tensor shapes."""

    def __init__(self, info: BaseInfo, what: str) -> None:
        import gguf

        if info.architecture not in SUPPORTED_ARCHITECTURES:
            raise ConfigError(f"cannot export a {what} for a {info.architecture!r} model: GGUF export supports "
                              f"{', '.join(SUPPORTED_ARCHITECTURES)} bases")
        if info.gguf is None:
            raise ConfigError(f"cannot export a {what} GGUF: the base {info.name} is a Hugging Face folder, not a "
                              "GGUF; tune a .gguf base (convert the folder with llama.cpp's convert_hf_to_gguf.py)")
        if not info.gguf.is_file():
            raise ConfigError(f"{info.gguf}: the base GGUF is missing; it is needed to export the {what}")
        self.path = info.gguf
        self.arch = info.architecture
        self.header = read_gguf_header(info.gguf)
        if self.header.get("general.architecture") != self.arch:
            raise ConfigError(f"{info.gguf} is a {self.header.get('general.architecture')!r} GGUF, not the "
                              f"{self.arch!r} base it was resolved as: resolve the base again")

        def number(key: str, default: int | None = None) -> int:
            value = self.header.get(f"{self.arch}.{key}", default)
            if value is None:
                raise ConfigError(f"{info.gguf}: no {self.arch}.{key} in the GGUF metadata")
            return int(value)

        self.n_blocks = number("block_count")
        self.n_head = number("attention.head_count")
        self.n_head_kv = number("attention.head_count_kv", self.n_head)
        self.shapes = {name: dims for name, (dims, _, _) in self.header.tensors.items()}
        arch_enum = next(k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == self.arch)
        self.names = gguf.get_tensor_name_map(arch_enum, self.n_blocks)

    def gguf_name(self, hf_name: str) -> str | None:
        """``blk.0.attn_q.weight`` for ``model.layers.0.self_attn.q_proj.weight`` (None if unknown)."""
        return self.names.get_name(hf_name, try_suffixes=(".weight", ".bias"))

    def permuted(self, gguf_name: str, rows: np.ndarray) -> np.ndarray:
        """``rows`` (a weight or a ``lora_b``) in llama.cpp's row order for ``gguf_name``."""
        if gguf_name.endswith("attn_q.weight"):
            return permute_qk(rows, self.n_head)
        if gguf_name.endswith("attn_k.weight"):
            return permute_qk(rows, self.n_head, self.n_head_kv)
        return rows


def _numpy(tensor: Any) -> np.ndarray:
    """A torch tensor (or array) as a contiguous float32 numpy array."""
    if hasattr(tensor, "detach"):
        tensor = tensor.detach().to("cpu").float().numpy()
    return np.ascontiguousarray(np.asarray(tensor, dtype=np.float32))


def _write(writer: Any, target: Path) -> None:
    """Finish ``writer`` (opened on ``target``'s temporary name) and rename it to ``target``."""
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.replace(writer.path, target)


def _temp_name(target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    return target.with_name(f".{target.name}.{os.getpid()}.tmp")


def lora_pairs(peft_model_or_state: Any) -> dict[str, tuple[Any, Any]]:
    """``{hf module name: (lora_A, lora_B)}`` from a peft model or its (adapter) state dict. ConfigError for a
    tensor a llama.cpp LoRA adapter cannot hold (trained embeddings, biases, DoRA magnitudes) or a half pair."""
    state = peft_model_or_state
    if not isinstance(state, dict):
        from peft import get_peft_model_state_dict

        state = get_peft_model_state_dict(peft_model_or_state)
    parts: dict[str, dict[str, Any]] = {}
    for key, value in state.items():
        match = LORA_KEY.match(key)
        if match is None:
            raise ConfigError(f"LoRA tensor {key!r} cannot go in a llama.cpp adapter (only lora_A/lora_B of linear "
                              "layers can); train without modules_to_save, bias or DoRA, or export the full model")
        parts.setdefault(match["module"], {})[match["part"]] = value
    if not parts:
        raise ConfigError("the LoRA has no lora_A/lora_B tensors: nothing to export")
    pairs = {}
    for module, ab in parts.items():
        if set(ab) != {"A", "B"}:
            raise ConfigError(f"LoRA module {module} has lora_{''.join(ab)} but not its pair")
        pairs[module] = (ab["A"], ab["B"])
    return pairs


def llama_cpp_alpha(peft_model_or_state: Any, alpha: float, rank: int) -> float:
    """The ``adapter.lora.alpha`` that makes llama.cpp's scale (``alpha / rank``) equal peft's: ``alpha``, or
    ``alpha * sqrt(rank)`` for a peft model trained with rsLoRA (scale ``alpha / sqrt(rank)``). ConfigError for
    per-module ranks or alphas, which one adapter alpha cannot express."""
    configs = getattr(peft_model_or_state, "peft_config", None)
    if not isinstance(configs, dict):
        return float(alpha)
    config = configs.get(getattr(peft_model_or_state, "active_adapter", "default"))
    if getattr(config, "rank_pattern", None) or getattr(config, "alpha_pattern", None):
        raise ConfigError("the LoRA has per-module ranks or alphas (rank_pattern/alpha_pattern), which a llama.cpp "
                          "adapter cannot hold: train with one rank and alpha, or export the full model")
    return float(alpha) * rank**0.5 if getattr(config, "use_rslora", False) else float(alpha)


def export_lora_gguf(peft_model_or_state: Any, info: BaseInfo, target: Path, *, alpha: float, rank: int) -> Path:
    """Write the LoRA of ``peft_model_or_state`` (a peft model, or a state dict with keys such as
    ``base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight``) as a llama.cpp adapter GGUF at ``target``
    for the base ``info`` (whose GGUF it is served on), and return ``target``.

    ``alpha``/``rank``: peft's ``lora_alpha`` and ``r`` (the adapter is scaled by ``alpha / rank``, or by
    ``alpha / sqrt(rank)`` for a peft model trained with rsLoRA; ``rank`` must match the tensors). Tensors are
    float32, named ``<base tensor>.lora_a``/``.lora_b``; ``lora_b`` of q and k projections is permuted like the
    base's rows. ConfigError for an unsupported architecture, a Hugging Face
    folder base, or a LoRA on a matrix the base GGUF does not have.
    """
    import gguf

    base = _Base(info, "LoRA adapter")
    llama_cpp_alpha(peft_model_or_state, alpha, rank)  # refuse per-module alphas before any work
    tensors: list[tuple[str, np.ndarray]] = []
    for module, (lora_a, lora_b) in sorted(lora_pairs(peft_model_or_state).items()):
        name = base.gguf_name(module + ".weight")
        if name is None or name not in base.shapes:
            raise ConfigError(f"the LoRA adapts {module}, which the base GGUF {info.name} has no tensor for; "
                              "target only attention and MLP projections (not lm_head or embeddings)")
        a, b = _numpy(lora_a), _numpy(lora_b)
        if a.ndim != 2 or b.ndim != 2 or a.shape[0] != rank or b.shape[1] != rank:
            raise ConfigError(f"LoRA {module}: lora_A {tuple(a.shape)} and lora_B {tuple(b.shape)} do not have "
                              f"rank {rank}; pass the rank the adapter was trained with")
        if base.shapes[name] != (a.shape[1], b.shape[0]):
            raise ConfigError(f"LoRA {module} is {b.shape[0]}x{a.shape[1]} but the base's {name} is "
                              f"{base.shapes[name][1]}x{base.shapes[name][0]}: the adapter was trained on another "
                              "base")
        tensors.append((name + ".lora_a", a))
        tensors.append((name + ".lora_b", np.ascontiguousarray(base.permuted(name, b))))
    tmp = _temp_name(target)
    try:
        writer = gguf.GGUFWriter(tmp, base.arch)
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, llama_cpp_alpha(peft_model_or_state, alpha, rank))
        writer.add_file_type(gguf.LlamaFileType.ALL_F32)
        for name, array in tensors:
            writer.add_tensor(name, array)
        _write(writer, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _model_tensors(model: Any, base: _Base, dtype: str) -> Iterator[tuple[str, np.ndarray]]:
    """The model's weights under GGUF names, in llama.cpp's layout and types (1-D tensors float32)."""
    state = model.state_dict()
    if any(".lora_" in key for key in state):
        raise ConfigError("the model still holds LoRA layers: merge the LoRA into the model first "
                          "(merge_and_unload()), or export it as an adapter")
    embed = state.get("model.embed_tokens.weight")
    head = state.get("lm_head.weight")
    tied = head is not None and embed is not None and (
        getattr(model.config, "tie_word_embeddings", False) or head.data_ptr() == embed.data_ptr())
    for key, tensor in state.items():
        if key == "lm_head.weight" and tied:
            continue  # llama.cpp reuses token_embd.weight when there is no output.weight
        if key.endswith("rotary_emb.inv_freq"):
            continue
        name = base.gguf_name(key)
        if name is None:
            raise ConfigError(f"model tensor {key} has no GGUF name for a {base.arch} model: is it the base's "
                              "architecture?")
        array = _numpy(tensor)
        expected = base.shapes.get(name)
        if expected is not None and expected != tuple(reversed(array.shape)):
            raise ConfigError(f"model tensor {key} is {tuple(array.shape)} but the base's {name} is "
                              f"{tuple(reversed(expected))}: the model was not tuned from {base.path.name}")
        array = base.permuted(name, array)
        if array.ndim > 1 and dtype == "f16":
            array = array.astype(np.float16)
        yield name, np.ascontiguousarray(array)


def _add_tensor(writer: Any, name: str, array: np.ndarray, dtype: str) -> None:
    """Add one tensor; with ``q8_0`` a matrix whose rows split into whole blocks is quantised (gguf-py's
    reference quantiser, as llama.cpp's converter does), any other matrix is written f16."""
    import gguf

    qtype = gguf.GGMLQuantizationType.Q8_0
    if dtype == "q8_0" and array.ndim > 1:
        if array.shape[-1] % gguf.GGML_QUANT_SIZES[qtype][0] == 0:
            writer.add_tensor(name, gguf.quants.quantize(array, qtype), raw_dtype=qtype)
            return
        array = array.astype(np.float16)
    writer.add_tensor(name, array)


def export_full_gguf(model: Any, info: BaseInfo, target: Path, *, dtype: str = "f16") -> Path:
    """Write ``model`` (a transformers causal LM tuned from ``info``, e.g. fully fine-tuned or a merged LoRA) as a
    standalone GGUF at ``target`` that llama.cpp serves on its own, and return ``target``.

    Metadata: every field of the base GGUF (tokenizer, chat template, hyperparameters) except its file type and
    quantization version. Tensors: matrices in ``dtype`` (``f16``, ``q8_0`` or ``f32``), norms in f32, q/k rows
    permuted;
    tied embeddings stay tied (no ``output.weight``). ConfigError for an unsupported architecture or a base
    without a GGUF.
    """
    import gguf

    if dtype not in FULL_DTYPES:
        raise ConfigError(f"GGUF export dtype {dtype!r}: choose one of {', '.join(FULL_DTYPES)}")
    base = _Base(info, "full model")
    tmp = _temp_name(target)
    try:
        writer = gguf.GGUFWriter(tmp, base.arch)
        for key, (value, kind, item) in base.header.fields.items():
            if key not in SKIPPED_KEYS:
                writer.add_key_value(key, value, gguf.GGUFValueType(kind),
                                     sub_type=None if item is None else gguf.GGUFValueType(item))
        writer.add_file_type({"f16": gguf.LlamaFileType.MOSTLY_F16, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
                              "f32": gguf.LlamaFileType.ALL_F32}[dtype])
        written = set()
        for name, array in _model_tensors(model, base, dtype):
            _add_tensor(writer, name, array, dtype)
            written.add(name)
        for name in COPIED_TENSORS:
            if name in base.header.tensors and name not in written:
                dims, kind, offset = base.header.tensors[name]
                if kind != gguf.GGMLQuantizationType.F32:
                    raise ConfigError(f"{info.gguf}: {name} is not float32; cannot copy it")
                data = np.fromfile(base.path, dtype=np.float32, count=int(np.prod(dims)),
                                   offset=base.header.data_start + offset)
                writer.add_tensor(name, data.reshape(tuple(reversed(dims))))
                written.add(name)
        missing = sorted(set(base.shapes) - written)
        if missing:
            raise ConfigError(f"the model has no weights for {', '.join(missing[:5])} of the base "
                              f"{info.name}: it was not tuned from this base")
        _write(writer, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target
