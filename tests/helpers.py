"""Small helpers shared by tests (import as `from helpers import ...`)."""

from __future__ import annotations

import csv
import io
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ragtune.project import Project

# A tiny topic classifier's training set and a pipeline using it (the server and UI pipeline tests).
TOPIC_TRAIN = [("my card has not arrived yet", "card"), ("when will my new card come", "card"),
               ("the card still has not been delivered", "card"), ("where is the card you sent", "card"),
               ("how long are backups kept", "backups"), ("are my backups stored safely", "backups"),
               ("restore a backup from last week", "backups"), ("how many days of backups exist", "backups")]
OPS_PIPELINE = """name: ops-qa
steps:
  - classify: {model: topic, output: topic}
  - retrieve: {top_k: 3}
  - answer: {}
  - route: {default: self-service, rules: [{queue: backups-team, when: {label: topic, in: [backups]}}]}
"""


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


def serve_project(project: Project) -> AbstractContextManager[str]:
    """``create_app(project)`` on a free 127.0.0.1 port until the block ends; yields the base URL once ready."""
    from ragtune.server.local import serve_in_thread

    return serve_in_thread(project, timeout_s=120)


def run_main(monkeypatch: Any, capsys: Any, *args: str) -> tuple[int, str]:
    """Run ``ragtune ARGS`` through the console entry point, which turns user errors into one line and exit
    status 1; returns (exit status, stdout + stderr)."""
    import sys

    from ragtune.cli import main

    monkeypatch.setattr(sys, "argv", ["ragtune", *args])
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out + captured.err
