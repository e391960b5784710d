"""The ``service`` settings section: defaults, the template, env overrides, refused values, from_settings."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from oidc_provider import AUDIENCE, Provider

from ragtune.config import CONFIG_TEMPLATE, init_project, load_settings
from ragtune.errors import ConfigError
from ragtune.service.identity import Role
from ragtune.service.keys import KeyStore
from ragtune.service.oidc import OidcVerifier


def project(tmp_path: Path, service_yaml: str = "") -> Path:
    init_project(tmp_path / "p")
    if service_yaml:
        with (tmp_path / "p" / "ragtune.yaml").open("a", encoding="utf-8") as f:
            f.write("\nservice:\n" + service_yaml)
    return tmp_path / "p"


def test_defaults_and_the_template_block(tmp_path: Path) -> None:
    s = load_settings(project(tmp_path)).service
    assert (s.host, s.port, s.keys_path, s.oidc_issuer) == ("127.0.0.1", 8000, Path("service/keys.sqlite"), "")
    assert (s.oidc_algorithms, s.oidc_leeway_s, s.oidc_default_role) == (["RS256", "ES256"], 60.0, "reader")
    # the commented block in the template, uncommented, is a valid section
    lines = CONFIG_TEMPLATE.splitlines()
    start = lines.index("# service:")
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].startswith("#   ")), len(lines))
    block = [ln[2:] for ln in lines[start:end]]  # the service block only, not the blocks after it
    uncommented = yaml.safe_load("\n".join(block))["service"]
    assert uncommented["oidc_algorithms"] == ["RS256", "ES256"] and uncommented["keys_path"] == "service/keys.sqlite"
    with (tmp_path / "p" / "ragtune.yaml").open("a", encoding="utf-8") as f:
        f.write("\n" + "\n".join(block) + "\n")
    assert load_settings(tmp_path / "p").service.oidc_audience == "ragtune"


@pytest.mark.parametrize("text, message", [
    ("  oidc_algorithms: [HS256]\n", "HS256"),
    ("  oidc_algorithms: [none]\n", "none"),
    ("  oidc_issuer: https://login.example.com\n", "oidc_audience"),
    ("  oidc_issuer: http://login.example.com\n  oidc_audience: x\n", "https"),
    ("  oidc_default_role: owner\n", "oidc_default_role"),
    ("  port: 0\n", "port"),
])
def test_bad_service_settings_are_refused_with_the_reason(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(project(tmp_path, text))


def test_environment_configures_oidc_and_from_settings_builds_it(tmp_path: Path, provider: Provider,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    root = project(tmp_path)
    settings = load_settings(root)
    assert OidcVerifier.from_settings(settings) is None  # no issuer: OIDC off
    store = KeyStore.from_settings(settings)
    assert store.path == root / "service" / "keys.sqlite"
    assert not store.path.exists()  # no I/O until first use

    monkeypatch.setenv("RAGTUNE_SERVICE__OIDC_ISSUER", provider.issuer)
    monkeypatch.setenv("RAGTUNE_SERVICE__OIDC_AUDIENCE", AUDIENCE)
    monkeypatch.setenv("RAGTUNE_SERVICE__OIDC_DEFAULT_ROLE", "editor")
    monkeypatch.setenv("RAGTUNE_SERVICE__OIDC_USER_CLAIM", "email")
    verifier = OidcVerifier.from_settings(load_settings(root))
    assert verifier is not None
    ident = verifier.verify(provider.token(claims={"email": "carol@acme.example"}))
    assert (ident.principal.user, ident.role) == ("carol@acme.example", Role.EDITOR)
