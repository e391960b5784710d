"""The tuned generator's report: the before/after table in Markdown, the same content as self-contained HTML
with PNG plots, and every user text escaped."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

from ragtune.tuning.generator.report import report_html, report_markdown, write_report

SCRIPT = "<script>alert('x')</script>"
CARD: dict[str, Any] = {"name": "intents", "version": 3, "base": "SmolLM2-135M-Instruct", "method": "lora",
                        "data_source": "train.jsonl", "params": {"rank": 8, "epochs": 2.0, "note": SCRIPT},
                        "metrics": {"train_examples": 40, "final_loss": 0.4123, "runs": {"nested": 1}}}
ROWS: list[dict[str, Any]] = [
    {"config": "base 3-shot", "validity": 0.5, "exact_match": 0.25, "field:intent": 0.5, "rouge_l": 0.61,
     "latency_p50_ms": 812.3, "latency_p95_ms": 1500.0, "time_to_first_token_p50_ms": 300.0, "tokens_per_s": 20.5,
     "n": 4.0},
    {"config": "base 3-shot + schema", "validity": 1.0, "exact_match": 0.5, "field:intent": 0.75, "rouge_l": 0.8,
     "latency_p50_ms": 700.0, "latency_p95_ms": 900.0, "time_to_first_token_p50_ms": 250.0, "tokens_per_s": 18.0,
     "n": 4.0},
    {"config": "tuned + schema", "validity": 1.0, "exact_match": 1.0, "field:intent": 1.0, "rouge_l": 1.0,
     "latency_p50_ms": 400.0, "latency_p95_ms": 450.0, "time_to_first_token_p50_ms": 120.0, "tokens_per_s": 25.0,
     "n": 4.0},
]
AUDIT = ["40 examples, 4 distinct targets", f"2 duplicate prompts, first at train.jsonl:3 {SCRIPT}"]
EXAMPLES = [(f"refund please {SCRIPT} | a | pipe", '{"intent": "refund"}', '{"intent": "refund"}'),
            ("hello\nthere", '{"intent": "greeting"}', "")]


def test_markdown_has_the_table_the_best_configuration_audit_and_examples() -> None:
    md = report_markdown(CARD, ROWS, AUDIT, EXAMPLES)
    assert md.startswith("# intents v3: a tuned generator")
    assert ("| configuration | validity | exact match | intent accuracy | ROUGE-L | p50 ms | p95 ms | "
            "first token p50 ms | tokens/s | n |") in md
    assert "| base 3-shot | 0.500 | 0.250 | 0.500 | 0.610 | 812.3 | 1500.0 | 300.0 | 20.5 | 4 |" in md
    assert "| tuned + schema | 1.000 | 1.000 | 1.000 | 1.000 | 400.0 | 450.0 | 120.0 | 25.0 | 4 |" in md
    assert "Best by intent accuracy: **tuned + schema**." in md
    assert "| final\\_loss | 0.412 |" in md and "nested" not in md  # scalars only
    assert "- 40 examples, 4 distinct targets" in md
    assert "| hello there | " in md and "(empty)" in md
    assert "![latency per configuration](latency.png)" in md
    assert SCRIPT not in md and "\\<script\\>" in md  # escaped for CommonMark
    assert "No evaluation was run" in report_markdown(CARD, [], [], [])


def test_a_card_primary_metric_and_free_text_rows_choose_the_ranking() -> None:
    free = [{"config": "base", "rouge_l": 0.7, "validity": 1.0}, {"config": "tuned", "rouge_l": 0.4, "validity": 1.0}]
    assert "Best by ROUGE-L: **base**." in report_markdown(CARD, free, [], [])
    assert "Best by validity: **base**." in report_markdown({**CARD, "primary_metric": "validity"}, free, [], [])


def test_html_escapes_planted_markup_and_embeds_the_plots() -> None:
    page = report_html({**CARD, "name": f"intents{SCRIPT}"}, ROWS, AUDIT, EXAMPLES)
    assert "<script" not in page.lower()
    assert page.count("&lt;script&gt;") >= 4  # name, settings, audit, example input
    assert "<title>intents&lt;script&gt;" in page
    pngs = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(pngs) == 2 and all(base64.b64decode(p)[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    examples_table = page.split("Examples</h2>")[1].split("</table>")[0]
    rows = re.findall(r"<tr>(.*?)</tr>", examples_table, re.S)
    assert [r.count("<td>") for r in rows[1:]] == [3, 3]  # a | in an input stays inside its cell
    assert "<td>base 3-shot + schema</td>" in page


def test_write_report_writes_both_files_and_the_plots(tmp_path: Path) -> None:
    md, html = write_report(tmp_path / "report", CARD, ROWS, AUDIT, EXAMPLES)
    assert md.read_text(encoding="utf-8") == report_markdown(CARD, ROWS, AUDIT, EXAMPLES)
    assert (tmp_path / "report" / "quality.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "report" / "latency.png").stat().st_size > 1000
    assert "data:image/png;base64," in html.read_text(encoding="utf-8")
    md2, _ = write_report(tmp_path / "empty", CARD, [], [], [])
    assert not (tmp_path / "empty" / "quality.png").exists() and "No evaluation" in md2.read_text(encoding="utf-8")
