"""Several processes append to one audit log safely, and a process killed mid-append corrupts nothing before it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from ragtune.audit.log import AuditLog
from ragtune.audit.verify import verify

WORKER = """
import sys, time
from pathlib import Path
from ragtune.audit.log import AuditLog
log, name, n, go = AuditLog(Path(sys.argv[1])), sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
while not go.exists():
    time.sleep(0.001)
for i in range(n):
    log.append({"principal": name, "i": i})
"""


def test_four_processes_times_fifty_appends_give_one_valid_chain(tmp_path: Path) -> None:
    path, go = tmp_path / "audit" / "audit.jsonl", tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(path), f"w{k}", "50", str(go)]) for k in range(4)]
    time.sleep(0.5)  # let every worker import and wait, so they append at the same time
    go.touch()
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    report = verify(path)
    assert report.ok, report.problems
    assert report.records == 200 and report.last.seq == 200
    recs = [json.loads(x) for x in path.read_bytes().splitlines()]
    assert [r["seq"] for r in recs] == list(range(1, 201))
    assert Counter(r["principal"] for r in recs) == {f"w{k}": 50 for k in range(4)}
    for k in range(4):  # each worker's own records keep their order
        assert [r["i"] for r in recs if r["principal"] == f"w{k}"] == list(range(50))
    assert len({r["principal"] for r in recs[:20]}) > 1  # they really did interleave


LOOP = """
import sys
from pathlib import Path
from ragtune.audit.log import AuditLog
log = AuditLog(Path(sys.argv[1]))
i = 0
while True:
    log.append({"principal": "loop", "i": i, "pad": "x" * 2000})
    i += 1
"""


def test_a_killed_appender_leaves_every_earlier_record_intact(tmp_path: Path) -> None:
    path = tmp_path / "audit" / "audit.jsonl"
    proc = subprocess.Popen([sys.executable, "-c", LOOP, str(path)])
    deadline = time.monotonic() + 60
    while (not path.is_file() or path.stat().st_size < 50_000) and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    report = verify(path)
    # At most the last line is torn (killed inside a write); every complete record verifies.
    assert all(p.kind == "torn" and p.line == report.lines for p in report.problems), report.problems
    assert report.records >= 20
    rec = AuditLog(path).append({"principal": "after"})
    assert rec["seq"] == report.last.seq + 1
    again = verify(path)
    assert [p.kind for p in again.problems] == [p.kind for p in report.problems]  # nothing new, nothing hidden
    assert again.records == report.records + 1
