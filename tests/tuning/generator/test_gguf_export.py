"""The tuning base (found, fingerprinted, cached) and tuned weights written back to GGUF: a LoRA adapter that
llama.cpp serves on the base GGUF, and a full model it serves on its own, each replying exactly as the tuned
transformers model does."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest

from ragtune.errors import ConfigError
from ragtune.models.generator import LlamaCppGenerator, Message, local_gguf_path
from ragtune.tuning.generator import base as base_mod
from ragtune.tuning.generator import gguf_export
from ragtune.tuning.generator.base import (
    MARKER_FILE,
    BaseInfo,
    is_cached,
    load_base,
    read_gguf_header,
    resolve_base,
)
from ragtune.tuning.generator.gguf_export import export_full_gguf, export_lora_gguf, permute_qk

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
RANK, ALPHA = 8, 16
NOISE = 0.03  # LoRA weights ~ N(0, NOISE²): the reply changes ("Paris." -> "Paris, France.") but stays sensible
PROMPT: list[Message] = [{"role": "user", "content": "What is the capital of France?"}]
NEW_TOKENS = 12


class Base(NamedTuple):
    """The ``smollm_base`` fixture: the resolved base, its shared float32 model (never modified) and tokenizer."""

    info: BaseInfo
    model: Any
    tokenizer: Any


class Tuned(NamedTuple):
    """A peft LoRA with random weights on a fresh copy of the base, and transformers' greedy reply with it."""

    peft: Any
    reply: str


def greedy(model: Any, tokenizer: Any) -> str:
    """transformers' greedy reply to PROMPT under the tokenizer's chat template (llama.cpp's server applies the
    same template, embedded in the GGUF), on 2 threads."""
    import torch

    from ragtune.models.hf import torch_threads

    inputs = tokenizer.apply_chat_template(PROMPT, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch_threads(2), torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=NEW_TOKENS, do_sample=False)
    return str(tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)).strip()


def served(model_path: Path | None, lora_path: Path | None = None) -> tuple[str, str]:
    """(generator name, llama.cpp's greedy reply to PROMPT) from a server started for this one request."""
    gen = LlamaCppGenerator(model_path, threads=2, n_ctx=512, lora_path=lora_path)
    try:
        return gen.name, gen.generate(PROMPT, max_tokens=NEW_TOKENS, temperature=0.0).strip()
    finally:
        gen.close()


def _tiny_gguf(path: Path, arch: str, kind: str = "model") -> Path:
    """A GGUF of one small tensor with the given architecture and ``general.type``."""
    import gguf

    writer = gguf.GGUFWriter(path, arch)
    writer.add_type(kind)
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="module")
def base(smollm_base: tuple[BaseInfo, Any, Any]) -> Base:
    return Base(*smollm_base)


@pytest.fixture(scope="module")
def tuned(base: Base) -> Tuned:
    import torch
    from peft import LoraConfig, get_peft_model

    model, _ = load_base(base.info)  # get_peft_model changes the model it wraps: not the shared one
    peft = get_peft_model(model, LoraConfig(r=RANK, lora_alpha=ALPHA, target_modules=TARGETS, lora_dropout=0.0))
    noise = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in peft.named_parameters():
            if "lora_" in name:  # lora_B starts at zero: the adapter would change nothing
                param.copy_(torch.randn(param.shape, generator=noise) * NOISE)
    peft.eval()
    return Tuned(peft, greedy(peft, base.tokenizer))


