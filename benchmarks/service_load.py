"""Load on `ragtune serve` over loopback: throughput, latency percentiles, errors and cross-user leaks.

The first ``--docs`` SciFact abstracts are written as Markdown files in five ACL groups by position
(``g0`` .. ``g4``, front matter ``acl``) and ingested into a real project under ``.bench/service_load/``
(kept between runs while the corpus is unchanged). The script starts ``ragtune serve`` as a subprocess on a
free 127.0.0.1 port (rate limit raised), creates one reader API key per client with one or two groups, and
runs 1, 10 and 50 concurrent clients (threads, one httpx2 connection each) for ``--seconds`` each on the
SciFact test claims, for ``POST /v1/search`` and ``POST /v1/ask``. Every client checks every hit and citation
against its own groups (the script knows each document's group): a hit outside them is a leak (goal 0).
Errors are non-200 answers or failed requests (goal 0).

HTTP overhead: ``POST /v1/search`` (top 10) over HTTP and the in-process ``Project.search`` in the benchmark
process, interleaved call by call (HTTP, then in-process, on the same claim) so drift on the shared machine
hits both alike; the claims are train claims neither process has embedded before (query embeddings are cached
per process, ``models/embedder.py``). The ratio is the p50 over HTTP / the p50 in-process (goal <= 1.2).
Cache: a second server with ``RAGTUNE_CACHE__ENABLED=true``; one client asks a fixed set of claims twice,
and the speed-up is the p50 of misses (first round) / the p50 of hits (second round), both over HTTP.

    RAGTUNE_DATA=../shared/data .venv/bin/python benchmarks/service_load.py [--docs 2000] [--seconds 15]
        [--quick] [--no-docs]

``--quick`` runs each phase for 3 s (about one minute in all, once the index exists). The server, the clients
and the in-process calls share the machine's cores: the ratios come from the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("LANCE_LOG", "error")

from _common import (  # noqa: E402
    SciFactDoc,
    cache_dir,
    command_line,
    emit,
    load_scifact_corpus,
    load_scifact_qrels,
    load_scifact_queries,
    machine,
    percentile,
    write_row,
)

from ragtune.config import init_project  # noqa: E402
from ragtune.core import Acl, Principal  # noqa: E402
from ragtune.project import Project  # noqa: E402
from ragtune.server.local import free_port, wait_ready  # noqa: E402

SECTION = "Service load (SciFact, loopback HTTP)"
OVERHEAD_SECTION = "Service HTTP overhead and answer cache (SciFact, loopback HTTP)"
GROUPS = [f"g{i}" for i in range(5)]
HEADER = ["route, clients", "requests", "req/s", "p50 ms", "p95 ms", "p99 ms", "errors", "leaks (hits checked)",
          "machine"]
OVERHEAD_HEADER = ["measure", "value", "goal", "notes"]
CONCURRENCY = (1, 10, 50)


def write_docs(folder: Path, docs: Sequence[SciFactDoc]) -> dict[str, str]:
    """Each abstract as ``<_id>.md`` in group ``g<position mod 5>``; returns doc id -> group."""
    folder.mkdir(parents=True, exist_ok=True)
    group_of: dict[str, str] = {}
    for i, d in enumerate(docs):
        group_of[d.doc_id] = GROUPS[i % len(GROUPS)]
        text = (f"---\ntitle: {json.dumps(d.title, ensure_ascii=False)}\nacl: {{groups: [{group_of[d.doc_id]}]}}\n"
                f"---\n{d.text}\n")
        path = folder / f"{d.doc_id}.md"
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
    for stray in folder.glob("*.md"):  # a smaller --docs than last time: the index drops the rest on sync
        if stray.stem not in group_of:
            stray.unlink()
    return group_of


def open_project(root: Path, docs: Sequence[SciFactDoc]) -> tuple[Project, dict[str, str]]:
    """The project over the grouped corpus (ingested once per corpus) and each document's group."""
    group_of = write_docs(root / "docs", docs)
    marker, digest = root / "corpus.txt", f"{len(docs)}:{docs[-1].doc_id if docs else ''}"
    if not (root / "p" / "ragtune.yaml").is_file():
        init_project(root / "p")
    project = Project.open(root / "p")
    if not marker.is_file() or marker.read_text() != digest:
        t0 = time.perf_counter()
        project.ingest(root / "docs", Acl())
        print(f"ingested {len(docs)} abstracts in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        marker.write_text(digest)
    return project, group_of


def client_groups(i: int) -> frozenset[str]:
    """Client ``i``'s groups: one, or two for odd ``i`` (every group is used by some client)."""
    first = GROUPS[i % len(GROUPS)]
    return frozenset({first, GROUPS[(i + 2) % len(GROUPS)]} if i % 2 else {first})


@contextmanager
def server(project_dir: Path, log: Path, env: dict[str, str]) -> Iterator[str]:
    """``ragtune serve`` in a subprocess until the block ends; yields its URL once ``/readyz`` answers 200."""

    port = free_port()
    exe = Path(sys.executable).with_name("ragtune")
    full_env = {**os.environ, "RAGTUNE_SERVICE__RATE_LIMIT_PER_MINUTE": "100000000", **env}
    with open(log, "ab") as fh:
        proc = subprocess.Popen([str(exe), "serve", "--port", str(port), "--project", str(project_dir)],
                                stdout=fh, stderr=fh, env=full_env)
    url = f"http://127.0.0.1:{port}"
    try:
        if not wait_ready(url, 180, alive=lambda: proc.poll() is None):
            raise SystemExit(f"ragtune serve exited ({proc.returncode}) or was not ready within 180 s; see {log}")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Tally:
    """What the clients of one phase saw."""

    latencies: list[float] = field(default_factory=list)
    stages: list[float] = field(default_factory=list)  # the server's own stage times (latency_ms), summed
    errors: int = 0
    leaks: int = 0
    checked: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def server_ms(lat: dict[str, float]) -> float:
    """The server's own time for a request from its stage latencies: ``total`` (ask), else the search stages
    (lexical runs beside embed + dense)."""
    if "total" in lat:
        return lat["total"]
    return (max(lat.get("embed_query", 0.0) + lat.get("dense", 0.0), lat.get("lexical", 0.0))
            + sum(lat.get(k, 0.0) for k in ("fuse", "rerank", "fetch")))


def floor_ms(url: str, key: str, path: str, n: int = 200) -> float:
    """p50 of ``n`` sequential GETs of ``path``: what a request costs the server with no retrieval at all."""
    import httpx2

    with httpx2.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as http:
        return percentile(timed_calls(lambda _: http.get(path).raise_for_status(), [path], n), 50)


def doc_of(path: str) -> str:
    """The SciFact id of a hit's source path (``.../<_id>.md``)."""
    return Path(path).stem


def run_clients(url: str, keys: Sequence[tuple[str, frozenset[str]]], route: str, questions: Sequence[str],
                seconds: float, group_of: dict[str, str]) -> tuple[Tally, float]:
    """``len(keys)`` clients, each with its own key, calling ``route`` until ``seconds`` have passed."""
    import httpx2

    tally = Tally()
    start = threading.Barrier(len(keys) + 1)
    stop_at: list[float] = []

    def client(i: int, key: str, groups: frozenset[str]) -> None:
        with httpx2.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=120) as http:
            start.wait()
            n = i * 37
            while time.monotonic() < stop_at[0]:
                q = questions[n % len(questions)]
                n += 1
                body = {"query": q, "top_k": 10} if route == "/v1/search" else {"question": q}
                t0 = time.perf_counter()
                try:
                    r = http.post(route, json=body)
                    ms = (time.perf_counter() - t0) * 1000
                    ok = r.status_code == 200
                    data = r.json() if ok else {}
                except (httpx2.HTTPError, ValueError):
                    ok, ms, data = False, 0.0, {}
                items = data.get("hits", []) + data.get("citations", [])
                bad = sum(group_of.get(doc_of(h["path"])) not in groups for h in items)
                with tally.lock:
                    if ok:
                        tally.latencies.append(ms)
                        tally.stages.append(server_ms(data.get("latency_ms", {})))
                    else:
                        tally.errors += 1
                    tally.checked += len(items)
                    tally.leaks += bad

    threads = [threading.Thread(target=client, args=(i, k, g), daemon=True) for i, (k, g) in enumerate(keys)]
    for t in threads:
        t.start()
    stop_at.append(time.monotonic() + seconds)
    t0 = time.perf_counter()
    start.wait()
    for t in threads:
        t.join(timeout=seconds + 180)
    return tally, time.perf_counter() - t0


