"""The worker side of the peers' JSON-lines protocol (standard library only: it runs in the peers venv).

A worker reads one JSON object per line on stdin, ``{"op": NAME, ...}``, and answers each with one line on
stdout: ``{"ok": true, ...}`` with the handler's result, or ``{"ok": false, "error": "...", "traceback": "..."}``
when the handler raised (the worker goes on serving). ``{"op": "quit"}`` ends it. The protocol has stdout to
itself: file descriptor 1 is pointed at stderr before any library is imported, so whatever a framework prints
(banners, progress bars) cannot corrupt a reply.

Every worker runs offline: the model is a local folder, no hub, no telemetry.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any, TextIO

Handler = Callable[[dict[str, Any]], dict[str, Any]]

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HAYSTACK_TELEMETRY_ENABLED": "False",
    "ANONYMIZED_TELEMETRY": "False",
    "TOKENIZERS_PARALLELISM": "false",
    "TQDM_DISABLE": "1",
}


def go_offline() -> None:
    """Set the environment that keeps every framework off the network (call before importing them)."""
    os.environ.update(OFFLINE_ENV)


def claim_stdout() -> TextIO:
    """A private stream on the real stdout for replies; fd 1 (and ``sys.stdout``) then go to stderr."""
    proto = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return proto


def versions(*distributions: str) -> dict[str, str]:
    """Installed versions of ``distributions`` (``missing`` for one that is not installed)."""
    out = {}
    for name in distributions:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "missing"
    return out


def read_docs(path: str) -> list[tuple[str, str]]:
    """The corpus file the orchestrator wrote: one ``{"id": ..., "text": ...}`` per line."""
    docs = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            if line.strip():
                row = json.loads(line)
                if not isinstance(row.get("id"), str) or not isinstance(row.get("text"), str):
                    raise ValueError(f"{path}:{n}: expected {{'id': str, 'text': str}}")
                docs.append((row["id"], row["text"]))
    return docs


def elapsed_ms(t0: float) -> float:
    """Milliseconds since ``t0`` (a ``time.perf_counter()`` value)."""
    return (time.perf_counter() - t0) * 1000


def serve(handlers: dict[str, Handler], stdin: TextIO | None = None, stdout: TextIO | None = None) -> int:
    """Answer requests until ``quit`` or the end of stdin; returns the exit status (0)."""
    inp = stdin if stdin is not None else sys.stdin
    out = stdout if stdout is not None else claim_stdout()
    for n, line in enumerate(inp, start=1):
        if not line.strip():
            continue
        try:
            msg = json.loads(line)
            if not isinstance(msg, dict) or not isinstance(msg.get("op"), str):
                raise ValueError(f"request {n}: expected a JSON object with a string 'op'")
            op = msg["op"]
            if op == "quit":
                out.write(json.dumps({"ok": True}) + "\n")
                out.flush()
                return 0
            if op not in handlers:
                raise ValueError(f"request {n}: unknown op {op!r}; known: quit, {', '.join(sorted(handlers))}")
            reply = {"ok": True, **handlers[op](msg)}
        except Exception as exc:  # the orchestrator reports it and stops; the worker stays answerable
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
        out.write(json.dumps(reply) + "\n")
        out.flush()
    return 0
