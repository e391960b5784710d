"""Project settings: one ``Settings`` object from ``ragtune.yaml``, overridden by ``RAGTUNE_*`` variables.

Nested keys use a double underscore in the environment, e.g. ``RAGTUNE_RETRIEVAL__TOP_K=5``.
Secrets never live in ``ragtune.yaml``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, SettingsError

from ragtune.config_checks import (  # noqa: F401 (CONFIG_NAME, ENV_PREFIX, PROJECT_DIR_ENV, find_project: re-exported)
    CONFIG_NAME,
    ENV_PREFIX,
    PROJECT_DIR_ENV,
    bad_json_variable,
    check_folders,
    choose_project,
    find_project,
    setting_origin,
)
from ragtune.config_template import CONFIG_TEMPLATE
from ragtune.errors import ConfigError
from ragtune.service.oidc_config import DEFAULT_ALGORITHMS, check_algorithms, check_url
from ragtune.validation import error_message

# Query parameters that carry credentials (``?api_key=``, ``?access_token=``, ``?sig=`` ...).
_SECRET_PARAM = re.compile(r"(?i)key|token|secret|passw|pwd|auth|credential|signature|^sig$")



REGISTRY_SPEC = re.compile(r"registry:([A-Za-z0-9][A-Za-z0-9_.-]{0,63})(?:@([1-9][0-9]*))?")
"""A model from the project's registry as settings name it: ``registry:NAME`` or ``registry:NAME@VERSION``."""


def parse_registry_spec(spec: str) -> tuple[str, int | None] | None:
    """``registry:NAME[@VERSION]`` → (name, version or None); None for anything else."""
    m = REGISTRY_SPEC.fullmatch(spec)
    return (m.group(1), int(m.group(2)) if m.group(2) else None) if m else None


def reader_spec(name: str) -> str:
    """``answer.reader`` (``NAME``, ``NAME@VERSION`` or ``registry:NAME[@VERSION]``) as a registry spec."""
    return "registry:" + name.strip().removeprefix("registry:")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EmbedderSettings(_Section):
    """Which embedding model to use and how to run it."""

    # minilm: the packaged all-MiniLM-L6-v2; registry:NAME[@VERSION]: a bi-encoder tuned on this corpus with
    # `ragtune tune retriever` (`ragtune reindex --embedder ...` re-embeds the index and sets it here).
    model: str = "minilm"
    batch_size: int = Field(32, ge=1, le=1024)
    threads: int = Field(2, ge=1, le=64)
    runtime: Literal["auto", "onnx", "torch"] = "auto"

    @field_validator("model")
    @classmethod
    def _known_model(cls, value: str) -> str:
        if value in ("minilm", "all-MiniLM-L6-v2") or parse_registry_spec(value):
            return value
        raise ValueError("must be minilm (the packaged model) or registry:NAME[@VERSION], a bi-encoder trained "
                         "with `ragtune tune retriever`")


class IngestSettings(_Section):
    """Limits on what ingestion accepts."""

    max_file_mb: float = Field(20.0, gt=0)
    # A link whose target is outside every ingested root is skipped unless this is set; then the target
    # gets the narrower of the ACL where the link sits and any ACL declared where it really lives.
    follow_external_links: bool = False
    # A root that has vanished (deleted, moved, unmounted) loses its documents at the next sync, unless
    # this is set; then they stay searchable and every sync says so.
    keep_missing_roots: bool = False


class ChunkingSettings(_Section):
    """Structure-aware chunking: sections split at sentence boundaries within a token budget."""

    max_tokens: int = Field(256, ge=16, le=2048)
    overlap_tokens: int = Field(32, ge=0, le=512)

    @model_validator(mode="after")
    def _overlap_below_budget(self) -> ChunkingSettings:
        if self.overlap_tokens >= self.max_tokens:
            raise ValueError(f"overlap_tokens ({self.overlap_tokens}) must be smaller than max_tokens "
                             f"({self.max_tokens})")
        return self


