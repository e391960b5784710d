"""The orchestrator side of the peer benchmarks (``peers_retrieval.py``, ``peers_setfit.py``).

The peers (LlamaIndex, Haystack, SetFit) live in their own virtual environment (``benchmarks/peers/setup.sh``,
default ``.bench/peers-venv``), never in ragtune's. Each runs as a worker subprocess of that environment's
Python speaking JSON lines (``benchmarks/peers/jsonl_worker.py``); :class:`Worker` is the client. The pure
helpers here (query order, latency summary, ratios, scoring) are what the tests check.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent / "peers"))
from _common import BENCH_DIR, REPO_ROOT, cache_dir, dedupe, median, percentile, recall_at_k
from jsonl_worker import versions as versions  # noqa: E402  (standard library only; the workers' copy is the one)

PEERS_DIR = REPO_ROOT / "benchmarks" / "peers"
DEFAULT_VENV = BENCH_DIR / "peers-venv"
SETUP_HINT = "bash benchmarks/peers/setup.sh"
T = TypeVar("T")


class WorkerError(SystemExit):
    """A worker failed or died: the benchmark stops with its message (exit status 1)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


def peers_python(venv: Path | None = None) -> Path:
    """The peers venv's Python; a clear error naming the setup command when it is missing."""
    root = Path(venv) if venv is not None else Path(os.environ.get("RAGTUNE_PEERS_VENV", DEFAULT_VENV))
    python = root / "bin" / "python"
    if not python.is_file():
        raise SystemExit(f"peers environment not found: {python} does not exist.\n"
                         f"Create it (LlamaIndex, Haystack, SetFit; separate from .venv) with: {SETUP_HINT}")
    return python


def worker_env() -> dict[str, str]:
    """The environment of a worker: offline (local model folder only), no telemetry, no progress bars."""
    env = dict(os.environ)
    env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                "HAYSTACK_TELEMETRY_ENABLED": "False", "TOKENIZERS_PARALLELISM": "false", "TQDM_DISABLE": "1",
                "PYTHONUNBUFFERED": "1"})
    env.pop("PYTHONPATH", None)  # the worker imports nothing of ragtune's
    return env


