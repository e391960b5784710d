"""A real 2-node Ray cluster for tests, reachable on loopback only.

The head and one worker node (1 CPU each, separate temp dirs) run inside a network namespace whose only interface
is ``lo``, so nothing they open can be reached from outside, whatever address Ray picks; drivers run in the same
namespace (:meth:`RayCluster.run`). The cluster uses token authentication with a token of its own (in the
environment, so nothing is written to ``~/.ray``). It is stopped by killing exactly the processes in its
namespace: ``ray stop`` would stop every Ray process on the machine, other people's included.

Needs root (``ip netns``) and Ray; where either is missing, :func:`require` fails under CI and skips elsewhere
(with the reason), never silently.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
PORT = 6379  # the namespace is new and empty, so Ray's default port is free in it


def require(ok: bool, reason: str) -> None:
    """Fail under CI (``$CI`` set) or skip elsewhere, with ``reason``, unless ``ok``."""
    if ok:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: the Ray tests must run)")
    pytest.skip(reason)


def ray_missing() -> str | None:
    """Why the Ray tests cannot run here, or None."""
    import importlib.util

    if importlib.util.find_spec("ray") is None or not (BIN / "ray").exists():
        return "Ray is not installed: pip install -e '.[ray]' (make test installs it)"
    return None


def netns_missing() -> str | None:
    """Why a network namespace cannot be made here, or None."""
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is missing: apt-get install iproute2"
    if os.geteuid() != 0:
        return "network namespaces need root (`ip netns add`)"
    return None


@dataclass
class RayCluster:
    """A running head + worker node in the network namespace ``namespace``; ``address`` is the head's GCS."""

    namespace: str
    temp: Path
    env: dict[str, str]
    address: str = f"127.0.0.1:{PORT}"
    started: list[str] = field(default_factory=list)

    def command(self, args: Sequence[str]) -> list[str]:
        """``args`` run inside the namespace."""
        return ["ip", "netns", "exec", self.namespace, *args]

    def run(self, args: Sequence[str], timeout: float = 180, env: dict[str, str] | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``args`` inside the namespace with the cluster's environment (and its auth token)."""
        return subprocess.run(self.command(args), capture_output=True, text=True, timeout=timeout,
                              env={**self.env, **(env or {})}, cwd=cwd)

    def wait_for_nodes(self, count: int, timeout: float = 90) -> None:
        """Block until ``count`` nodes are alive in the cluster: ``ray start`` returns before a worker node has
        registered with the head, and a driver started in that gap sees (and schedules on) the head alone."""
        probe = ("import sys, time, ray\n"
                 f"ray.init(address={self.address!r}, logging_level='ERROR')\n"
                 f"deadline = time.monotonic() + {timeout}\n"
                 f"while sum(n['Alive'] for n in ray.nodes()) < {count} and time.monotonic() < deadline:\n"
                 "    time.sleep(0.5)\n"
                 "alive = sum(n['Alive'] for n in ray.nodes())\n"
                 f"print(alive); sys.exit(0 if alive >= {count} else 1)\n")
        done = self.run([sys.executable, "-c", probe], timeout=timeout + 60)
        if done.returncode != 0:
            raise RuntimeError(f"the Ray cluster did not reach {count} live nodes in {timeout:.0f} s:\n"
                               f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}")

    def pids(self) -> set[int]:
        """Every process in the namespace: the cluster's and any driver running in it now."""
        out = subprocess.run(["ip", "netns", "pids", self.namespace], capture_output=True, text=True, timeout=30)
        return {int(p) for p in out.stdout.split()}

    def interfaces(self) -> list[str]:
        """Names of the namespace's network interfaces."""
        out = subprocess.run(self.command(["ip", "-o", "link", "show"]), capture_output=True, text=True,
                             timeout=30, check=True)
        return [line.split(":")[1].strip().split("@")[0] for line in out.stdout.splitlines() if line.strip()]

    def listeners(self) -> list[tuple[str, str]]:
        """(local address, process) of every TCP and UDP socket listening in the namespace."""
        out = subprocess.run(self.command(["ss", "-H", "-ltunp"]), capture_output=True, text=True, timeout=30,
                             check=True)
        rows = []
        for line in out.stdout.splitlines():
            parts = line.split()
            if len(parts) >= 5:
                rows.append((parts[4], parts[6] if len(parts) > 6 else ""))
        return rows

    def stop(self) -> None:
        """Kill the namespace's processes (TERM, then KILL after 3 s), delete it and the temp dir."""
        for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 5.0)):
            pids = self.pids()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and any(_alive(p) for p in pids):
                time.sleep(0.2)
        subprocess.run(["ip", "netns", "del", self.namespace], capture_output=True, timeout=30)
        shutil.rmtree(self.temp, ignore_errors=True)


def _alive(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie waiting for its parent does not)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def is_loopback(local: str) -> bool:
    """Whether an ``ss`` local address (``127.0.0.1:80``, ``[::ffff:127.0.0.1]:80``, ``[::1]:80``) is loopback."""
    host = local.rsplit(":", 1)[0].strip("[]").split("%")[0]
    if host.startswith("::ffff:"):
        host = host[len("::ffff:"):]
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # "*" or "0.0.0.0" style wildcards are not loopback


def start_cluster(temp: Path) -> RayCluster:
    """Start the head and a worker node (1 CPU, 100 MB object store each) in a new namespace with only ``lo``."""
    namespace = f"ragtune-ray-{os.getpid()}-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", namespace], check=True, capture_output=True, timeout=30)
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token",
           "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    env.pop("RAY_ADDRESS", None)
    cluster = RayCluster(namespace, temp, env)
    try:
        subprocess.run(cluster.command(["ip", "link", "set", "lo", "up"]), check=True, capture_output=True,
                       timeout=30)
        common = ["--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--object-store-memory", "100000000",
                  "--disable-usage-stats"]
        for args in (["--head", "--port", str(PORT), "--include-dashboard", "false",
                      "--temp-dir", str(temp / "head")],
                     ["--address", cluster.address, "--temp-dir", str(temp / "worker")]):
            done = cluster.run([str(BIN / "ray"), "start", *args, *common], timeout=120)
            if done.returncode != 0:
                raise RuntimeError(f"ray start {' '.join(args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
            cluster.started.append(args[0])
        cluster.wait_for_nodes(2)
    except BaseException:
        cluster.stop()
        raise
    return cluster