@pytest.fixture(scope="module")
def adapter(tuned: Tuned, f32_base: BaseInfo, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_lora_gguf(tuned.peft, f32_base, tmp_path_factory.mktemp("lora") / "adapter.gguf",
                            alpha=ALPHA, rank=RANK)


# -- the base ----------------------------------------------------------------------------------------------------


def test_the_packaged_gguf_is_the_default_base_and_a_folder_may_hold_it(tmp_path: Path) -> None:
    info = resolve_base(cache_dir=tmp_path)
    assert info.gguf == local_gguf_path() and info.name == local_gguf_path().name
    assert info.architecture == "llama" and len(info.fingerprint) == 64
    assert info.folder == tmp_path / "base-models" / info.fingerprint[:16]
    assert not info.folder.exists()  # resolving loads nothing: serving an adapter never dequantises

    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "mine.gguf").symlink_to(local_gguf_path())
    (folder / "notes.txt").write_text("not a model\n")
    same = resolve_base(folder, cache_dir=tmp_path)
    assert same.gguf == folder / "mine.gguf" and same.fingerprint == info.fingerprint

    (folder / "other.gguf").symlink_to(local_gguf_path())
    with pytest.raises(ConfigError, match=r"holds 2 GGUF files \(mine.gguf, other.gguf\): pass the one"):
        resolve_base(folder, cache_dir=tmp_path)