def timed_calls(call: Callable[[str], Any], questions: Sequence[str], count: int) -> list[float]:
    """Latencies (ms) of ``call`` on the first ``count`` questions in turn (cycling), as client 0 asks them."""
    out: list[float] = []
    for n in range(count):
        t0 = time.perf_counter()
        call(questions[n % len(questions)])
        out.append((time.perf_counter() - t0) * 1000)
    return out


def interleaved(url: str, key: str, project: Project, principal: Principal,
                questions: Sequence[str]) -> tuple[list[float], list[float]]:
    """Latencies (ms) of each claim over HTTP and then in-process, call by call."""
    import httpx2

    http_ms: list[float] = []
    local_ms: list[float] = []
    with httpx2.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as http:
        for q in questions:
            t0 = time.perf_counter()
            http.post("/v1/search", json={"query": q, "top_k": 10}).raise_for_status()
            t1 = time.perf_counter()
            project.search(q, principal, top_k=10)
            http_ms.append((t1 - t0) * 1000)
            local_ms.append((time.perf_counter() - t1) * 1000)
    return http_ms, local_ms


def cache_speedup(url: str, key: str, questions: Sequence[str]) -> tuple[float, float, int]:
    """p50 of first asks (misses) and of repeated asks (hits) over HTTP, and how many repeats were hits."""
    import httpx2

    miss: list[float] = []
    hit: list[float] = []
    hits = 0
    with httpx2.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=120) as http:
        for rnd in range(2):
            for q in questions:
                t0 = time.perf_counter()
                r = http.post("/v1/ask", json={"question": q})
                ms = (time.perf_counter() - t0) * 1000
                r.raise_for_status()
                (miss if rnd == 0 else hit).append(ms)
                hits += rnd == 1 and "cache_hit" in r.json()["latency_ms"]
    return percentile(miss, 50), percentile(hit, 50), hits


