"""Layer 1 of the advisor: the decision guide's scoring, recommendation, answers files and `advise` command."""

from __future__ import annotations

import itertools
import json
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from helpers import write
from typer.testing import CliRunner

from ragtune.advisor import cli as advisor_cli
from ragtune.advisor.answers import load_answers
from ragtune.advisor.cli import advise_guide
from ragtune.advisor.guide import GUIDE_TABLE, Fit, Recommendation, rank, recommend, score
from ragtune.advisor.mistakes import detect_mistakes
from ragtune.advisor.pipeline_draft import pipeline_spec, pipeline_yaml
from ragtune.advisor.questions import ARCHITECTURES, DISPLAY, QUESTIONS, GuideAnswers
from ragtune.errors import ConfigError
from ragtune.pipelines.spec import PipelineSpec, load_pipeline

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "advisor"
S, M, W, X = Fit.STRONG, Fit.MODERATE, Fit.WEAK, Fit.RULED_OUT

# A neutral starting point: every answer except the task leaves the architectures level.
BASE: dict[str, Any] = {"task": "summarization", "knowledge_change": "yearly", "citations": False,
                        "structured_output": False, "examples_per_class": 20, "fast_iteration": False,
                        "latency_ms": None, "regulated": False}
TRIAGE = {**BASE, "task": "classification", "knowledge_change": "never", "structured_output": True,
          "examples_per_class": 150, "latency_ms": 50}
POLICY_QA = {**BASE, "task": "answer-generation", "knowledge_change": "weekly", "citations": True,
             "examples_per_class": 0, "fast_iteration": True, "latency_ms": 3000}
COPILOT = {**BASE, "task": "answer-and-classification", "knowledge_change": "weekly", "citations": True,
           "structured_output": True, "examples_per_class": 60, "latency_ms": 1500, "regulated": True}


def answers(**changes: Any) -> GuideAnswers:
    return GuideAnswers(**{**BASE, **changes})


def fits_for(key: str, **changes: Any) -> tuple[Fit, Fit, Fit]:
    row = next(r for r in score(answers(**changes)) if r.key == key)
    return row.fits["rag"], row.fits["fine-tuning"], row.fits["hybrid"]


# --- the guide table ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("key", "value", "expected"), [
    # the guide, faithfully
    ("knowledge_change", "weekly", (S, W, S)),
    ("knowledge_change", "daily", (S, W, S)),
    ("citations", True, (S, W, S)),
    ("structured_output", True, (M, S, S)),
    ("examples_per_class", 0, (S, X, X)),  # required for fine-tuning and for the tuned side of a hybrid
    ("examples_per_class", 200, (M, S, S)),  # labels: helpful for RAG but not required
    ("fast_iteration", True, (S, W, M)),  # strong / slower / moderate
    # the rows added for task type, latency and regulation
    ("task", "answer-generation", (S, W, M)),
    ("task", "classification", (W, S, M)),
    ("task", "answer-and-classification", (M, W, S)),
    ("task", "extraction", (M, S, M)),
    ("task", "agent-workflow", (M, M, S)),
    ("latency_ms", 120, (W, S, W)),
    ("latency_ms", 800, (M, S, M)),
    ("regulated", True, (S, W, M)),
    ("knowledge_change", "monthly", (S, M, S)),
    ("examples_per_class", 3, (S, W, W)),
])
def test_each_guide_row_scores_as_documented(key: str, value: Any, expected: tuple[Fit, Fit, Fit]) -> None:
    assert fits_for(key, **{key: value}) == expected


@pytest.mark.parametrize(("key", "value"), [
    ("knowledge_change", "never"), ("knowledge_change", "yearly"), ("citations", False),
    ("structured_output", False), ("fast_iteration", False), ("regulated", False), ("latency_ms", None),
    ("latency_ms", 5000), ("examples_per_class", 8), ("task", "summarization"),
])
def test_a_no_answer_is_neutral_not_a_point_against_anyone(key: str, value: Any) -> None:
    row = next(r for r in score(answers(**{key: value})) if r.key == key)
    assert len(set(row.fits.values())) == 1 and Fit.RULED_OUT not in row.fits.values()
    assert not row.decisive


