"""Secrets never reach a message: the secrets file, URLs with credentials, server replies and the CLI's error line."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from helpers import http_server, write

from ragtune.config import load_settings
from ragtune.errors import ConfigError
from ragtune.models.generator import GenerationError, OpenAICompatibleGenerator, resolve_api_key
from ragtune.security.redact import redact

KEY = "sk-live-9f8e7d6c5b4a3210"
PLAIN_KEY = "correcthorsebatterystaple42"  # a key with no recognisable shape: only known-value redaction hides it

posix_only = pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")


def secrets_file(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = write(tmp_path / "secrets.yaml", text)
    path.chmod(mode)
    return path


# --- the secrets file ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [f"llm_api_key: {KEY}: [\n", f"llm_api_key: '{KEY}\n", f"\tllm_api_key: {KEY}\n"])
def test_a_malformed_secrets_file_never_quotes_its_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           text: str) -> None:
    monkeypatch.delenv("RAGTUNE_LLM_API_KEY", raising=False)
    path = secrets_file(tmp_path, text)
    with pytest.raises(ConfigError, match="not valid YAML") as info:
        resolve_api_key(secrets_file=path)
    assert KEY not in str(info.value) and "9f8e7d" not in str(info.value)
    assert str(path) in str(info.value)


@posix_only
@pytest.mark.parametrize("mode", [0o644, 0o666, 0o640, 0o604, 0o660])
def test_a_secrets_file_readable_by_others_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      mode: int) -> None:
    monkeypatch.delenv("RAGTUNE_LLM_API_KEY", raising=False)
    path = secrets_file(tmp_path, f"llm_api_key: {KEY}\n", mode)
    with pytest.raises(ConfigError, match=f"chmod 600 {path}") as info:
        resolve_api_key(secrets_file=path)
    assert KEY not in str(info.value)


@posix_only
def test_the_default_secrets_file_location_is_checked_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAGTUNE_LLM_API_KEY", raising=False)
    path = secrets_file(tmp_path, f"llm_api_key: {KEY}\n", 0o644)
    monkeypatch.setenv("RAGTUNE_SECRETS_FILE", str(path))
    with pytest.raises(ConfigError, match="chmod 600"):
        resolve_api_key()
    path.chmod(0o600)
    assert resolve_api_key() == KEY


@posix_only
@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_an_owner_only_secrets_file_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: int) -> None:
    monkeypatch.delenv("RAGTUNE_LLM_API_KEY", raising=False)
    path = secrets_file(tmp_path, f"llm_api_key: {KEY}\n", mode)
    assert resolve_api_key(secrets_file=path) == KEY


# --- credentials in generator.base_url -----------------------------------------------------------------------


@pytest.mark.parametrize("url", [
    f"https://user:{KEY}@api.example.com/v1",
    f"https://{KEY}@api.example.com/v1",
    f"http://user:{PLAIN_KEY}@127.0.0.1:8080/v1",
    f"https://api.example.com/v1?api_key={PLAIN_KEY}",
    f"https://api.example.com/v1?api-version=2024-02-01&access_token={PLAIN_KEY}",
    f"https://api.example.com/v1?key={PLAIN_KEY}",
    f"https://api.example.com/v1?client_secret={PLAIN_KEY}",
])
def test_credentials_in_the_base_url_are_refused_without_echoing_them(tmp_path: Path, url: str) -> None:
    write(tmp_path / "ragtune.yaml", f"generator:\n  kind: openai\n  model: m\n  base_url: '{url}'\n")
    with pytest.raises(ConfigError, match="generator.base_url") as info:
        load_settings(tmp_path)
    message = str(info.value)
    assert "never put" in message
    assert KEY not in message and PLAIN_KEY not in message and "9f8e7d" not in message


def test_credentials_in_a_base_url_from_the_environment_are_refused(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "ragtune.yaml", "generator:\n  kind: openai\n  model: m\n")
    monkeypatch.setenv("RAGTUNE_GENERATOR__BASE_URL", f"https://user:{KEY}@api.example.com/v1")
    with pytest.raises(ConfigError, match="RAGTUNE_GENERATOR__BASE_URL") as info:
        load_settings(tmp_path)
    assert KEY not in str(info.value)


@pytest.mark.parametrize("url", ["", "https://api.openai.com/v1", "http://127.0.0.1:8080/v1",
                                 "https://x.openai.azure.com/openai/deployments/d?api-version=2024-02-01"])
def test_ordinary_base_urls_are_accepted(tmp_path: Path, url: str) -> None:
    write(tmp_path / "ragtune.yaml", f"generator:\n  kind: openai\n  model: m\n  base_url: '{url}'\n")
    assert load_settings(tmp_path).generator.base_url == url


@pytest.mark.parametrize("url", ["api.example.com/v1", f"user:{KEY}@api.example.com/v1", "ftp://host/v1",
                                 "http://[::1/v1"])
def test_a_base_url_that_is_not_an_http_address_is_refused(tmp_path: Path, url: str) -> None:
    write(tmp_path / "ragtune.yaml", f"generator:\n  base_url: '{url}'\n")
    with pytest.raises(ConfigError, match="generator.base_url") as info:
        load_settings(tmp_path)
    assert KEY not in str(info.value)


# --- redaction -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    (f"cannot reach https://user:{KEY}@host/v1: down", "cannot reach https://***@host/v1: down"),
    ("http://u:p@ss@host:1/x", "http://***@host:1/x"),
    (f"Incorrect API key provided: {KEY}.", "Incorrect API key provided: sk-***."),
    ("Authorization: Bearer abc.def-123", "Authorization: Bearer ***"),
    ("the proxy sent bearer abc123XYZ back", "the proxy sent bearer *** back"),
    ("GET /v1?api_key=hunter2&page=1", "GET /v1?api_key=***&page=1"),
    ('{"api_key": "hunter2", "max_tokens": 256}', '{"api_key": "***", "max_tokens": 256}'),
    ("password=hunter2 token: abc", "password=*** token: ***"),
    ("it should hold `llm_api_key: ...`", "it should hold `llm_api_key: ...`"),
    ("max_tokens=256 top_k=8", "max_tokens=256 top_k=8"),
    ("nothing secret here: /tmp/project/ragtune.yaml", "nothing secret here: /tmp/project/ragtune.yaml"),
])
def test_redact_removes_credential_shapes(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_redact_removes_known_secret_values() -> None:
    text = f"server said: key {PLAIN_KEY} is not valid (and neither is {PLAIN_KEY[:-2]})"
    assert redact(text, [PLAIN_KEY, "", PLAIN_KEY[:-2]]) == "server said: key *** is not valid (and neither is ***)"
    assert redact("unchanged", []) == "unchanged"


def test_redact_imports_only_the_standard_library() -> None:
    import ast

    import ragtune.security.redact as module

    tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
    names = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
             for alias in node.names}
    names |= {node.module.split(".")[0] for node in ast.walk(tree)
              if isinstance(node, ast.ImportFrom) and node.module}
    assert names <= set(sys.stdlib_module_names) | {"__future__"}, names


# --- generator errors against a real HTTP server -------------------------------------------------------------


class _EchoingHandler(BaseHTTPRequestHandler):
    """An OpenAI-compatible endpoint gone wrong: its error replies quote the credentials it received."""

    def do_POST(self) -> None:  # noqa: N802 - the http.server API
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        status = 401 if self.path.startswith("/auth") else 500
        body = json.dumps({"error": {"message": f"rejected Authorization: {self.headers.get('Authorization')} "
                                                f"(api_key={PLAIN_KEY})", "type": "server_error"}})
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet
        pass


@pytest.fixture
def echoing_server() -> Iterator[str]:
    with http_server(_EchoingHandler) as url:
        yield url


@pytest.mark.parametrize("prefix", ["/v1", "/auth/v1"])
def test_a_server_reply_quoting_the_key_is_redacted(echoing_server: str, prefix: str) -> None:
    gen = OpenAICompatibleGenerator(echoing_server + prefix, model="m", api_key=PLAIN_KEY, timeout_s=10)
    with pytest.raises(GenerationError) as info:
        gen.generate([{"role": "user", "content": "hi"}], max_tokens=4)
    assert PLAIN_KEY not in str(info.value)
    assert echoing_server in str(info.value)


def test_a_key_from_the_secrets_file_is_redacted_from_replies(echoing_server: str, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAGTUNE_LLM_API_KEY", raising=False)
    path = secrets_file(tmp_path, "llm_api_key: hushhushvalue77\n")
    gen = OpenAICompatibleGenerator(echoing_server + "/v1", model="m", secrets_file=path, timeout_s=10)
    with pytest.raises(GenerationError, match="HTTP 500") as info:
        gen.generate([{"role": "user", "content": "hi"}], max_tokens=4)
    assert "hushhushvalue77" not in str(info.value)


def test_an_unreachable_url_with_credentials_is_redacted() -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    gen = OpenAICompatibleGenerator(f"http://user:{PLAIN_KEY}@127.0.0.1:{port}/v1", model="m", timeout_s=5)
    with pytest.raises(GenerationError, match="cannot reach") as info:
        gen.generate([{"role": "user", "content": "hi"}], max_tokens=4)
    assert PLAIN_KEY not in str(info.value)
    assert f"127.0.0.1:{port}" in str(info.value)


# --- the CLI's error line -------------------------------------------------------------------------------------


def test_the_cli_error_line_is_redacted_and_escaped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from ragtune.cli import main

    folder = tmp_path / "[bold]x[/bold]" / "api_key=hunter2secret"
    folder.mkdir(parents=True)
    monkeypatch.delenv("RAGTUNE_PROJECT_DIR", raising=False)
    monkeypatch.setattr(sys, "argv", ["ragtune", "sources", "--project", str(folder)])
    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code == 1
    printed = capsys.readouterr().err
    assert "is not a ragtune project" in printed
    assert "hunter2secret" not in printed and "api_key=***" in printed
    assert "[bold]x[/bold]" in printed.replace("\n", "")
