"""Small helpers shared by tests (import as `from helpers import ...`)."""

from __future__ import annotations

import csv
import io
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def write(path: Path, text: str) -> Path:
    """Write a UTF-8 file, creating parent folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def read_labelled(path: Path) -> list[tuple[str, str]]:
    """(text, category) rows of a labelled CSV such as examples/data/banking77/train.csv."""
    with path.open(encoding="utf-8", newline="") as f:
        return [(r["text"], r["category"]) for r in csv.DictReader(f)]


def write_labelled(path: Path, rows: list[tuple[str, str]]) -> Path:
    """A ``text,label`` CSV of ``rows``."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["text", "label"])
    w.writerows(rows)
    path.write_text(buf.getvalue(), encoding="utf-8")
    return path


@contextmanager
def http_server(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 (a free port) answering with ``handler``; yields its base URL and stops it
    when the block ends."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
