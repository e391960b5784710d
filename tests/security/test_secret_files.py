"""Secrets from files mounted by the platform (``RAGTUNE_LLM_API_KEY_FILE``): read, checked, never shown."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from helpers import http_server, write

from ragtune.errors import ConfigError, GenerationError
from ragtune.models.generator import OpenAICompatibleGenerator, resolve_api_key
from ragtune.security import secret_files

SECRET = "sk-mounted-5e4d3c2b1a09"
VAR = "RAGTUNE_LLM_API_KEY"
posix_only = pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in (VAR, VAR + "_FILE", "OTHER_KEY", "OTHER_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RAGTUNE_SECRETS_FILE", str(tmp_path / "no-secrets.yaml"))


def secret(path: Path, text: str = SECRET + "\n", mode: int = 0o600) -> Path:
    write(path, text).chmod(mode)
    return path


def test_the_key_comes_from_the_file_named_by_the_file_variable(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(VAR + "_FILE", str(secret(tmp_path / "key")))
    assert resolve_api_key() == SECRET  # the trailing newline dropped


def test_only_one_trailing_newline_is_dropped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTHER_KEY_FILE", str(secret(tmp_path / "key", "pass word \n\n")))
    assert resolve_api_key("OTHER_KEY") == "pass word \n"  # api_key_env chooses the variable, and its _FILE


def test_the_variable_wins_over_the_file_and_the_file_over_the_secrets_file(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    secrets_yaml = secret(tmp_path / "secrets.yaml", "llm_api_key: from-the-secrets-file\n")
    monkeypatch.setenv(VAR + "_FILE", str(secret(tmp_path / "key")))
    assert resolve_api_key(secrets_file=secrets_yaml) == SECRET
    monkeypatch.setenv(VAR, "from-the-variable")
    assert resolve_api_key(secrets_file=secrets_yaml) == "from-the-variable"


@posix_only
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_a_file_readable_by_others_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: int) -> None:
    path = secret(tmp_path / "key", mode=mode)
    monkeypatch.setenv(VAR + "_FILE", str(path))
    with pytest.raises(ConfigError, match=f"chmod 600 {path}") as info:
        resolve_api_key()
    assert f"{VAR}_FILE={path}" in str(info.value) and SECRET not in str(info.value)


@posix_only
def test_a_platform_mount_may_be_readable_by_others(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mount = tmp_path / "run" / "secrets"  # stands in for /run/secrets, which a test must not write to
    monkeypatch.setattr(secret_files, "PLATFORM_SECRET_DIRS", (mount,))
    monkeypatch.setenv(VAR + "_FILE", str(secret(mount / "llm-api-key", mode=0o444)))
    assert resolve_api_key() == SECRET
    monkeypatch.setenv(VAR + "_FILE", str(secret(tmp_path / "run" / "secretsX" / "key", mode=0o444)))
    with pytest.raises(ConfigError, match="readable or writable by other users"):  # a sibling is no mount
        resolve_api_key()


@pytest.mark.parametrize(("content", "problem"), [
    (SECRET.encode() + b"\xff\xfe\n", "not UTF-8"),
    (b"\n", "empty"),
])
def test_a_bad_file_is_named_with_its_variable_never_its_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 content: bytes, problem: str) -> None:
    path = tmp_path / "key"
    path.write_bytes(content)
    path.chmod(0o600)
    monkeypatch.setenv(VAR + "_FILE", str(path))
    with pytest.raises(ConfigError, match=problem) as info:
        resolve_api_key()
    assert f"{VAR}_FILE={path}" in str(info.value)
    assert SECRET not in str(info.value) and "5e4d3c" not in str(info.value)


def test_a_missing_file_is_named_with_its_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(VAR + "_FILE", str(tmp_path / "absent"))
    with pytest.raises(ConfigError, match=f"{VAR}_FILE={tmp_path / 'absent'}: no such file"):
        resolve_api_key()


@posix_only
@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads a mode-000 file")
def test_an_unreadable_file_is_named_with_its_variable_never_its_content(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    path = secret(tmp_path / "key", mode=0o000)
    monkeypatch.setenv(VAR + "_FILE", str(path))
    with pytest.raises(ConfigError, match="cannot read it") as info:
        resolve_api_key()
    assert f"{VAR}_FILE={path}" in str(info.value) and SECRET not in str(info.value)


class _AuthEcho(BaseHTTPRequestHandler):
    """An OpenAI-compatible endpoint that records the Authorization header and fails, quoting it."""

    seen: list[str] = []

    def do_POST(self) -> None:  # noqa: N802 - the http.server API
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.seen.append(self.headers.get("Authorization", ""))
        body = json.dumps({"error": {"message": f"bad {self.headers.get('Authorization')}", "type": "x"}})
        self.send_response(500)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet
        pass


@pytest.fixture
def auth_echo() -> Iterator[str]:
    with http_server(_AuthEcho) as url:
        yield url + "/v1"


def test_the_generator_sends_the_mounted_key_and_never_logs_or_shows_it(
        auth_echo: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv(VAR + "_FILE", str(secret(tmp_path / "key")))
    caplog.set_level(logging.DEBUG)
    gen = OpenAICompatibleGenerator(auth_echo, model="m", timeout_s=10)
    with pytest.raises(GenerationError) as info:
        gen.generate([{"role": "user", "content": "hi"}], max_tokens=4)
    assert f"Bearer {SECRET}" in _AuthEcho.seen  # the real client sent the file's key
    assert SECRET not in str(info.value)  # the reply quoting it is redacted
    assert SECRET not in caplog.text  # and no logger (ours, openai's, httpx's) wrote it
