"""How the advisor's recommendations are shown: Rich terminal output and Markdown for reports.

The domain (``guide``, ``evidence``) computes; this module only formats. ``Recommendation.to_markdown``
delegates to ``recommendation_markdown``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ragtune.advisor.guide import Fit, NextStep, Recommendation
from ragtune.advisor.questions import ARCHITECTURES, DISPLAY

if TYPE_CHECKING:
    from ragtune.advisor.generation import GenerationBakeoff
    from ragtune.advisor.report import Evidence

_STYLE = {Fit.STRONG: "green", Fit.MODERATE: "yellow", Fit.WEAK: "red", Fit.RULED_OUT: "bold red"}


def drivers_table(rec: Recommendation, reasons: bool = True) -> Table:
    """A Rich table of every answer with each architecture's fit (and the reason); decisive rows marked ●."""
    t = Table(title="Which answers drove it", show_header=True, show_footer=True)
    t.add_column("", footer="")
    t.add_column("Question", footer="Total", overflow="fold")
    t.add_column("Answer", overflow="fold")
    for a in ARCHITECTURES:
        t.add_column(DISPLAY[a], footer=str(rec.totals[a]), justify="center")
    if reasons:
        t.add_column("Why", overflow="fold", ratio=1)
    for r in rec.rows:
        fits = [f"[{_STYLE[f]}]{f.value}[/{_STYLE[f]}]" for f in r.fits.values()]
        t.add_row("●" if r.decisive else "", r.short, r.answer, *fits, *([r.reason] if reasons else []),
                  style=None if r.decisive else "dim")
    return t


def render(rec: Recommendation, console: Console) -> None:
    """Print the recommendation: winner, drivers table, mistakes that apply, next steps and a pipeline.

    On a console narrower than 140 columns the reasons follow the table instead of filling a column.
    """
    wide = console.width >= 140
    console.print(f"[bold]Recommendation: {rec.summary}[/bold]", highlight=False)
    console.print("[dim]points: strong 2, moderate 1, weak 0, times the weight (task ×2); ruled out cannot win; "
                  "● = drove the recommendation[/dim]")
    console.print(drivers_table(rec, reasons=wide))
    if not wide:
        for r in rec.rows:
            if r.decisive:
                console.print(f"  ● [bold]{r.short}[/bold] = {r.answer}: {r.reason}", highlight=False)
    for note in rec.notes:
        console.print(f"[yellow]note:[/yellow] {note}", highlight=False)
    if rec.mistakes:
        console.print("\n[bold]Common mistakes that apply[/bold]")
        for m in rec.mistakes:
            console.print(f"  • [bold]{m.title}[/bold] [dim]({m.because})[/dim]: {m.detail}", highlight=False)
    console.print("\n[bold]Next steps[/bold]")
    for i, s in enumerate(rec.next_steps, start=1):  # commands on one line each, to copy and paste
        console.print(f"  {i}. {s.command}", style="cyan", markup=False, highlight=False, soft_wrap=True)
        console.print(f"     {s.why}", style="dim", markup=False, highlight=False)
    console.print("\n[bold]Pipeline to start from[/bold] (save as pipeline.yaml):")
    console.print(rec.pipeline_yaml.rstrip(), markup=False, highlight=False, soft_wrap=True)


def _drivers_markdown(rec: Recommendation) -> list[str]:
    """The recommendation line, the drivers table and the mistakes that apply (no heading above them)."""
    lines = [f"Recommendation: **{rec.summary}**.", "",
             "Points: strong 2, moderate 1, weak 0, times the question's weight (the task counts twice); "
             "a ruled-out architecture cannot win. Rows marked ● drove the recommendation.", "",
             "| | Question | Answer | RAG | Fine-tuning | Hybrid | Why |", "|---|---|---|---|---|---|---|"]
    for r in rec.rows:
        cells = [f.value for f in r.fits.values()]
        lines.append(f"| {'●' if r.decisive else ''} | {r.question} | {r.answer} | " + " | ".join(cells)
                     + f" | {r.reason.replace('|', '/')} |")
    lines += ["| | **Total** | | " + " | ".join(f"**{rec.totals[a]}**" for a in ARCHITECTURES) + " | |", ""]
    if rec.mistakes:
        lines += ["### Common mistakes that apply", ""]
        lines += [f"- **{m.title}** ({m.because}): {m.detail}" for m in rec.mistakes]
        lines.append("")
    return lines


def guide_answers_markdown(rec: Recommendation, evidence_winner: str | None = None) -> str:
    """The guide's part of an evidence report: the recommendation, the table of the answers and the mistakes
    that apply, and whether the measurements agree. No next steps or pipeline: the report has its own, once."""
    lines = _drivers_markdown(rec)
    if evidence_winner is not None:
        lines += [f"The decision guide's answers point to **{DISPLAY[rec.winner]}**; the measurements on your "
                  f"data point to **{DISPLAY.get(evidence_winner, evidence_winner)}**"
                  + (" too." if rec.winner == evidence_winner else ": the recommendation above follows the "
                     "measurements."), ""]
    return "\n".join(lines)


