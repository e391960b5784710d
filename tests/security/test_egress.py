"""The egress allowlist (issue 18): outbound connections only to loopback and the configured destinations.

The guard is a permanent, process-wide audit hook, so every test that installs it runs in a subprocess. No test
waits on a real network: refused destinations are TEST-NET addresses (RFC 5737) that the hook refuses before
any packet is sent, and names that would need DNS are pinned to TEST-NET addresses inside the subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import write

from ragtune.config import load_settings
from ragtune.errors import ConfigError
from ragtune.security.egress import Entry, parse_entry
from ragtune.security.egress_cli import project_argument

PRELUDE = """
import json, logging, socket, sys, threading, urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(name)s %(levelname)s %(message)s")
_real_getaddrinfo = socket.getaddrinfo
PINNED = {"huggingface.co": "192.0.2.10", "api.example.com": "203.0.113.5"}  # no DNS: pinned to TEST-NET
def _pinned(host, *args, **kwargs):
    if host in PINNED:
        return _real_getaddrinfo(PINNED[host], *args, **kwargs)
    return _real_getaddrinfo(host, *args, **kwargs)
socket.getaddrinfo = _pinned
def refused(fn):
    try:
        fn()
    except PermissionError as exc:
        return str(exc)
    except OSError as exc:  # urllib wraps it: URLError(reason=PermissionError)
        reason = getattr(exc, "reason", None)
        return str(reason) if isinstance(reason, PermissionError) else "OTHER " + repr(exc)
    return None
