"""CLI start-up: the wall time a person waits for ``ragtune --help``, ``ragtune sources`` and a cold ``ragtune ask``.

Each command runs as a new process ``--runs`` times (default 5), interleaved with ``python -c pass`` so both see
the same machine load; the table gives each command's median wall time and its ratio to the median of
``python -c pass`` measured in the same run. The project is built once in a temporary folder from
``examples/data/help/articles`` (8 public help articles). The ``ask`` row also gives the medians of the latency
``ask --json`` reports itself (``startup``, ``open_index``, ``model_load``, ``total``, ``wall``), so what the
command reports can be checked against what was measured from outside. Needs no data set.

    .venv/bin/python benchmarks/cli_startup.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO_ROOT, emit, machine, median, write_row  # noqa: E402

SECTION = "CLI start-up"
ARTICLES = REPO_ROOT / "examples" / "data" / "help" / "articles"
QUESTION = "How do I unblock my PIN?"
REPORTED = ("startup", "open_index", "model_load", "total", "wall")


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    """Wall seconds of one new process running ``cmd``, and its stdout; a failure stops the benchmark."""
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed with status {done.returncode}:\n{done.stderr}")
    return seconds, done.stdout


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--no-docs", action="store_true", help="do not write docs/benchmarks.md")
    args = ap.parse_args(argv)
    if args.runs < 1:
        ap.error("--runs must be at least 1")

    exe = str(Path(sys.executable).parent / "ragtune")
    env = {**os.environ, "COLUMNS": "120", "LANCE_LOG": "error"}
    env.pop("RAGTUNE_PROJECT_DIR", None)
    with tempfile.TemporaryDirectory(prefix="ragtune-cli-bench-") as tmp:
        proj = str(Path(tmp) / "proj")
        timed([exe, "init", proj], env)
        timed([exe, "ingest", str(ARTICLES), "-p", proj], env)
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "ragtune --help": [exe, "--help"],
            "ragtune sources": [exe, "sources", "-p", proj],
            "ragtune ask (cold)": [exe, "ask", QUESTION, "-u", "bench", "--json", "-p", proj],
        }
        walls: dict[str, list[float]] = {name: [] for name in commands}
        reported: dict[str, list[float]] = {k: [] for k in REPORTED}
        for r in range(args.runs):
            order = list(commands) if r % 2 == 0 else list(reversed(commands))
            for name in order:
                seconds, stdout = timed(commands[name], env)
                walls[name].append(seconds)
                if name.startswith("ragtune ask"):
                    lat = json.loads(stdout)["latency_ms"]
                    for k in REPORTED:
                        reported[k].append(float(lat[k]))
    base = median(walls["python -c pass"])
    load = os.getloadavg()[0]
    for name, values in walls.items():
        emit("cli_startup", command=name, median_s=round(median(values), 3), ratio=round(median(values) / base, 1),
             runs=len(values), min_s=round(min(values), 3), max_s=round(max(values), 3))
    rep = {k: median(v) for k, v in reported.items()}
    emit("cli_startup_ask_reported", **{f"{k}_ms": round(v, 1) for k, v in rep.items()})
    if args.no_docs:
        return 0
    intro = (f"Wall time of one new process per command, measured from outside (`subprocess.run`), median of "
             f"{args.runs} interleaved runs, and its ratio to `python -c pass` measured in the same run. The project "
             "is the 8 help articles of `examples/data/help/articles`, ingested once in a temporary folder. "
             "`ask` is cold (a new process loads the index and the embedder) and extractive. Its notes give the "
             "medians of the latency that `ask --json` reports itself: `wall` is process start to the answer "
             "being ready, so the measured wall time adds printing and the process's exit (interpreter and "
             f"native libraries shutting down). Machine: {machine()}; load avg {load:.1f} at the end"
             + (" (above the core count: other work shared the CPU)." if load > (os.cpu_count() or 1) else "."))
    command = ".venv/bin/python benchmarks/cli_startup.py" + (f" --runs {args.runs}" if args.runs != 5 else "")
    header = ["command", "median wall", "× python -c pass", "spread", "notes"]
    for name, values in walls.items():
        notes = "–"
        if name.startswith("ragtune ask"):
            notes = "reported (ms): " + ", ".join(f"{k} {rep[k]:.0f}" for k in REPORTED)
        write_row(SECTION, name,
                  f"| {name} | {median(values):.3f} s | {median(values) / base:.1f} | "
                  f"{min(values):.2f}–{max(values):.2f} s | {notes} |",
                  header=header, command=command, intro=intro)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
