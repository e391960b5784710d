"""The metrics page (admins: action ``audit``), read in-process from the app's own Prometheus metrics
(:func:`ragtune.server.metrics_routes.metrics_of`), never over HTTP.

It shows the p50/p95/p99 latency of every stage and route, estimated from the histograms' buckets the way
Prometheus' ``histogram_quantile`` does (linear inside the bucket the rank falls in), request counts by route and
status class, the abstention, hallucination and cache hit rates, ingestion failures and the index's size and
version. "Over time": a task started with the app keeps a snapshot every :data:`SNAPSHOT_EVERY_S` seconds (the
last :data:`KEEP`, in memory; they restart with the server), drawn as inline SVG sparklines of requests a minute,
p95 request latency, the abstention rate and the cache hit ratio per interval.
"""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations at runtime.

import asyncio
import contextlib
import math
import threading
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response

from ragtune.observability.metrics import Metrics
from ragtune.server.deps import Service
from ragtune.server.metrics_routes import metrics_of
from ragtune.server.ui.render import page
from ragtune.server.ui.session import context
from ragtune.service.identity import Action

SNAPSHOT_EVERY_S = 30.0
KEEP = 120  # one hour at one snapshot every 30 s
QUANTILES = (0.5, 0.95, 0.99)
Buckets = list[tuple[float, float]]  # (upper bound in seconds, cumulative count), as Prometheus keeps them
Samples = dict[str, list[tuple[dict[str, str], float]]]


def read_samples(metrics: Metrics) -> Samples:
    """Every sample of the app's registry, by sample name (``ragtune_requests_total``, ``..._bucket``…)."""
    out: Samples = defaultdict(list)
    for family in metrics.registry.collect():
        for s in family.samples:
            out[s.name].append((dict(s.labels), float(s.value)))
    return out


def buckets_by(samples: Samples, histogram: str, label: str) -> dict[str, Buckets]:
    """A histogram's buckets per value of ``label`` (``stage``, ``route``)."""
    out: dict[str, Buckets] = defaultdict(list)
    for labels, value in samples.get(f"{histogram}_bucket", []):
        out[labels.get(label, "")].append((float(labels["le"]), value))
    return {k: sorted(v) for k, v in out.items()}


def merged(per_label: dict[str, Buckets]) -> Buckets:
    """The buckets of several label values added up (every value has the same bounds)."""
    total: dict[float, float] = defaultdict(float)
    for buckets in per_label.values():
        for bound, count in buckets:
            total[bound] += count
    return sorted(total.items())


def quantile(buckets: Buckets, q: float) -> float | None:
    """The ``q`` quantile estimated from cumulative buckets, as Prometheus' ``histogram_quantile``: linear
    interpolation inside the bucket the rank falls in (from 0 for the first one); a rank in the ``+Inf`` bucket
    gives the largest finite bound. None without observations."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


def _total(samples: Samples, name: str, **match: str) -> float:
    return sum(v for labels, v in samples.get(name, []) if all(labels.get(k) == m for k, m in match.items()))


def _ratio(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def _percentiles(buckets: Buckets) -> dict[str, Any]:
    count = buckets[-1][1] if buckets else 0
    out: dict[str, Any] = {"count": int(count)}
    for q in QUANTILES:
        v = quantile(buckets, q)
        out[f"p{round(q * 100)}"] = None if v is None else round(v * 1000, 1)
    return out


def summary(samples: Samples) -> dict[str, Any]:
    """What the page shows now: latency percentiles (ms) per stage and route, counts and rates."""
    stages = [{"name": k, **_percentiles(b)} for k, b in sorted(buckets_by(samples, "ragtune_stage_duration_seconds",
                                                                         "stage").items())]
    route_buckets = buckets_by(samples, "ragtune_request_duration_seconds", "route")
    by_route: dict[str, dict[str, int]] = defaultdict(lambda: {"2xx": 0, "3xx": 0, "4xx": 0, "5xx": 0})
    for labels, value in samples.get("ragtune_requests_total", []):
        counts = by_route[labels["route"]]
        key = f"{labels['status'][:1]}xx"
        counts[key] = counts.get(key, 0) + int(value)
    routes = [{"name": route, "total": sum(counts.values()), **counts,
               **_percentiles(route_buckets.get(route, []))} for route, counts in sorted(by_route.items())]
    answers, abstained = _total(samples, "ragtune_answers_total"), _total(samples, "ragtune_abstentions_total")
    verified = _total(samples, "ragtune_verified_answers_total")
    hallucinated = _total(samples, "ragtune_hallucinations_total")
    hits = _total(samples, "ragtune_cache_lookups_total", result="hit")
    lookups = _total(samples, "ragtune_cache_lookups_total")
    index = {name: int(samples[f"ragtune_index_{name}"][0][1]) if samples.get(f"ragtune_index_{name}") else None
             for name in ("chunks", "version")}
    return {"stages": stages, "routes": routes, "requests": sum(r["total"] for r in routes),
            "answers": int(answers), "abstentions": int(abstained), "abstention_rate": _ratio(abstained, answers),
            "verified": int(verified), "hallucinations": int(hallucinated),
            "hallucination_rate": _ratio(hallucinated, verified), "cache_hits": int(hits),
            "cache_lookups": int(lookups), "cache_hit_ratio": _ratio(hits, lookups),
            "ingestion_failures": int(_total(samples, "ragtune_ingestion_failures_total")), "index": index}


@dataclass(frozen=True)
class Snapshot:
    """The counters the sparklines are drawn from, at one moment."""

    at: float
    requests: float
    request_buckets: tuple[tuple[float, float], ...]
    answers: float
    abstentions: float
    cache_hits: float
    cache_lookups: float


def snapshot(metrics: Metrics, at: float | None = None) -> Snapshot:
    """The app's counters now."""
    s = read_samples(metrics)
    return Snapshot(time.time() if at is None else at, _total(s, "ragtune_requests_total"),
                    tuple(merged(buckets_by(s, "ragtune_request_duration_seconds", "route"))),
                    _total(s, "ragtune_answers_total"), _total(s, "ragtune_abstentions_total"),
                    _total(s, "ragtune_cache_lookups_total", result="hit"), _total(s, "ragtune_cache_lookups_total"))