def connect(host, port):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        s.connect((host, port))
"""


def run_probe(body: str, tmp_path: Path, *, env: dict[str, str] | None = None) -> tuple[dict[str, object], str]:
    """Run PRELUDE + ``body`` in a fresh interpreter; ``body`` prints one JSON line. Returns it and stderr."""
    script = write(tmp_path / "probe.py", PRELUDE + textwrap.dedent(body))
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("RAGTUNE_")} | (env or {})
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, env=full_env,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def test_loopback_works_and_a_refused_connection_fails_and_is_logged(tmp_path: Path) -> None:
    result, stderr = run_probe("""
        from ragtune.security.egress import install_egress_guard
        class Ok(BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200); self.end_headers(); self.wfile.write(b"local ok")
            def log_message(self, *a): pass
        srv = ThreadingHTTPServer(("127.0.0.1", 0), Ok)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        install_egress_guard([])
        body = urllib.request.urlopen(f"http://127.0.0.1:{srv.server_port}/", timeout=10).read().decode()
        import asyncio
        async_refusal = refused(lambda: asyncio.run(asyncio.open_connection("192.0.2.2", 8080)))
        print(json.dumps({"local": body, "refused": refused(lambda: connect("192.0.2.1", 80)),
                          "refused6": refused(lambda: connect("2001:db8::1", 443)), "async": async_refusal}))
    """, tmp_path)
    assert result["local"] == "local ok"
    assert "192.0.2.1:80 is not an allowed destination" in str(result["refused"])
    assert "security.egress_allow" in str(result["refused"])  # says what to do
    assert "[2001:db8::1]:443" in str(result["refused6"])
    assert "192.0.2.2:8080" in str(result["async"])  # asyncio's connects (httpx, aiohttp) go through the hook too
    assert "ragtune.egress WARNING egress refused: connection to 192.0.2.1:80" in stderr


def own_address() -> str | None:
    """A non-loopback address of this machine (the route a datagram to TEST-NET would take), else None."""
    import socket

    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # a UDP connect sends nothing: it only picks the source address
            address = str(s.getsockname()[0])
    except OSError:
        return None
    return None if address.startswith("127.") or address == "0.0.0.0" else address


def test_an_allowed_non_loopback_destination_really_connects(tmp_path: Path) -> None:
    address = own_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    result, _ = run_probe(f"""
        from ragtune.security.egress import install_egress_guard
        class Ok(BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200); self.end_headers(); self.wfile.write(b"allowed ok")
            def log_message(self, *a): pass
        srv = ThreadingHTTPServer(({address!r}, 0), Ok)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        url = f"http://{address}:{{srv.server_port}}/"
        install_egress_guard([])
        before = refused(lambda: urllib.request.urlopen(url, timeout=10))
        install_egress_guard([f"{address}:{{srv.server_port}}"])
        print(json.dumps({{"before": before, "after": urllib.request.urlopen(url, timeout=10).read().decode()}}))
    """, tmp_path)
    assert f"{address}:" in str(result["before"])  # not loopback: refused until listed
    assert result["after"] == "allowed ok"


def test_a_hub_download_is_refused_with_the_guard_on(tmp_path: Path) -> None:
    result, stderr = run_probe("""
        from ragtune.security.egress import install_egress_guard
        install_egress_guard(["https://api.example.com/v1"])
        print(json.dumps({"hub": refused(lambda: urllib.request.urlopen("https://huggingface.co", timeout=5))}))
    """, tmp_path)
    assert "192.0.2.10:443 is not an allowed destination" in str(result["hub"])
    assert "egress refused: connection to 192.0.2.10:443" in stderr


def test_the_hook_is_idempotent_and_reconfigurable(tmp_path: Path) -> None:
    result, _ = run_probe("""
        from ragtune.security import egress
        egress.install_egress_guard(["192.0.2.1"])
        first = refused(lambda: egress._hook("socket.connect", (socket.socket(), ("192.0.2.1", 80))))
        egress.install_egress_guard([])
        egress.install_egress_guard([])
        second = refused(lambda: connect("192.0.2.1", 80))
        egress.install_egress_guard([], enabled=False)
        print(json.dumps({"first": first, "second": second, "off": egress.allows("192.0.2.1", 80)}))
    """, tmp_path)
    assert result["first"] is None  # allowed while listed
    assert "192.0.2.1:80" in str(result["second"])  # refused once the list was replaced
    assert result["off"] is True


def test_the_destinations_in_the_settings_pass_and_nothing_else(tmp_path: Path) -> None:
    write(tmp_path / "proj" / "ragtune.yaml", textwrap.dedent("""\
        generator:
          kind: openai
          model: m
          base_url: https://api.example.com/v1
        observability:
          otlp_endpoint: http://collector.example:4318/v1/traces
        service:
          oidc_issuer: https://login.example.org
          oidc_audience: ragtune
        security:
          egress_allow: ["10.0.0.0/8", "db.internal:5432", "[2001:db8::7]:443"]
    """))
    result, _ = run_probe(f"""
        from ragtune.config import load_settings
        from ragtune.security.egress import allows, guard_from_settings
        guard_from_settings(load_settings(__import__("pathlib").Path({str(tmp_path / "proj")!r})))
        cases = [("api.example.com", 443), ("203.0.113.5", 443), ("203.0.113.5", 80), ("203.0.113.6", 443),
                 ("collector.example", 4318), ("collector.example", 80), ("login.example.org", 443),
                 ("10.1.2.3", 9), ("db.internal", 5432), ("db.internal", 22), ("2001:db8::7", 443),
                 ("192.0.2.1", 443), ("127.0.0.1", 1), ("::1", 1), ("localhost", 8000)]
        print(json.dumps({{f"{{h}}:{{p}}": allows(h, p) for h, p in cases}}))
    """, tmp_path)
    assert result == {
        "api.example.com:443": True, "203.0.113.5:443": True,  # the generator, by name and by resolved address
        "203.0.113.5:80": False, "203.0.113.6:443": False,
        "collector.example:4318": True, "collector.example:80": False, "login.example.org:443": True,
        "10.1.2.3:9": True, "db.internal:5432": True, "db.internal:22": False, "2001:db8::7:443": True,
        "192.0.2.1:443": False, "127.0.0.1:1": True, "::1:1": True, "localhost:8000": True,
    }


def test_the_cli_installs_the_guard_for_the_commands_project(tmp_path: Path) -> None:
    write(tmp_path / "proj" / "ragtune.yaml", "security:\n  egress_allow: ['192.0.2.44']\n")
    result, stderr = run_probe(f"""
        from ragtune.cli import app
        from ragtune.security import egress
        sys.argv = ["ragtune", "sources", "-p", {str(tmp_path / "proj")!r}]
        try:
            app()
        except SystemExit:
            pass
        refusal = refused(lambda: connect("192.0.2.9", 80))
        print(json.dumps({{"listed": egress.allows("192.0.2.44", 80), "refused": refusal}}))
    """, tmp_path)
    assert result["listed"] is True
    assert "192.0.2.9:80" in str(result["refused"])
    assert "egress refused: connection to 192.0.2.9:80" in stderr


def test_egress_off_in_the_environment_turns_the_guard_off(tmp_path: Path) -> None:
    write(tmp_path / "proj" / "ragtune.yaml", "")
    result, _ = run_probe(f"""
        from ragtune.config import load_settings
        from ragtune.security.egress import allows, guard_from_settings
        guard_from_settings(load_settings(__import__("pathlib").Path({str(tmp_path / "proj")!r})))
        print(json.dumps({{"any": allows("192.0.2.1", 80)}}))
    """, tmp_path, env={"RAGTUNE_SECURITY__EGRESS": "off"})
    assert result["any"] is True


def test_the_server_factory_installs_the_guard(tmp_path: Path) -> None:
    write(tmp_path / "proj" / "ragtune.yaml", "security:\n  egress_allow: ['192.0.2.77:8443']\n")
    result, _ = run_probe("""
        from ragtune.security import egress
        from ragtune.server.cli import create_from_env
        create_from_env()
        print(json.dumps({"listed": egress.allows("192.0.2.77", 8443), "other": egress.allows("192.0.2.77", 80)}))
    """, tmp_path, env={"RAGTUNE_PROJECT_DIR": str(tmp_path / "proj")})
    assert result == {"listed": True, "other": False}


# --- parsing, in-process (no hook) -------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "entry"), [
    ("api.example.com", Entry(host="api.example.com")),
    ("API.Example.com.:8443", Entry(host="api.example.com", port=8443)),
    ("https://api.example.com/v1", Entry(host="api.example.com", port=443)),
    ("http://collector:4318/v1/traces", Entry(host="collector", port=4318)),
])
def test_entries_parse(text: str, entry: Entry) -> None:
    assert parse_entry(text) == entry


def test_networks_parse() -> None:
    assert str(parse_entry("10.0.0.0/8").network) == "10.0.0.0/8"
    assert parse_entry("[2001:db8::1]:443").port == 443


@pytest.mark.parametrize("bad", ["", "host:99999", "http://", "a b", "host:port"])
def test_a_bad_entry_in_the_settings_is_refused_with_its_key(tmp_path: Path, bad: str) -> None:
    write(tmp_path / "ragtune.yaml", f"security:\n  egress_allow: [{json.dumps(bad)}]\n")
    with pytest.raises(ConfigError, match=r"security\.egress_allow.*expected a host name"):
        load_settings(tmp_path)


@pytest.mark.parametrize(("args", "project"), [
    (["-p", "x", "--json"], "x"), (["--project", "y"], "y"), (["--project=z"], "z"), (["-pw"], "w"),
    (["--json"], None), (["--", "-p", "q"], None),
])
def test_the_cli_finds_the_commands_project_argument(args: list[str], project: str | None) -> None:
    assert project_argument(args) == (Path(project) if project else None)
