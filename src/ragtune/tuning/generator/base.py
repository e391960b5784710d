"""The base model a generator is fine-tuned from: found, fingerprinted, and cached in Hugging Face form.

The default base is the packaged SmolLM2-135M-Instruct GGUF (the model ``LlamaCppGenerator`` serves). Transformers
can read a GGUF but dequantises it on every load (about 20-30 s); :func:`load_base` does that once and keeps the
float32 weights, config and tokenizer as safetensors under ``<cache>/base-models/<fingerprint[:16]>`` (``<cache>``
is ``$RAGTUNE_CACHE``, default ``~/.cache/ragtune``), so later loads take about a second. :func:`resolve_base`
only finds and fingerprints the base (a fraction of a second), so serving an adapter never dequantises. The
cache folder is written under a temporary name and renamed into place: a crash mid-write never leaves a folder
that a later run would load.

A base may also be a Hugging Face folder (``config.json`` and weights). It is used as it is, but having no GGUF
it cannot be served by llama.cpp after tuning: :mod:`ragtune.tuning.generator.gguf_export` needs a GGUF base.

Heavy libraries (torch, transformers, gguf) are imported inside the functions that use them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragtune.errors import ConfigError

SUPPORTED_ARCHITECTURES = ("llama",)
"""GGUF architectures whose tuned weights :mod:`~ragtune.tuning.generator.gguf_export` can write back."""
MARKER_FILE = "ragtune-base.json"
"""Written last into a cached base folder; a folder without it is not a complete cache."""
DTYPES = ("float32", "bfloat16", "float16")
WEIGHT_SUFFIXES = (".safetensors", ".bin")

_FINGERPRINTS: dict[tuple[tuple[str, int, int], ...], str] = {}


@dataclass(frozen=True)
class BaseInfo:
    """A resolved base model.

    ``name``: the GGUF file name or the Hugging Face folder's name. ``fingerprint``: sha256 (hex) of the GGUF file,
    or of the folder's ``config.json`` and weight files. ``gguf``: the GGUF file an adapter is served on (None for
    a Hugging Face folder base). ``architecture``: the GGUF architecture string (``llama``), or the folder's
    ``model_type``. ``folder``: the Hugging Face-format folder :func:`load_base` reads: the given folder, or for a
    GGUF base its cache (filled by the first :func:`load_base`).
    """

    name: str
    fingerprint: str
    gguf: Path | None
    architecture: str
    folder: Path


def files_sha256(paths: list[Path]) -> str:
    """sha256 of the files' bytes in order, memoised per (paths, sizes, mtimes)."""
    key = tuple((str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in paths)
    if key not in _FINGERPRINTS:
        digest = hashlib.sha256()
        for path in paths:
            with path.open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 22), b""):
                    digest.update(block)
        _FINGERPRINTS[key] = digest.hexdigest()
    return _FINGERPRINTS[key]


def default_cache_dir() -> Path:
    """The project's cache for derived model files (``$RAGTUNE_CACHE``, default ``~/.cache/ragtune``)."""
    from ragtune.models.hf import cache_dir

    return cache_dir()


_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
"""GGUF metadata value types (gguf.GGUFValueType) and their little-endian struct formats; 8 string, 9 array."""
_STRING, _ARRAY = 8, 9
_HEADERS: dict[tuple[str, int, int], GGUFHeader] = {}


@dataclass(frozen=True)
class GGUFHeader:
    """A GGUF file's metadata and tensor directory, read without touching tensor data.

    ``fields``: key -> (value, value type, item type for arrays else None), types as ``gguf.GGUFValueType``
    numbers; arrays are lists. ``tensors``: name -> (dims in GGUF order, i.e. ``[in, out]`` for a matrix, ggml
    type, offset from ``data_start``).
    """

    path: Path
    fields: dict[str, tuple[Any, int, int | None]]
    tensors: dict[str, tuple[tuple[int, ...], int, int]]
    data_start: int

    def get(self, key: str, default: Any = None) -> Any:
        """The value of metadata ``key`` (``default`` when absent)."""
        field = self.fields.get(key)
        return default if field is None else field[0]


