"""Shared helpers for the benchmark scripts: data location, SciFact loaders, metrics, result reporting.

Every benchmark prints one machine-readable line per result (``BENCH {json}``) and inserts or replaces its
row in a table of ``docs/benchmarks.md``, so the published figures always come from the last real run.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import platform
import shlex
import shutil
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The retrieval metrics live in the package (one copy, BEIR / pytrec_eval conventions); re-exported for the scripts.
from ragtune.evaluation.retrieval import dedupe as dedupe
from ragtune.evaluation.retrieval import ndcg_at_k as ndcg_at_k
from ragtune.evaluation.retrieval import recall_at_k as recall_at_k
from ragtune.models.embedder import clear_embedding_cache as clear_embedding_cache  # re-exported for the scripts

REPO_ROOT = Path(__file__).resolve().parent.parent
DOCS_FILE = REPO_ROOT / "docs" / "benchmarks.md"
BENCH_DIR = REPO_ROOT / ".bench"  # caches (corpus files, indexes); gitignored

DOCS_HEADER = (
    "# Benchmarks\n\n"
    "Every figure below is written by a script in `benchmarks/` (one script per headline figure), which\n"
    "replaces its own row on each run; the command that produced a table is given above it. Data sets and\n"
    "their published reference figures: `../shared/data/README.md`.\n"
)


def cache_dir(*parts: str) -> Path:
    """A folder under ``.bench/`` (created), which ignores itself in git as ``.ruff_cache`` does."""
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    marker = BENCH_DIR / ".gitignore"
    if not marker.is_file():
        marker.write_text("# benchmark caches (corpus files, indexes, logs): never commit\n*\n")
    path = BENCH_DIR.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


class DataMissingError(SystemExit):
    """The benchmark data folder is missing: the message says where to get it."""


def data_dir() -> Path:
    """The benchmark data folder: ``$RAGTUNE_DATA``, else ``../shared/data`` next to the repository."""
    raw = os.environ.get("RAGTUNE_DATA")
    path = Path(raw).expanduser() if raw else REPO_ROOT.parent / "shared" / "data"
    if not path.is_absolute():
        path = (Path.cwd() / path).resolve()
    if not (path / "scifact" / "corpus.jsonl").is_file():
        raise DataMissingError(
            f"benchmark data not found at {path} (expected {path / 'scifact' / 'corpus.jsonl'}).\n"
            "Set RAGTUNE_DATA to the folder holding scifact/ (and banking77/, policyqa/, begin/), e.g.\n"
            "  RAGTUNE_DATA=../shared/data .venv/bin/python benchmarks/scifact_retrieval.py\n"
            "The sets and where each comes from are listed in /work/shared/data/README.md\n"
            "(section 'Sources'): SciFact in BEIR layout (corpus.jsonl, queries.jsonl, qrels/test.tsv,\n"
            "qrels/train.tsv) is rebuilt from AllenAI's SciFact release; public BEIR copies of scifact\n"
            "have a byte-identical corpus."
        )
    return path


# --- SciFact -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SciFactDoc:
    """One SciFact abstract: its corpus id, title and text."""

    doc_id: str
    title: str
    text: str


def scifact_dir() -> Path:
    """The SciFact folder inside the data folder."""
    return data_dir() / "scifact"


def load_scifact_corpus(limit: int | None = None) -> list[SciFactDoc]:
    """The SciFact abstracts in file order (the first ``limit`` only, if given)."""
    docs: list[SciFactDoc] = []
    with open(scifact_dir() / "corpus.jsonl", encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            d = json.loads(line)
            docs.append(SciFactDoc(str(d["_id"]), str(d.get("title") or ""), str(d.get("text") or "")))
            if limit is not None and len(docs) >= limit:
                break
    return docs


def load_scifact_queries() -> dict[str, str]:
    """Query id -> claim text, for every SciFact query (both splits)."""
    with open(scifact_dir() / "queries.jsonl", encoding="utf-8") as fh:
        return {str(q["_id"]): str(q["text"]) for q in map(json.loads, filter(str.strip, fh))}


def load_scifact_qrels(split: str) -> dict[str, dict[str, int]]:
    """Query id -> {corpus id: relevance} for ``split`` (``test`` or ``train``)."""
    path = scifact_dir() / "qrels" / f"{split}.tsv"
    if not path.is_file():
        raise DataMissingError(f"no SciFact qrels for split {split!r} at {path}; splits: test, train")
    qrels: dict[str, dict[str, int]] = {}
    with open(path, encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            qrels.setdefault(row["query-id"], {})[row["corpus-id"]] = int(row["score"])
    return qrels


def markdown_for(doc: SciFactDoc) -> str:
    """One abstract as a Markdown file: title and public ACL in the front matter, the abstract as body."""
    # A JSON string is a valid YAML double-quoted scalar, so any title survives the front matter intact.
    return f"---\ntitle: {json.dumps(doc.title, ensure_ascii=False)}\nacl: public\n---\n{doc.text}\n"


def write_corpus(folder: Path, docs: Sequence[SciFactDoc]) -> str:
    """Write each abstract as ``<_id>.md`` (only files whose bytes differ); remove strays. Returns a hash."""
    folder.mkdir(parents=True, exist_ok=True)
    cache_dir()  # makes sure .bench/ ignores itself in git
    digest = hashlib.sha256()
    wanted: set[str] = set()
    for doc in docs:
        name = f"{doc.doc_id}.md"
        wanted.add(name)
        data = markdown_for(doc).encode("utf-8")
        digest.update(name.encode() + b"\0" + data + b"\0")
        path = folder / name
        if not path.is_file() or path.read_bytes() != data:
            path.write_bytes(data)
    for stray in folder.iterdir():
        if stray.name not in wanted:
            if stray.is_dir():
                shutil.rmtree(stray)
            else:
                stray.unlink()
    return digest.hexdigest()


# --- metrics ----------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation, as numpy's default."""
    if not values:
        return float("nan")
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def median(values: Sequence[float]) -> float:
    """The median, NaN for no values."""
    return statistics.median(values) if values else float("nan")


