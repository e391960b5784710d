"""`ragtune ask` with a generator prints the answer once (issue 19, bug 5: the streamed tokens went to stderr and
then the text to stdout). Real local OpenAI-compatible server: llama.cpp serving the packaged SmolLM2."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

import ragtune.cli as cli
from ragtune.cli import app
from ragtune.models.generator import LlamaCppGenerator

pytestmark = pytest.mark.integration
runner = CliRunner()
QUESTION = "How long are backups kept?"
ASK = ["ask", QUESTION, "-u", "ann", "-g", "legal"]


@pytest.fixture
def project(tmp_path: Path, corpus: Path, local: LlamaCppGenerator, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project whose generator is the local server, reached as an OpenAI-compatible endpoint."""
    proj = tmp_path / "proj"
    assert runner.invoke(app, ["init", str(proj)]).exit_code == 0
    assert runner.invoke(app, ["ingest", str(corpus), "-p", str(proj)]).exit_code == 0  # orphan.txt: no ACL, no error
    for key, value in {"KIND": "openai", "BASE_URL": local.base_url, "MODEL": "local", "MAX_TOKENS": "48"}.items():
        monkeypatch.setenv(f"RAGTUNE_GENERATOR__{key}", value)
    return proj


def first_words(text: str) -> str:
    """The answer's opening words, before any citation marker (renumbering may change those)."""
    head = text.strip().split("[")[0].strip()[:40]
    assert len(head) >= 8, text
    return head


def test_piped_output_has_the_answer_once_and_no_stream(project: Path) -> None:
    result = runner.invoke(app, [*ASK, "-p", str(project)])
    assert result.exit_code == 0, result.output
    head = first_words(result.stdout.splitlines()[0])
    assert result.output.count(head) == 1  # stdout and stderr together, as a person would see them
    assert head not in result.stderr


def screen(raw: str) -> list[str]:
    """What a terminal shows after ``raw``: lines, carriage return, erase line (ESC[2K), cursor up (ESC[nA)."""
    lines, row, col = [""], 0, 0
    for token in re.findall(r"\x1b\[[0-9;?]*[A-Za-z]|\r|\n|[^\x1b\r\n]+", raw):
        if token == "\n":
            row, col = row + 1, 0
            if row == len(lines):
                lines.append("")
        elif token == "\r":
            col = 0
        elif token.startswith("\x1b["):
            if token.endswith("K"):
                lines[row] = ""
            elif token.endswith("A"):
                row = max(0, row - int(token[2:-1] or 1))
        else:
            line = lines[row].ljust(col)
            lines[row] = line[:col] + token + line[col + len(token):]
            col += len(token)
    return lines


def test_on_a_terminal_the_stream_is_replaced_by_the_checked_answer(project: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    out_buf, err_buf = io.StringIO(), io.StringIO()
    monkeypatch.setattr(cli, "out", Console(file=out_buf, force_terminal=True, width=80, soft_wrap=True))
    monkeypatch.setattr(cli, "err", Console(file=err_buf, force_terminal=True, width=80, soft_wrap=True))
    result = runner.invoke(app, [*ASK, "-p", str(project)])
    assert result.exit_code == 0, result.output
    shown = [ln for ln in screen(out_buf.getvalue()) if ln.strip()]
    head = first_words(shown[0])
    assert "\n".join(shown).count(head) == 1 and "latency (ms)" in shown
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out_buf.getvalue())
    assert plain.count(head) >= 2  # it did stream (then erased it): the checked answer is printed after
    assert head not in err_buf.getvalue()
