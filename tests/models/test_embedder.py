"""The embedder's two runtimes: the ONNX export must give torch's vectors, be cached, and fail clearly."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ragtune.errors import ConfigError
from ragtune.models import embedder as emb
from ragtune.models.embedder import MiniLMEmbedder, clear_embedding_cache

TEXTS = [
    "How long are customer records kept?",
    "Backups run nightly and are stored in two regions.",
    "x",
    # Longer than the 256-token window: both runtimes must truncate it the same way.
    " ".join(["The retention policy keeps customer records for seven years after closure."] * 40),
]


def test_onnx_export_gives_torch_vectors_and_is_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAGTUNE_CACHE", str(tmp_path))
    emb._load_onnx_encoder.cache_clear()
    clear_embedding_cache()
    onnx = MiniLMEmbedder(runtime="onnx").embed(TEXTS)
    clear_embedding_cache()
    torch = MiniLMEmbedder(runtime="torch").embed(TEXTS)
    clear_embedding_cache()
    assert onnx.shape == torch.shape == (len(TEXTS), 384)
    assert np.allclose(np.linalg.norm(onnx, axis=1), 1.0, atol=1e-5)
    assert np.min(np.sum(onnx * torch, axis=1)) > 0.9999
    # Different texts stay different (the pooling did not collapse them).
    assert float(onnx[0] @ onnx[1]) < 0.9

    (exported,) = tmp_path.glob("embedders/*/model.onnx")
    stamp = exported.stat().st_mtime_ns
    emb._load_onnx_encoder.cache_clear()
    again = MiniLMEmbedder(runtime="onnx").embed(TEXTS[:1])
    clear_embedding_cache()
    assert exported.stat().st_mtime_ns == stamp  # loaded from the cache, not exported again
    assert np.allclose(again[0], onnx[0], atol=1e-6)
    assert not list(tmp_path.glob("embedders/*/.*tmp"))  # no half-written export left behind
    emb._load_onnx_encoder.cache_clear()


def test_unknown_runtime_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="runtime 'gpu'.*auto, onnx, torch"):
        MiniLMEmbedder(runtime="gpu")


def test_auto_runtime_prefers_onnx_when_installed() -> None:
    assert MiniLMEmbedder().runtime == "onnx"


def test_cache_bypass_computes_without_touching_the_shared_cache() -> None:
    model = MiniLMEmbedder(runtime="onnx")
    clear_embedding_cache()
    cached = model.embed(["where is my card"])
    assert list(emb._CACHE) == ["where is my card"]
    calls: list[int] = []
    model.warm_up()
    real = model._encode

    def counting(texts: list[str], **kw: Any) -> Any:
        calls.append(len(texts))
        return real(texts, **kw)

    model._encode = counting
    with emb.embedding_cache_bypassed():
        fresh = model.embed(["where is my card", "a new text"])
        seen_elsewhere: list[np.ndarray] = []
        worker = threading.Thread(target=lambda: seen_elsewhere.append(model.embed(["where is my card"])))
        worker.start()
        worker.join()
    assert calls == [2]  # computed inside the block; the other thread was served from the cache
    np.testing.assert_array_equal(seen_elsewhere[0], cached)
    assert list(emb._CACHE) == ["where is my card"]  # nothing stored by the bypassed call
    np.testing.assert_allclose(fresh[0], cached[0], atol=1e-6)
    model.embed(["a new text"])
    assert calls == [2, 1]  # outside the block the cache is used and filled again
