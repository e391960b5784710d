"""Gather Layer 2's evidence: audits, bake-offs within one time budget, and the decision."""

from __future__ import annotations

import time
from pathlib import Path

from ragtune.advisor.adaptation import plan_adaptation
from ragtune.advisor.bakeoff import Tick, bakeoff_labels, bakeoff_questions, load_questions
from ragtune.advisor.corpus import audit_corpus
from ragtune.advisor.evidence import EvidenceDecision, decide
from ragtune.advisor.generation import bakeoff_generation, decide_generation, generation_warnings
from ragtune.advisor.report import Evidence
from ragtune.errors import RagtuneError
from ragtune.project import Project
from ragtune.tuning.audit import audit_labels
from ragtune.tuning.data import load_labelled
from ragtune.tuning.generator.data import load_gen_examples, load_schema


def gather_evidence(
    *,
    docs: Path | None = None,
    questions: Path | None = None,
    labels: Path | None = None,
    text_col: str = "text",
    label_col: str = "label",
    budget_s: float = 180.0,
    project: Project | None = None,
    method: str = "head",
    tick: Tick | None = None,
    adaptation_project: Project | None = None,
    examples: Path | None = None,
    schema: Path | None = None,
) -> Evidence:
    """Audit what was given, run the bake-offs it allows within ``budget_s`` seconds, and decide.

    With ``project``, its embedder is used and its sync log gives the corpus change rate. Recall with and
    without adaptation is measured with the reranker and tuned embedder in the registry of
    ``adaptation_project`` (default: ``project``; with neither, a note says it was not measured).
    ``docs`` with ``questions`` is a question-answering task; ``labels`` a classification task; all three
    together the compliance-copilot shape (answers plus a label per question). ``examples`` (chat JSONL, with
    an optional JSON ``schema`` for the outputs) is a generation task: prompting, rag+prompting (with ``docs``)
    and a fine-tuned generator are compared (:mod:`ragtune.advisor.generation`); alone, it decides.
    """
    if schema is not None and examples is None:
        raise RagtuneError("--schema describes the outputs of --examples: give --examples FILE.jsonl too")
    if labels is None and examples is None and (docs is None or questions is None):
        raise RagtuneError("the evidence layer needs --docs with --questions (question answering), --labels "
                           "(classification), --examples (generation), or several of them; without them, answer "
                           "the decision guide only")
    if budget_s <= 0:
        raise RagtuneError(f"--budget must be a positive number of seconds, not {budget_s}")
    say = tick or (lambda _msg: None)
    start = time.perf_counter()
    if project is None:
        with Project.temporary() as sandbox:  # the embedder outlives its (empty) sandbox folder
            embedder = sandbox.embedder
    else:
        embedder = project.embedder
    qs = load_questions(questions) if questions is not None else None  # bad input fails before any work
    data = load_labelled(labels, text_col, label_col) if labels is not None else None
    gen_data = load_gen_examples(examples) if examples is not None else None
    gen_schema = load_schema(schema) if schema is not None else None
    corpus = None
    if docs is not None:
        say(f"auditing the documents in {docs}")
        corpus = audit_corpus(docs, project.store.state.sync_log() if project is not None else None)
    qa = label_bakeoff = label_audit = generation = None
    # The generation bake-off (it trains a model) runs last, on at least half of the budget when shared.
    rest = (0.5 if (data is not None or (qs is not None and docs is not None)) else 0.0) if gen_data else 1.0
    share = rest * (0.5 if (qs is not None and data is not None) else 1.0)
    if data is not None:
        say(f"auditing {len(data.texts)} labelled examples")
        label_audit = audit_labels(data, embedder)
        if label_audit.blocking:
            raise RagtuneError("the labels cannot be used: " + "; ".join(label_audit.blocking))
        remaining = start + share * budget_s - time.perf_counter()
        label_bakeoff = bakeoff_labels(data.texts, data.labels, max(remaining, 1.0), method=method,
                                       embedder=embedder, tick=say)
    if qs is not None and docs is not None:
        remaining = start + rest * budget_s - time.perf_counter()
        plan = plan_adaptation(adaptation_project if adaptation_project is not None else project)
        qa = bakeoff_questions(docs, qs, max(remaining, 1.0), embedder=embedder, tick=say, adaptation=plan)
    if gen_data is not None:
        remaining = start + budget_s - time.perf_counter()
        generation = bakeoff_generation(gen_data, max(remaining, 1.0), docs=docs, schema=gen_schema,
                                        embedder=embedder, tick=say)
    if qa is None and label_bakeoff is None:
        assert generation is not None
        winner, reasons = decide_generation(generation)
        decision = EvidenceDecision(winner, reasons, generation_warnings(generation, winner))
    else:
        decision = decide(corpus=corpus, qa=qa, labels=label_bakeoff, label_audit=label_audit)
        if generation is not None:
            winner, _ = decide_generation(generation)
            decision.reasons.append(f"for the outputs of your examples, the generation bake-off recommends "
                                    f"{winner} (see its section)")
    return Evidence(decision=decision, corpus=corpus, qa=qa, labels=label_bakeoff, label_audit=label_audit,
                    generation=generation)
