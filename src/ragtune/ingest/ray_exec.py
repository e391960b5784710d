"""Ingestion on a Ray cluster: files are parsed and chunked in Ray tasks, chunk texts embedded by Ray actors.

The driver (the ``ragtune ingest --ray`` process) keeps everything that decides what the index holds: it walks
and reads the files (the workers get the very bytes it hashed, so they need no access to the folder), resolves
every ACL from the front matter the workers parsed, and writes only batches that came back whole. The workers run
the same :func:`~ragtune.ingest.executor.parse_job` as a local ingest and one embedder per worker process, built
from the project's embedder settings, so chunk ids, texts and vectors equal the local path's.

The only module that imports Ray (``pip install 'ragtune[ray]'``).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import ipaddress
import os
import socket
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ragtune.config import Settings
from ragtune.errors import ConfigError, RagtuneError
from ragtune.ingest.executor import ParseJob, ParseOutcome, parse_job
from ragtune.models.embedder import Embedder, make_embedder

try:
    import ray
    import ray.exceptions
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ConfigError("--ray needs Ray on this machine: pip install 'ragtune[ray]' (the same Ray version as the "
                      "cluster)") from exc

__all__ = ["RayExecutor", "check_reachable", "embedder_spec", "ray_executor", "split_address"]

FILES_PER_TASK = 16  # files one parse task handles: small enough to spread, large enough to amortise a task
MIN_PIECE = 16  # texts per embedding call at least: a batch is shared by the actors only in pieces this large
CLIENT_PORT, GCS_PORT = 10001, 6379  # Ray's defaults for ray://HOST and a bare HOST


def embedder_spec(settings: Settings, threads: int = 1) -> dict[str, Any]:
    """The keyword arguments of :func:`~ragtune.models.embedder.make_embedder` for ``settings`` (what
    ``Project.embedder`` builds), with ``threads`` per worker: one CPU per actor, one thread on it."""
    e = settings.embedder
    return {"model": e.model, "batch_size": e.batch_size, "threads": threads, "runtime": e.runtime,
            "models_dir": str(settings.models_dir)}


@functools.lru_cache(maxsize=4)
def _worker_embedder(spec: tuple[tuple[str, Any], ...]) -> Embedder:
    """One embedder per worker process and spec (chunking counts tokens with it; no weights are loaded)."""
    from pathlib import Path

    kwargs = dict(spec)
    return make_embedder(**{**kwargs, "models_dir": Path(kwargs["models_dir"])})


def _cpu_slots() -> list[str]:
    """One entry per CPU of the cluster's alive nodes, interleaved over the nodes (A, B, A, B, ...): the i-th task
    or actor goes to slot i, so work spreads over every node. Ray's ``SPREAD`` strategy picks nodes from a resource
    view that lags behind, and on a busy machine it sent every parse task to one node."""
    per_node = [[n["NodeID"]] * int(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n.get("Alive")]
    width = max((len(cpus) for cpus in per_node), default=0)
    return [cpus[i] for i in range(width) for cpus in per_node if i < len(cpus)]


def _ragtune_version() -> str:
    return importlib.metadata.version("ragtune")


@ray.remote(num_cpus=1, max_retries=2)
def _parse_batch(jobs: list[ParseJob], spec: dict[str, Any]) -> tuple[str, str, list[ParseOutcome]]:
    """Parse and chunk ``jobs`` on a worker: (node id, ragtune version, outcomes in order)."""
    embedder = _worker_embedder(tuple(sorted(spec.items())))
    outcomes = [parse_job(j, embedder.count_tokens, embedder.window) for j in jobs]
    return ray.get_runtime_context().get_node_id(), _ragtune_version(), outcomes


@ray.remote(num_cpus=1, max_restarts=0)
class _EmbedActor:
    """One embedder in one worker process. A dead actor is not restarted (its CPU may be gone with its node, and
    a restart would wait for one forever): the executor sends its pieces to the other actors."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.embedder = _worker_embedder(tuple(sorted(spec.items())))

    def warm_up(self) -> tuple[str, str, str]:
        """Load the weights; (node id, embedder fingerprint, ragtune version)."""
        self.embedder.warm_up()
        return ray.get_runtime_context().get_node_id(), self.embedder.fingerprint, _ragtune_version()

    def embed(self, texts: list[str]) -> tuple[str, np.ndarray]:
        """(node id, vectors of ``texts``)."""
        return ray.get_runtime_context().get_node_id(), self.embedder.embed(texts)


