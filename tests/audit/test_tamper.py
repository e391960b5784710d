"""Every way of tampering with the audit log is detected, and the first bad record is named with its kind."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from ragtune.audit.log import GENESIS, AuditLog, canonical, head_path, read_head, record_hash
from ragtune.audit.verify import parse_anchor, verify
from ragtune.errors import ConfigError


def make_log(tmp_path: Path, n: int = 5) -> Path:
    log = AuditLog(tmp_path / "audit" / "audit.jsonl")
    for i in range(n):
        log.append({"principal": f"user{i}", "route": "cli:ask", "outcome": "answered"})
    return log.path


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines()


def write_lines(path: Path, rows: list[bytes]) -> None:
    path.write_bytes(b"".join(r + b"\n" for r in rows))


def rehash_chain(rows: list[dict]) -> list[bytes]:
    """What an attacker who knows the format does: renumber, re-link and re-hash every record."""
    prev, out = GENESIS, []
    for i, rec in enumerate(rows, start=1):
        rec = {k: v for k, v in rec.items() if k != "hash"} | {"seq": i, "prev": prev}
        rec["hash"] = prev = record_hash(rec)
        out.append(canonical(rec))
    return out


def test_intact_log_verifies_with_chain_and_head(tmp_path: Path) -> None:
    path = make_log(tmp_path)
    recs = [json.loads(x) for x in lines(path)]
    assert [r["seq"] for r in recs] == [1, 2, 3, 4, 5]
    assert recs[0]["prev"] == GENESIS
    assert all(b["prev"] == a["hash"] for a, b in zip(recs, recs[1:], strict=False))
    assert all(r["hash"] == record_hash(r) for r in recs)
    assert all(r["time"].endswith("Z") for r in recs)
    report = verify(path)
    assert report.ok, report.problems
    assert report.records == 5 and report.last.seq == 5 and read_head(path) == report.last


def test_files_are_private(tmp_path: Path) -> None:
    path = make_log(tmp_path, 1)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(head_path(path).stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_edited_field_is_named(tmp_path: Path) -> None:
    path = make_log(tmp_path)
    rows = lines(path)
    rows[2] = rows[2].replace(b'"user2"', b'"mallory"')
    write_lines(path, rows)
    first = verify(path).first
    assert first is not None and (first.kind, first.line, first.seq) == ("edited", 3, 3)


def test_reserialized_line_is_an_edit(tmp_path: Path) -> None:
    """Same content in another JSON form (another parser might read duplicate keys differently)."""
    path = make_log(tmp_path)
    rows = lines(path)
    rows[1] = json.dumps(json.loads(rows[1]), indent=None).encode()  # spaces after separators
    write_lines(path, rows)
    first = verify(path).first
    assert first is not None and (first.kind, first.line) == ("edited", 2)
    assert "canonical" in first.message


def test_deleted_middle_record_is_named(tmp_path: Path) -> None:
    path = make_log(tmp_path)
    rows = lines(path)
    del rows[2]
    write_lines(path, rows)
    report = verify(path)
    first = report.first
    assert first is not None and (first.kind, first.line, first.seq) == ("deleted", 3, 4)
    assert "seq 3 missing" in first.message
    assert len(report.problems) == 1  # the chain goes on from the next record: one fault, one report


def test_inserted_forged_record_with_its_own_valid_hash(tmp_path: Path) -> None:
    path = make_log(tmp_path)
    rows = lines(path)
    second = json.loads(rows[1])
    forged = {"principal": "mallory", "route": "cli:ask", "outcome": "answered", "seq": 3,
              "time": second["time"], "prev": second["hash"]}
    forged["hash"] = record_hash(forged)
    rows.insert(2, canonical(forged))
    write_lines(path, rows)
    first = verify(path).first
    assert first is not None and first.kind == "inserted"
    assert first.line == 4 and "repeats seq 3 of line 3" in first.message


def test_inserted_record_that_breaks_the_links(tmp_path: Path) -> None:
    path = make_log(tmp_path)
    rows = lines(path)
    forged = json.loads(rows[2]) | {"principal": "mallory", "prev": "ab" * 32}
    forged["hash"] = record_hash(forged)
    rows[2] = canonical(forged)
    write_lines(path, rows)
    first = verify(path).first
    assert first is not None and (first.kind, first.line, first.seq) == ("inserted", 3, 3)


def test_swapped_records_are_reordered(tmp_path: Path) -> None:
    path = make_log(tmp_path)
    rows = lines(path)
    rows[1], rows[2] = rows[2], rows[1]
    write_lines(path, rows)
    first = verify(path).first
    assert first is not None and (first.kind, first.line, first.seq) == ("reordered", 2, 3)


def test_truncated_tail_is_caught_by_the_head(tmp_path: Path) -> None:
    path = make_log(tmp_path)
    write_lines(path, lines(path)[:3])
    report = verify(path)
    assert not report.ok
    first = report.first
    assert first is not None and first.kind == "truncated" and first.line == 4
    assert "reaches seq 5" in first.message and "ends at seq 3" in first.message


def test_whole_log_deleted_but_head_kept(tmp_path: Path) -> None:
    path = make_log(tmp_path)
    path.unlink()
    first = verify(path).first
    assert first is not None and first.kind == "truncated"


def test_rewritten_chain_without_the_head_is_caught(tmp_path: Path) -> None:
    path = make_log(tmp_path)
    rows = [json.loads(x) for x in lines(path)]
    rows[1]["principal"] = "mallory"
    write_lines(path, rehash_chain(rows))
    report = verify(path)
    first = report.first
    assert first is not None and first.kind == "rewritten" and first.seq == 5
    assert [p.kind for p in report.problems] == ["rewritten"]  # the chain itself is consistent


def test_rewritten_log_and_head_caught_by_an_external_anchor(tmp_path: Path) -> None:
    path = make_log(tmp_path)
    head = read_head(path)
    assert head is not None
    anchor = parse_anchor(f"{head.seq}:{head.hash}")
    rows = [json.loads(x) for x in lines(path)]
    del rows[3]
    rewritten = rehash_chain(rows)
    write_lines(path, rewritten)
    last = json.loads(rewritten[-1])
    head_path(path).write_text(json.dumps({"seq": last["seq"], "hash": last["hash"]}))
    assert verify(path).ok  # the residual risk: with both rewritten the log alone looks fine
    first = verify(path, anchor=anchor).first
    assert first is not None and first.kind == "truncated"


def test_bad_anchor_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="SEQ:HASH"):
        parse_anchor("5:nothex")


def test_torn_last_line_is_reported_and_the_next_append_keeps_it_visible(tmp_path: Path) -> None:
    path = make_log(tmp_path, 3)
    full = canonical({"principal": "x", "seq": 4, "time": "2024-01-01T00:00:00Z", "prev": "0" * 64})
    with open(path, "ab") as fh:
        fh.write(full[: len(full) // 2])  # a crash mid-append: no head update, no newline
    first = verify(path).first
    assert first is not None and (first.kind, first.line) == ("torn", 4)
    assert first.message.startswith("torn record at line 4")

    rec = AuditLog(path).append({"principal": "after"})
    assert rec["seq"] == 4 and rec["after_torn"] is True
    rows = lines(path)
    assert len(rows) == 5 and rows[3] == full[: len(full) // 2]  # the torn bytes stay on their own line
    assert json.loads(rows[4])["principal"] == "after"
    report = verify(path)
    assert [(p.kind, p.line) for p in report.problems] == [("torn", 4)]  # still named after the append

    del rows[3]  # removing the torn line is itself caught: the next record says one was there
    write_lines(path, rows)
    first = verify(path).first
    assert first is not None and (first.kind, first.line) == ("deleted", 4)


def test_overwritten_line_is_unparsable(tmp_path: Path) -> None:
    path = make_log(tmp_path)
    rows = lines(path)
    rows[1] = b"garbage"
    write_lines(path, rows)
    first = verify(path).first
    assert first is not None and (first.kind, first.line) == ("unparsable", 2)


def test_missing_or_damaged_head_is_reported(tmp_path: Path) -> None:
    path = make_log(tmp_path)
    head_path(path).unlink()
    first = verify(path).first
    assert first is not None and first.kind == "head" and "missing" in first.message
    head_path(path).write_text("{not json")
    first = verify(path).first
    assert first is not None and first.kind == "head" and "damaged" in first.message
    with pytest.raises(ConfigError, match="damaged"):  # appends refuse too: never chain onto an unknown head
        AuditLog(path).append({"principal": "x"})


def test_append_after_truncation_leaves_the_gap_visible(tmp_path: Path) -> None:
    path = make_log(tmp_path)
    write_lines(path, lines(path)[:3])
    rec = AuditLog(path).append({"principal": "next"})
    assert rec["seq"] == 6  # chained to the head, not to the cut file
    first = verify(path).first
    assert first is not None and first.kind == "deleted" and "seqs 4-5 missing" in first.message


def test_head_one_behind_after_a_crash_is_a_note_and_the_next_append_chains(tmp_path: Path) -> None:
    path = make_log(tmp_path, 3)
    recs = [json.loads(x) for x in lines(path)]
    head_path(path).write_text(json.dumps({"seq": 2, "hash": recs[1]["hash"]}))  # as if killed before the head
    report = verify(path)
    assert report.ok and any("behind" in n for n in report.notes)
    rec = AuditLog(path).append({"principal": "next"})
    assert (rec["seq"], rec["prev"]) == (4, recs[2]["hash"])
    assert verify(path).ok


def test_reserved_fields_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="set by the log"):
        AuditLog(tmp_path / "a.jsonl").append({"seq": 9})


def test_empty_project_log_verifies(tmp_path: Path) -> None:
    report = verify(tmp_path / "audit" / "audit.jsonl")
    assert report.ok and report.records == 0 and "nothing has been recorded" in report.notes[0]
