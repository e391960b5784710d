"""The egress allowlist: the process opens outbound connections only to the addresses it is configured for.

``install_egress_guard`` adds a ``sys.addaudithook`` hook on the ``socket.connect`` audit event, so every TCP or
UDP connect made by any library (a hub download, a telemetry ping) is checked before it leaves: a destination
that is not loopback, not a Unix socket and not on the allowlist raises ``PermissionError`` and logs one warning
naming ``host:port`` (never any payload). Audit hooks cannot be removed, so the hook is installed once per
process and consults a module-level policy that later calls replace (``security.egress: off`` turns it off).

Entries are a host name, an IP address, a network in CIDR form (``10.0.0.0/8``), any of those with ``:port``,
or a URL (its host and port). Allowed names are resolved to addresses lazily, on the first refused-looking
connect, so installing the guard costs no DNS lookup. Standard library only: the CLI installs it at start.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from ragtune.config import Settings

LOG = logging.getLogger("ragtune.egress")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Entry:
    """One allowlist entry: a host name or a network, and a port (None: any port)."""

    host: str = ""  # lower-case host name; empty when ``network`` is set
    network: _Network | None = None
    port: int | None = None


def parse_entry(text: str) -> Entry:
    """``text`` (``host``, ``host:port``, ``IP``, ``[IPv6]:port``, ``CIDR`` or a URL) as an ``Entry``.

    Raises ``ValueError`` naming what was expected when ``text`` is none of these.
    """
    raw = text.strip()
    hint = "expected a host name, an IP address, a CIDR network (10.0.0.0/8), host:port or a URL"
    if not raw:
        raise ValueError(f"an empty egress entry; {hint}")
    if "://" in raw:
        parts = urlsplit(raw)
        try:
            port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
        except ValueError:
            raise ValueError(f"{raw!r} has an invalid port; {hint}") from None
        if not parts.hostname:
            raise ValueError(f"{raw!r} has no host; {hint}")
        return _host_entry(parts.hostname, port, raw, hint)
    try:
        return Entry(network=ipaddress.ip_network(raw, strict=False))
    except ValueError:
        pass
    host, port = raw, None
    if raw.startswith("["):
        host, _, rest = raw[1:].partition("]")
        port = _port(rest.removeprefix(":"), raw, hint) if rest else None
    elif raw.count(":") == 1:
        host, _, rest = raw.partition(":")
        port = _port(rest, raw, hint)
    return _host_entry(host, port, raw, hint)


def _port(text: str, raw: str, hint: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"{raw!r} has an invalid port; {hint}")
    return int(text)


def _host_entry(host: str, port: int | None, raw: str, hint: str) -> Entry:
    try:
        return Entry(network=ipaddress.ip_network(host), port=port)
    except ValueError:
        pass
    name = host.lower().rstrip(".")
    if not name or any(c in name for c in "/ @?#[]") or name.startswith("-"):
        raise ValueError(f"{raw!r} is not a valid destination; {hint}")
    return Entry(host=name, port=port)


@dataclass
class Policy:
    """What the hook enforces: on or off, the entries, and the addresses their names resolved to."""

    enabled: bool
    entries: tuple[Entry, ...]
    log: logging.Logger
    resolved: list[tuple[_Network, int | None]] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


_policy: Policy | None = None
_installed = False
_busy = threading.local()  # set while the hook runs, so a connect made by its own logging is not re-checked


def install_egress_guard(allowed: Iterable[str], log: logging.Logger | None = None, *, enabled: bool = True) -> None:
    """Refuse every outbound connection but loopback, Unix sockets and ``allowed`` (process-wide, permanent).

    Idempotent: the hook is added once; each call replaces the allowlist it consults. ``enabled=False`` lets
    every connection through (``security.egress: off``). Raises ``ValueError`` for an unparsable entry.
    """
    global _policy, _installed
    _policy = Policy(enabled=enabled, entries=tuple(parse_entry(a) for a in allowed), log=log or LOG)
    if not _installed:
        sys.addaudithook(_hook)
        _installed = True


def settings_allowlist(settings: Settings) -> list[str]:
    """The destinations ``settings`` configures: the generator, the OTLP collector, the OIDC issuer and JWKS
    addresses, and every ``security.egress_allow`` entry."""
    urls = [settings.generator.base_url if settings.generator.kind != "extractive" else "",
            settings.observability.otlp_endpoint, settings.service.oidc_issuer, settings.service.oidc_jwks_url]
    return [u for u in urls if u] + list(settings.security.egress_allow)


def guard_from_settings(settings: Settings | None, log: logging.Logger | None = None) -> None:
    """Install the guard for ``settings`` (None: no project, so loopback only)."""
    if settings is None:
        install_egress_guard((), log)
    else:
        install_egress_guard(settings_allowlist(settings), log, enabled=settings.security.egress == "allowlist")


def allows(host: str, port: int) -> bool:
    """Whether the current policy lets a connection to ``host:port`` through (True when no guard is set)."""
    policy = _policy
    if policy is None or not policy.enabled or _is_local(host):
        return True
    name = host.lower().rstrip(".")
    if any(e.host == name and e.port in (None, port) for e in policy.entries):
        return True
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False  # a name that no entry lists
    return any(ip in net and p in (None, port) for net, p in _resolved(policy))


def _resolved(policy: Policy) -> list[tuple[_Network, int | None]]:
    with policy.lock:
        if policy.resolved is None:
            nets: list[tuple[_Network, int | None]] = []
            for e in policy.entries:
                if e.network is not None:
                    nets.append((e.network, e.port))
                    continue
                try:
                    infos = socket.getaddrinfo(e.host, e.port or None, proto=socket.IPPROTO_TCP)
                except OSError:
                    continue  # a name that does not resolve allows nothing but itself
                nets.extend((ipaddress.ip_network(str(info[4][0]).split("%", 1)[0]), e.port) for info in infos)
            policy.resolved = nets
        return policy.resolved


def _is_local(host: str) -> bool:
    name = host.lower().rstrip(".")
    if name in ("", "localhost") or name.endswith(".localhost"):
        return True
    try:
        ip = ipaddress.ip_address(name.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or ip.is_unspecified or bool(mapped and mapped.is_loopback)


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if event != "socket.connect" or _policy is None or getattr(_busy, "on", False):
        return
    sock, address = args
    if getattr(sock, "family", None) not in (socket.AF_INET, socket.AF_INET6) or not isinstance(address, tuple):
        return  # Unix sockets and other local families
    host, port = str(address[0]), int(address[1])
    _busy.on = True
    try:
        if allows(host, port):
            return
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        _policy.log.warning("egress refused: connection to %s is not in the allowlist", where)
    finally:
        _busy.on = False
    raise PermissionError(f"egress refused: {where} is not an allowed destination; add it to security.egress_allow "
                          "in ragtune.yaml, or set security.egress: off")