@pytest.mark.parametrize(("key", "value", "bucket"), [
    ("examples_per_class", 0, "none"), ("examples_per_class", 7, "fewer than 8"),
    ("examples_per_class", 8, "8-31"), ("examples_per_class", 31, "8-31"), ("examples_per_class", 32, "32+"),
    ("latency_ms", 299, "under 300 ms"), ("latency_ms", 300, "300 ms to 2 s"), ("latency_ms", 1999, "300 ms to 2 s"),
    ("latency_ms", 2000, "2 s or more, or none"), ("latency_ms", 0, "2 s or more, or none"),
    ("knowledge_change", "daily", "weekly or faster"), ("knowledge_change", "never", "rarely"),
])
def test_answers_fall_into_the_documented_buckets(key: str, value: Any, bucket: str) -> None:
    assert next(r for r in score(answers(**{key: value})) if r.key == key).bucket == bucket


def test_table_covers_every_bucket_with_a_reason_and_never_rules_out_rag() -> None:
    keys = {q.key for q in QUESTIONS}
    assert {r.key for r in GUIDE_TABLE} == keys
    assert all(r.reason.strip() and r.rag is not Fit.RULED_OUT for r in GUIDE_TABLE)
    assert len({(r.key, r.bucket) for r in GUIDE_TABLE}) == len(GUIDE_TABLE)


def test_docs_show_the_scoring_table_as_the_code_scores() -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "advisor.md").read_text(encoding="utf-8")
    for r in GUIDE_TABLE:
        short = next(q.short for q in QUESTIONS if q.key == r.key)
        line = f"| {short} | {r.bucket} | {r.rag.value} | {r.fine_tuning.value} | {r.hybrid.value} | {r.reason} |"
        assert line in docs, f"docs/advisor.md is out of date for {r.key} = {r.bucket}"


def test_totals_are_weighted_points_and_the_task_counts_twice() -> None:
    rec = recommend(GuideAnswers(**TRIAGE))
    task_row = rec.rows[0]
    assert task_row.key == "task" and task_row.weight == 2 and task_row.points == {"rag": 0, "fine-tuning": 4,
                                                                                   "hybrid": 2}
    assert rec.totals == {a: sum(r.points[a] for r in rec.rows) for a in ARCHITECTURES}
    assert rec.totals == {"rag": 6, "fine-tuning": 14, "hybrid": 10}


# --- recommendations ---------------------------------------------------------------------------------------


def test_classification_with_plenty_of_labels_and_static_knowledge_is_fine_tuning() -> None:
    rec = recommend(GuideAnswers(**TRIAGE))
    assert rec.winner == "fine-tuning" and rec.ruled_out == {} and rec.tie_break is None
    assert rec.ranking == ["fine-tuning", "hybrid", "rag"]
    assert any(s.command.startswith("ragtune train ") and "--label-col label" in s.command for s in rec.next_steps)
    assert not any(s.command.startswith("ragtune ingest") for s in rec.next_steps)


def test_qa_over_weekly_docs_with_citations_and_no_labels_is_rag() -> None:
    rec = recommend(GuideAnswers(**POLICY_QA))
    assert rec.winner == "rag" and rec.totals["rag"] > rec.totals["hybrid"] > rec.totals["fine-tuning"]
    decisive = {r.key for r in rec.rows if r.decisive}
    assert {"task", "knowledge_change", "citations", "examples_per_class", "fast_iteration"} <= decisive
    assert not any("train" in s.command for s in rec.next_steps)
    assert any(s.command == "ragtune sync" for s in rec.next_steps)  # knowledge changes weekly


def test_answers_with_category_labels_citations_and_structured_output_is_hybrid() -> None:
    rec = recommend(GuideAnswers(**COPILOT))
    assert rec.winner == "hybrid" and rec.totals == {"rag": 12, "fine-tuning": 7, "hybrid": 15}
    commands = [s.command.split()[1] for s in rec.next_steps]
    assert {"init", "ingest", "train", "ask", "classify", "run"} <= set(commands)


def test_no_labels_rules_out_fine_tuning_and_hybrid_and_says_so() -> None:
    rec = recommend(GuideAnswers(**{**TRIAGE, "examples_per_class": 0}))
    assert rec.winner == "rag"  # fine-tuning still has the most points, but cannot be built
    assert rec.totals["fine-tuning"] > rec.totals["rag"]
    assert set(rec.ruled_out) == {"fine-tuning", "hybrid"}
    assert "requires labelled examples" in rec.ruled_out["fine-tuning"]
    labels = next(r for r in rec.rows if r.key == "examples_per_class")
    assert labels.decisive and labels.fits["fine-tuning"] is Fit.RULED_OUT and labels.answer == "none"
    assert any("fine-tuning scores highest" in n and "ruled out" in n for n in rec.notes)
    assert rec.ranking[-2:] == ["fine-tuning", "hybrid"] and "(ruled out)" in rec.summary
    assert "ruled out" in rec.to_markdown()
    assert "rag-for-classification" in {m.key for m in rec.mistakes}