def main(argv: Sequence[str] | None = None) -> int:
    """Run every phase, print BENCH lines and record the rows."""
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--docs", type=int, default=2000, help="number of SciFact abstracts (file order)")
    ap.add_argument("--seconds", type=float, default=15.0, help="duration of each load phase")
    ap.add_argument("--quick", action="store_true", help="3 s phases, 40 cache questions (about a minute)")
    ap.add_argument("--no-docs", action="store_true", help="print results only; leave docs/benchmarks.md alone")
    args = ap.parse_args(argv)
    seconds = 3.0 if args.quick else args.seconds

    root = cache_dir("service_load")
    project, group_of = open_project(root, load_scifact_corpus(limit=args.docs))
    queries = load_scifact_queries()
    questions = [queries[q] for q in sorted(load_scifact_qrels("test"), key=int)]
    # Warm-up claims from the train split: the timed test claims start uncached (query embeddings are cached
    # per process), on the server and in-process alike.
    warm = [queries[q] for q in sorted(load_scifact_qrels("train"), key=int)[:5]]
    keys: list[tuple[str, frozenset[str]]] = []
    for i in range(max(CONCURRENCY)):
        groups = client_groups(i)
        _, key = project.key_store.create(f"load{i}", sorted(groups), "reader", note="benchmarks/service_load.py")
        keys.append((key, groups))
    log = root / "server.log"
    rows: list[dict[str, Any]] = []
    principal = Principal("load0", keys[0][1])
    project.warm_up()
    for q in warm:
        project.search(q, principal, top_k=10)
    fresh = [queries[q] for q in sorted(load_scifact_qrels("train"), key=int)[len(warm):]]
    with server(Path(project.settings.project_dir), log, {}) as url:
        for route in ("/v1/search", "/v1/ask"):
            run_clients(url, keys[:2], route, warm, 1.0, group_of)  # warm-up, not counted
            for n in CONCURRENCY:
                tally, wall = run_clients(url, keys[:n], route, questions, seconds, group_of)
                lat = tally.latencies
                row = {"route": route, "clients": n, "requests": len(lat), "rps": len(lat) / wall,
                       "p50": percentile(lat, 50), "p95": percentile(lat, 95), "p99": percentile(lat, 99),
                       "stages_p50": percentile(tally.stages, 50), "errors": tally.errors, "leaks": tally.leaks,
                       "checked": tally.checked}
                emit("service_load", **{k: round(v, 2) if isinstance(v, float) else v for k, v in row.items()})
                rows.append(row)
        floors = {p: floor_ms(url, keys[0][0], p) for p in ("/healthz", "/v1/whoami")}
        http_ms, inproc = interleaved(url, keys[0][0], project, principal, fresh[: (100 if args.quick else 400)])
    http_p50, inproc_p50 = percentile(http_ms, 50), percentile(inproc, 50)
    ratio = http_p50 / inproc_p50

    cache_questions = questions[: (40 if args.quick else 100)]
    with server(Path(project.settings.project_dir), log, {"RAGTUNE_CACHE__ENABLED": "true"}) as url:
        miss, hit, hits = cache_speedup(url, keys[0][0], cache_questions)
    emit("service_load_overhead", inproc_p50=round(inproc_p50, 2), http_p50=round(http_p50, 2),
         ratio=round(ratio, 3), calls=len(inproc),
         floors={p: round(v, 2) for p, v in floors.items()},
         cache_miss_p50=round(miss, 2), cache_hit_p50=round(hit, 2), cache_hits=hits,
         cache_asks=len(cache_questions))

    for record in project.key_store.list():  # this run's keys are not needed again
        if record.note == "benchmarks/service_load.py" and not record.revoked:
            project.key_store.revoke(record.key_id)
    errors, leaks = sum(r["errors"] for r in rows), sum(r["leaks"] for r in rows)
    if not args.no_docs:
        where = (f"{args.docs} SciFact abstracts in 5 groups, {len(questions)} test claims, {seconds:g} s per "
                 f"phase; {machine()}, shared with other work while it ran")
        intro = ("`ragtune serve` (1 worker, subprocess) on 127.0.0.1, driven by N client threads in the "
                 "benchmark process, each with its own reader key of one or two of the five groups and its own "
                 "connection. Every hit and citation is checked against the client's groups (leaks, goal 0); "
                 "errors are non-200 answers (goal 0). Latency is the client's wall time per request. "
                 f"{where}. Server, clients and in-process calls share the same cores, so high-concurrency "
                 "latency mostly measures queueing.")
        for r in rows:
            key = f"{r['route'].removeprefix('/v1/')}, {r['clients']}"
            write_row(SECTION, key, f"| {key} | {r['requests']} | {r['rps']:.1f} | {r['p50']:.1f} | "
                                    f"{r['p95']:.1f} | {r['p99']:.1f} | {r['errors']} | {r['leaks']} "
                                    f"({r['checked']}) | {machine()} |",
                      header=HEADER, command=command_line(), intro=intro)
        intro2 = ("From the same run as the table above. HTTP overhead: p50 of `POST /v1/search` (top 10, 1 client) "
                  "/ p50 of the in-process `Project.search`, interleaved call by call on the same train claims "
                  "(new to both processes' query-embedding caches), same index. Cache: a second "
                  "server with `RAGTUNE_CACHE__ENABLED=true`; one client asks the first claims once (misses), "
                  f"then again (hits), over HTTP. {where}.")
        goal = "met" if ratio <= 1.2 else "not met"
        cells = [
            ("search p50, HTTP / in-process (1 client)", f"{ratio:.2f}x", f"<= 1.2x: {goal}",
             f"HTTP {http_p50:.1f} ms, in-process {inproc_p50:.1f} ms ({len(inproc)} calls each); request "
             "floor p50: "
             f"GET /healthz {floors['/healthz']:.1f} ms, GET /v1/whoami (key check) {floors['/v1/whoami']:.1f} ms"),
            ("ask p50, cache miss / hit (HTTP, 1 client)", f"{miss / hit:.1f}x", "-",
             f"miss {miss:.1f} ms, hit {hit:.1f} ms; {hits}/{len(cache_questions)} repeats were hits"),
            ("errors, all phases", str(errors), f"0: {'met' if errors == 0 else 'not met'}", ""),
            ("cross-user leaks, all phases", str(leaks), f"0: {'met' if leaks == 0 else 'not met'}",
             f"{sum(r['checked'] for r in rows)} hits and citations checked"),
        ]
        for measure, value, goal_cell, notes in cells:
            write_row(OVERHEAD_SECTION, measure, f"| {measure} | {value} | {goal_cell} | {notes} |",
                      header=OVERHEAD_HEADER, command=command_line(), intro=intro2)
    return 1 if leaks else 0


if __name__ == "__main__":
    raise SystemExit(main())
