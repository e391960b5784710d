"""The packaged SmolLM2-135M-Instruct as a tuning base, dequantised once per session (about 20 s; kept between
sessions when ``$RAGTUNE_CACHE`` names a cache), and its float32 GGUF re-export."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ragtune.tuning.generator.base import BaseInfo, load_base, resolve_base


@pytest.fixture(scope="session")
def base_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``$RAGTUNE_CACHE`` when set (the dequantised base is then reused by later sessions), else a session
    folder."""
    raw = os.environ.get("RAGTUNE_CACHE")
    return Path(raw) if raw else tmp_path_factory.mktemp("ragtune-cache")


@pytest.fixture(scope="session")
def smollm_base(base_cache: Path) -> tuple[BaseInfo, Any, Any]:
    """(BaseInfo, float32 transformers model, tokenizer) of the packaged GGUF, dequantised into ``base_cache`` on
    first use. The model is shared by the session: wrap a fresh ``load_base`` copy to change weights."""
    info = resolve_base(cache_dir=base_cache)
    model, tokenizer = load_base(info)
    return info, model, tokenizer


@pytest.fixture(scope="module")
def f32_base(smollm_base: tuple[BaseInfo, Any, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[BaseInfo]:
    """The base re-exported as a float32 GGUF (info pointing at it). On it llama.cpp computes what transformers
    does; on the Q4_1 file it also quantises activations, which flips a 135M model's greedy choices, so only
    this base lets replies be compared token for token."""
    from ragtune.tuning.generator.gguf_export import export_full_gguf

    info, model, _ = smollm_base
    target = tmp_path_factory.mktemp("f32-base") / "base-f32.gguf"
    export_full_gguf(model, info, target, dtype="f32")
    yield dataclasses.replace(info, gguf=target, name=target.name)
    target.unlink(missing_ok=True)