def recommendation_markdown(rec: Recommendation) -> str:
    """A Markdown section for reports: recommendation, drivers table, mistakes, next steps, pipeline."""
    lines = [f"## Decision guide: {DISPLAY[rec.winner]}", "", *_drivers_markdown(rec)]
    lines += ["### Next steps", ""]
    lines += [f"{i}. `{s.command}` — {s.why}" for i, s in enumerate(rec.next_steps, start=1)]
    lines += [f"- {n}" for n in rec.notes]
    lines += ["", "Pipeline to start from (save as `pipeline.yaml`):", "", "```yaml",
              rec.pipeline_yaml.rstrip(), "```", ""]
    return "\n".join(lines)


def next_steps_markdown(steps: Sequence[NextStep], pipeline: str, notes: Sequence[str]) -> str:
    """The next steps of an evidence run as Markdown: the commands, the pipeline to start from, the notes."""
    return "\n".join(f"1. `{s.command}` — {s.why}" for s in steps) + "\n\nA pipeline to start from:\n\n" \
        + "```yaml\n" + pipeline + "```" + "".join(f"\n\n> {n}" for n in notes)


def evidence_json(evidence: Evidence, guide: Recommendation | None, md: Path, html: Path) -> dict[str, Any]:
    """The JSON form of an evidence run: the evidence, the guide's recommendation (or null), the report paths."""
    out = evidence.to_dict()
    out["guide"] = guide.to_dict() if guide else None
    out["report"] = {"markdown": str(md), "html": str(html)}
    return out


def generation_table(b: GenerationBakeoff) -> Table:
    """The generation bake-off as a terminal table: one row per candidate, skipped ones marked so."""
    metric = b.primary_metric
    t = Table(title=f"Generation bake-off ({b.test_examples} held-out examples)", title_justify="left")
    for column in ("candidate", "validity", metric, "latency p50", "tokens/s", "set-up s", "USD / 1k", "n"):
        t.add_column(column, justify="left" if column == "candidate" else "right")
    for r in b.results:
        value = f"{100 * r.primary:.1f} %" if metric != "rouge_l" else f"{r.primary:.3f}"
        t.add_row(escape(r.name), f"{100 * r.validity:.1f} %", value, f"{r.latency_p50_ms:.0f} ms",
                  f"{r.tokens_per_s:.0f}", f"{r.setup_seconds:.0f}", f"{r.cost_per_1k_usd:.5f}", str(r.n))
    for name in b.skipped:  # why: in the reasons above the table
        t.add_row(escape(name), "[dim]skipped[/dim]", *["–"] * 6)
    return t


def render_evidence(evidence: Evidence, guide: Recommendation | None, html: Path, console: Console) -> None:
    """Print the evidence-based recommendation, its reasons and warnings, and where the report is."""
    winner = evidence.decision.winner
    console.print(f"Recommendation from the evidence: [bold]{winner}[/bold]")
    for r in evidence.decision.reasons:
        console.print(f"  • {escape(r)}", highlight=False)
    for w in evidence.decision.warnings:
        console.print(f"  [yellow]![/yellow] {escape(w)}", highlight=False)
    qa = evidence.qa
    if qa is not None and qa.recall_at_k is not None and (qa.adapted or qa.adaptation_notes):
        figures = [f"{qa.recall_at_k:.2f} without adaptation"] + [
            f"{a.recall_at_k:.2f} with {a.label} ({a.latency_p50_ms:.0f} ms p50)" for a in qa.adapted]
        console.print(f"Retrieval recall@{qa.k}: {escape('; '.join(figures))}", highlight=False)
        for n in qa.adaptation_notes:
            console.print(f"  [dim]note: {escape(n)}[/dim]", highlight=False)
    if evidence.generation is not None:
        console.print(generation_table(evidence.generation))
        from ragtune.advisor.generation import CANDIDATES

        skipped = [] if winner in CANDIDATES else [f"{k} not measured: {v}" for k, v in
                                                   evidence.generation.skipped.items()]
        for n in skipped + evidence.generation.notes:
            console.print(f"  [dim]note: {escape(n)}[/dim]", highlight=False)
    if guide is not None and guide.winner != winner:
        console.print(f"The decision guide's answers point to [bold]{guide.winner}[/bold]; the measurements on "
                      f"your data point to [bold]{winner}[/bold]. The report shows both.")
    console.print(f"report: {escape(str(html))} (and report.md, evidence.json)")
