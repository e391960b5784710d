"""The tuned generator's report: report.md plus a self-contained report.html (``ragtune.reporting``) with the
before/after table, a quality and a latency plot per configuration, the data audit and example outputs.

Every text that came from the user (model name, settings, field names, training inputs, references, model
outputs, audit lines) goes through :func:`ragtune.tuning.audit.md_text`, and the HTML is rendered with raw HTML
off, so a ``<script>`` in a training example shows as typed.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ragtune.reporting import write_markdown_and_html
from ragtune.tuning.audit import excerpt, md_text
from ragtune.tuning.generator.evaluate import best_config

QUALITY_PNG = "quality.png"
LATENCY_PNG = "latency.png"
SPEED_KEYS = ("latency_p50_ms", "latency_p95_ms", "time_to_first_token_p50_ms", "tokens_per_s", "words_per_s")
HEADERS = {"validity": "validity", "exact_match": "exact match", "rouge_l": "ROUGE-L",
           "latency_p50_ms": "p50 ms", "latency_p95_ms": "p95 ms", "time_to_first_token_p50_ms": "first token p50 ms",
           "tokens_per_s": "tokens/s", "words_per_s": "words/s", "n": "n"}
Example = tuple[str, str, str]


def metric_columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The metric columns of the table in a fixed order: validity, exact match, the fields, ROUGE-L, speed, n."""
    keys = list(dict.fromkeys(k for r in rows for k in r if k != "config"))
    fields = [k for k in keys if k.startswith("field:")]
    known = ["validity", "exact_match", *fields, "rouge_l", *SPEED_KEYS, "n"]
    return [k for k in known if k in keys] + [k for k in keys if k not in known]