# --- reporting -----------------------------------------------------------------------------------------


def machine() -> str:
    """A short description of the machine the numbers come from."""
    return f"{platform.machine()}, {os.cpu_count()} CPU, Python {platform.python_version()}"


def emit(name: str, **fields: Any) -> None:
    """Print one machine-readable result line: ``BENCH {"bench": name, ...}``."""
    print("BENCH " + json.dumps({"bench": name, **fields}, sort_keys=False, default=str), flush=True)


def _split_row(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def write_row(
    section: str,
    key: str,
    markdown_row: str,
    *,
    header: Sequence[str] | None = None,
    command: str | None = None,
    intro: str | None = None,
    path: Path = DOCS_FILE,
) -> None:
    """Insert or replace the row whose first cell is ``key`` in the table under ``## section``.

    A missing file gets the benchmarks header; a missing section gets its heading, ``intro``, the exact
    ``command`` that produced it and a table with ``header`` (all required then). An existing section gets
    ``intro`` and ``command`` (when given) replaced. Rows of other keys and everything outside the section
    are kept as they are.
    """
    if _split_row(markdown_row)[0] != key:
        raise ValueError(f"the row's first cell must be the key {key!r}: {markdown_row!r}")
    row = markdown_row.strip()
    text = path.read_text(encoding="utf-8") if path.is_file() else DOCS_HEADER
    lines = text.splitlines()
    heading = f"## {section}"
    try:
        start = next(i for i, ln in enumerate(lines) if ln.strip() == heading)
    except StopIteration:
        if header is None or command is None:
            raise ValueError(f"section {section!r} does not exist yet: pass header and command") from None
        block = ["", heading, ""]
        if intro:
            block += [intro.strip(), ""]
        block += ["Command (from the repository root):", "", "```sh", command, "```", ""]
        block += ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|", row]
        while lines and not lines[-1].strip():
            lines.pop()
        lines += block
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    cmd_at = next((i for i in range(start + 1, end) if lines[i].startswith("Command (from")), None)
    if intro is not None and cmd_at is not None:
        # Keep the description current (it names the settings and machine of the latest run).
        lines[start + 1 : cmd_at] = ["", intro.strip(), ""]
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    if command is not None:
        # Keep the recorded command exact: replace the fenced block that follows "Command".
        # The whole fenced block is replaced, so a command of several lines is not repeated on each run.
        for i in range(start + 1, end - 1):
            if lines[i].strip() == "```sh":
                close = next((k for k in range(i + 1, end) if lines[k].strip() == "```"), i + 1)
                lines[i + 1 : close] = command.splitlines()
                end += len(command.splitlines()) - (close - i - 1)
                break
    table = [i for i in range(start + 1, end) if lines[i].lstrip().startswith("|")]
    if not table:
        if header is None:
            raise ValueError(f"section {section!r} has no table: pass header")
        ins = end
        while ins > start + 1 and not lines[ins - 1].strip():
            ins -= 1
        new = ["", "| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|", row]
        lines[ins:ins] = new
    else:
        first, last = table[0], table[-1]
        body = range(first + 2, last + 1)  # after the header and separator lines
        hit = next((i for i in body if _split_row(lines[i])[0] == key), None)
        if hit is not None:
            lines[hit] = row
        else:
            lines.insert(last + 1, row)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines).rstrip("\n") + "\n", encoding="utf-8")


def command_line() -> str:
    """The command that is running now, in the documented form (data env + venv python + script + args)."""
    script = Path(sys.argv[0]).resolve()
    try:
        rel = script.relative_to(REPO_ROOT)
    except ValueError:
        rel = script
    args = shlex.join(sys.argv[1:])  # quoted, so the recorded line can be pasted into a shell
    return f"RAGTUNE_DATA=../shared/data .venv/bin/python {rel}" + (f" {args}" if args else "")
