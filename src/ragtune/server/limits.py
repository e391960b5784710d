"""Per-credential rate limit and request timeout of the REST API (ASGI middleware, :func:`install`).

Rate limit: a token bucket per credential (``service.rate_limit_per_minute`` requests a minute, bursts up to
that many), keyed by a hash of the whole ``Authorization`` header, so a request that forges another key's id
spends its own budget, not that key's; a web UI request by a hash of its session cookie (its own bucket per
session, even when many users reach the server through one proxy); other requests share one bucket per client
address.
Beyond it: 429, code ``rate_limited``, with ``Retry-After`` (whole seconds until a request is allowed).

Timeout: a request with no response started after ``service.request_timeout_s`` gets 504, code ``timeout``.
The work itself is not interrupted (a route running in the threadpool cannot be cancelled): it finishes in
the background and its response is dropped. Once a response has started (an SSE stream) it is not cut off.
``/healthz``, ``/readyz`` and the UI's static files (``/ui/static/``) are exempt from both, so probes never
see 429 or 504 and a page load costs one request of the budget.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from ragtune.server.deps import Service
from ragtune.server.ui.session import COOKIE

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[Message], Any]
EXEMPT = frozenset({"/healthz", "/readyz"})
STATIC = "/ui/static/"
_SESSION_COOKIE = re.compile(rb"(?:^|;)\s*" + re.escape(COOKIE.encode()) + rb"=([^;\s]+)")
MAX_BUCKETS = 10_000  # full buckets are dropped beyond this many credentials (a full bucket is a fresh one)


class TokenBuckets:
    """One token bucket per key: ``per_minute`` tokens, refilled continuously."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity, self.rate, self.clock = float(per_minute), per_minute / 60.0, clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """Spend one token of ``key``: 0.0 when allowed, else the seconds until one is available."""
        with self._lock:
            now = self.clock()
            tokens, at = self._buckets.get(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - at) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                if len(self._buckets) > MAX_BUCKETS:
                    self._prune(now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate

    def _prune(self, now: float) -> None:
        for key, (tokens, at) in list(self._buckets.items()):
            if tokens + (now - at) * self.rate >= self.capacity:
                del self._buckets[key]


def credential_key(scope: Scope) -> str:
    """The rate-limit key of a request: a hash of its ``Authorization`` header, else of its UI session cookie,
    else its client address."""
    cookies = b""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            return "cred:" + hashlib.sha256(value).hexdigest()[:32]
        if name == b"cookie":
            cookies = value
    session = _SESSION_COOKIE.search(cookies)
    if session is not None:
        return "ui:" + hashlib.sha256(session[1]).hexdigest()[:32]
    client = scope.get("client") or ("unknown", 0)
    return f"anon:{client[0]}"


async def _send_error(send: Send, status: int, code: str, message: str, headers: dict[str, str]) -> None:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class LimitsMiddleware:
    """ASGI middleware: the rate limit, then the timeout, around every request but the probes."""

    def __init__(self, app: Any, *, per_minute: int, timeout_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.app, self.timeout_s = app, timeout_s
        self.buckets = TokenBuckets(per_minute, clock)
        self._background: set[asyncio.Task[Any]] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in EXEMPT or scope.get("path", "").startswith(STATIC):
            await self.app(scope, receive, send)
            return
        wait = self.buckets.take(credential_key(scope))
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            await _send_error(send, 429, "rate_limited", f"too many requests for this credential "
                              f"({int(self.buckets.capacity)} a minute, service.rate_limit_per_minute); retry in "
                              f"{seconds} s", {"Retry-After": str(seconds)})
            return
        await self._with_timeout(scope, receive, send)

    async def _with_timeout(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = timed_out = False

        async def guarded(message: Message) -> None:
            nonlocal started
            if timed_out:
                return  # the 504 went out; the late response is dropped
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        task = asyncio.ensure_future(self.app(scope, receive, guarded))
        done, _ = await asyncio.wait({task}, timeout=self.timeout_s)
        if task in done or started:
            await task  # finished, or already streaming: let it end (and re-raise what it raised)
            return
        timed_out = True
        self._background.add(task)  # keep a reference until the work ends, and collect its outcome
        task.add_done_callback(self._collect)
        await _send_error(send, 504, "timeout", f"the request took longer than {self.timeout_s:g} s "
                          "(service.request_timeout_s); retry, or ask a narrower question", {})

    def _collect(self, task: asyncio.Task[Any]) -> None:
        """Forget a timed-out request's task once it ends, retrieving its exception (logged by the app)."""
        self._background.discard(task)
        if not task.cancelled():
            task.exception()


def install(app: FastAPI, service: Service) -> None:
    """Add the rate limit and timeout of ``service.project``'s settings to ``app``."""
    s = service.project.settings.service
    app.add_middleware(LimitsMiddleware, per_minute=s.rate_limit_per_minute, timeout_s=s.request_timeout_s)
