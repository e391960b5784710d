"""Audit log cost: one durable append (fsync of the line and of the head), the same without fsync, several
processes appending at once, and ``verify`` over a long log.

Records are the size of a real ``answer_record`` (8 retrieved chunks, 2 cited, hashed question). The log
lives in ``.bench/audit/`` on the repository's disk, so the fsync cost is that disk's.

    .venv/bin/python benchmarks/audit_log.py [--appends 300] [--workers 4] [--per-worker 100] [--verify 20000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import cache_dir, emit, machine, median, percentile, write_row  # noqa: E402

from ragtune.audit.log import AuditLog  # noqa: E402
from ragtune.audit.verify import verify  # noqa: E402

SECTION = "Audit log (append and verify cost)"
COMMAND = ".venv/bin/python benchmarks/audit_log.py"


def fields(i: int) -> dict[str, object]:
    """A record shaped like ``answer_record``'s: 8 retrieved chunk refs, 2 cited, a hashed question."""
    refs = [{"chunk_id": f"{i:08x}{k:024x}", "doc_hash": f"{k:064x}"} for k in range(8)]
    return {"kind": "answer", "principal": "alice", "groups": ["legal", "staff"], "role": "reader",
            "route": "POST /ask", "request_id": f"req-{i}", "question_sha256": f"{i:064x}", "retrieved": refs,
            "cited": refs[:2], "index_version": 42, "model_versions": {"embedder": "all-MiniLM-L6-v2@0.1.0/onnx/384",
                                                                          "generator": "extractive"},
            "latency_ms": 18.4, "outcome": "answered"}


def time_appends(folder: Path, n: int, durable: bool) -> list[float]:
    shutil.rmtree(folder, ignore_errors=True)
    log = AuditLog(folder / "audit.jsonl", durable=durable)
    log.append(fields(0))  # the first append creates the files
    out = []
    for i in range(n):
        t = time.perf_counter()
        log.append(fields(i + 1))
        out.append((time.perf_counter() - t) * 1000)
    return out


WORKER = """
import sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[5])
from audit_log import fields
from ragtune.audit.log import AuditLog
log, n, go = AuditLog(Path(sys.argv[1])), int(sys.argv[2]), Path(sys.argv[3])
while not go.exists():
    time.sleep(0.001)
for i in range(n):
    log.append(fields(int(sys.argv[4]) * 100000 + i))
"""


def time_workers(folder: Path, workers: int, per_worker: int) -> float:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    go = folder / "go"
    bench = str(Path(__file__).resolve().parent)
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(folder / "audit.jsonl"), str(per_worker), str(go),
                               str(k), bench]) for k in range(workers)]
    time.sleep(1.0)
    t = time.perf_counter()
    go.touch()
    if any(p.wait() != 0 for p in procs):
        raise SystemExit("a worker failed")
    wall = time.perf_counter() - t
    report = verify(folder / "audit.jsonl")
    if not report.ok or report.records != workers * per_worker:
        raise SystemExit(f"concurrent log does not verify: {report.first}")
    return wall


def time_verify(folder: Path, n: int) -> tuple[float, int]:
    shutil.rmtree(folder, ignore_errors=True)
    log = AuditLog(folder / "audit.jsonl", durable=False)
    for i in range(n):
        log.append(fields(i))
    t = time.perf_counter()
    report = verify(log.path)
    wall = time.perf_counter() - t
    if not report.ok:
        raise SystemExit(f"log does not verify: {report.first}")
    return wall, log.path.stat().st_size


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--appends", type=int, default=300)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--per-worker", type=int, default=100)
    ap.add_argument("--verify", type=int, default=20000)
    args = ap.parse_args()
    base = cache_dir("audit")
    durable = time_appends(base / "durable", args.appends, True)
    loose = time_appends(base / "nofsync", args.appends, False)
    wall = time_workers(base / "workers", args.workers, args.per_worker)
    verify_s, size = time_verify(base / "verify", args.verify)
    load = os.getloadavg()[0]
    emit("audit.append", durable_p50=median(durable), durable_p95=percentile(durable, 95),
         nofsync_p50=median(loose), nofsync_p95=percentile(loose, 95))
    emit("audit.workers", workers=args.workers, per_worker=args.per_worker, seconds=round(wall, 3))
    emit("audit.verify", records=args.verify, seconds=round(verify_s, 3), bytes=size)
    shutil.rmtree(base, ignore_errors=True)

    header = ["measure", "value", "notes"]
    intro = (f"One `AuditLog.append` of a record shaped like `answer_record`'s (8 retrieved, 2 cited chunk refs; "
             f"{size // args.verify} bytes a line), {args.appends} times in one process; {args.workers} processes "
             f"appending {args.per_worker} each at once; `verify` over {args.verify:,} records. On the repository's "
             f"disk. Machine: {machine()}; load average {load:.1f} at the end.")
    rows = [
        ("append, durable (fsync line + head)", f"p50 {median(durable):.2f} ms, p95 {percentile(durable, 95):.2f} ms",
         "the default: on disk before `append` returns"),
        ("append, no fsync", f"p50 {median(loose):.2f} ms, p95 {percentile(loose, 95):.2f} ms",
         "`durable=False` (benchmark only): the difference is the cost of the two fsyncs"),
        (f"{args.workers} processes × {args.per_worker} durable appends",
         f"{args.workers * args.per_worker / wall:.0f} records/s ({wall:.2f} s)",
         "one flock serialises them; the chain verified afterwards"),
        (f"verify {args.verify:,} records", f"{args.verify / verify_s:,.0f} records/s ({verify_s:.2f} s)",
         "two streaming passes: seq index, then hash + chain + head"),
    ]
    for key, value, notes in rows:
        write_row(SECTION, key, f"| {key} | {value} | {notes} |", header=header, command=COMMAND, intro=intro)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