@pytest.mark.parametrize(("path", "winner"), [
    ("support-triage.yaml", "fine-tuning"), ("policy-qa.yaml", "rag"), ("compliance-copilot.yaml", "hybrid"),
])
def test_example_answers_files_give_their_documented_recommendation(path: str, winner: str) -> None:
    assert f"→ {DISPLAY[winner]}" in (EXAMPLES / path).read_text(encoding="utf-8")
    assert recommend(load_answers(EXAMPLES / path)).winner == winner


# --- tie-break ---------------------------------------------------------------------------------------------


def test_three_way_tie_goes_to_rag_the_simplest() -> None:
    tie = answers(task="answer-generation", knowledge_change="never", structured_output=True,
                  examples_per_class=50, latency_ms=100)
    rec = recommend(tie)
    assert rec.totals["rag"] == rec.totals["fine-tuning"] == rec.totals["hybrid"]
    assert rec.winner == "rag" and rec.ranking == ["rag", "fine-tuning", "hybrid"]
    assert rec.tie_break is not None and "simpler system wins" in rec.tie_break
    assert recommend(tie).to_dict() == rec.to_dict()  # deterministic


def test_fine_tuning_beats_hybrid_on_a_tie() -> None:
    tie = answers(task="classification", knowledge_change="never", citations=True, structured_output=True,
                  examples_per_class=5)
    rec = recommend(tie)
    assert rec.totals["fine-tuning"] == rec.totals["hybrid"] > rec.totals["rag"]
    assert rec.winner == "fine-tuning" and rec.tie_break is not None and "hybrid" in rec.tie_break


def test_rank_orders_by_eligibility_then_points_then_simplicity() -> None:
    assert rank({"rag": 5, "fine-tuning": 5, "hybrid": 5}) == ["rag", "fine-tuning", "hybrid"]
    assert rank({"rag": 1, "fine-tuning": 5, "hybrid": 5}) == ["fine-tuning", "hybrid", "rag"]
    assert rank({"rag": 1, "fine-tuning": 9, "hybrid": 5}, {"fine-tuning"}) == ["hybrid", "rag", "fine-tuning"]


# --- common mistakes ---------------------------------------------------------------------------------------


def mistake_keys(a: GuideAnswers, winner: str) -> set[str]:
    return {m.key for m in detect_mistakes(a, winner)}


def test_mistakes_that_apply() -> None:
    triage = GuideAnswers(**TRIAGE)
    assert mistake_keys(triage, "fine-tuning") == {"rag-for-classification"}
    assert mistake_keys(triage, "rag") == {"rag-for-classification", "ignoring-security", "ignoring-latency"}
    qa = GuideAnswers(**POLICY_QA)
    assert mistake_keys(qa, "rag") == {"fine-tuning-for-retrieval", "ignoring-security"}
    no_budget = GuideAnswers(**{**POLICY_QA, "latency_ms": None})
    latency = next(m for m in detect_mistakes(no_budget, "rag") if m.key == "ignoring-latency")
    assert "no latency budget" in latency.because and "p95" in latency.detail
    regulated = GuideAnswers(**{**TRIAGE, "regulated": True})
    assert "ignoring-security" in mistake_keys(regulated, "fine-tuning")
    summary = answers()  # static knowledge, no citations, not regulated, labels, no budget
    assert mistake_keys(summary, "fine-tuning") == {"ignoring-latency"}


# --- next steps and rendering ------------------------------------------------------------------------------


@pytest.mark.parametrize("case", [TRIAGE, POLICY_QA, COPILOT, {**COPILOT, "latency_ms": 100},
                                  {**POLICY_QA, "citations": False}])
def test_pipeline_starting_point_is_a_valid_pipeline(case: dict[str, Any]) -> None:
    a = GuideAnswers(**case)
    for winner in ARCHITECTURES:
        text = pipeline_yaml(winner, a)
        assert text.startswith("# Starting point")
        spec = PipelineSpec.model_validate(yaml.safe_load(text))
        kinds = [k for k, _ in spec.steps]
        assert ("classify" in kinds) == (winner != "rag") and ("retrieve" in kinds) == (winner != "fine-tuning")
        assert kinds[-1] == "route"
        assert ("verify" in kinds) == (winner != "fine-tuning" and (a.citations or a.regulated)
                                       and (a.latency_ms is None or a.latency_ms >= 300))


