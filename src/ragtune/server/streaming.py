"""Work that emits tokens, run in a worker thread while its tokens stream out: what the SSE answers share
(``POST /v1/ask`` with ``text/event-stream`` and the web UI's chat)."""

from __future__ import annotations

import asyncio
import contextvars
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from ragtune.errors import RagtuneError


def sse(event: str, data: Any) -> str:
    """One server-sent event."""
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


async def run_streamed(work: Callable[[Callable[[str], None]], Any]) -> AsyncIterator[tuple[str, Any]]:
    """Run ``work(on_token)`` in a worker thread (with the request's context: its id reaches the logs); yields
    ``("token", text)`` as it writes, then ``("result", value)``, or ``("error", {"code", "message"})`` — a
    :class:`RagtuneError`'s message, never a stack trace."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

    def on_token(token: str) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, ("token", token))

    def run() -> None:
        try:
            item: tuple[str, Any] = ("result", work(on_token))
        except RagtuneError as exc:
            item = ("error", {"code": "bad_request", "message": str(exc)})
        except Exception:  # noqa: BLE001 - the stream ends with an error event, never a stack trace
            item = ("error", {"code": "internal_error", "message": "the answer failed; see the server log"})
        loop.call_soon_threadsafe(queue.put_nowait, item)

    worker = loop.run_in_executor(None, contextvars.copy_context().run, run)
    while True:
        event, data = await queue.get()
        yield event, data
        if event != "token":
            break
    await worker