class Worker:
    """One worker subprocess: ``request(op, **fields)`` sends a line and returns the reply (``ok`` checked).

    The worker's stderr goes to ``.bench/peers/logs/<name>.log``; a failure names the log and quotes its end.
    """

    def __init__(self, name: str, script: str | Path, python: Path, argv: Sequence[str] = (),
                 log_dir: Path | None = None) -> None:
        self.name = name
        self.log_path = (log_dir if log_dir is not None else cache_dir("peers", "logs")) / f"{name}.log"
        self._log: IO[str] = open(self.log_path, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
        script_path = Path(script) if Path(script).is_absolute() else PEERS_DIR / script
        self.proc = subprocess.Popen(
            [str(python), str(script_path), *argv], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self._log, text=True, encoding="utf-8", bufsize=1, env=worker_env(), cwd=str(REPO_ROOT),
        )

    def _log_tail(self, lines: int = 15) -> str:
        self._log.flush()
        try:
            tail = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
        except OSError:
            return ""
        return "\n".join("    " + line for line in tail)

    def request(self, op: str, **fields: Any) -> dict[str, Any]:
        """Send ``{"op": op, **fields}``; the reply without ``ok``. A worker error raises :class:`WorkerError`."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(json.dumps({"op": op, **fields}) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except BrokenPipeError:
            line = ""
        if not line:
            status = self.proc.wait(timeout=30)
            raise WorkerError(f"{self.name} worker exited (status {status}) during {op!r}; "
                              f"its log {self.log_path} ends:\n{self._log_tail()}")
        reply = parse_reply(line, self.name, op)
        return reply

    def close(self) -> None:
        """Ask the worker to quit; kill it if it does not within 30 s."""
        if self.proc.poll() is None:
            try:
                self.request("quit")
                self.proc.wait(timeout=30)
            except (WorkerError, subprocess.TimeoutExpired, OSError):
                self.proc.kill()
                self.proc.wait()
        self._log.close()

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def parse_reply(line: str, name: str, op: str) -> dict[str, Any]:
    """One reply line as a dict without ``ok``; a non-JSON line or ``ok: false`` raises :class:`WorkerError`."""
    try:
        reply = json.loads(line)
    except json.JSONDecodeError as exc:
        raise WorkerError(f"{name} worker: reply to {op!r} is not JSON ({exc}): {line[:200]!r}") from None
    if not isinstance(reply, dict) or "ok" not in reply:
        raise WorkerError(f"{name} worker: reply to {op!r} lacks 'ok': {line[:200]!r}")
    if not reply.pop("ok"):
        raise WorkerError(f"{name} worker failed on {op!r}: {reply.get('error')}\n{reply.get('traceback', '')}")
    return reply


# --- pure helpers --------------------------------------------------------------------------------------


def rotated(systems: Sequence[T], i: int) -> list[T]:
    """The order of the systems for query ``i``: rotated by ``i``, so over ``len(systems)`` consecutive
    queries each system runs once in each position (first, second, ...)."""
    if not systems:
        return []
    s = i % len(systems)
    return [*systems[s:], *systems[:s]]


def latency(ms: Sequence[float]) -> dict[str, float]:
    """p50 and p95 of per-query milliseconds (NaN for none)."""
    return {"p50_ms": median(ms), "p95_ms": percentile(ms, 95)}


def p50_ratio(peer_ms: Sequence[float], ragtune_ms: Sequence[float]) -> float:
    """A peer's median latency over ragtune's, from the same run (> 1: the peer is slower)."""
    base = median(ragtune_ms)
    if not base or base != base:  # 0 or NaN
        raise ValueError("ragtune's p50 is 0 or missing: no ratio")
    return median(peer_ms) / base


def recall_at_5(ranked: Sequence[str], gold: Iterable[str]) -> float:
    """Share of the gold ids among the first five distinct ids of ``ranked``."""
    return recall_at_k(dedupe(ranked), {g: 1 for g in gold}, 5)


def policy_recall_at_5(ranked: Sequence[str], policy: str, policy_of: Mapping[str, str]) -> float:
    """1.0 when one of the first five distinct ids belongs to ``policy`` (``policy_of`` maps id -> policy)."""
    return float(any(policy_of[i] == policy for i in dedupe(ranked)[:5]))


def write_docs_jsonl(path: Path, docs: Iterable[tuple[str, str]]) -> int:
    """The corpus file the workers index: one ``{"id", "text"}`` per line; returns the count."""
    n = 0
    with open(path, "w", encoding="utf-8") as fh:
        for doc_id, text in docs:
            fh.write(json.dumps({"id": doc_id, "text": text}, ensure_ascii=False) + "\n")
            n += 1
    return n


def version_text(found: Mapping[str, str]) -> str:
    """``name version, name version`` for a docs cell."""
    return ", ".join(f"{k} {v}" for k, v in found.items())


def load_avg() -> float:
    """The machine's 1-minute load average (above the core count, other work shared the CPU)."""
    return round(os.getloadavg()[0], 2)


def warn_if_busy(threads: int) -> None:
    """Say so when other work already loads the CPU: multi-threaded torch (the peers) slows down far more than
    onnxruntime under contention, so such a run measures the machine, not the systems."""
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    if threads > 1 and load > 0.5 * cores:
        progress(f"warning: load average {load:.1f} on {cores} cores before the run; with {threads} threads per "
                 "system the peers' latency suffers most. Run on an idle machine, or pass --threads 1.")


def progress(message: str) -> None:
    """A progress line on stderr."""
    print(message, file=sys.stderr, flush=True)
