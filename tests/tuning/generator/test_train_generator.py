"""`train_generator` end to end on the committed triage examples: a real LoRA run on the packaged SmolLM2, its
GGUF adapter served by llama.cpp, the before/after rows, the registry card, resuming after a crash, and
`generator.kind: tuned` in a project."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from ragtune.cli import app
from ragtune.config import init_project
from ragtune.core import Principal
from ragtune.errors import ConfigError, DataError
from ragtune.models.generator import LlamaCppGenerator
from ragtune.pipelines.runner import PipelineRunner
from ragtune.pipelines.spec import PipelineSpec
from ragtune.project import Project
from ragtune.tuning.generator.base import read_gguf_header
from ragtune.tuning.generator.data import GenData, load_gen_examples, load_schema, validate_output
from ragtune.tuning.generator.served import TunedGenerator, tuned_generator
from ragtune.tuning.generator.train import train_generator
from ragtune.tuning.registry import Registry

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "generator"
runner = CliRunner()
SMALL: dict[str, Any] = dict(batch_size=4, max_length=96, shots=2, eval_limit=3, max_new_tokens=32, threads=2,
                             save_every=1)


@pytest.fixture(scope="module")
def triage() -> tuple[GenData, GenData, dict[str, Any]]:
    return (load_gen_examples(EXAMPLES / "triage_train.jsonl"), load_gen_examples(EXAMPLES / "triage_test.jsonl"),
            load_schema(EXAMPLES / "triage_schema.json"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Registry, Any, str]:
    """One real run through the command line: 24 examples, 3 steps, 3 held-out examples per configuration."""
    root = tmp_path_factory.mktemp("gen")
    init_project(root / "project")
    data = root / "train.jsonl"
    data.write_text("".join((EXAMPLES / "triage_train.jsonl").read_text().splitlines(True)[:24]), encoding="utf-8")
    result = runner.invoke(app, ["tune", "generator", str(data), "--name", "triage", "--schema",
                                 str(EXAMPLES / "triage_schema.json"), "--validation",
                                 str(EXAMPLES / "triage_test.jsonl"), "--learning-rate", "1e-3", "--max-length",
                                 "128", "--shots", "2", "--eval-limit", "3", "-p", str(root / "project")],
                           env={"COLUMNS": "250", "RAGTUNE_EMBEDDER__THREADS": "2"})
    assert result.exit_code == 0, result.output + repr(result.exception)
    registry = Registry(root / "project" / "models")
    card = registry.card("triage")
    folder = registry.path("triage")
    return registry, SimpleNamespace(card=card, folder=folder, rows=card.notes["comparison"]), result.output


def test_a_run_registers_a_served_adapter_with_its_before_after_rows(trained: tuple[Registry, Any, str]) -> None:
    registry, result, out = trained
    card = result.card
    assert card.method == "generator" and card.version == 1 and card.params["method"] == "lora"
    assert card.metrics["steps"] == card.metrics["planned_steps"] == 3  # 24 examples, 8 per step, 1 epoch
    assert card.params["base_fingerprint"] and card.params["base_gguf"] is None  # the packaged base
    model = result.folder / "model"
    assert (model / "adapter.gguf").is_file() and (model / "schema.json").is_file()
    assert card.notes["gguf_bytes"] == (model / "adapter.gguf").stat().st_size
    configs = [r["config"] for r in result.rows]
    assert configs == ["base, 2-shot prompt", "base, 2-shot prompt + schema", "tuned", "tuned + schema"]
    constrained = [r for r in result.rows if r["config"].endswith("schema")]
    assert all(r["validity"] == 1.0 and r["n"] == 3 for r in constrained)  # decoding constrained to the schema
    assert all(r["tokens_per_s"] > 0 for r in result.rows)
    assert card.metrics["heldout_validity_schema"] == 1.0
    assert out.index("24 examples with 24 distinct prompts") < out.index("train: 3/3")  # audit, then progress
    assert "evaluate tuned + schema: 3/3" in out and "registered triage v1 (lora on" in out
    assert "held-out comparison (3 examples)" in out
    assert "next: set generator.kind: tuned and generator.model: triage@1 in ragtune.yaml" in out
    assert "tuned + schema" in (result.folder / "report.md").read_text(encoding="utf-8")
    assert "<img" in (result.folder / "report.html").read_text(encoding="utf-8")
    assert not (registry.root / ".checkpoints" / "triage").exists()  # registered: checkpoints cleared


def test_the_tuned_generator_serves_schema_valid_json(trained: tuple[Registry, Any, str],
                                                      triage: tuple[GenData, GenData, dict[str, Any]]) -> None:
    registry, result, _ = trained
    generator = tuned_generator(registry.root, "triage")
    try:
        assert generator.spec == "triage@1" and generator.name == "tuned:triage@1"
        assert generator.schema == triage[2]
        reply = generator.generate(triage[1][0].messages, max_tokens=32, json_schema=generator.schema)
        assert validate_output(reply, generator.schema) is None
    finally:
        generator.close()


def test_an_adapter_is_never_served_on_another_base(trained: tuple[Registry, Any, str]) -> None:
    registry, result, _ = trained
    card_file = result.folder / "card.json"
    original = card_file.read_text(encoding="utf-8")
    card = json.loads(original)
    card["params"]["base_fingerprint"] = "0" * 64
    card_file.write_text(json.dumps(card), encoding="utf-8")
    try:
        with pytest.raises(ConfigError, match="adapter for the base model"):
            tuned_generator(registry.root, "triage@1")
    finally:
        card_file.write_text(original, encoding="utf-8")


def test_a_crashed_run_resumes_from_its_checkpoint(tmp_path: Path,
                                                   triage: tuple[GenData, GenData, dict[str, Any]]) -> None:
    train, _, schema = triage
    registry = Registry(tmp_path)
    data = train[:12]  # 3 steps of 4

    def crash(phase: str, step: int, total: int, metrics: dict[str, float]) -> None:
        if phase == "train" and step == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_generator(registry, "resumed", data, schema=schema, holdout=0, progress=crash, **SMALL)
    checkpoints = registry.root / ".checkpoints" / "resumed"
    assert any(p.name.startswith("checkpoint-") for p in checkpoints.iterdir())
    assert registry.versions("resumed") == []  # nothing half-registered
    with pytest.raises(ConfigError, match="other data, settings or base"):
        train_generator(registry, "resumed", data[:8], schema=schema, holdout=0, resume=True, **SMALL)
    # the refused resume must not have removed the checkpoint
    assert any(p.name.startswith("checkpoint-") for p in checkpoints.iterdir())
    steps: list[int] = []
    result = train_generator(registry, "resumed", data, schema=schema, holdout=0, resume=True,
                             progress=lambda p, s, t, m: steps.append(s) if p == "train" else None, **SMALL)
    assert steps and steps[0] > 1  # went on from the checkpoint, not from step 1
    assert result.card.metrics["steps"] == 3 and result.rows == []  # nothing held out: no comparison


def test_a_merged_lora_is_registered_and_served_as_one_whole_q8_0_model(
        tmp_path: Path, triage: tuple[GenData, GenData, dict[str, Any]]) -> None:
    train, test, schema = triage
    registry = Registry(tmp_path)
    result = train_generator(registry, "merged", train[:8], schema=schema, holdout=0, merge=True,
                             gguf_type="q8_0", learning_rate=1e-3, **SMALL)
    model = result.folder / "model"
    assert result.card.params["method"] == "lora" and result.card.params["merged"] is True
    assert result.card.params["gguf_type"] == "q8_0" and read_gguf_header(model / "model.gguf").get(
        "general.file_type") == 7  # mostly Q8_0
    assert result.card.notes["served_file"] == "model.gguf" and not (model / "adapter.gguf").exists()
    assert (model / "peft" / "adapter_config.json").is_file()  # the adapter itself is kept
    assert result.card.notes["gguf_bytes"] == (model / "model.gguf").stat().st_size > 100_000_000  # whole
    generator = tuned_generator(registry.root, "merged@1")
    base = LlamaCppGenerator(threads=2)
    try:
        assert generator.lora_path is None and generator.model_path == model / "model.gguf"
        reply = generator.generate(test[0].messages, max_tokens=32, json_schema=generator.schema)
        assert validate_output(reply, schema) is None
        assert generator.generate(test[0].messages, max_tokens=24) != base.generate(test[0].messages,
                                                                                     max_tokens=24)
    finally:
        generator.close()
        base.close()


def test_bad_settings_fail_before_any_model_loads(tmp_path: Path,
                                                  triage: tuple[GenData, GenData, dict[str, Any]]) -> None:
    train, _, schema = triage
    registry = Registry(tmp_path)
    with pytest.raises(ConfigError, match="unknown --method"):
        train_generator(registry, "x", train, method="qlora")
    with pytest.raises(ConfigError, match="--merge .* --method lora only"):
        train_generator(registry, "x", train, method="full", merge=True)
    with pytest.raises(ConfigError, match="--gguf-type 'q4': choose one of f16, q8_0, f32"):
        train_generator(registry, "x", train, method="full", gguf_type="q4")
    with pytest.raises(ConfigError, match="add --merge"):
        train_generator(registry, "x", train, gguf_type="q8_0")  # an adapter has no such type
    bad = {"type": "object", "required": ["summary"]}
    with pytest.raises(DataError, match="no target validates"):
        train_generator(registry, "x", train, schema=bad)
    assert registry.versions("x") == []


def test_a_project_serves_the_tuned_generator_it_names(trained: tuple[Registry, Any, str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    registry, _, _ = trained
    monkeypatch.setenv("RAGTUNE_GENERATOR__KIND", "tuned")
    monkeypatch.setenv("RAGTUNE_GENERATOR__MODEL", "triage@1")
    generator = Project.open(registry.root.parent).generator
    assert isinstance(generator, TunedGenerator) and generator.spec == "triage@1"
    assert generator.lora_path is not None and generator.lora_path.name == "adapter.gguf"
    monkeypatch.setenv("RAGTUNE_GENERATOR__MODEL", "")
    with pytest.raises(ConfigError, match="generator.kind tuned needs generator.model"):
        Project.open(registry.root.parent).settings  # noqa: B018


def test_a_pipeline_generate_step_drafts_json_that_validates(trained: tuple[Registry, Any, str],
                                                             triage: tuple[GenData, GenData, dict[str, Any]]) -> None:
    registry, _, _ = trained
    spec = PipelineSpec.model_validate({"name": "drafts", "steps": [
        {"generate": {"model": "triage@1", "output": "ticket", "max_tokens": 40}}]})
    project = Project.open(registry.root.parent)
    runner = PipelineRunner(spec, project)
    runner.warm_up()
    result = runner.run("I still have not received my new card, it's been two weeks", Principal("alice"))
    ticket = result.generated["ticket"]
    assert validate_output(json.dumps(ticket), triage[2]) is None  # constrained to the model's own schema
    assert result.to_dict()["generated"] == {"ticket": ticket} and "1.generate" in result.latency_ms
    assert project.tuned_generator("triage@1").system_prompt == triage[0][0].prompt[0][1]  # the training prompt
    with pytest.raises(ValidationError, match="schema_file|unknown|extra"):
        PipelineSpec.model_validate({"name": "x", "steps": [{"generate": {"model": "triage", "shema": "s.json"}}]})