class RetrievalSettings(_Section):
    """Hybrid retrieval: BM25 and dense candidates fused by reciprocal rank fusion."""

    top_k: int = Field(8, ge=1, le=1000)
    lexical_k: int = Field(100, ge=1, le=10000)
    dense_k: int = Field(100, ge=1, le=10000)
    rrf_k: int = Field(20, ge=1)
    lexical_weight: float = Field(1.0, ge=0)
    dense_weight: float = Field(1.0, ge=0)
    # BM25 statistics over the principal's readable chunks only (closes the side channel of index-wide IDF);
    # costs one index build per principal and store version, and hides raw BM25 scores.
    lexical_isolation: bool = False


class StoreSettings(_Section):
    """Which store backend holds the index (``lance``: LanceDB in ``store_path``, embedded, the default;
    ``postgres``: PostgreSQL + pgvector, docs/postgres.md).

    ``dsn`` may name host, database and user but never a password: give the whole DSN in ``RAGTUNE_STORE_DSN``
    (or ``store_dsn: ...`` in the secrets file), which wins over this one. ``schema``: the PostgreSQL schema
    holding this project's index; ``pool_size``: connections each process keeps at most;
    ``index_build_memory``: PostgreSQL's ``maintenance_work_mem`` while a bulk load (a first ingestion into an empty
    store, a ``migrate`` target) builds the vector and term indexes at its end; ``ef_search``: the HNSW candidate
    list of a dense search (higher: better recall, slower; pgvector allows at most 1000).
    """

    kind: Literal["lance", "postgres"] = "lance"
    dsn: str | None = None
    schema_name: str = Field("ragtune", alias="schema", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
    pool_size: int = Field(5, ge=1, le=100)
    index_build_memory: str = "2GB"
    ef_search: int = Field(1000, ge=1, le=1000)

    @field_validator("index_build_memory")
    @classmethod
    def _memory_size(cls, value: str) -> str:
        from ragtune.store.pg_bulk import check_build_memory

        return check_build_memory(value)

    @field_validator("dsn")
    @classmethod
    def _no_password(cls, value: str | None) -> str | None:
        # Never echo the DSN in these messages: the point is that it may hold a secret.
        from ragtune.store.pg_dsn import WHERE, dsn_has_password

        if not value:
            return value
        try:
            has_password = dsn_has_password(value)
        except ConfigError as exc:  # its message never quotes the DSN
            raise ValueError(str(exc)) from None
        if has_password:
            raise ValueError(f"never put the database password in ragtune.yaml: {WHERE}")
        return value


class RerankSettings(_Section):
    """The optional reranking stage between fusion and fetch (``none``: fused order is final;
    ``registry:NAME[@VERSION]``: a cross-encoder trained by ``ragtune tune reranker``)."""

    kind: str = "none"
    candidates: int = Field(10, ge=1, le=1000)  # fused hits it reorders (10: best on SciFact train queries)
    max_length: int | None = Field(None, ge=16, le=512)  # tokens per (query, passage); None: as trained
    fused_weight: float = Field(1.0, ge=0, le=10)  # the fused order's weight beside the reranker's (0: reranker only)
    skip_when_agree: bool = True  # keep the fused order when BM25 and dense search put the same chunk first

    @field_validator("kind")
    @classmethod
    def _kind(cls, value: str) -> str:
        if value != "none" and not parse_registry_spec(value):
            raise ValueError(f"{value!r}: write none, registry:NAME or registry:NAME@VERSION (a reranker trained "
                             "by `ragtune tune reranker --name NAME`)")
        return value


class AnswerSettings(_Section):
    """Who answers without a generator and when to abstain: ``extractive`` quotes the best supporting sentences;
    ``reader`` gives the exact span a span reader (``ragtune tune reader``, named by ``reader``: NAME or
    NAME@VERSION) finds, inside its sentence, abstaining below its calibrated threshold (or ``reader_min_score``).
    ``reader`` takes precedence over a configured generator."""

    kind: Literal["extractive", "reader"] = "extractive"
    reader: str = ""
    reader_min_score: float | None = None  # None: the reader's threshold, calibrated on held-out questions
    min_relevance: float = Field(0.35, ge=-1, le=1)
    max_sentences: int = Field(3, ge=1, le=20)
    context_chunks: int = Field(4, ge=1, le=50)
    min_sentence_score: float = Field(0.40, ge=-1, le=2)
    support_margin: float = Field(0.05, ge=0, le=2)

    @model_validator(mode="after")
    def _reader_named(self) -> AnswerSettings:
        if self.kind == "reader" and parse_registry_spec(reader_spec(self.reader)) is None:
            raise ValueError(f"answer.kind reader needs answer.reader: NAME or NAME@VERSION (got {self.reader!r}), "
                             "a span reader trained by `ragtune tune reader DATA --name NAME`")
        return self


class GeneratorSettings(_Section):
    """Who writes answers: the extractive default, a local llama.cpp model, an OpenAI-compatible endpoint, or a
    generator fine-tuned here (``tuned``: ``model`` names it, served by llama.cpp).

    The API key is read from the environment variable named by ``api_key_env`` or from the secrets file
    (``$RAGTUNE_SECRETS_FILE``, default ``~/.config/ragtune/secrets.yaml``), never from this file.
    """

    kind: Literal["extractive", "llamacpp", "openai", "tuned"] = "extractive"
    base_url: str = ""
    model: str = ""  # openai: the endpoint's model name; tuned: NAME or NAME@VERSION from `ragtune tune generator`
    api_key_env: str = "RAGTUNE_LLM_API_KEY"
    max_tokens: int = Field(256, ge=1, le=8192)

    @model_validator(mode="after")
    def _tuned_named(self) -> GeneratorSettings:
        if self.kind == "tuned" and parse_registry_spec(reader_spec(self.model)) is None:
            raise ValueError(f"generator.kind tuned needs generator.model: NAME or NAME@VERSION (got "
                             f"{self.model!r}), a generator trained by `ragtune tune generator DATA --name NAME`")
        return self

    @model_validator(mode="before")
    @classmethod
    def _no_secrets(cls, data: Any) -> Any:
        if isinstance(data, dict) and any("key" in k and k != "api_key_env" for k in data):
            raise ValueError("never put an API key in ragtune.yaml: set RAGTUNE_LLM_API_KEY or write "
                             "`llm_api_key: ...` in ~/.config/ragtune/secrets.yaml")
        return data

    @field_validator("base_url")
    @classmethod
    def _no_credentials_in_url(cls, value: str) -> str:
        # Never echo the URL in these messages: the point is that it may hold a secret.
        if not value:
            return value
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises ValueError on a malformed port
        except ValueError:
            raise ValueError("not a valid URL; expected e.g. https://api.openai.com/v1") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("expected an http:// or https:// address such as https://api.openai.com/v1")
        where = ("put the key in the variable named by generator.api_key_env (default RAGTUNE_LLM_API_KEY) "
                 "or `llm_api_key: ...` in ~/.config/ragtune/secrets.yaml")
        if "@" in parts.netloc:
            raise ValueError(f"never put credentials (a user:password@ part) in the URL: {where}")
        names = [name for name, _ in parse_qsl(parts.query, keep_blank_values=True) if _SECRET_PARAM.search(name)]
        if names:
            raise ValueError(f"never put a secret in the URL's query string (parameter {names[0]!r}): {where}")
        return value


class AuditSettings(_Section):
    """The tamper-evident audit log of questions answered (``ragtune audit``; format in docs/audit.md).

    ``questions: hash`` (the default) stores only the SHA-256 of each question, so the log never holds what
    users asked unless a deployment chooses ``text`` (what compliance reviews usually need). Document text
    and answers are never logged: records name chunk ids and document hashes only.
    """

    enabled: bool = True
    path: Path = Path("audit/audit.jsonl")  # relative to the project folder
    questions: Literal["text", "hash"] = "hash"


class CacheSettings(_Section):
    """The permission-aware answer cache of ``Project.ask`` (docs/cache.md). Off by default.

    Entries are keyed by the asker's effective ACL tokens, the index version, the answer-relevant settings and
    the model versions, so a cached answer only ever reaches a principal that reads exactly the same chunks,
    and any write to the index (ingest, sync, removal) makes every older entry unreachable.
    """

    enabled: bool = False
    max_entries: int = Field(1000, ge=1, le=1_000_000)
    ttl_s: float = Field(600.0, gt=0, le=30 * 24 * 3600)
    semantic: bool = False  # also serve the answer of a near-identical earlier question (same key only)
    semantic_threshold: float = Field(0.95, gt=0, le=1)


class ServiceSettings(_Section):
    """The service's address and identity: API keys (stored hashed in ``keys_path``) and OIDC bearer JWTs.

    OIDC is off while ``oidc_issuer`` is empty. Only asymmetric algorithms are accepted (``none``/``HS*`` are
    refused); an empty ``oidc_jwks_url`` means the one in the issuer's discovery document.
    """

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    keys_path: Path = Path("service/keys.sqlite")  # relative to the project folder
    ui_path: Path = Path("service/ui.sqlite")  # the web UI's sessions, chat history and feedback
    oidc_issuer: str = ""
    oidc_audience: str = ""
    oidc_jwks_url: str = ""
    oidc_algorithms: list[str] = Field(default_factory=lambda: list(DEFAULT_ALGORITHMS))
    oidc_leeway_s: float = Field(60.0, ge=0, le=600)
    oidc_groups_claim: str = Field("groups", min_length=1)
    oidc_user_claim: str = Field("sub", min_length=1)
    oidc_role_claim: str = ""
    oidc_default_role: Literal["reader", "editor", "admin"] = "reader"
    # The web UI's "Log in with your organisation's account" (authorization code + PKCE, a public client).
    oidc_client_id: str = ""  # empty: oidc_audience
    oidc_scopes: str = "openid profile"
    oidc_redirect_url: str = ""  # empty: <the URL the browser used>/ui/login/oidc/callback (set it behind a proxy)
    # Limits of the REST API (docs/service.md, "Documents, jobs and limits").
    max_upload_mb: float = Field(20.0, gt=0, le=1024)  # one uploaded document (POST /v1/documents)
    rate_limit_per_minute: int = Field(120, ge=1)  # requests per credential per minute (429 beyond it)
    request_timeout_s: float = Field(60.0, gt=0)  # a request running longer gets 504 timeout

    @field_validator("oidc_algorithms")
    @classmethod
    def _asymmetric_only(cls, value: list[str]) -> list[str]:
        return check_algorithms(value)

    @field_validator("oidc_issuer", "oidc_jwks_url")
    @classmethod
    def _safe_url(cls, value: str) -> str:
        return check_url(value, "the address") if value else value

    @model_validator(mode="after")
    def _audience_with_issuer(self) -> ServiceSettings:
        if self.oidc_issuer and not self.oidc_audience:
            raise ValueError("oidc_issuer is set but oidc_audience is not: set it to this service's client id, "
                             "else tokens the issuer made for any other application would be accepted")
        return self


class ObservabilitySettings(_Section):
    """Traces, metrics and logs (docs/observability.md).

    OpenTelemetry spans of every stage are exported over OTLP/HTTP when ``otlp_endpoint`` is set (else tracing
    costs nothing). ``log_format: json`` writes one JSON object per log line with the request id. Spans and logs
    carry counts, ids and latencies only: question and document text only with ``include_text: true``.
    """

    otlp_endpoint: str = ""  # e.g. http://127.0.0.1:4318/v1/traces; empty: no spans exported
    service_name: str = Field("ragtune", min_length=1)
    log_format: Literal["text", "json"] = "text"
    include_text: bool = False


class SecuritySettings(_Section):
    """Process-wide controls (docs/deployment.md, "Egress allowlist").

    ``egress: allowlist`` (the default) refuses every outbound connection but loopback, Unix sockets and the
    destinations configured here: ``generator.base_url`` (unless extractive), ``observability.otlp_endpoint``,
    ``service.oidc_issuer``/``oidc_jwks_url`` and each ``egress_allow`` entry (a host, IP, CIDR, host:port or
    URL). So no library's telemetry or model-hub call can carry text off the machine. ``off`` turns it off.
    """

    egress: Literal["allowlist", "off"] = "allowlist"
    egress_allow: list[str] = Field(default_factory=list)

    @field_validator("egress_allow")
    @classmethod
    def _valid_entries(cls, value: list[str]) -> list[str]:
        from ragtune.security.egress import parse_entry

        for entry in value:
            parse_entry(entry)
        return value


class Settings(BaseSettings):
    """All settings of one ragtune project."""

    model_config = SettingsConfigDict(env_prefix="RAGTUNE_", env_nested_delimiter="__", extra="forbid")

    project_dir: Path = Path(".")
    store_path: Path = Path("index")
    models_path: Path = Path("models")
    store: StoreSettings = StoreSettings()
    embedder: EmbedderSettings = EmbedderSettings()
    ingest: IngestSettings = IngestSettings()
    chunking: ChunkingSettings = ChunkingSettings()
    retrieval: RetrievalSettings = RetrievalSettings()
    rerank: RerankSettings = RerankSettings()
    answer: AnswerSettings = AnswerSettings()
    generator: GeneratorSettings = GeneratorSettings()
    service: ServiceSettings = ServiceSettings()
    audit: AuditSettings = AuditSettings()
    cache: CacheSettings = CacheSettings()
    observability: ObservabilitySettings = ObservabilitySettings()
    security: SecuritySettings = SecuritySettings()

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
        # The project folder is chosen by load_settings (flag, else RAGTUNE_PROJECT_DIR, else search), so the
        # variable can never silently replace an explicit --project.
        return (_EnvWithout(env_settings, {"project_dir"}), init_settings)

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


class _EnvWithout(PydanticBaseSettingsSource):
    """An environment source with some fields left out."""

    def __init__(self, inner: PydanticBaseSettingsSource, fields: set[str]) -> None:
        super().__init__(inner.settings_cls)
        self._inner = inner
        self._fields = fields

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._inner.get_field_value(field, field_name)

    def __call__(self) -> dict[str, Any]:
        return {k: v for k, v in self._inner().items() if k not in self._fields}


def load_settings(project: Path | None = None) -> Settings:
    """Load the settings of the project at ``project`` (else ``$RAGTUNE_PROJECT_DIR``, else found from here)."""
    project = choose_project(project)
    path = project / CONFIG_NAME
    try:
        raw: Any = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid YAML ({exc}); fix it or delete it and run `ragtune init`") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must be a mapping of settings, not {type(raw).__name__}")
    raw["project_dir"] = project
    try:
        settings = Settings(**raw)
    except SettingsError as exc:
        var = bad_json_variable(exc, Settings)
        raise ConfigError(f"environment variable {var} is not valid JSON: fix or unset it, or set one key at a time "
                          f"as {var}__KEY=VALUE") from None
    except ValidationError as exc:
        # `from None`: the chained error would repeat the input, which may be a secret (e.g. a URL with a key).
        first = exc.errors()[0]
        message = error_message(first, Settings, hidden={"project_dir"})  # never the value: it may be a secret
        raise ConfigError(f"{setting_origin(first['loc'], path)}: {message}") from None
    check_folders(settings, path)
    return settings




def init_project(folder: Path) -> Path:
    """Create ``ragtune.yaml`` in ``folder`` (created if needed); refuse to overwrite an existing one."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / CONFIG_NAME
    if path.exists():
        raise ConfigError(f"{path} already exists; edit it, or remove it to start over")
    path.write_text(CONFIG_TEMPLATE, encoding="utf-8")
    return path
