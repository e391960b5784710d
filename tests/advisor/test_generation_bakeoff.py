"""The advisor's generation bake-off: the decision rule on hand-made measurements, the report and terminal
output, and one real run (prompting, rag+prompting, a LoRA fine-tune, all served by llama.cpp) on the committed
triage examples, through Python and through `ragtune advise --examples`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from helpers import write
from rich.console import Console
from typer.testing import CliRunner

from ragtune.advisor.bakeoff import CandidateResult
from ragtune.advisor.evidence import EvidenceDecision, measurably_better
from ragtune.advisor.generation import (
    CANDIDATES,
    GenCandidate,
    GenerationBakeoff,
    bakeoff_generation,
    decide_generation,
    generation_next_steps,
    generation_warnings,
    paired_better,
    split_heldout,
)
from ragtune.advisor.generation_measure import MIN_ITEMS, TUNED_NAME, with_context
from ragtune.advisor.render import render_evidence
from ragtune.advisor.report import Evidence, write_evidence_report
from ragtune.advisor.run import gather_evidence
from ragtune.cli import app
from ragtune.errors import DataError, RagtuneError
from ragtune.models.embedder import MiniLMEmbedder
from ragtune.pipelines.spec import PipelineSpec
from ragtune.tuning.generator.data import GenExample, load_gen_examples, load_schema

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "generator"
TRAIN, SCHEMA = EXAMPLES / "triage_train.jsonl", EXAMPLES / "triage_schema.json"


# --- the decision rule, on hand-made measurements -------------------------------------------------------------


def cand(name: str, scores: list[float], valid: list[float] | None = None, latency: float = 400.0,
         setup: float = 0.0) -> GenCandidate:
    valid = valid if valid is not None else [1.0] * len(scores)
    return GenCandidate(name=name, how=name, validity=sum(valid) / len(valid), primary=sum(scores) / len(scores),
                        latency_p50_ms=latency, tokens_per_s=30.0, setup_seconds=setup,
                        train_seconds=setup * 0.8 if name == "fine-tuning" else 0.0, cost_per_1k_usd=0.0,
                        setup_cost_usd=0.0, n=len(scores), valid=valid, scores=list(scores))


def bakeoff(*results: GenCandidate, metric: str = "field:intent", schema: bool = True,
            skipped: dict[str, str] | None = None) -> GenerationBakeoff:
    n = max(r.n for r in results)
    return GenerationBakeoff(source="triage.jsonl", train_examples=72, test_examples=n, primary_metric=metric,
                             schema=schema, shots=2, budget_s=60.0, results=list(results), skipped=skipped or {})


def test_prompting_stays_when_fine_tuning_is_better_only_within_noise() -> None:
    b = bakeoff(cand("prompting", [1, 0, 1, 0, 1, 0, 1, 0]), cand("fine-tuning", [1, 1, 1, 0, 1, 0, 1, 1],
                                                                   latency=900, setup=42),
                skipped={"rag+prompting": "no --docs given: nothing to retrieve from"})
    winner, reasons = decide_generation(b)
    assert winner == "prompting"
    text = " ".join(reasons)
    assert "fine-tuning is not measurably better than prompting" in text
    assert "75.0 % (95 % interval" in text and "50.0 % (95 % interval" in text
    assert "900 ms p50" in text and "42 s to train" in text  # latency and training cost are named
    assert "rag+prompting was not measured: no --docs given" in text
    assert any("small held-out set" in w for w in generation_warnings(b, winner))


def test_fine_tuning_wins_when_measurably_better_on_the_primary_metric() -> None:
    b = bakeoff(cand("prompting", [1.0] * 10 + [0.0] * 30), cand("fine-tuning", [1.0] * 36 + [0.0] * 4,
                                                                   latency=700, setup=50))
    winner, reasons = decide_generation(b)
    assert winner == "fine-tuning"
    assert "fine-tuning is measurably better than prompting on field:intent 90.0 %" in reasons[1]
    assert "paired sign test p = 0.000" in reasons[1] and "700 ms p50" in reasons[1] and "50 s to train" in reasons[1]
    assert generation_warnings(b, winner) == []  # 40 examples, the winner scored highest


def test_validity_alone_can_earn_complexity_but_not_against_a_worse_score() -> None:
    same = [1.0, 0.0] * 15
    b = bakeoff(cand("prompting", same, valid=[0.0] * 20 + [1.0] * 10), cand("rag+prompting", same),
                schema=False)
    winner, reasons = decide_generation(b)
    assert winner == "rag+prompting" and "on validity 100 % vs 33 %" in reasons[1]
    worse = bakeoff(cand("prompting", [1.0] * 30, valid=[0.0] * 20 + [1.0] * 10),
                    cand("rag+prompting", [0.0] * 30), schema=False)
    assert decide_generation(worse)[0] == "prompting"  # valid but wrong is not better
    assert any("not valid JSON; give --schema" in w for w in generation_warnings(worse, "prompting"))


def test_each_challenger_faces_the_current_pick() -> None:
    b = bakeoff(cand("prompting", [0.0] * 30), cand("rag+prompting", [1.0] * 30, setup=3),
                cand("fine-tuning", [1.0] * 29 + [0.0], setup=40))
    winner, reasons = decide_generation(b)
    assert winner == "rag+prompting" and "fine-tuning is not measurably better than rag+prompting" in reasons[2]
    assert "3 s to index the documents" in reasons[1]


def test_rouge_l_is_compared_item_by_item_with_an_interval() -> None:
    low, high = [0.3 + 0.01 * i for i in range(30)], [0.6 + 0.01 * i for i in range(30)]
    winner, reasons = decide_generation(bakeoff(cand("prompting", low), cand("fine-tuning", high), metric="rouge_l",
                                                schema=False))
    assert winner == "fine-tuning" and "rouge_l 0.745 (95 % interval" in reasons[1]
    assert decide_generation(bakeoff(cand("prompting", high), metric="rouge_l"))[1][-1].startswith(
        "prompting is the only candidate measured")
    with pytest.raises(ValueError):
        decide_generation(GenerationBakeoff("x", 1, 1, "rouge_l", False, 0, 1.0))


def test_the_paired_test_is_mcnemar_on_right_or_wrong_scores() -> None:
    a = [True] * 18 + [False] * 2 + [True] * 10
    b = [False] * 18 + [True] * 2 + [True] * 10
    ours, p = paired_better([float(x) for x in a], [float(x) for x in b])
    assert ours and p < 0.001
    theirs = measurably_better(CandidateResult("a", "", sum(a) / 30, 0, 0, 0, 0, a),
                               CandidateResult("b", "", sum(b) / 30, 0, 0, 0, 0, b), 0.01)
    assert ours == theirs
    assert paired_better([1.0, None, 0.0], [0.0, 1.0, 1.0]) == (False, 1.0)  # unscored items do not count


# --- data, prompts and next steps ---------------------------------------------------------------------------


def test_the_split_holds_out_by_prompt_and_needs_five_prompts() -> None:
    data = load_gen_examples(TRAIN)
    train, test = split_heldout(data, 8, 0)
    assert len(test) == 8 and len(train) == 72
    assert not {e.prompt_key() for e in train} & {e.prompt_key() for e in test}
    with pytest.raises(DataError, match="at least 5"):
        split_heldout(data[:4], 8, 0)


def test_retrieved_passages_join_the_system_turn() -> None:
    e = GenExample((("system", "Reply with JSON."), ("user", "where is my card")), '{"intent": "card_arrival"}')
    turns = with_context(e, ["Cards  arrive\nin 5 days.", "x" * 2000]).prompt
    assert turns[0][0] == "system" and turns[0][1].startswith("Reply with JSON.\n\nPassages")
    assert "[1] Cards arrive in 5 days." in turns[0][1] and len(turns[0][1]) < 1000 and turns[1] == e.prompt[1]
    bare = with_context(GenExample((("user", "hi"),), "ok"), ["p"]).prompt
    assert bare[0][0] == "system" and bare[1] == ("user", "hi")


def test_next_steps_fit_the_winner_and_the_pipeline_loads() -> None:
    b = bakeoff(cand("prompting", [1.0]))
    steps, pipeline = generation_next_steps("fine-tuning", b, "schema.json")
    assert any("ragtune tune generator triage.jsonl --schema schema.json" in s.command for s in steps)
    assert PipelineSpec.model_validate(yaml.safe_load(pipeline)).steps[0][0] == "generate"
    steps, pipeline = generation_next_steps("prompting", b)
    assert "2 worked examples" in pipeline and "constrained to the schema" in pipeline


def test_report_and_terminal_show_the_generation_bake_off(tmp_path: Path) -> None:
    b = bakeoff(cand("prompting", [1.0, 0.0] * 4), skipped={"fine-tuning": "the time budget ran out",
                                                            "rag+prompting": "no --docs given"})
    winner, reasons = decide_generation(b)
    evidence = Evidence(decision=EvidenceDecision(winner, reasons, generation_warnings(b, winner)), generation=b)
    md, _ = write_evidence_report(tmp_path, evidence)
    text = md.read_text(encoding="utf-8")
    assert "## Generation bake-off on your examples" in text and "| prompting | prompting | 100.0 % | 50.0 % |" in text
    assert "| fine-tuning | not measured: the time budget ran out |" in text
    saved = json.loads((tmp_path / "evidence.json").read_text(encoding="utf-8"))
    assert saved["recommendation"] == "prompting" and saved["generation"]["results"][0]["n"] == 8
    console = Console(record=True, width=160)
    render_evidence(evidence, None, tmp_path / "report.html", console)
    shown = console.export_text()
    assert "Recommendation from the evidence: prompting" in shown and "Generation bake-off" in shown
    assert "skipped" in shown


def test_schema_without_examples_and_bad_examples_are_errors(tmp_path: Path) -> None:
    with pytest.raises(RagtuneError, match="--schema describes the outputs of --examples"):
        gather_evidence(schema=SCHEMA)
    bad = write(tmp_path / "bad.jsonl", '{"prompt": "hi"}\n')
    with pytest.raises(DataError, match="bad.jsonl:1"):
        gather_evidence(examples=bad)


def test_help_explains_the_generation_evidence() -> None:
    result = CliRunner().invoke(app, ["advise", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for words in ("--examples", "--schema", "prompting", "fine-tuned generator", "RAG with prompting"):
        assert words in result.output


# --- real runs ------------------------------------------------------------------------------------------------


def triage_docs(root: Path) -> Path:
    """Three tiny documents about the triage intents, for rag+prompting."""
    write(root / "cards.md", "---\nacl: public\n---\n# Cards\n\nA new card arrives within 5 working days "
          "(card_arrival). A lost or stolen card is blocked at once (lost_or_stolen_card).\n")
    write(root / "money.md", "---\nacl: public\n---\n# Money\n\nRefunds (request_refund) take 3 days. A failed "
          "top-up (top_up_failed) is returned. Cash withdrawals abroad carry a fee (cash_withdrawal_charge).\n")
    write(root / "identity.md", "---\nacl: public\n---\n# Identity\n\nWe verify your identity with a photo ID "
          "(verify_my_identity). Three wrong PINs block it (pin_blocked). Rates follow the market (exchange_rate).\n")
    return root


def test_advise_examples_from_the_command_line(tmp_path: Path) -> None:
    """Prompting (and rag+prompting) measured for real, on 5 examples each (the least), in an 8 s budget;
    fine-tuning named as skipped with the budget it would need."""
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["advise", "--examples", str(TRAIN), "--schema", str(SCHEMA), "--docs",
                                      str(triage_docs(tmp_path / "docs")), "--budget", "8", "--report-dir",
                                      str(out), "--json"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    data = json.loads(result.stdout)
    generation = data["generation"]
    measured = {r["name"]: r for r in generation["results"]}
    assert set(measured) | set(generation["skipped"]) == set(CANDIDATES), generation["skipped"]
    assert "prompting" in measured and "give --budget" in generation["skipped"]["fine-tuning"]  # 8 s: no training
    for r in measured.values():
        assert r["validity"] == 1.0 and r["n"] >= 5 and r["latency_p50_ms"] > 0  # constrained to the schema
    assert generation["docs"] == str(tmp_path / "docs")
    if "rag+prompting" in measured:  # indexing three notes takes 1-3 s; on busy cores it may pass its 10 s
        assert measured["rag+prompting"]["setup_seconds"] > 0
    else:
        assert "time budget" in generation["skipped"]["rag+prompting"]
    assert data["recommendation"] in {"prompting", "rag+prompting"} and len(data["reasons"]) >= 3
    assert any(r.startswith("fine-tuning was not measured") for r in data["reasons"])
    assert "Generation bake-off" in (out / "report.html").read_text(encoding="utf-8")
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "| fine-tuning | not measured:" in report and "ragtune init" in report and "## Corpus audit" in report


def test_a_real_bake_off_measures_or_names_every_candidate(tmp_path: Path, embedder: MiniLMEmbedder) -> None:
    """The three candidates for real: 8 held-out triage messages, 2 shots, three tiny documents, 55 s (on 2 idle
    cores about 30 s of it trains the adapter; on busy ones fine-tuning may be named as skipped instead)."""
    real = bakeoff_generation(load_gen_examples(TRAIN), 55.0, docs=triage_docs(tmp_path / "docs"),
                              schema=load_schema(SCHEMA), shots=2, max_test=8, embedder=embedder,
                              registry_root=tmp_path / "models")
    names = [r.name for r in real.results]
    assert names[:2] == ["prompting", "rag+prompting"] and set(names) | set(real.skipped) == set(CANDIDATES)
    assert not set(names) & set(real.skipped) and real.primary_metric == "field:intent"
    for r in real.results:
        assert r.validity == 1.0 and all(v == 1.0 for v in r.valid)  # decoding constrained to the schema
        assert 5 <= r.n <= 8 and len(r.scores) == r.n and r.latency_p50_ms > 0 and r.tokens_per_s > 0
    assert real.results[1].setup_seconds > 0  # the documents were indexed
    tuned = real.result("fine-tuning")
    if tuned is not None:
        assert tuned.train_seconds > 0 and tuned.setup_seconds > tuned.train_seconds and "LoRA" in tuned.how
        assert (tmp_path / "models" / TUNED_NAME / "v1" / "model" / "adapter.gguf").is_file()
        assert any(f"registered as {TUNED_NAME} v1" in n for n in real.notes)
    else:
        assert "give --budget" in real.skipped["fine-tuning"]
    # Stops adding work at the budget. Not a wall-clock bound (a busy CI machine overshot one by 83 s): a candidate
    # the budget cut short was measured on the minimum number of examples only, and an overshoot says what was cut.
    cut = [r for r in real.results if any(f"the time budget ran out: {r.name} was measured" in n for n in real.notes)]
    assert all(r.n == MIN_ITEMS for r in cut)
    assert real.elapsed_s <= real.budget_s + 20 or cut or "fine-tuning" in real.skipped
    winner, reasons = decide_generation(real)
    assert winner in CANDIDATES and len(reasons) == 3 and reasons[0].startswith("generation task: 72 training")
    assert "s to index the documents" in reasons[1] and "fine-tuning" in reasons[2]
