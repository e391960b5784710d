"""`ragtune serve --log-format`: documented in --help, and a bad value is refused before anything starts."""

from __future__ import annotations

from typer.testing import CliRunner

from ragtune.cli import app


def test_log_format_is_in_help_and_a_bad_value_is_refused() -> None:
    runner = CliRunner()
    help_text = runner.invoke(app, ["serve", "--help"], env={"COLUMNS": "200"}).output
    assert "--log-format" in help_text and "request id" in help_text and "/metrics" in help_text
    result = runner.invoke(app, ["serve", "--log-format", "xml"])
    assert result.exit_code == 2
    assert "--log-format must be text or json, not 'xml'" in result.output
