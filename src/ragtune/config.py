"""Project settings: one ``Settings`` object from ``ragtune.yaml``, overridden by ``RAGTUNE_*`` variables.

Nested keys use a double underscore in the environment, e.g. ``RAGTUNE_RETRIEVAL__TOP_K=5``.
Secrets never live in ``ragtune.yaml``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from ragtune.errors import ConfigError

CONFIG_NAME = "ragtune.yaml"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EmbedderSettings(_Section):
    """Which embedding model to use and how to run it."""

    model: str = "minilm"
    batch_size: int = Field(32, ge=1, le=1024)
    threads: int = Field(2, ge=1, le=64)
    runtime: Literal["auto", "onnx", "torch"] = "auto"


class IngestSettings(_Section):
    """Limits on what ingestion accepts."""

    max_file_mb: float = Field(20.0, gt=0)


class ChunkingSettings(_Section):
    """Structure-aware chunking: sections split at sentence boundaries within a token budget."""

    max_tokens: int = Field(256, ge=16, le=2048)
    overlap_tokens: int = Field(32, ge=0, le=512)


class RetrievalSettings(_Section):
    """Hybrid retrieval: BM25 and dense candidates fused by reciprocal rank fusion."""

    top_k: int = Field(8, ge=1, le=1000)
    lexical_k: int = Field(100, ge=1, le=10000)
    dense_k: int = Field(100, ge=1, le=10000)
    rrf_k: int = Field(20, ge=1)
    lexical_weight: float = Field(1.0, ge=0)
    dense_weight: float = Field(1.0, ge=0)


class AnswerSettings(_Section):
    """The extractive answerer and its abstention threshold."""

    min_relevance: float = Field(0.35, ge=-1, le=1)
    max_sentences: int = Field(3, ge=1, le=20)
    context_chunks: int = Field(4, ge=1, le=50)


class GeneratorSettings(_Section):
    """Who writes answers: the extractive default, a local llama.cpp model, or an OpenAI-compatible endpoint.

    The API key is read from the environment variable named by ``api_key_env`` or from the secrets file
    (``$RAGTUNE_SECRETS_FILE``, default ``~/.config/ragtune/secrets.yaml``), never from this file.
    """

    kind: Literal["extractive", "llamacpp", "openai"] = "extractive"
    base_url: str = ""
    model: str = ""
    api_key_env: str = "RAGTUNE_LLM_API_KEY"
    max_tokens: int = Field(256, ge=1, le=8192)

    @model_validator(mode="before")
    @classmethod
    def _no_secrets(cls, data: Any) -> Any:
        if isinstance(data, dict) and any("key" in k and k != "api_key_env" for k in data):
            raise ValueError("never put an API key in ragtune.yaml: set RAGTUNE_LLM_API_KEY or write "
                             "`llm_api_key: ...` in ~/.config/ragtune/secrets.yaml")
        return data


class Settings(BaseSettings):
    """All settings of one ragtune project."""

    model_config = SettingsConfigDict(env_prefix="RAGTUNE_", env_nested_delimiter="__", extra="forbid")

    project_dir: Path = Path(".")
    store_path: Path = Path("index")
    models_path: Path = Path("models")
    embedder: EmbedderSettings = EmbedderSettings()
    ingest: IngestSettings = IngestSettings()
    chunking: ChunkingSettings = ChunkingSettings()
    retrieval: RetrievalSettings = RetrievalSettings()
    answer: AnswerSettings = AnswerSettings()
    generator: GeneratorSettings = GeneratorSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment wins over the file, so a deployment can override one key without editing it.
        return (env_settings, init_settings)

    @property
    def index_dir(self) -> Path:
        """Absolute path of the store folder."""
        p = self.store_path
        return p if p.is_absolute() else self.project_dir / p

    @property
    def models_dir(self) -> Path:
        """Absolute path of the model registry."""
        p = self.models_path
        return p if p.is_absolute() else self.project_dir / p


def find_project(start: Path | None = None) -> Path:
    """The nearest folder at or above ``start`` (default: the current folder) holding ``ragtune.yaml``."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / CONFIG_NAME).is_file():
            return folder
    raise ConfigError(
        f"no {CONFIG_NAME} found in {here} or its parents: run `ragtune init` there, or pass --project DIR"
    )


def load_settings(project: Path | None = None) -> Settings:
    """Load the settings of the project at ``project`` (or found from the current folder)."""
    if project is not None:
        project = project.resolve()
        if not (project / CONFIG_NAME).is_file():
            raise ConfigError(f"{project} is not a ragtune project (no {CONFIG_NAME}): run `ragtune init {project}`")
    else:
        project = find_project()
    path = project / CONFIG_NAME
    try:
        raw: Any = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid YAML ({exc}); fix it or delete it and run `ragtune init`") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must be a mapping of settings, not {type(raw).__name__}")
    raw["project_dir"] = project
    try:
        return Settings(**raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{path}: setting '{where}': {first['msg']}") from exc


CONFIG_TEMPLATE = """\
# ragtune project settings. Every key can be overridden by an environment variable:
# RAGTUNE_<SECTION>__<KEY>, e.g. RAGTUNE_RETRIEVAL__TOP_K=5. Never put secrets in this file.

# Where the index lives (LanceDB: vectors, BM25 full-text index, ACL columns), relative to this file.
store_path: index
# Where trained classifiers are registered (one folder per model, one sub-folder per version).
models_path: models

embedder:
  model: minilm        # the packaged all-MiniLM-L6-v2 (384-d); runs offline
  batch_size: 32
  threads: 2           # CPU threads for the model; keep at or below the machine's cores
  runtime: auto        # onnx (ONNX export on onnxruntime, ~2.5x faster per query), torch, or auto (onnx if installed)

ingest:
  max_file_mb: 20      # larger files are reported and skipped

chunking:
  max_tokens: 256      # token budget per chunk; with the title > section line it also fits the embedder's 256
  overlap_tokens: 32   # tokens repeated from the end of the previous chunk, at sentence boundaries

generator:
  kind: extractive     # extractive (quotes sources, no model), llamacpp (local SmolLM2), openai (any compatible API)
  base_url: ""         # openai kind: e.g. https://api.openai.com/v1 or http://127.0.0.1:8080/v1
  model: ""            # openai kind: the model name the endpoint expects
  api_key_env: RAGTUNE_LLM_API_KEY  # the key comes from this variable or ~/.config/ragtune/secrets.yaml, never here
  max_tokens: 256

retrieval:
  top_k: 8             # hits returned after fusion
  lexical_k: 100       # BM25 candidates
  dense_k: 100         # vector candidates
  rrf_k: 20            # reciprocal rank fusion constant (20 was best on SciFact train queries)
  lexical_weight: 1.0
  dense_weight: 1.0

answer:
  min_relevance: 0.35  # abstain when no accessible chunk is at least this similar (cosine) to the question
  max_sentences: 3     # sentences in an extractive answer
  context_chunks: 4    # top chunks the answer may quote from
"""


def init_project(folder: Path) -> Path:
    """Create ``ragtune.yaml`` in ``folder`` (created if needed); refuse to overwrite an existing one."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / CONFIG_NAME
    if path.exists():
        raise ConfigError(f"{path} already exists; edit it, or remove it to start over")
    path.write_text(CONFIG_TEMPLATE, encoding="utf-8")
    return path
