"""The deployment files in deploy/ (docs/deployment.md): valid manifests with the hardening the docs promise.

No cluster runs here, so every Kubernetes manifest is validated against the schemas kubernetes-validate ships for
a fixed Kubernetes version; the systemd unit is checked key by key and by ``systemd-analyze verify`` when present.
"""

from __future__ import annotations

import configparser
import ipaddress
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from ragtune.security.egress import parse_entry

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
KUBE = DEPLOY / "kubernetes"
K8S_VERSION = "1.30.0"
MANIFESTS = sorted(KUBE.glob("*.yaml"))


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((KUBE / name).read_text(encoding="utf-8"))
    return data


def container() -> dict[str, Any]:
    spec: dict[str, Any] = load("deployment.yaml")["spec"]["template"]["spec"]["containers"][0]
    return spec


def env() -> dict[str, str]:
    return {e["name"]: e["value"] for e in container()["env"]}


def test_the_manifests_that_the_docs_name_exist() -> None:
    names = {p.name for p in MANIFESTS}
    assert {"deployment.yaml", "service.yaml", "networkpolicy.yaml", "secret-example.yaml"} <= names


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_every_manifest_is_valid_for_kubernetes(path: Path) -> None:
    import kubernetes_validate

    docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
    assert docs
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)  # raises on an unknown or mistyped field


def test_the_validator_would_catch_a_mistake() -> None:
    import kubernetes_validate

    mistyped = load("deployment.yaml")
    mistyped["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["port"] = [8000]
    misspelled = load("deployment.yaml")
    misspelled["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesytem"] = True
    for broken in (mistyped, misspelled):
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_probes_point_at_healthz_and_readyz() -> None:
    c = container()
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert {c[p]["httpGet"]["port"] for p in ("livenessProbe", "readinessProbe")} == {"http"}
    assert c["ports"] == [{"name": "http", "containerPort": 8000}]


def test_the_container_runs_as_non_root_on_a_read_only_root() -> None:
    pod = load("deployment.yaml")["spec"]["template"]["spec"]
    c = container()
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert pod["automountServiceAccountToken"] is False
    assert {"requests", "limits"} <= set(c["resources"])


def test_the_secret_is_mounted_as_files_and_named_by_a_file_variable() -> None:
    pod = load("deployment.yaml")["spec"]["template"]["spec"]
    secret_volume = next(v for v in pod["volumes"] if "secret" in v)
    assert secret_volume["secret"]["secretName"] == load("secret-example.yaml")["metadata"]["name"]
    mount = next(m for m in container()["volumeMounts"] if m["name"] == secret_volume["name"])
    assert mount["readOnly"] is True
    key_file = Path(env()["RAGTUNE_LLM_API_KEY_FILE"])
    assert key_file.parent == Path(mount["mountPath"])
    assert key_file.name in load("secret-example.yaml")["stringData"]
    assert key_file.is_relative_to("/run/secrets")  # a platform mount: the permission check allows it
    assert "RAGTUNE_LLM_API_KEY" not in env()  # never the secret itself in the environment


def test_the_network_policy_denies_egress_but_the_allowlist() -> None:
    policy = load("networkpolicy.yaml")["spec"]
    assert "Egress" in policy["policyTypes"] and "Ingress" in policy["policyTypes"]
    pod_labels = load("deployment.yaml")["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= pod_labels.items()
    allowed: set[tuple[str, int]] = set()
    for rule in policy["egress"]:
        assert rule.get("to") and rule.get("ports"), "an egress rule without `to` or `ports` allows everything"
        for peer in rule["to"]:
            if "ipBlock" in peer:
                net = ipaddress.ip_network(peer["ipBlock"]["cidr"])
                assert net.prefixlen >= 8, f"{net} is (nearly) the whole internet"
                allowed |= {(str(net), p["port"]) for p in rule["ports"]}
            else:  # only cluster DNS is reached by selector
                assert peer["podSelector"]["matchLabels"] == {"k8s-app": "kube-dns"}
                assert {p["port"] for p in rule["ports"]} == {53}
    # ...and the in-process allowlist names exactly the same destinations.
    entries = [parse_entry(e) for e in json.loads(env()["RAGTUNE_SECURITY__EGRESS_ALLOW"])]
    assert {(str(e.network), e.port) for e in entries} == allowed
    assert env()["RAGTUNE_SECURITY__EGRESS"] == "allowlist"


def test_the_service_targets_the_named_port() -> None:
    service = load("service.yaml")["spec"]
    assert service["selector"].items() <= load("deployment.yaml")["spec"]["template"]["metadata"]["labels"].items()
    assert service["ports"][0]["targetPort"] == "http"


# --- systemd ------------------------------------------------------------------------------------------------------

UNIT = DEPLOY / "systemd" / "ragtune.service"
HARDENING = {
    "NoNewPrivileges": "yes", "ProtectSystem": "strict", "PrivateTmp": "yes", "ProtectHome": "yes",
    "DynamicUser": "yes", "IPAddressDeny": "any", "IPAddressAllow": "localhost",
    "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
}


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    parser.read_string(UNIT.read_text(encoding="utf-8"))
    return parser


def test_the_systemd_unit_has_the_hardening_keys() -> None:
    service = unit()["Service"]
    for key, value in HARDENING.items():
        assert service.get(key) == value, key
    assert service["ReadWritePaths"] == "/var/lib/ragtune"
    assert "ragtune serve --host 127.0.0.1" in service["ExecStart"]  # behind the proxy, never on a public address
    assert "RAGTUNE_LLM_API_KEY_FILE=%d/llm-api-key" in UNIT.read_text(encoding="utf-8")
    assert service["LoadCredential"].startswith("llm-api-key:")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_accepts_the_unit(tmp_path: Path) -> None:
    # ExecStart must name an existing executable: point it at this checkout's ragtune (nothing else changes).
    ragtune = shutil.which("ragtune") or str(Path(__import__("sys").executable).with_name("ragtune"))
    copy = tmp_path / "ragtune.service"
    copy.write_text(UNIT.read_text(encoding="utf-8").replace("/opt/ragtune/venv/bin/ragtune", ragtune),
                    encoding="utf-8")
    done = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "Unknown key" not in done.stderr and "ignoring" not in done.stderr, done.stderr
