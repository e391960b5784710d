"""Ray ingestion throughput: ``ingest --ray`` with 1 and 2 workers as a ratio to the local path, same files.

The first N SciFact abstracts (default 300) are written as Markdown files, as ``benchmarks/ingest_throughput.py``
writes them. Each of ``--runs`` rounds ingests that folder into a fresh project three ways, in rotating order so
machine noise hits all three: locally (``Project.ingest``, the embedder already loaded, its cache cleared), and
with ``ray=ADDRESS`` on a single-node Ray cluster on 127.0.0.1 started with ``--num-cpus 1`` and ``--num-cpus 2``
(one parse task slot and one embedding actor per CPU, each actor one thread). A Ray run's wall time is what a
user waits for: connecting to the cluster, starting the actors and loading their models, shipping the file bytes,
chunks and vectors. It reports chunks/s (median of the runs) and the ratio to the local path.

On a 2-core machine this shows the mechanism and its overhead, not a speed-up: the local path already uses both
cores for embedding, and the Ray workers share the same two cores with the driver.

    RAGTUNE_DATA=../shared/data .venv/bin/python benchmarks/ray_ingest.py [--docs 300] [--runs 3] [--no-docs]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("LANCE_LOG", "error")

from _common import (  # noqa: E402
    cache_dir,
    clear_embedding_cache,
    emit,
    load_scifact_corpus,
    machine,
    median,
    write_corpus,
    write_row,
)

from ragtune.config import Settings  # noqa: E402
from ragtune.core import Acl  # noqa: E402
from ragtune.project import Project  # noqa: E402

SECTION = "Ray ingestion (SciFact abstracts)"
COMMAND = "RAGTUNE_DATA=../shared/data .venv/bin/python benchmarks/ray_ingest.py"
RAY = Path(sys.executable).parent / "ray"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def local_ray(cpus: int, env: dict[str, str]) -> Iterator[str]:
    """A single-node Ray head with ``cpus`` CPUs, every process on 127.0.0.1 (Ray's single-machine switch), in
    a process group of its own; yields its address, then stops exactly that group."""
    temp = tempfile.mkdtemp(prefix="rtbench-", dir="/tmp")  # short: Ray's Unix socket paths must fit
    port = _free_port()
    ports = ["--port", str(port), "--ray-client-server-port", str(_free_port()),
             "--dashboard-agent-listen-port", str(_free_port())]
    proc = subprocess.Popen(
        [str(RAY), "start", "--head", "--block", "--num-cpus", str(cpus), "--include-dashboard", "false",
         "--temp-dir", temp, "--disable-usage-stats", *ports],
        env={**env, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:  # ready once the GCS port answers
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"ray start --head --num-cpus {cpus} did not come up (exit {proc.poll()})")
            time.sleep(0.5)
        time.sleep(2)  # the raylet registers after the GCS
        yield f"127.0.0.1:{port}"
    finally:
        for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=wait)
        shutil.rmtree(temp, ignore_errors=True)


def ingest_once(docs: Path, ray: str | None, root: Path) -> tuple[float, int]:
    """Ingest ``docs`` into a fresh project (locally, or on the Ray cluster at ``ray``); wall seconds, chunks."""
    folder = root / ("local" if ray is None else "ray")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    project = Project(Settings(project_dir=folder))
    clear_embedding_cache()  # every vector is computed, in this process as in the actors
    t0 = time.perf_counter()
    report = project.ingest(docs, Acl(public=True), ray=ray)
    wall = time.perf_counter() - t0
    if report.failed or report.ingested == 0:
        raise SystemExit(f"ingest went wrong: {report}")
    if ray is not None and not report.nodes.get("embed"):
        raise SystemExit("the Ray ingest reports no embedding node")
    return wall, report.chunks_embedded


def main(argv: Sequence[str] | None = None) -> int:
    """Run the rounds, print one BENCH line per run and record the medians."""
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--docs", type=int, default=300, help="number of SciFact abstracts (file order)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--no-docs", action="store_true", help="do not write docs/benchmarks.md")
    args = ap.parse_args(argv)

    root = cache_dir("ray-ingest")
    docs = root / "docs"
    corpus = load_scifact_corpus(limit=args.docs)
    write_corpus(docs, corpus)
    # The clusters' token (token authentication, Ray's default for new clusters), for them and this driver.
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token",
           "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    env.pop("RAY_ADDRESS", None)
    os.environ.update({k: env[k] for k in ("RAY_USAGE_STATS_ENABLED", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN")})
    Project(Settings(project_dir=root)).embedder.embed(["warm-up: load the model before anything is timed"] * 32)

    walls: dict[str, list[float]] = {"local": [], "ray-1": [], "ray-2": []}
    chunks = 0
    with local_ray(1, env) as one, local_ray(2, env) as two:
        where = {"local": None, "ray-1": one, "ray-2": two}
        names = list(walls)
        for r in range(args.runs):
            for name in names[r % 3:] + names[:r % 3]:
                wall, n = ingest_once(docs, where[name], root / "projects")
                if chunks and n != chunks:
                    raise SystemExit(f"{name} embedded {n} chunks, another run {chunks}")
                chunks = n
                walls[name].append(wall)
                emit("ray_ingest.run", run=r, mode=name, chunks=n, seconds=round(wall, 2),
                     chunks_per_s=round(n / wall, 2))
    rate = {k: chunks / median(v) for k, v in walls.items()}
    emit("ray_ingest.summary", docs=len(corpus), chunks=chunks, runs=args.runs,
         **{f"{k}_chunks_per_s": round(v, 2) for k, v in rate.items()},
         ratio_1=round(rate["ray-1"] / rate["local"], 3), ratio_2=round(rate["ray-2"] / rate["local"], 3))
    if not args.no_docs:
        record(len(corpus), chunks, args.runs, walls, rate)
    shutil.rmtree(root / "projects", ignore_errors=True)
    return 0


def record(docs: int, chunks: int, runs: int, walls: dict[str, list[float]], rate: dict[str, float]) -> None:
    """Insert or replace the rows of this benchmark in docs/benchmarks.md."""
    header = ["measure", "chunks/s", "ratio to local", "notes"]
    intro = (
        f"The first {docs:,} SciFact abstracts as Markdown files ({chunks:,} chunks), ingested into a fresh "
        f"project locally and with `--ray` on a single-node Ray cluster on 127.0.0.1 with 1 and 2 CPUs (one "
        f"embedding actor per CPU). Medians of {runs} rounds in rotating order; a Ray run's time includes "
        "connecting, starting the actors and loading their models. On 2 cores this shows the mechanism and its "
        "overhead, not a speed-up: the local path already embeds on both cores, and the workers share them with "
        f"the driver (docs/ray.md says what scales on a real cluster). Machine: {machine()}."
    )
    notes = {
        "local": "`Project.ingest`, embedder loaded, 2 threads",
        "ray-1": "1 parse slot, 1 embedding actor (1 thread)",
        "ray-2": "2 parse slots, 2 embedding actors (1 thread each)",
    }
    labels = {"local": "local path", "ray-1": "Ray, 1 worker", "ray-2": "Ray, 2 workers"}
    for name, label in labels.items():
        spread = f"{min(walls[name]):.1f}–{max(walls[name]):.1f} s per run"
        write_row(SECTION, label,
                  f"| {label} | {rate[name]:.1f} | {rate[name] / rate['local']:.2f} | {notes[name]}; {spread} |",
                  header=header, command=COMMAND, intro=intro)


if __name__ == "__main__":
    raise SystemExit(main())
