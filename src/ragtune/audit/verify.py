"""Check an audit log end to end: every line canonical and hashed right, the chain unbroken, the head matching.

:func:`verify` names the first bad record and its kind:

- ``edited``: a record's hash does not match its content, or the line is not in the canonical form;
- ``deleted``: seq jumps forward and the missing records are nowhere in the file;
- ``reordered``: seq is out of order and the expected record is elsewhere in the file;
- ``inserted``: a seq repeats, or a record does not chain to the one before it (forged, replaced);
- ``truncated``: the head (or an external anchor) names records the file no longer has;
- ``rewritten``: the head (or an anchor) names a record whose hash differs: the chain was recomputed;
- ``torn``: a line cut short (a crash mid-append); ``unparsable``: a line that is no audit record;
- ``head``: the head file is missing or damaged beside a non-empty log.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ragtune.audit.log import GENESIS, HEX64, Head, canonical, head_path, read_head, record_hash
from ragtune.errors import ConfigError


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the log: its kind, where (1-based line, the record's seq if known) and why."""

    kind: str
    line: int | None
    seq: int | None
    message: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"kind": self.kind, "line": self.line, "seq": self.seq, "message": self.message}


@dataclass(frozen=True)
class VerifyReport:
    """What :func:`verify` found: the records read, the head, every problem (the first is the one to fix)."""

    path: Path
    lines: int
    records: int
    last: Head
    head: Head | None
    problems: tuple[Problem, ...] = ()
    notes: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        """True when nothing was edited, removed, inserted, reordered, truncated or torn."""
        return not self.problems

    @property
    def first(self) -> Problem | None:
        """The first bad record, or None."""
        return self.problems[0] if self.problems else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``ragtune audit verify --json``)."""
        return {"path": str(self.path), "ok": self.ok, "lines": self.lines, "records": self.records,
                "last": self.last.to_dict(), "head": self.head.to_dict() if self.head else None,
                "first_problem": self.first.to_dict() if self.first else None,
                "problems": [p.to_dict() for p in self.problems], "notes": list(self.notes)}


def _lines(path: Path) -> Iterator[tuple[int, bytes, bool]]:
    """(line number, bytes without the newline, whether it ended with a newline), streamed."""
    with open(path, "rb") as fh:
        for n, raw in enumerate(fh, start=1):
            yield n, raw[:-1] if raw.endswith(b"\n") else raw, raw.endswith(b"\n")


def _torn(line: int, seq: int | None = None) -> Problem:
    return Problem("torn", line, seq, f"torn record at line {line}: an append was cut short (a crash or a full "
                   "disk); the records after it still chain")


def _parse(raw: bytes, line: int, complete: bool) -> tuple[dict[str, Any] | None, Problem | None]:
    try:
        rec = json.loads(raw)
    except ValueError:
        if not complete:
            return None, _torn(line)
        what = "an empty line" if not raw.strip() else "not JSON"
        return None, Problem("unparsable", line, None, f"line {line} is {what}: an audit record was overwritten")
    if not isinstance(rec, dict) or not all(k in rec for k in ("seq", "time", "prev", "hash")) \
            or not isinstance(rec["seq"], int) or isinstance(rec["seq"], bool) \
            or not isinstance(rec["hash"], str) or not isinstance(rec["prev"], str) \
            or not HEX64.match(rec["hash"]) or not HEX64.match(rec["prev"]):
        return None, Problem("unparsable", line, None, f"line {line} is JSON but no audit record (it lacks a valid "
                             "seq, time, prev or hash)")
    # Whole but without its newline: written up to the last byte; the next append adds the newline.
    return rec, None if complete else _torn(line, rec["seq"])


def _seq_index(path: Path) -> dict[int, list[int]]:
    """seq -> the lines holding it (first pass: a gap is told apart from a move)."""
    out: dict[int, list[int]] = {}
    for n, raw, _ in _lines(path):
        try:
            seq = json.loads(raw).get("seq")
        except (ValueError, AttributeError):
            continue
        if isinstance(seq, int) and not isinstance(seq, bool):
            out.setdefault(seq, []).append(n)
    return out


def _chain_problem(rec: dict[str, Any], line: int, exp: int, prev: str, seqs: dict[int, list[int]]) -> Problem | None:
    seq = rec["seq"]
    if seq == exp:
        if rec["prev"] == prev:
            return None
        return Problem("inserted", line, seq, f"record seq {seq} at line {line} does not chain to the record "
                       f"before it (its prev is not that record's hash): it was forged, inserted or replaced, "
                       "or the one before it was")
    if seq > exp:
        elsewhere = [n for s in range(exp, min(seq, exp + 1000)) for n in seqs.get(s, []) if n != line]
        if elsewhere:
            return Problem("reordered", line, seq, f"record seq {seq} at line {line} comes where seq {exp} belongs "
                           f"(seq {exp} is at line {elsewhere[0]}): records were reordered")
        missing = f"seq {exp}" if seq == exp + 1 else f"seqs {exp}-{seq - 1}"
        return Problem("deleted", line, seq, f"record {missing} missing before line {line} (seq {seq}): "
                       "records were deleted")
    earlier = [n for n in seqs.get(seq, []) if n < line]
    if earlier:
        return Problem("inserted", line, seq, f"record seq {seq} at line {line} repeats seq {seq} of line "
                       f"{earlier[0]}: one of them was inserted")
    return Problem("reordered", line, seq, f"record seq {seq} at line {line} comes after seq {exp - 1}: "
                   "records were reordered")


def _check_anchor(name: str, anchor: Head, hashes: dict[int, str], last: Head, line: int) -> Problem | None:
    if anchor.seq > last.seq:
        missing = f"seq {anchor.seq}" if anchor.seq == last.seq + 1 else f"seqs {last.seq + 1}-{anchor.seq}"
        return Problem("truncated", line, last.seq, f"{name} says the log reaches seq {anchor.seq} but it ends at "
                       f"seq {last.seq}: record {missing} were cut off (or the chain was rewritten without them)")
    have = hashes.get(anchor.seq, GENESIS if anchor.seq == 0 else None)
    if have != anchor.hash:
        return Problem("rewritten", None, anchor.seq, f"{name} says record seq {anchor.seq} has hash "
                       f"{anchor.hash[:16]}… but the log's has {str(have)[:16]}…: the chain was rewritten")
    return None


def parse_anchor(text: str) -> Head:
    """An external anchor ``SEQ:HASH`` (as printed by ``ragtune audit head``)."""
    seq, _, digest = text.strip().partition(":")
    if not seq.isdigit() or not HEX64.match(digest):
        raise ConfigError(f"--anchor {text!r}: expected SEQ:HASH with a 64-hex-digit SHA-256, as printed by "
                          "`ragtune audit head`")
    return Head(int(seq), digest)


def verify(path: Path, *, anchor: Head | None = None) -> VerifyReport:
    """Check the log at ``path`` and its head; with ``anchor`` (a head kept elsewhere), check that too."""
    path = Path(path)
    problems: list[Problem] = []
    notes: list[str] = []
    head_problem: Problem | None = None
    try:
        head = read_head(path)
    except ConfigError as exc:
        head, head_problem = None, Problem("head", None, None, str(exc))
    exists = path.is_file()
    seqs = _seq_index(path) if exists else {}
    hashes: dict[int, str] = {}
    exp, prev, lines, records = 1, GENESIS, 0, 0
    last = Head(0, GENESIS)
    line_bad = False  # whether the line before this one was no record
    for n, raw, complete in _lines(path) if exists else iter(()):
        lines = n
        rec, bad = _parse(raw, n, complete)
        if bad is not None:
            problems.append(bad)
        if rec is None:
            line_bad = True
            continue
        records += 1
        if rec.get("after_torn") is True:
            if line_bad and problems[-1].line == n - 1:
                problems[-1] = _torn(n - 1)  # the log itself recorded that this line was torn
            elif not line_bad:
                problems.append(Problem("deleted", n, rec["seq"], f"record seq {rec['seq']} at line {n} follows a "
                                        "torn line, which has been removed"))
        line_bad = False
        stored = rec["hash"]
        if record_hash(rec) != stored:
            problems.append(Problem("edited", n, rec["seq"], f"record seq {rec['seq']} at line {n} was edited: its "
                                    "hash does not match its content"))
        elif complete and canonical(rec) != raw:
            problems.append(Problem("edited", n, rec["seq"], f"record seq {rec['seq']} at line {n} is not in the "
                                    "canonical form the log writes: the line was re-serialized or edited"))
        chain = _chain_problem(rec, n, exp, prev, seqs)
        if chain is not None:
            problems.append(chain)
        hashes.setdefault(rec["seq"], stored)
        exp, prev = rec["seq"] + 1, stored  # go on from this record, so one fault is reported once
        last = Head(rec["seq"], stored)
    if head_problem is not None:
        problems.append(head_problem)
    elif head is None and lines:
        problems.append(Problem("head", None, None, f"{head_path(path)} is missing beside a log of {lines} lines: "
                                "a cut tail cannot be ruled out; compare with a head exported earlier"))
    if head is not None:
        bad = _check_anchor(f"the head file ({head_path(path).name})", head, hashes, last, lines + 1)
        if bad is not None:
            problems.append(bad)
        elif head.seq < last.seq:
            notes.append(f"the head is {last.seq - head.seq} record(s) behind the log (a crash between writing a "
                         "record and its head); the next append brings it up to date")
    if anchor is not None:
        bad = _check_anchor("the anchor", anchor, hashes, last, lines + 1)
        if bad is not None:
            problems.append(bad)
    if not exists and head is None:
        notes.append(f"no audit log at {path} yet: nothing has been recorded")
    return VerifyReport(path, lines, records, last, head, tuple(problems), tuple(notes))