def read_gguf_header(path: Path) -> GGUFHeader:
    """Parse ``path``'s GGUF header (v2/v3): much faster than ``gguf.GGUFReader``, which takes seconds over a
    tokenizer's 100k strings. Memoised per (path, size, mtime). ConfigError if it is not a readable GGUF."""
    import mmap
    import struct

    try:
        stat = path.stat()
        key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        if key in _HEADERS:
            return _HEADERS[key]
        with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            if buf[:4] != b"GGUF":
                raise ValueError("no GGUF magic number")
            version, n_tensors, n_fields = struct.unpack_from("<IQQ", buf, 4)
            if version < 2:
                raise ValueError(f"GGUF version {version} is too old (convert it again with llama.cpp)")
            pos = 24

            def read(fmt: str) -> Any:
                nonlocal pos
                (value,) = struct.unpack_from(fmt, buf, pos)
                pos += struct.calcsize(fmt)
                return value

            def string() -> str:
                nonlocal pos
                size = read("<Q")
                pos += size
                return bytes(buf[pos - size:pos]).decode("utf-8", errors="replace")

            def value(kind: int) -> Any:
                nonlocal pos
                if kind == _STRING:
                    return string()
                if kind in _SCALARS:
                    return read(_SCALARS[kind])
                raise ValueError(f"unknown metadata value type {kind}")

            fields: dict[str, tuple[Any, int, int | None]] = {}
            for _ in range(n_fields):
                name, kind = string(), read("<I")
                if kind != _ARRAY:
                    fields[name] = (value(kind), kind, None)
                    continue
                item, count = read("<I"), read("<Q")
                if item in _SCALARS and item != 7:
                    fmt = _SCALARS[item]
                    width = struct.calcsize(fmt)
                    items = list(struct.unpack_from(f"<{count}{fmt[1]}", buf, pos))
                    pos += width * count
                else:
                    items = [value(item) for _ in range(count)]
                fields[name] = (items, kind, item)
            tensors: dict[str, tuple[tuple[int, ...], int, int]] = {}
            for _ in range(n_tensors):
                name, n_dims = string(), read("<I")
                dims = tuple(read("<Q") for _ in range(n_dims))
                tensors[name] = (dims, read("<I"), read("<Q"))
            alignment = int(fields.get("general.alignment", (32, 4, None))[0])
            data_start = -(-pos // alignment) * alignment
    except (OSError, ValueError, struct.error, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not a readable GGUF file ({exc}); pass a .gguf model file") from exc
    header = GGUFHeader(path=path, fields=fields, tensors=tensors, data_start=data_start)
    _HEADERS[key] = header
    return header


def gguf_architecture(path: Path) -> str:
    """``general.architecture`` of a GGUF model file; ConfigError if it is not a readable GGUF model (an adapter,
    say)."""
    header = read_gguf_header(path)
    architecture = header.get("general.architecture")
    if not isinstance(architecture, str):
        raise ConfigError(f"{path}: the GGUF has no general.architecture; pass a GGUF model file")
    kind = header.get("general.type", "model")
    if kind != "model":
        raise ConfigError(f"{path}: a GGUF {kind}, not a model; pass the base model's .gguf")
    return architecture


def _find_base(base: Path | None) -> Path:
    """The GGUF file or Hugging Face folder ``base`` names (None: the packaged SmolLM2 GGUF)."""
    if base is None:
        from ragtune.models.generator import local_gguf_path

        return local_gguf_path()
    base = Path(base).expanduser()
    if not base.exists():
        raise ConfigError(f"{base}: no such base model; pass a .gguf file, a folder holding one, or a Hugging Face "
                          "model folder (with config.json)")
    if base.is_file():
        if base.suffix.lower() != ".gguf":
            raise ConfigError(f"{base}: not a .gguf file; pass a .gguf file, a folder holding one, or a Hugging "
                              "Face model folder (with config.json)")
        return base
    ggufs = sorted(p for p in base.iterdir() if p.is_file() and p.suffix.lower() == ".gguf")
    if len(ggufs) > 1:
        names = ", ".join(p.name for p in ggufs)
        raise ConfigError(f"{base} holds {len(ggufs)} GGUF files ({names}): pass the one to tune, e.g. "
                          f"{ggufs[0]}")
    if ggufs:
        return ggufs[0]
    if (base / "config.json").is_file():
        return base
    raise ConfigError(f"{base}: neither a GGUF file nor config.json in it; pass a .gguf file, a folder holding "
                      "one, or a Hugging Face model folder")


def _hf_folder_info(folder: Path) -> BaseInfo:
    """A Hugging Face model folder as a base (used in place, no GGUF)."""
    config_path = folder / "config.json"
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{config_path}: not a readable JSON model config ({exc})") from exc
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if not isinstance(model_type, str) or not model_type:
        raise ConfigError(f"{config_path}: no model_type; is this a Hugging Face model folder?")
    weights = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    if not weights:
        raise ConfigError(f"{folder}: config.json but no weight files (*.safetensors or *.bin); pass a complete "
                          "model folder or a .gguf file")
    fingerprint = files_sha256([config_path, *weights])
    return BaseInfo(name=folder.name, fingerprint=fingerprint, gguf=None, architecture=model_type,
                    folder=folder)


def _cache_complete(folder: Path, fingerprint: str) -> bool:
    """Whether ``folder`` is a finished cache of the base with ``fingerprint``."""
    try:
        marker = json.loads((folder / MARKER_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(marker, dict) and marker.get("fingerprint") == fingerprint


def _dequantise_into(gguf_path: Path, target: Path, fingerprint: str) -> None:
    """Load the GGUF with transformers (dequantising it) and save it as a Hugging Face folder at ``target``,
    atomically: written in a sibling temporary folder, renamed when complete."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ragtune.models.hf import offline, quiet

    offline()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with quiet():
            try:
                model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name,
                                                             dtype=torch.float32)
                tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
            except (ValueError, KeyError, RuntimeError) as exc:
                raise ConfigError(f"{gguf_path}: transformers cannot load this GGUF ({exc}); pass a GGUF of a "
                                  f"supported architecture ({', '.join(SUPPORTED_ARCHITECTURES)})") from exc
            # The weights are plain float32 now: drop the GGUF quantizer so the model saves as a normal one.
            if getattr(model.config, "quantization_config", None) is not None:
                del model.config.quantization_config
            setattr(model, "hf_quantizer", None)  # noqa: B010  (typed as a Module attribute by torch)
            setattr(model, "is_quantized", False)  # noqa: B010
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
        marker = {"fingerprint": fingerprint, "source": gguf_path.name}
        (tmp / MARKER_FILE).write_text(json.dumps(marker, indent=2), encoding="utf-8")
        try:
            os.replace(tmp, target)
        except OSError:
            if not _cache_complete(target, fingerprint):  # not another process finishing the same cache first
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def resolve_base(base: Path | None = None, cache_dir: Path | None = None) -> BaseInfo:
    """Find the base model, fingerprint it and name its Hugging Face-format folder (cheap: nothing is loaded, so
    serving an adapter can check its base without any dequantising).

    ``base``: None (the packaged SmolLM2-135M-Instruct GGUF), a ``.gguf`` file, a folder holding exactly one
    ``.gguf``, or a Hugging Face model folder with ``config.json``. A GGUF base's folder is
    ``<cache_dir>/base-models/<fingerprint[:16]>`` (``cache_dir`` default: ``$RAGTUNE_CACHE`` or
    ``~/.cache/ragtune``), which :func:`load_base` fills on first use. ConfigError for a missing, unreadable or
    unsupported base, saying what to pass instead.
    """
    path = _find_base(base)
    if path.is_dir():
        return _hf_folder_info(path)
    architecture = gguf_architecture(path)
    if architecture not in SUPPORTED_ARCHITECTURES:
        raise ConfigError(f"{path}: GGUF architecture {architecture!r} is not supported for tuning (supported: "
                          f"{', '.join(SUPPORTED_ARCHITECTURES)}); pass a GGUF of a supported architecture")
    try:
        fingerprint = files_sha256([path])
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the base model ({exc})") from exc
    folder = (cache_dir or default_cache_dir()) / "base-models" / fingerprint[:16]
    return BaseInfo(name=path.name, fingerprint=fingerprint, gguf=path, architecture=architecture, folder=folder)


def is_cached(info: BaseInfo) -> bool:
    """Whether :func:`load_base` can read ``info`` without dequantising its GGUF first."""
    return info.gguf is None or _cache_complete(info.folder, info.fingerprint)


def load_base(info: BaseInfo, dtype: str = "float32") -> tuple[Any, Any]:
    """The base as (transformers causal LM in eval mode, tokenizer with its chat template), loaded offline and
    quietly from ``info.folder``; a GGUF base is first dequantised into that folder if it is not cached yet
    (20-30 s for SmolLM2-135M, once). ``dtype``: float32, bfloat16 or float16."""
    if dtype not in DTYPES:
        raise ConfigError(f"dtype {dtype!r}: choose one of {', '.join(DTYPES)}")
    if info.gguf is not None and not _cache_complete(info.folder, info.fingerprint):
        if info.folder.exists():  # a damaged cache, or another file's with the same fingerprint prefix
            shutil.rmtree(info.folder, ignore_errors=True)
        _dequantise_into(info.gguf, info.folder, info.fingerprint)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ragtune.models.hf import offline, quiet

    offline()
    with quiet():
        try:
            model = AutoModelForCausalLM.from_pretrained(info.folder, dtype=getattr(torch, dtype))
            tokenizer = AutoTokenizer.from_pretrained(info.folder)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{info.folder}: cannot load the base model ({exc}); if this is ragtune's cache, "
                              "delete the folder and run again") from exc
    return model.eval(), tokenizer