def primary_of(card_like: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> str:
    """The ranking metric: the card's ``primary_metric``, else the first field accuracy, else ``rouge_l``."""
    given = card_like.get("primary_metric") or card_like.get("metrics", {}).get("primary_metric")
    if isinstance(given, str) and given:
        return given
    return next((k for k in metric_columns(rows) if k.startswith("field:")), "rouge_l")


def _value(key: str, value: Any) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "—" if value is None else md_text(excerpt(str(value), 60))
    if key == "n" or key.endswith("_n") or isinstance(value, int):
        return str(int(value))
    if key.endswith("_ms") or key.endswith("_per_s"):
        return f"{value:.1f}"
    return f"{value:.3f}"


def _header(key: str) -> str:
    return HEADERS.get(key) or (f"{md_text(key[6:])} accuracy" if key.startswith("field:") else md_text(key))


def comparison_markdown(rows: Sequence[Mapping[str, Any]], primary: str) -> list[str]:
    """The before/after table (one row per configuration), the best configuration and the two plots."""
    if not rows:
        return ["No evaluation was run (no held-out examples).", ""]
    cols = metric_columns(rows)
    lines = ["| configuration | " + " | ".join(_header(c) for c in cols) + " |", "|---" * (1 + len(cols)) + "|"]
    for r in rows:
        lines.append(f"| {md_text(str(r.get('config', '?')))} | "
                     + " | ".join(_value(c, r.get(c)) for c in cols) + " |")
    lines.append("")
    try:
        best = best_config(rows, primary)
        lines += [f"Best by {_header(primary)}: **{md_text(best)}**.", ""]
    except ValueError:
        lines += [f"No configuration has the metric {md_text(primary)}.", ""]
    return lines + [f"![validity and {_header(primary)} per configuration]({QUALITY_PNG})", "",
                    f"![latency per configuration]({LATENCY_PNG})", ""]


def _card_lines(card_like: Mapping[str, Any]) -> list[str]:
    name, version = str(card_like.get("name", "generator")), card_like.get("version", "?")
    lines = [f"# {md_text(name)} v{md_text(str(version))}: a tuned generator", "",
             f"Base model {md_text(str(card_like.get('base', '?')))}, method "
             f"**{md_text(str(card_like.get('method', '?')))}**"
             + (f", trained on {md_text(str(card_like['data_source']))}" if card_like.get("data_source") else "")
             + ".", ""]
    params = card_like.get("params") or {}
    if params:
        lines += ["## Settings", "", "| setting | value |", "|---|---|"]
        lines += [f"| {md_text(str(k))} | {md_text(excerpt(json.dumps(v, default=str), 160))} |"
                  for k, v in sorted(params.items())] + [""]
    metrics = {k: v for k, v in (card_like.get("metrics") or {}).items() if not isinstance(v, dict | list)}
    if metrics:
        lines += ["## Card metrics", "", "| metric | value |", "|---|---|"]
        lines += [f"| {md_text(str(k))} | {_value(str(k), v)} |" for k, v in metrics.items()] + [""]
    return lines


def examples_markdown(examples: Sequence[Example], most: int = 200) -> list[str]:
    """A few (input, reference, tuned output) triples as a table, each cell one line of at most ``most``
    characters."""
    if not examples:
        return []
    lines = ["## Examples", "", "Held-out inputs, their reference and the tuned model's output.", "",
             "| input | reference | tuned output |", "|---|---|---|"]
    for text, reference, output in examples:
        lines.append("| " + " | ".join(md_text(excerpt(t, most)) or "(empty)" for t in (text, reference, output))
                     + " |")
    return lines + [""]


def report_markdown(card_like: Mapping[str, Any], rows: list[dict[str, Any]], audit_lines: list[str],
                    examples: list[Example]) -> str:
    """The report as Markdown (plots linked by name: quality.png, latency.png). ``card_like`` holds at least
    name, version, base, method, params and metrics; ``rows`` come from
    :func:`ragtune.tuning.generator.evaluate.compare`."""
    primary = primary_of(card_like, rows)
    lines = _card_lines(card_like)
    lines += ["## Before and after (same run)", "",
              "The base model with a few-shot prompt (examples from the training data) against the tuned model, "
              "each with and without schema-constrained decoding, on the same held-out examples, greedy. "
              "Validity: the output matches the schema (without one: parses as JSON when the references are JSON "
              "objects). Field accuracy: the field's value equals the reference's. ROUGE-L: F-measure against the "
              "reference. Latency is one request's wall time.", ""]
    lines += comparison_markdown(rows, primary)
    if audit_lines:
        lines += ["## Data audit", ""] + [f"- {md_text(line)}" for line in audit_lines] + [""]
    lines += examples_markdown(examples)
    return "\n".join(lines)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _label(text: str) -> str:
    """A label shown literally by matplotlib (no ``$...$`` mathtext)."""
    return text.replace("$", r"\$")


def _bars(rows: Sequence[Mapping[str, Any]], keys: Sequence[str], names: Sequence[str], ylabel: str,
          title: str, path: Path, unit_range: bool) -> None:
    plt = _pyplot()
    configs = [_label(str(r.get("config", "?"))) for r in rows]
    fig, ax = plt.subplots(figsize=(max(5.0, 1.3 * len(configs) + 2), 3.8))
    width = 0.8 / max(len(keys), 1)
    for j, (key, name) in enumerate(zip(keys, names, strict=True)):
        values = [float(r.get(key) or 0.0) for r in rows]
        ax.bar([i + (j - (len(keys) - 1) / 2) * width for i in range(len(rows))], values, width, label=_label(name))
    ax.set_xticks(range(len(rows)), configs, rotation=15, ha="right", fontsize=8)
    if unit_range:
        ax.set_ylim(0, 1.05)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_quality(rows: Sequence[Mapping[str, Any]], primary: str, path: Path) -> None:
    """Validity and the primary metric per configuration, as grouped bars."""
    keys = ["validity"] + ([primary] if primary != "validity" else [])
    names = [HEADERS.get(k) or (f"{k[6:]} accuracy" if k.startswith("field:") else k) for k in keys]
    _bars(rows, keys, names, "share (0-1)", "Quality per configuration", path, unit_range=True)


def plot_latency(rows: Sequence[Mapping[str, Any]], path: Path) -> None:
    """Latency p50, p95 and time to the first token per configuration, in milliseconds."""
    keys = ["latency_p50_ms", "latency_p95_ms", "time_to_first_token_p50_ms"]
    _bars(rows, keys, ["p50", "p95", "first token p50"], "milliseconds", "Latency per request", path,
          unit_range=False)


def write_report(folder: Path, card_like: Mapping[str, Any], rows: list[dict[str, Any]], audit_lines: list[str],
                 examples: list[Example]) -> tuple[Path, Path]:
    """Write report.md, report.html (plots inlined), quality.png and latency.png into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    images: tuple[str, ...] = ()
    if rows:
        plot_quality(rows, primary_of(card_like, rows), folder / QUALITY_PNG)
        plot_latency(rows, folder / LATENCY_PNG)
        images = (QUALITY_PNG, LATENCY_PNG)
    title = f"{card_like.get('name', 'generator')} v{card_like.get('version', '?')}"
    return write_markdown_and_html(folder, title, report_markdown(card_like, rows, audit_lines, examples), images)


def report_html(card_like: Mapping[str, Any], rows: list[dict[str, Any]], audit_lines: list[str],
                examples: list[Example]) -> str:
    """The same report as one self-contained HTML page, plots embedded as base64 PNG."""
    with tempfile.TemporaryDirectory(prefix="ragtune-report-") as tmp:
        _, html_path = write_report(Path(tmp), card_like, rows, audit_lines, examples)
        return html_path.read_text(encoding="utf-8")
