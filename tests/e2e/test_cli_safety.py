"""The CLI never lets document or file-name text drive the terminal, and its exit status says what failed."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import write
from typer.testing import CliRunner

from ragtune.cli import app
from ragtune.cli_common import EXIT_FILES_FAILED

runner = CliRunner()


def invoke(*args: str) -> tuple[int, str]:
    # Wide enough that no table cell is folded, whatever the length of the temporary path.
    result = runner.invoke(app, list(args), catch_exceptions=False, env={"COLUMNS": "400"})
    return result.exit_code, result.output


def test_markup_in_documents_and_names_is_printed_verbatim(tmp_path: Path) -> None:
    root = tmp_path / "docs"
    write(root / "weird[bold]x[red].md", "---\nacl: public\n---\n# Odd [bold]name[/bold]\n\n"
          "The wombat rule [/] applies to [red]every[/red] request \x1b[31mtoday\x1b[0m.\n")
    write(root / "bad" / "_acl.yaml", "{users: [ann], groups: [x y]}\n")
    write(root / "bad" / "doc.md", "# Doc\n\nSome text.\n")
    proj = tmp_path / "proj"
    assert invoke("init", str(proj))[0] == 0
    code, out = invoke("ingest", str(root), "-p", str(proj))
    assert code == EXIT_FILES_FAILED
    assert "1 ingested" in out and "invalid group name 'x y'" in out
    code, out = invoke("sources", "-p", str(proj))
    assert code == 0 and "[red](none" not in out and "(none: nobody)" not in out  # the table printed in full
    assert "weird[bold]x[red].md" in out
    code, out = invoke("search", "wombat rule", "-u", "ann", "-p", str(proj))
    assert code == 0 and "wombat" in out  # a table cell holding [/] and [red] did not crash the output
    assert "[red]" in out and "[/]" in out  # shown, not interpreted
    code, out = invoke("ask", "What does the wombat rule apply to?", "-u", "ann", "-p", str(proj))
    assert code == 0, out
    assert "[red]every[/red]" in out and "[/]" in out and "\x1b" not in out


def test_sources_filtered_by_principal_and_removal(tmp_path: Path, corpus: Path) -> None:
    proj = tmp_path / "proj"
    invoke("init", str(proj))
    invoke("ingest", str(corpus), "-p", str(proj))
    code, out = invoke("sources", "--json", "-u", "bob", "-p", str(proj))
    names = {Path(d["source_path"]).name for d in json.loads(out)}
    assert code == 0 and names == {"handbook.md"}
    code, out = invoke("sources", "--json", "-u", "carol", "-g", "legal", "-p", str(proj))
    assert {Path(d["source_path"]).name for d in json.loads(out)} == {"handbook.md", "salaries.md", "retention.md",
                                                                      "vendors.md"}
    code, out = invoke("sources", "--remove", str(corpus / "hr"), "-p", str(proj))
    assert code == 0 and "removed 1 document" in out
    code, out = invoke("roots", "list", "--json", "-p", str(proj))
    assert json.loads(out) == [{"root": str(corpus.resolve()), "acl": [], "exists": True}]
    code, out = invoke("check", "-p", str(proj))
    assert code == 0 and "consistent" in out
    code, out = invoke("roots", "remove", str(corpus), "-p", str(proj))
    assert code == 0 and "4 document(s)" in out
    assert invoke("sources", "--json", "-p", str(proj))[1].strip() == "[]"


def test_isolation_setting_reaches_search_and_hides_raw_lexical_scores(tmp_path: Path, corpus: Path) -> None:
    proj = tmp_path / "proj"
    invoke("init", str(proj))
    invoke("ingest", str(corpus), "-p", str(proj))
    code, out = invoke("search", "vacation days", "-u", "bob", "--json", "-p", str(proj))
    assert code == 0 and any(h["lexical_score"] is not None for h in json.loads(out)["hits"])
    text = (proj / "ragtune.yaml").read_text().replace("  # lexical_isolation: true", "  lexical_isolation: true")
    (proj / "ragtune.yaml").write_text(text)
    code, out = invoke("search", "vacation days", "-u", "bob", "--json", "-p", str(proj))
    hits = json.loads(out)["hits"]
    assert code == 0 and hits and all(h["lexical_score"] is None for h in hits)
    assert any(h["lexical_rank"] == 1 for h in hits)


def test_version_flag() -> None:
    code, out = invoke("--version")
    assert code == 0 and out.startswith("ragtune ") and out.split()[1][0].isdigit()