def test_every_pipeline_the_guide_can_suggest_round_trips_through_pipeline_spec(tmp_path: Path) -> None:
    # The draft depends on the winner, the latency budget and citations/regulation only: cover them all.
    seen: dict[str, PipelineSpec] = {}
    for winner, latency, citations, regulated in itertools.product(
            ARCHITECTURES, (None, 0, 100, 299, 300, 800, 1999, 2000, 5000), (True, False), (True, False)):
        a = answers(latency_ms=latency, citations=citations, regulated=regulated)
        spec, text = pipeline_spec(winner, a), pipeline_yaml(winner, a)
        assert PipelineSpec.model_validate(yaml.safe_load(text)) == spec
        assert PipelineSpec.model_validate(yaml.safe_load(spec.to_yaml())) == spec
        seen[text] = spec
    assert len(seen) == 7  # rag and hybrid: extractive / generated / generated + verify; fine-tuning: one
    for n, (text, spec) in enumerate(seen.items()):
        path = write(tmp_path / f"p{n}.yaml", text)
        loaded = load_pipeline(path)
        assert loaded == spec and loaded.to_yaml() == spec.to_yaml()
    for case in (TRIAGE, POLICY_QA, COPILOT, BASE):  # what recommend suggests is one of them
        rec = recommend(GuideAnswers(**case))
        assert rec.pipeline_yaml == pipeline_yaml(rec.winner, GuideAnswers(**case)) and rec.pipeline_yaml in seen


def test_next_steps_name_commands_that_exist() -> None:
    from ragtune.cli import app

    names = {c.name or (c.callback.__name__ if c.callback else "") for c in app.registered_commands}
    for case in (TRIAGE, POLICY_QA, COPILOT):
        for step in recommend(GuideAnswers(**case)).next_steps:
            argv = shlex.split(step.command)
            assert argv[0] == "ragtune" and argv[1] in names, step.command


def test_markdown_report_has_the_drivers_table_mistakes_and_pipeline() -> None:
    rec = recommend(GuideAnswers(**COPILOT))
    md = rec.to_markdown()
    assert md.startswith("## Decision guide: hybrid")
    assert "| | Question | Answer | RAG | Fine-tuning | Hybrid | Why |" in md
    assert all(q.text in md for q in QUESTIONS)
    assert "| | **Total** | | **12** | **7** | **15** | |" in md
    assert "Fine-tuning to compensate for bad retrieval" in md and "```yaml\n# Starting point" in md
    assert isinstance(rec, Recommendation) and json.loads(json.dumps(rec.to_dict()))["recommendation"] == "hybrid"


# --- answers files -----------------------------------------------------------------------------------------


def test_load_answers_normalises_keys_and_values(tmp_path: Path) -> None:
    path = write(tmp_path / "a.yaml", "task: Answer_Generation\nknowledge-change: WEEKLY\ncitations: yes\n"
                                      "structured_output: no\nexamples_per_class: 0\nfast_iteration: true\n"
                                      "latency_ms: 0\nregulated: false\n")
    a = load_answers(path)
    assert a.task == "answer-generation" and a.knowledge_change == "weekly" and a.citations is True
    assert a.latency_ms is None  # 0 means no strict budget


@pytest.mark.parametrize(("body", "expected"), [
    (None, ["not found", "examples/advisor"]),  # no file at all
    ("task: [unclosed\n", ["not valid YAML", "fix the syntax"]),
    ("- task\n", ["expected `key: value` answers", "got a list"]),
    ({"colour": "blue"}, ["unknown key 'colour'", "keys: task, knowledge_change"]),
    ({"task": "poetry"}, ["task: 'poetry' is not valid", "one of answer-generation, classification"]),
    ({"examples_per_class": -3}, ["examples_per_class: -3 is not valid", "0 for none"]),
    ({"citations": "maybe"}, ["citations: 'maybe' is not valid", "true or false"]),
    ({"latency_ms": "fast"}, ["latency_ms: 'fast' is not valid", "milliseconds per request"]),
])
def test_answers_file_errors_are_one_clear_config_error(tmp_path: Path, body: str | dict[str, Any] | None,
                                                        expected: list[str]) -> None:
    path = tmp_path / "answers.yaml"
    if isinstance(body, dict):
        write(path, yaml.safe_dump({**BASE, **body}))  # a complete file with one bad entry
    elif body is not None:
        write(path, body)
    with pytest.raises(ConfigError) as err:
        load_answers(path)
    message = str(err.value)
    assert "\n" not in message and str(path) in message
    for part in expected:
        assert part in message, message


