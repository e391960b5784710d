"""The pipeline to start from that ``ragtune advise`` suggests: a ``PipelineSpec`` (classify / retrieve / answer
/ verify / route) for the recommended architecture, dumped as YAML that ``ragtune run`` loads.
"""

from __future__ import annotations

from ragtune.advisor.questions import DISPLAY, TIGHT_MS, GuideAnswers
from ragtune.pipelines.spec import (
    AnswerStep,
    ClassifyStep,
    Condition,
    PipelineSpec,
    RetrieveStep,
    RouteStep,
    Rule,
    StepBase,
    VerifyStep,
)

_HEADER = ("# Starting point written by `ragtune advise` ({winner}): rename the model, queues and thresholds,\n"
           "# then run it with `ragtune run pipeline.yaml \"...\" --user U --groups G` (format: docs/pipelines.md).")
_STEP_NOTES = {
    "classify": "# classify: needs the classifier trained first: `ragtune train LABELS.csv --name my-classifier`\n"
                "#   (until then `ragtune run` stops with that command; the other steps need nothing trained)",
    "answer": "# answer: extractive quotes sources; project = ragtune.yaml's generator",
    "verify": "# verify: flags answer sentences their citations do not support (lexical overlap until you run\n"
              "#   `ragtune verify train`; then the trained checker and its threshold)",
}

_PIPELINE_DESCRIPTIONS = {
    "rag": "Answer from the documents the asker may read, with citations; abstained or unsupported answers "
           "go to a person.",
    "fine-tuning": "A tuned classifier labels each input; low-confidence labels go to a person.",
    "hybrid": "A tuned classifier labels the input while retrieval answers it with citations; anything "
              "uncertain goes to a person.",
}


def pipeline_spec(winner: str, answers: GuideAnswers) -> PipelineSpec:
    """The pipeline to start from for ``winner`` (``rag``, ``fine-tuning`` or ``hybrid``) and these answers.

    A tuned side classifies (low confidence goes to a person); a retrieval side retrieves and answers
    (extractively under a tight latency budget, else with the project's generator), verifies the answer when
    citations or regulation call for it (unless the budget is tight; the step works on a fresh project, with
    lexical overlap until a checker is trained), and sends abstained or unsupported answers to a person.
    Everything else is routed to ``automated``.
    """
    fast = answers.latency_ms is not None and answers.latency_ms < TIGHT_MS
    verify = not fast and (answers.citations or answers.regulated)
    steps: list[dict[str, StepBase]] = []
    rules: list[Rule] = []
    if winner in ("fine-tuning", "hybrid"):
        steps.append({"classify": ClassifyStep(model="my-classifier", output="label", threshold=0.5)})
        rules.append(Rule(queue="human-review", when=Condition(low_confidence="label")))
    if winner in ("rag", "hybrid"):
        steps.append({"retrieve": RetrieveStep(top_k=5)})
        steps.append({"answer": AnswerStep(generator="extractive" if fast else "project")})
        if verify:
            steps.append({"verify": VerifyStep()})  # the checker's own threshold (lexical overlap's untrained)
            rules.append(Rule(queue="human-review", when=Condition(unsupported=True)))
        rules.append(Rule(queue="human-review", when=Condition(abstained=True)))
    steps.append({"route": RouteStep(default="automated", rules=rules)})
    return PipelineSpec.model_validate({"name": f"my-{winner}", "description": _PIPELINE_DESCRIPTIONS[winner],
                                        "steps": steps})


def pipeline_yaml(winner: str, answers: GuideAnswers) -> str:
    """``pipeline_spec`` as YAML (valid for ``ragtune run``), under comments on how to adapt and run it."""
    spec = pipeline_spec(winner, answers)
    kinds = {kind for kind, _ in spec.steps}
    notes = [note for kind, note in _STEP_NOTES.items() if kind in kinds]
    return "\n".join([_HEADER.format(winner=DISPLAY[winner]), *notes, spec.to_yaml()])