def test_bad_bases_are_refused_saying_what_to_pass(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.gguf: no such base model; pass a \.gguf file"):
        resolve_base(tmp_path / "missing.gguf")
    (tmp_path / "model.bin").write_bytes(b"\0" * 64)
    with pytest.raises(ConfigError, match=r"model\.bin: not a \.gguf file"):
        resolve_base(tmp_path / "model.bin")
    (tmp_path / "broken.gguf").write_bytes(b"GGUF\3\0\0\0")
    with pytest.raises(ConfigError, match=r"broken\.gguf: not a readable GGUF file"):
        resolve_base(tmp_path / "broken.gguf")
    with pytest.raises(ConfigError, match=r"architecture 'gpt2' is not supported for tuning \(supported: llama\)"):
        resolve_base(_tiny_gguf(tmp_path / "gpt2.gguf", "gpt2"))
    with pytest.raises(ConfigError, match=r"a GGUF adapter, not a model"):
        resolve_base(_tiny_gguf(tmp_path / "lora.gguf", "llama", kind="adapter"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match=r"empty: neither a GGUF file nor config.json"):
        resolve_base(empty)


def test_the_fast_header_reader_reads_what_gguf_writes(tmp_path: Path) -> None:
    import gguf

    writer = gguf.GGUFWriter(tmp_path / "t.gguf", "llama")
    writer.add_string("a.text", "héllo")
    writer.add_uint32("a.count", 7)
    writer.add_float32("a.eps", 1e-5)
    writer.add_bool("a.flag", True)
    writer.add_array("a.names", ["x", "", "zé"])
    writer.add_array("a.ints", [3, -1, 4])
    writer.add_key_value("a.floats", [0.5, 2.0], gguf.GGUFValueType.ARRAY, gguf.GGUFValueType.FLOAT32)
    writer.add_uint32(gguf.Keys.General.ALIGNMENT, 64)
    writer.add_tensor("first.weight", np.arange(6, dtype=np.float32).reshape(2, 3))
    writer.add_tensor("second.weight", np.ones((5, 4), dtype=np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()

    header = read_gguf_header(tmp_path / "t.gguf")
    assert header.get("general.architecture") == "llama" and header.get("a.text") == "héllo"
    assert header.get("a.count") == 7 and header.get("a.eps") == pytest.approx(1e-5) and header.get("a.flag") is True
    assert header.get("a.names") == ["x", "", "zé"] and header.get("a.ints") == [3, -1, 4]
    assert header.fields["a.floats"] == ([0.5, 2.0], gguf.GGUFValueType.ARRAY, gguf.GGUFValueType.FLOAT32)
    assert header.tensors["first.weight"][:2] == ((3, 2), gguf.GGMLQuantizationType.F32)
    assert header.tensors["second.weight"][:2] == ((4, 5), gguf.GGMLQuantizationType.F16)
    data = np.fromfile(tmp_path / "t.gguf", dtype=np.float32, count=6,
                       offset=header.data_start + header.tensors["first.weight"][2])
    assert data.tolist() == [0, 1, 2, 3, 4, 5] and header.data_start % 64 == 0


def test_the_dequantised_base_is_cached_and_reused(base: Base, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    info = base.info
    assert is_cached(info) and (info.folder / MARKER_FILE).is_file()
    assert (info.folder / "model.safetensors").is_file() and (info.folder / "config.json").is_file()
    assert "quantization_config" not in (info.folder / "config.json").read_text()
    assert resolve_base(cache_dir=info.folder.parent.parent) == info

    def no_dequantising(*args: Any) -> None:
        raise AssertionError("the cached base was dequantised again")

    monkeypatch.setattr(base_mod, "_dequantise_into", no_dequantising)
    model, tokenizer = load_base(info)
    assert tokenizer.chat_template == base.tokenizer.chat_template
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "Hello"}], add_generation_prompt=True,
                                        return_tensors="pt", return_dict=True)["input_ids"]
    with torch.no_grad():
        assert torch.equal(model(ids).logits, base.model(ids).logits)


def test_a_crash_while_caching_leaves_no_cache(base: Base, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import transformers

    class FailingTokenizer:
        def save_pretrained(self, folder: Path) -> None:
            (Path(folder) / "tokenizer.json").write_text("{")  # half written, then the disk fills up
            raise OSError("No space left on device")

    def tiny_model(*args: Any, **kwargs: Any) -> Any:
        config = transformers.LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                          num_attention_heads=2, num_key_value_heads=1, vocab_size=64)
        return transformers.LlamaForCausalLM(config)

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", tiny_model)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", lambda *a, **k: FailingTokenizer())
    info = resolve_base(cache_dir=tmp_path)
    with pytest.raises(OSError, match="No space left"):
        load_base(info)
    assert not info.folder.exists() and os.listdir(info.folder.parent) == []  # nor any temporary folder
    info.folder.mkdir()
    (info.folder / "config.json").write_text("{}")  # an old half cache, say
    assert not is_cached(info)
    assert is_cached(base.info)


# -- LoRA adapter ------------------------------------------------------------------------------------------------


def test_q_and_k_rows_are_permuted_as_in_the_base_gguf(base: Base) -> None:
    """transformers un-permutes the GGUF's q/k rows when it loads it; permute_qk must put them back exactly."""
    import gguf

    header = read_gguf_header(local_gguf_path())
    layer = base.model.model.layers[0].self_attn
    for name, weight in (("blk.0.attn_q.weight", layer.q_proj.weight), ("blk.0.attn_k.weight", layer.k_proj.weight)):
        dims, kind, offset = header.tensors[name]
        raw = np.fromfile(local_gguf_path(), dtype=np.uint8, offset=header.data_start + offset,
                          count=dims[1] * dims[0] // 32 * 20).reshape(dims[1], -1)  # Q4_1: 20 bytes per 32
        stored = gguf.quants.dequantize(raw, gguf.GGMLQuantizationType(kind))
        ours = weight.detach().numpy()
        kv = 3 if "attn_k" in name else None
        assert np.allclose(permute_qk(ours, 9, kv), stored, atol=1e-6)
        assert not np.allclose(ours, stored, atol=1e-3)


def test_the_served_adapter_replies_as_the_peft_model(base: Base, f32_base: BaseInfo, tuned: Tuned,
                                                      adapter: Path) -> None:
    base_reply = greedy(base.model, base.tokenizer)
    assert tuned.reply != base_reply, "the noise should change the reply"

    name, reply = served(f32_base.gguf, adapter)
    assert name == "llama.cpp:base-f32.gguf+adapter.gguf"
    assert reply == tuned.reply
    assert served(f32_base.gguf)[1] == base_reply  # the full export of the unchanged base replies as the base

    header = read_gguf_header(adapter)
    assert header.get("general.type") == "adapter" and header.get("adapter.type") == "lora"
    assert header.get("general.architecture") == "llama" and header.get("adapter.lora.alpha") == ALPHA
    assert len(header.tensors) == 30 * len(TARGETS) * 2
    assert header.tensors["blk.0.attn_k.weight.lora_a"][0] == (576, RANK)  # GGUF order: [in, rank]
    assert header.tensors["blk.0.attn_k.weight.lora_b"][0] == (RANK, 192)  # [rank, out]


def test_without_the_q_k_permutation_the_adapter_replies_otherwise(
        tuned: Tuned, f32_base: BaseInfo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gguf_export, "permute_qk", lambda rows, *heads: rows)
    unpermuted = export_lora_gguf(tuned.peft, f32_base, tmp_path / "unpermuted.gguf", alpha=ALPHA, rank=RANK)
    assert served(f32_base.gguf, unpermuted)[1] != tuned.reply


def test_the_adapter_changes_the_packaged_q4_model(local: Any, base: Base, tuned: Tuned,
                                                   tmp_path: Path) -> None:
    """On the Q4_1 file itself (what is served) llama.cpp's reply is not transformers' float32 one, base or
    tuned, but the adapter loads and changes it."""
    on_q4 = export_lora_gguf(tuned.peft, base.info, tmp_path / "q4-adapter.gguf", alpha=ALPHA, rank=RANK)
    name, reply = served(None, on_q4)
    assert name == "llama.cpp:SmolLM2-135M-Instruct.Q4_1.gguf+q4-adapter.gguf"
    assert reply and reply != local.generate(PROMPT, max_tokens=12, temperature=0.0).strip()


# -- full model --------------------------------------------------------------------------------------------------


def test_a_merged_model_exported_whole_replies_as_the_peft_model(base: Base, tuned: Tuned,
                                                                 tmp_path: Path) -> None:
    merged = copy.deepcopy(tuned.peft).merge_and_unload()
    target = export_full_gguf(merged, base.info, tmp_path / "full.gguf")
    assert served(target)[1] == tuned.reply

    header, original = read_gguf_header(target), read_gguf_header(local_gguf_path())
    assert header.get("general.type") == "model" and header.get("general.file_type") == 1  # mostly f16
    assert "output.weight" not in header.tensors  # tied to token_embd, as in the base
    assert set(header.tensors) == set(original.tensors)
    assert header.tensors["blk.0.attn_q.weight"][1] == 1 and header.tensors["blk.0.attn_norm.weight"][1] == 0
    for key in ("tokenizer.chat_template", "tokenizer.ggml.tokens", "tokenizer.ggml.merges", "llama.block_count"):
        assert header.get(key) == original.get(key), key
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_q8_0_export_is_half_the_size_and_still_replies_as_the_peft_model(base: Base, tuned: Tuned,
                                                                            tmp_path: Path) -> None:
    merged = copy.deepcopy(tuned.peft).merge_and_unload()
    f16 = export_full_gguf(merged, base.info, tmp_path / "f16.gguf")
    q8 = export_full_gguf(merged, base.info, tmp_path / "q8.gguf", dtype="q8_0")
    header = read_gguf_header(q8)
    assert header.get("general.file_type") == 7  # mostly Q8_0
    assert header.tensors["blk.0.attn_q.weight"][1] == 8 and header.tensors["token_embd.weight"][1] == 8  # Q8_0
    assert header.tensors["blk.0.attn_norm.weight"][1] == 0  # norms stay f32
    assert 0.5 < q8.stat().st_size / f16.stat().st_size < 0.6  # 34 bytes per 32 weights, not 64
    assert served(q8)[1] == tuned.reply
    with pytest.raises(ConfigError, match="choose one of f16, q8_0, f32"):
        export_full_gguf(merged, base.info, tmp_path / "x.gguf", dtype="q4")


# -- bad input ---------------------------------------------------------------------------------------------------


def test_exports_refuse_what_llama_cpp_cannot_serve(base: Base, tuned: Tuned, tmp_path: Path) -> None:
    from peft import get_peft_model_state_dict

    info = base.info
    state = get_peft_model_state_dict(tuned.peft)
    qwen = BaseInfo("qwen.gguf", "0" * 64, info.gguf, "qwen2", info.folder)
    with pytest.raises(ConfigError, match=r"'qwen2' model: GGUF export supports llama bases"):
        export_lora_gguf(state, qwen, tmp_path / "a.gguf", alpha=ALPHA, rank=RANK)
    with pytest.raises(ConfigError, match=r"'qwen2' model: GGUF export supports llama bases"):
        export_full_gguf(base.model, qwen, tmp_path / "a.gguf")
    folder_base = resolve_base(info.folder)  # a Hugging Face folder: no GGUF to serve an adapter on
    assert folder_base.gguf is None and folder_base.architecture == "llama"
    with pytest.raises(ConfigError, match=r"is a Hugging Face folder, not a GGUF"):
        export_lora_gguf(state, folder_base, tmp_path / "a.gguf", alpha=ALPHA, rank=RANK)
    with pytest.raises(ConfigError, match=r"do not have rank 4"):
        export_lora_gguf(state, info, tmp_path / "a.gguf", alpha=ALPHA, rank=4)
    a = next(v for k, v in state.items() if k.endswith("q_proj.lora_A.weight"))
    with pytest.raises(ConfigError, match=r"adapts lm_head, which the base GGUF"):
        export_lora_gguf({"base_model.model.lm_head.lora_A.weight": a, "base_model.model.lm_head.lora_B.weight":
                          a.new_zeros((49152, RANK))}, info, tmp_path / "a.gguf", alpha=ALPHA, rank=RANK)
    with pytest.raises(ConfigError, match=r"embed_tokens.weight' cannot go in a llama.cpp adapter"):
        export_lora_gguf({**state, "base_model.model.model.embed_tokens.weight": a}, info, tmp_path / "a.gguf",
                         alpha=ALPHA, rank=RANK)
    with pytest.raises(ConfigError, match=r"merge the LoRA into the model first"):
        export_full_gguf(tuned.peft, info, tmp_path / "a.gguf")
    assert list(tmp_path.iterdir()) == []


def test_the_adapter_alpha_gives_llama_cpp_peft_s_scale() -> None:
    import transformers
    from peft import LoraConfig, get_peft_model

    from ragtune.tuning.generator.gguf_export import llama_cpp_alpha

    def tiny(**lora: Any) -> Any:
        config = transformers.LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                          num_attention_heads=2, num_key_value_heads=1, vocab_size=64)
        return get_peft_model(transformers.LlamaForCausalLM(config),
                              LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj"], **lora))

    assert llama_cpp_alpha(tiny(), 8, 4) == 8.0  # llama.cpp scales by alpha / rank, as peft does
    assert llama_cpp_alpha(tiny(use_rslora=True), 8, 4) == 16.0  # peft: 8 / sqrt(4) = 4 = 16 / 4
    with pytest.raises(ConfigError, match="per-module ranks or alphas"):
        llama_cpp_alpha(tiny(rank_pattern={"q_proj": 2}), 8, 4)


def test_a_missing_or_broken_adapter_is_a_config_error(tmp_path: Path) -> None:
    from ragtune.models.generator import LlamaCppGenerator

    with pytest.raises(ConfigError, match=r"gone\.gguf: no such LoRA adapter file"):
        LlamaCppGenerator(lora_path=tmp_path / "gone.gguf").warm_up()
    (tmp_path / "junk.gguf").write_bytes(b"not a gguf at all")
    with pytest.raises(ConfigError, match=r"could not load .*junk\.gguf on SmolLM2-135M-Instruct\.Q4_1\.gguf"):
        LlamaCppGenerator(lora_path=tmp_path / "junk.gguf").warm_up()