class RayExecutor:
    """An :class:`~ragtune.ingest.executor.IngestExecutor` on the connected Ray cluster.

    Parse tasks and embedding actors each take one CPU, spread over the nodes. The actors (one per CPU in the
    cluster, ``max_actors`` at most) are started for an embedding round and stopped before the next parse round,
    so the two stages never wait for each other's CPUs.
    """

    def __init__(self, spec: dict[str, Any], fingerprint: str, max_actors: int | None = None,
                 files_per_task: int = FILES_PER_TASK) -> None:
        self.spec = spec
        self.fingerprint = fingerprint
        self.files_per_task = files_per_task
        self.cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        self.n_actors = min(self.cpus, max_actors) if max_actors else self.cpus
        self.window = max(64, 2 * self.cpus * files_per_task)
        self._actors: list[Any] = []
        self._dead: set[int] = set()  # actors found dead this round
        self._load: list[int] = []  # pieces in flight per actor
        self._nodes: dict[str, set[str]] = {"parse": set(), "embed": set()}
        self._version = _ragtune_version()
        self._slots = _cpu_slots()

    def _placed(self, i: int) -> dict[str, Any]:
        """Options that put the ``i``-th task or actor on CPU slot ``i``; soft, so a dead node's share runs
        elsewhere."""
        if not self._slots:
            return {"scheduling_strategy": "SPREAD"}
        node = self._slots[i % len(self._slots)]
        return {"scheduling_strategy": NodeAffinitySchedulingStrategy(node_id=node, soft=True)}

    def map_parse(self, jobs: Sequence[ParseJob]) -> list[ParseOutcome]:
        """Parse and chunk ``jobs`` in tasks of up to ``files_per_task`` files (at least two tasks per CPU when
        there are enough files), spread over the nodes; outcomes in job order."""
        self._stop_actors()
        size = max(1, min(self.files_per_task, -(-len(jobs) // (2 * self.cpus))))
        refs = [_parse_batch.options(**self._placed(n)).remote(list(jobs[i:i + size]), self.spec)
                for n, i in enumerate(range(0, len(jobs), size))]
        out: list[ParseOutcome] = []
        for ref in refs:
            node, version, outcomes = self._get(ref, "parsing files")
            self._same_ragtune(version)
            self._nodes["parse"].add(node)
            out.extend(outcomes)
        return out

    def warm_up(self) -> None:
        """Start the embedding actors and load their models; refuse workers whose embedder differs."""
        if self._actors:
            return
        self._actors = [_EmbedActor.options(**self._placed(i)).remote(self.spec)  # type: ignore[attr-defined]
                        for i in range(self.n_actors)]
        for i, ref in enumerate([a.warm_up.remote() for a in self._actors]):
            try:
                node, fingerprint, version = self._get(ref, "loading the embedder", actor_may_die=True)
            except ray.exceptions.RayActorError as exc:
                self._dead.add(i)  # the others carry on
                if len(self._dead) == len(self._actors):
                    raise _lost("loading the embedder", exc) from exc
                continue
            self._same_ragtune(version)
            if fingerprint != self.fingerprint:
                raise ConfigError(f"the Ray workers embed with {fingerprint} but this project uses {self.fingerprint}: "
                                  "run the cluster on the same ragtune image (the same model package and runtime)")

    def embed_batches(self, batches: Iterable[Sequence[str]]) -> Iterator[np.ndarray]:
        """Vectors of each batch in order. A batch is split over the actors (pieces of at least ``MIN_PIECE``
        texts, each to the least loaded actor) and up to two pieces per actor are in flight. A piece whose actor
        died goes to another live actor; with none left the sync stops with a clear error. Pieces still in flight
        when the caller stops are cancelled."""
        self.warm_up()
        todo = iter(batches)
        self._load = [0] * len(self._actors)
        inflight: deque[list[_Piece]] = deque()
        more = True
        try:
            while True:
                while more and sum(self._load) < 2 * (len(self._actors) - len(self._dead)):
                    texts = next(todo, None)
                    if texts is None:
                        more = False
                        break
                    inflight.append([self._submit(_Piece(piece)) for piece in _split(list(texts), len(self._actors))])
                if not inflight:
                    return
                parts = [self._embedded(piece) for piece in inflight[0]]
                for piece in inflight.popleft():
                    self._load[piece.actor] -= 1
                yield parts[0] if len(parts) == 1 else np.concatenate(parts)
        finally:
            for piece in (p for pieces in inflight for p in pieces):
                with contextlib.suppress(Exception):  # best effort: an uncancelled piece is computed, then dropped
                    ray.cancel(piece.ref)

    def _submit(self, piece: _Piece) -> _Piece:
        """Send ``piece`` to the least loaded live actor."""
        live = [i for i in range(len(self._actors)) if i not in self._dead]
        piece.actor = min(live, key=self._load.__getitem__)
        piece.ref = self._actors[piece.actor].embed.remote(piece.texts)
        self._load[piece.actor] += 1
        return piece

    def _embedded(self, piece: _Piece) -> np.ndarray:
        """The vectors of ``piece``, sent again to another actor while the one it was on has died."""
        while True:
            try:
                node, vectors = self._get(piece.ref, "embedding chunks", actor_may_die=True)
            except ray.exceptions.RayActorError as exc:
                self._dead.add(piece.actor)
                self._load[piece.actor] -= 1
                if len(self._dead) == len(self._actors):
                    raise _lost("embedding chunks", exc) from exc
                self._submit(piece)
                continue
            self._nodes["embed"].add(node)
            return np.asarray(vectors)

    def placement(self) -> dict[str, list[str]]:
        """Node ids that parsed and embedded since the last call."""
        out = {stage: sorted(nodes) for stage, nodes in self._nodes.items() if nodes}
        self._nodes = {"parse": set(), "embed": set()}
        return out

    def close(self) -> None:
        """Stop the embedding actors."""
        self._stop_actors()

    def _stop_actors(self) -> None:
        for actor in self._actors:
            with contextlib.suppress(Exception):  # already dead
                ray.kill(actor, no_restart=True)
        self._actors, self._dead = [], set()

    def _same_ragtune(self, version: str) -> None:
        if version != self._version:
            raise ConfigError(f"the Ray workers run ragtune {version} but this driver runs {self._version}: chunks "
                              "would differ from a local ingest; run the cluster on the same ragtune image")

    @staticmethod
    def _get(ref: Any, doing: str, actor_may_die: bool = False) -> Any:
        """``ray.get`` with a lost worker, node or cluster as one clear error (the index holds only the batches
        written before it, so the same command resumes); ``actor_may_die`` lets an actor's death through."""
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, RagtuneError):
                raise cause from None  # a user-caused error on the worker, e.g. a tuned model missing there
            raise
        except ray.exceptions.RayActorError as exc:
            cause = getattr(getattr(exc, "cause", None), "cause", None)  # an error raised in the actor's __init__
            if isinstance(cause, RagtuneError):
                raise cause from None
            if actor_may_die and not exc.actor_init_failed:
                raise
            raise _lost(doing, exc) from exc
        except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError, ray.exceptions.ObjectLostError,
                ray.exceptions.RaySystemError, ray.exceptions.LocalRayletDiedError) as exc:
            raise _lost(doing, exc) from exc


@dataclass
class _Piece:
    """Texts sent to one actor; ``ref`` the pending result."""

    texts: list[str]
    actor: int = -1
    ref: Any = None


def _lost(doing: str, exc: BaseException) -> RagtuneError:
    return RagtuneError(
        f"the Ray cluster lost its workers while {doing} ({type(exc).__name__}): nothing unfinished was written "
        "and every batch in the index is complete; run the same command again to resume (files already ingested "
        "are skipped)")


def _split(texts: list[str], n: int) -> list[list[str]]:
    """``texts`` in up to ``n`` consecutive pieces of at least ``MIN_PIECE`` texts (one piece if fewer)."""
    k = max(1, min(n, len(texts) // MIN_PIECE))
    step = -(-len(texts) // k)
    return [texts[i:i + step] for i in range(0, len(texts), step)]


def split_address(address: str) -> tuple[str, int, bool]:
    """``(host, port, is_client)`` of a Ray address: ``ray://HOST[:PORT]`` (Ray Client, port 10001 by default)
    or ``HOST[:PORT]`` (the head's GCS, port 6379 by default)."""
    client = address.startswith("ray://")
    rest = address[len("ray://"):] if client else address
    if rest.startswith("["):  # [IPv6]:PORT
        host, _, tail = rest[1:].partition("]")
        port = tail[1:] if tail.startswith(":") else tail
    elif rest.count(":") == 1:
        host, port = rest.split(":")
    else:
        host, port = rest, ""
    if not host or (port and not port.isdigit()):
        raise ConfigError(f"--ray {address!r} is not a Ray address: give auto, HOST:PORT (the head's GCS, e.g. "
                          "10.0.0.5:6379) or ray://HOST:10001 (Ray Client)")
    return host, int(port) if port else (CLIENT_PORT if client else GCS_PORT), client


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast, naming the address and the fix, when nothing answers at a Ray address (Ray itself retries
    for a minute or more)."""
    host, port, _ = split_address(address)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except PermissionError as exc:  # ragtune's egress guard
        raise ConfigError(f"cannot reach the Ray cluster at {address}: {exc}") from exc
    except OSError as exc:
        raise ConfigError(
            f"cannot reach the Ray cluster at {address} ({exc.strerror or exc}): start it (`ray start --head "
            f"--port {port}`), check the address (HOST:PORT of the head's GCS, or ray://HOST:10001 for Ray Client; "
            "RAY_ADDRESS for --ray auto), or leave --ray out to ingest in this process") from exc


def _connect(address: str) -> None:
    """``ray.init`` for ``--ray ADDRESS`` or ``--ray auto`` (``RAY_ADDRESS``, else a new local Ray on 127.0.0.1)."""
    target = os.environ.get("RAY_ADDRESS", "").strip() if address == "auto" else address
    quiet: dict[str, Any] = {"log_to_driver": False, "logging_level": "warning", "configure_logging": True}
    if not target or target == "local":
        with _loopback_only():
            ray.init(address="local", include_dashboard=False, **quiet)
        return
    check_reachable(target)
    host = split_address(target)[0]
    try:
        with _loopback_only() if _is_loopback(host) else contextlib.nullcontext():
            ray.init(address=target, **quiet)
    except (ConnectionError, RuntimeError, ValueError, ray.exceptions.RayError) as exc:
        raise ConfigError(f"cannot connect to the Ray cluster at {target}: {exc} (the driver needs the cluster's "
                          f"Ray version, {ray.__version__} here, and its auth token if it has one)") from exc


def _is_loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@contextlib.contextmanager
def _loopback_only() -> Iterator[None]:
    """Ray on 127.0.0.1 for this machine alone. Ray otherwise swaps a loopback address for the host's routable one
    (and listens there); its switch for single-machine clusters keeps loopback: an environment variable, which
    the processes a local start launches inherit, and the constant the driver read from it at import."""
    from ray._private import ray_constants

    before, flag = os.environ.get(_LOOPBACK_ONLY), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[_LOOPBACK_ONLY], ray_constants.ENABLE_RAY_CLUSTER = "0", False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = flag
        if before is None:
            os.environ.pop(_LOOPBACK_ONLY, None)
        else:
            os.environ[_LOOPBACK_ONLY] = before


_LOOPBACK_ONLY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


@contextlib.contextmanager
def ray_executor(address: str, settings: Settings, fingerprint: str) -> Iterator[RayExecutor]:
    """Connect to Ray (``auto`` or an address), yield a :class:`RayExecutor` for ``settings``' embedder, which
    must have ``fingerprint`` (the driver's), then stop its actors and disconnect (a local Ray it started stops)."""
    if ray.is_initialized():
        raise ConfigError("Ray is already initialised in this process; ingest with --ray from a fresh process")
    _connect(address)
    executor: RayExecutor | None = None
    try:
        executor = RayExecutor(embedder_spec(settings), fingerprint)
        yield executor
    finally:
        try:
            if executor is not None:
                executor.close()
        finally:
            ray.shutdown()