def test_missing_answers_are_listed_with_how_to_add_them(tmp_path: Path) -> None:
    path = write(tmp_path / "partial.yaml", "task: classification\n")
    with pytest.raises(ConfigError) as err:
        load_answers(path)
    message = str(err.value)
    assert "\n" not in message and "missing answer 'knowledge_change'" in message and "add `regulated: ...`" in message


# --- the `advise` command ----------------------------------------------------------------------------------

runner = CliRunner()
app = typer.Typer()
app.command("advise")(advise_guide)


@app.command()
def version() -> None:
    """A second command, so `advise` stays a named subcommand as in the real app."""


def flags(case: dict[str, Any]) -> list[str]:
    out = ["--task", case["task"], "--knowledge-change", case["knowledge_change"],
           "--examples-per-class", str(case["examples_per_class"]), "--latency-ms", str(case["latency_ms"] or 0)]
    for key in ("citations", "structured_output", "fast_iteration", "regulated"):
        flag = key.replace("_", "-")
        out.append(f"--{flag}" if case[key] else f"--no-{flag}")
    return out


def test_command_with_an_answers_file_prints_parseable_json() -> None:
    result = runner.invoke(app, ["advise", "--answers", str(EXAMPLES / "compliance-copilot.yaml"), "--json"])
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    assert got["recommendation"] == "hybrid" and got["answers"]["task"] == "answer-and-classification"
    assert got["totals"]["hybrid"] == max(got["totals"].values())
    assert [r["key"] for r in got["rows"]] == [q.key for q in QUESTIONS]
    assert PipelineSpec.model_validate(yaml.safe_load(got["pipeline_yaml"])).name == "my-hybrid"


def test_command_with_flags_prints_the_table_and_next_steps(tmp_path: Path) -> None:
    report = tmp_path / "advice.md"
    result = runner.invoke(app, ["advise", *flags(TRIAGE), "--report", str(report)])
    assert result.exit_code == 0, result.output
    assert "Recommendation: fine-tuning" in result.stdout and "Which answers drove it" in result.stdout
    assert "Using RAG when the task is really classification" in result.stdout
    assert "ragtune train labelled.csv --text-col text --label-col label --name my-classifier" in result.stdout
    assert report.read_text(encoding="utf-8").startswith("## Decision guide: fine-tuning")


def test_flags_override_the_answers_file() -> None:
    result = runner.invoke(app, ["advise", "--answers", str(EXAMPLES / "compliance-copilot.yaml"),
                                 "--examples-per-class", "0", "--json"])
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    assert got["answers"]["examples_per_class"] == 0 and got["recommendation"] == "rag"
    assert set(got["ruled_out"]) == {"fine-tuning", "hybrid"}


def test_missing_answers_without_a_terminal_fail_with_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(advisor_cli, "_interactive", lambda: False)
    result = runner.invoke(app, ["advise", "--task", "classification", "--citations"])
    assert result.exit_code != 0 and isinstance(result.exception, ConfigError)
    message = str(result.exception)
    assert "\n" not in message and message.startswith("missing answer(s): knowledge_change, structured_output")
    assert "--knowledge-change" in message and "--answers FILE.yaml" in message and "--citations" not in message


def test_missing_answers_in_a_terminal_are_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(advisor_cli, "_interactive", lambda: True)
    typed = "\n".join(["poetry", "Classification",  # an invalid answer is asked again
                       "NEVER", "no", "Yes", "-5", "100", "N", "50", "false"]) + "\n"  # the answers file's spellings
    result = runner.invoke(app, ["advise", "--json"], input=typed)
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)  # prompts went to stderr, stdout is pure JSON
    assert got["answers"] == {"task": "classification", "knowledge_change": "never", "citations": False,
                              "structured_output": True, "examples_per_class": 100, "fast_iteration": False,
                              "latency_ms": 50, "regulated": False}
    assert got["recommendation"] == "fine-tuning"
    assert result.stderr.count("What is the business task?") == 2  # asked again after "poetry"
    assert "task: 'poetry' is not valid" in result.stderr and "one of answer-generation" in result.stderr
    assert "examples_per_class: '-5' is not valid" in result.stderr  # after -5


def test_a_bad_flag_value_is_a_usage_error() -> None:
    result = runner.invoke(app, ["advise", *flags({**TRIAGE, "knowledge_change": "hourly"})])
    assert result.exit_code == 2 and "hourly" in result.output
