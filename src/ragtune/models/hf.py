"""Hugging Face and ONNX plumbing shared by the embedder and the fine-tuned models, one copy each: the offline
environment, quiet loading, torch's thread count, tokenizers padded per batch, ONNX export and sessions.

Heavy libraries (torch, transformers, onnxruntime, tokenizers) are imported inside the functions that use them.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
"""Every model ships on local disk, so the hub is never asked; tokenizers must not fork their own threads
on shared cores. A value already in the environment wins."""


def offline() -> None:
    """Set :data:`OFFLINE_ENV` (call before importing transformers or sentence-transformers)."""
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence transformers' load reports and progress bars (the caller reports progress itself)."""
    from transformers.utils import logging as hf_logging

    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run torch with ``threads`` intra-op threads inside the block, then give the calling thread its previous
    count back. (With torch's OpenMP backend the count belongs to the calling thread; threads started later
    inherit the last count set.)"""
    import torch

    before = torch.get_num_threads()
    if before != threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def load_tokenizer(path: Path | str, max_length: int | None) -> Any:
    """A fast tokenizer from ``tokenizer.json`` that never pads (batches are padded to their longest text by
    :func:`pad`) and truncates at ``max_length`` tokens (``None``: never, for counting)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(path))
    tok.no_padding()  # packaged tokenizers may pad everything to a fixed length
    if max_length is None:
        tok.no_truncation()
    else:
        tok.enable_truncation(max_length=max_length)
    return tok


def pad(ids: Sequence[Sequence[int]], masks: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Token ids and attention masks as int64 arrays padded to the longest row ([PAD] is id 0, mask 0)."""
    width = max((len(row) for row in ids), default=0)
    out_ids = np.zeros((len(ids), width), dtype=np.int64)
    out_mask = np.zeros((len(ids), width), dtype=np.int64)
    for i, (row, m) in enumerate(zip(ids, masks, strict=True)):
        out_ids[i, : len(row)] = row
        out_mask[i, : len(m)] = m
    return out_ids, out_mask


def ids_and_mask_module(model: Any, output: str) -> Any:
    """``model`` as (input_ids, attention_mask) -> ``output`` of its result, with all-zero token types (as
    MiniLM was trained), in eval mode: the graph the ONNX tracer records."""
    import torch

    class IdsAndMask(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            result = self.inner(input_ids=input_ids, attention_mask=attention_mask,
                                token_type_ids=torch.zeros_like(input_ids))
            return getattr(result, output)

    return IdsAndMask(model).eval()


def export_onnx(module: Any, ids: np.ndarray, mask: np.ndarray, target: Path, output: str,
                output_axes: dict[int, str], token_types: np.ndarray | None = None) -> Path:
    """Trace ``module(input_ids, attention_mask[, token_type_ids])`` on example inputs into ``target`` (opset 17,
    batch and sequence axes of the inputs dynamic, ``output_axes`` of the output) and return ``target``.
    ``token_types`` given: the module takes them as a third input (a cross-encoder's segment ids).

    Written to a temporary name and renamed: a concurrent or killed export never leaves a half-written model.
    """
    import torch

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    names = ["input_ids", "attention_mask"] + (["token_type_ids"] if token_types is not None else [])
    dynamic_axes: dict[str, dict[int, str]] = {n: {0: "batch", 1: "sequence"} for n in names}
    dynamic_axes[output] = output_axes
    inputs = tuple(torch.from_numpy(a) for a in (ids, mask, token_types) if a is not None)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter is deprecated but needs no onnxscript
            torch.onnx.export(
                module, inputs, str(tmp), input_names=names, output_names=[output], dynamic_axes=dynamic_axes,
                opset_version=17, do_constant_folding=True, dynamo=False,
            )
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def onnx_session(path: Path, threads: int) -> Any:
    """An onnxruntime CPU session tuned for serving on a small shared machine."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Spinning workers wait for work by burning their core; on shared cores that doubled single-text latency.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def cache_dir() -> Path:
    """Where derived model files (such as the embedder's ONNX export) are kept: ``$RAGTUNE_CACHE`` or
    ``~/.cache/ragtune``."""
    return Path(os.environ.get("RAGTUNE_CACHE") or Path.home() / ".cache" / "ragtune")