def series(snaps: list[Snapshot]) -> dict[str, list[float]]:
    """Per interval between consecutive snapshots: requests a minute, p95 request latency (ms), the abstention
    rate and the cache hit ratio (%; 0 without answers or lookups)."""
    out: dict[str, list[float]] = {"requests_per_min": [], "p95_ms": [], "abstention_pct": [], "cache_hit_pct": []}
    for a, b in zip(snaps, snaps[1:], strict=False):
        minutes = max(b.at - a.at, 1e-6) / 60
        out["requests_per_min"].append((b.requests - a.requests) / minutes)
        before = dict(a.request_buckets)
        p95 = quantile([(bound, count - before.get(bound, 0.0)) for bound, count in b.request_buckets], 0.95)
        out["p95_ms"].append(0.0 if p95 is None else p95 * 1000)
        answered = b.answers - a.answers
        out["abstention_pct"].append(100 * (b.abstentions - a.abstentions) / answered if answered else 0.0)
        lookups = b.cache_lookups - a.cache_lookups
        out["cache_hit_pct"].append(100 * (b.cache_hits - a.cache_hits) / lookups if lookups else 0.0)
    return out


def sparkline(values: list[float], width: int = 240, height: int = 40) -> str:
    """SVG polyline points for ``values``, scaled to the box (one value: a flat line)."""
    if not values:
        return ""
    if len(values) == 1:
        values = values * 2
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    step = width / (len(values) - 1)
    return " ".join(f"{i * step:.1f},{height - 2 - (v - low) / span * (height - 4):.1f}" for i, v in enumerate(values))


class Ring:
    """The last :data:`KEEP` snapshots, kept by a task that runs while the app does."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._snaps: deque[Snapshot] = deque(maxlen=KEEP)
        self._lock = threading.Lock()

    def take(self) -> None:
        """Keep a snapshot of now."""
        snap = snapshot(self.metrics)
        with self._lock:
            self._snaps.append(snap)

    def with_now(self) -> list[Snapshot]:
        """The kept snapshots and one of now (not kept)."""
        with self._lock:
            snaps = list(self._snaps)
        return [*snaps, snapshot(self.metrics)]

    async def keep(self) -> None:
        """Take a snapshot every :data:`SNAPSHOT_EVERY_S` seconds until cancelled."""
        while True:
            await asyncio.to_thread(self.take)  # the index gauges read the store: not on the event loop
            await asyncio.sleep(SNAPSHOT_EVERY_S)


def router(service: Service) -> APIRouter:
    """``/ui/metrics``, and the task that keeps its snapshots while the app runs."""
    ring = Ring(metrics_of(service))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(ring.keep())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    r = APIRouter(include_in_schema=False, lifespan=lifespan)

    @r.get("/ui/metrics")
    def metrics_page(request: Request) -> Response:
        ctx = context(service, request)
        ctx.require(Action.AUDIT)
        snaps = ring.with_now()
        lines = [{"key": key, "points": sparkline(values), "last": round(values[-1], 1) if values else None,
                  "label": label}
                 for (key, values), label in zip(series(snaps).items(), (
                     "Requests a minute", "p95 request latency (ms)", "Abstentions (%)", "Cache hits (%)"),
                     strict=True)]
        return page("metrics.html", ctx, title="Metrics", m=summary(read_samples(ring.metrics)), lines=lines,
                    since=snaps[0].at, every=f"{SNAPSHOT_EVERY_S:g}", keep=KEEP)

    return r
