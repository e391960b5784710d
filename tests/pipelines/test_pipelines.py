"""Hybrid pipelines: spec validation, routing conditions, and the built-ins end to end on real models."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from helpers import write
from typer.testing import CliRunner

from ragtune.cli import app
from ragtune.config import init_project
from ragtune.core import Principal
from ragtune.errors import ConfigError
from ragtune.pipelines.runner import LabelResult, PipelineResult, PipelineRunner, holds
from ragtune.pipelines.spec import Condition, builtin_names, load_pipeline
from ragtune.project import Project
from ragtune.tuning.base import NEEDS_REVIEW
from ragtune.tuning.registry import Registry
from ragtune.tuning.train import train_classifier

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "data"
ALICE = Principal("alice", frozenset({"retail"}))
BOB = Principal("bob", frozenset({"media"}))


# --- the spec ----------------------------------------------------------------------------------------------


def test_builtins_load_and_name_their_steps() -> None:
    assert builtin_names() == ["compliance-copilot", "support-triage"]
    spec = load_pipeline("support-triage")
    assert [kind for kind, _ in spec.steps] == ["classify", "route", "retrieve", "answer"]


@pytest.mark.parametrize(("yaml_text", "message"), [
    ("name: x\nsteps: []\n", "non-empty list"),
    ("name: x\nsteps:\n  - summarise: {}\n", "unknown kind 'summarise'"),
    ("name: x\nsteps:\n  - answer: {}\n", "needs a retrieve step before it"),
    ("name: x\nsteps:\n  - route: {default: a, rules: [{queue: b, when: {label: intent, in: [x]}}]}\n",
     "tests label 'intent', which no earlier classify step outputs"),
    ("name: x\nsteps:\n  - retrieve: {top_k: 0}\n", "greater than or equal to 1"),
    ("name: x\nsteps:\n  - retrieve: {topk: 3}\n", "step 1 \\(retrieve\\): unknown key 'topk'"),
    ("name: x\nsteps: [\n", "not valid YAML"),
])
def test_bad_specs_are_refused_with_the_reason(tmp_path: Path, yaml_text: str, message: str) -> None:
    write(tmp_path / "p.yaml", yaml_text)
    with pytest.raises(ConfigError, match=message):
        load_pipeline(tmp_path / "p.yaml")


@pytest.mark.parametrize(("yaml_text", "parts"), [
    # issue 19, bug 7: the step (index and kind), the bad key, the closest valid key and all valid keys
    ("name: x\nsteps:\n  - retrieve: {top_k: 3}\n  - answer: {}\n  - retrieve: {topk: 3}\n",
     ["bad1.yaml: step 3 (retrieve): unknown key 'topk' (did you mean 'top_k'?); valid keys: corpus, top_k, when"]),
    ("name: x\nsteps:\n  - retrieve: {}\n  - route: {default: a, rules: [{queue: q, when: {keyword: [a]}}]}\n",
     ["step 2 (route): rules.0.when: unknown key 'keyword' (did you mean 'keywords'?)", "valid keys: abstained, "
      "in, keywords, label, low_confidence, not_in, route, unsupported"]),
    ("name: x\nsteps:\n  - classify: {modle: m}\n",
     ["step 1 (classify): unknown key 'modle' (did you mean 'model'?); valid keys: model, output, threshold, "
      "top_k, ", "when; missing key 'model'"]),
    ("name: x\nsteps:\n  - retrieve: {}\nstep: 1\n", ["bad1.yaml: unknown key 'step' (did you mean 'steps'?); "
                                                     "valid keys: description, name, steps"]),
    ("name: x\nsteps:\n  - retrieve: 5\n", ["step 1 (retrieve): expected a mapping of `key: value` pairs (got int)"]),
    # validators' messages without pydantic's "Value error, " prefix
    ("name: x\nsteps:\n  - answer: {}\n", ["bad1.yaml: step 1 (answer) needs a retrieve step before it"]),
    ("name: x\nsteps:\n  - retrieve: {}\n  - route: {default: a, rules: [{queue: q, when: {in: [a]}}]}\n",
     ["step 2 (route): rules.0.when: `in`/`not_in` need `label:`"]),
    ("name: x\nsteps: []\n", ["bad1.yaml: `steps:` must be a non-empty list"]),
])
def test_spec_errors_name_the_step_the_key_and_the_valid_keys(tmp_path: Path, yaml_text: str,
                                                              parts: list[str]) -> None:
    write(tmp_path / "bad1.yaml", yaml_text)
    with pytest.raises(ConfigError) as err:
        load_pipeline(tmp_path / "bad1.yaml")
    message = str(err.value)
    assert "Value error" not in message and "Extra inputs" not in message and "\n" not in message
    for part in parts:
        assert part in message, message


def test_unknown_pipeline_lists_the_builtins() -> None:
    with pytest.raises(ConfigError, match="built-ins: compliance-copilot, support-triage"):
        load_pipeline("nope")


def test_conditions() -> None:
    r = PipelineResult(pipeline="p", input="We got a SUBPOENA about your data-sharing", user="u", route="legal")
    r.labels["cat"] = LabelResult("m", "Data Security", 0.9, [])
    r.labels["low"] = LabelResult("m", NEEDS_REVIEW, 0.3, [])
    assert holds(Condition.model_validate({"keywords": ["subpoena"]}), r, False)
    assert not holds(Condition.model_validate({"keywords": ["sub"]}), r, False)  # whole words only
    assert holds(Condition.model_validate({"label": "cat", "in": ["Data Security"]}), r, False)
    assert not holds(Condition.model_validate({"label": "cat", "not_in": ["Data Security"]}), r, False)
    assert holds(Condition.model_validate({"low_confidence": "low"}), r, False)
    assert not holds(Condition.model_validate({"low_confidence": "cat"}), r, False)
    assert holds(Condition.model_validate({"route": ["legal", "x"]}), r, False)
    assert not holds(Condition.model_validate({"abstained": False}), r, False)  # no answer yet
    assert holds(Condition.model_validate({"unsupported": True}), r, True)
    # every test must hold
    assert not holds(Condition.model_validate({"keywords": ["subpoena"], "route": "other"}), r, False)


# --- end to end on real models -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def support(tmp_path_factory: pytest.TempPathFactory) -> Project:
    root = tmp_path_factory.mktemp("support")
    init_project(root)
    train_classifier(Registry(root / "models"), EXAMPLES / "banking77" / "train.csv", "triage", label_col="category",
                     method="head")
    init_project(root / "help")
    Project.open(root / "help").ingest(EXAMPLES / "help" / "articles")
    return Project.open(root)


def test_support_triage_routes_and_drafts_self_service_replies(support: Project) -> None:
    runner = PipelineRunner(load_pipeline("support-triage"), support)
    runner.warm_up()
    anyone = Principal("carol")
    arrival = runner.run("When will my new card arrive?", anyone)
    assert arrival.labels["intent"].label == "card_arrival" and arrival.route == "self-service"
    assert arrival.answer is not None and not arrival.answer.abstained
    assert {Path(c.chunk.source_path).name for c in arrival.answer.citations} == {"card-arrival.md"}
    assert "#" not in arrival.answer.text  # headings are not quoted as sentences
    stolen = runner.run("Somebody stole my wallet with my card in it", anyone)
    assert stolen.route == "card-security" and stolen.answer is None
    assert "3.retrieve" in stolen.skipped and "4.answer" in stolen.skipped
    odd = runner.run("Is the app available in French?", anyone)
    assert odd.labels["intent"].label == NEEDS_REVIEW and odd.route == "human-review"
    assert set(arrival.latency_ms) == {"1.classify", "2.route", "3.retrieve", "4.answer", "total"}


@pytest.fixture(scope="module")
def compliance(tmp_path_factory: pytest.TempPathFactory) -> Project:
    root = tmp_path_factory.mktemp("compliance")
    init_project(root)
    train_classifier(Registry(root / "models"), EXAMPLES / "policies" / "advisor_questions.csv", "policy-category",
                     text_col="question", label_col="category", method="head")
    docs = root / "policies"
    for folder in ("public", "retail", "media"):  # two policies per folder, each folder with its ACL
        shutil.copytree(EXAMPLES / "policies" / "corpus" / folder, docs / folder,
                        ignore=lambda d, names: sorted(n for n in names if n.endswith(".md"))[2:])
    project = Project.open(root)
    project.ingest(docs)
    return project


def test_compliance_copilot_answers_within_permissions_labels_and_routes(compliance: Project) -> None:
    runner = PipelineRunner(load_pipeline("compliance-copilot"), compliance)
    question = "Do you share my personal information with third parties for advertising?"
    seen = {}
    for who in (ALICE, BOB):
        result = runner.run(question, who)
        assert result.answer is not None and result.labels["category"].probability > 0
        assert result.route in {"self-service", "privacy-officer", "legal"}
        folders = {Path(c.chunk.source_path).parent.name for c in result.answer.citations}
        assert folders <= {"public", next(iter(who.groups))}, (who.user, folders)
        seen[who.user] = result.to_dict()
    assert json.dumps(seen["alice"])  # the result serialises
    legal = runner.run("A regulator sent us a subpoena about user data; what does the policy say?", ALICE)
    assert legal.route == "legal"


def test_run_command_prints_the_pipeline_result_as_json(support: Project) -> None:
    result = CliRunner().invoke(app, ["run", "support-triage", "How do I unblock my PIN?", "--user", "carol",
                                      "--json", "-p", str(support.settings.project_dir)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["labels"]["intent"]["label"] == "pin_blocked" and data["route"] == "self-service"
    assert [Path(c["path"]).name for c in data["answer"]["citations"]][:1] == ["pin-blocked.md"]


# --- YAML round trip and the advisor's starting points -----------------------------------------------------


@pytest.mark.parametrize("name", builtin_names())
def test_to_yaml_reads_back_to_the_same_spec(tmp_path: Path, name: str) -> None:
    spec = load_pipeline(name)
    assert load_pipeline(write(tmp_path / "p.yaml", spec.to_yaml())) == spec


@pytest.mark.parametrize("winner", ["rag", "fine-tuning", "hybrid"])
def test_the_advisors_starting_pipeline_loads_and_runs(compliance: Project, tmp_path: Path, winner: str) -> None:
    from ragtune.advisor.pipeline_draft import pipeline_yaml
    from ragtune.advisor.questions import GuideAnswers

    answers = GuideAnswers(task="answer-and-classification", knowledge_change="weekly", citations=False,
                           structured_output=True, examples_per_class=60, fast_iteration=False, latency_ms=800,
                           regulated=False)  # no verify step: that needs a trained groundedness checker
    text = pipeline_yaml(winner, answers).replace("my-classifier", "policy-category")  # "rename the model"
    spec = load_pipeline(write(tmp_path / "pipeline.yaml", text))
    result = PipelineRunner(spec, compliance).run("Do you share my personal information for advertising?", ALICE)
    assert result.route in {"automated", "human-review"}
    assert ("label" in result.labels) == (winner != "rag")
    assert (result.answer is not None) == (winner != "fine-tuning")
    if result.answer is not None:
        assert {Path(c.chunk.source_path).parent.name for c in result.answer.citations} <= {"public", "retail"}
