"""Pipeline specs: a YAML file of named steps over the RAG and tuning flows, validated before anything runs.

Example (``ragtune run compliance-copilot``)::

    name: compliance-copilot
    steps:
      - classify: {model: policy-category, output: category}
      - retrieve: {top_k: 5}
      - answer: {}
      - verify: {threshold: 0.5}
      - route:
          default: self-service
          rules:
            - {queue: legal, when: {keywords: [lawsuit, subpoena, breach]}}
            - {queue: privacy-officer, when: {label: category, in: [Data Retention, Data Security]}}
            - {queue: human-review, when: {low_confidence: category}}

A ``generate`` step drafts JSON with a fine-tuned generator, validated against its schema, e.g.
``- generate: {model: triage, output: ticket}``.

Every step may carry ``when:`` (the same conditions as route rules) to run only in some cases, e.g. draft a
reply only for messages routed to self-service.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ragtune.errors import ConfigError
from ragtune.validation import describe

BUILTIN_DIR = Path(__file__).resolve().parent / "builtin"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Condition(_Strict):
    """All given tests must hold (AND). ``label``+``in``/``not_in`` test a classify step's label;
    ``keywords`` any case-insensitive word or phrase of the input; ``low_confidence`` that the named label
    fell below its classifier's threshold; ``route`` the queue chosen so far; ``abstained`` and
    ``unsupported`` the answer's state."""

    label: str | None = None
    in_: list[str] | None = Field(None, alias="in")
    not_in: list[str] | None = None
    keywords: list[str] | None = None
    low_confidence: str | None = None
    route: list[str] | str | None = None
    abstained: bool | None = None
    unsupported: bool | None = None

    @model_validator(mode="after")
    def _label_needs_a_set(self) -> Condition:
        if (self.in_ is not None or self.not_in is not None) and self.label is None:
            raise ValueError("`in`/`not_in` need `label:` (the output name of a classify step)")
        return self


class Rule(_Strict):
    """Send the item to ``queue`` when the condition holds; the first matching rule wins."""

    queue: str
    when: Condition


class StepBase(_Strict):
    """Options every step has."""

    when: Condition | None = None


class RetrieveStep(StepBase):
    """Hybrid retrieval as the asking principal."""

    top_k: int = Field(5, ge=1, le=100)
    corpus: str | None = None  # a project folder other than the current one (e.g. a help-article index)


class AnswerStep(StepBase):
    """Answer from the retrieved hits: extractive by default, or the project's answerer (its generator, or its
    span reader with ``answer.kind: reader``)."""

    generator: Literal["project", "extractive"] = "extractive"


class ClassifyStep(StepBase):
    """Label the input with a registered classifier; ``output`` names the label for rules. ``version`` pins a
    version of ``model`` (default: the version the name resolves to, its promoted one or else its latest)."""

    model: str
    version: int | None = Field(None, ge=1)
    output: str | None = None
    threshold: float | None = Field(None, ge=0, le=1)
    top_k: int = Field(3, ge=1, le=20)


class VerifyStep(StepBase):
    """Score each answer sentence against the chunks it cites; ``abstain`` below ``threshold`` (default: the
    threshold chosen on the checker's validation split, stored with the model)."""

    model: str = "groundedness"
    threshold: float | None = Field(None, ge=0, le=1)
    abstain: bool = False


class RouteStep(StepBase):
    """Pick a queue from the labels, their probabilities, keywords and the answer's state."""

    default: str
    rules: list[Rule] = []


class GenerateStep(StepBase):
    """Draft structured output from the input (a ticket action, a summary) with a generator fine-tuned by
    ``ragtune tune generator`` (``model``: NAME or NAME@VERSION), sent its training system prompt (or
    ``system``) and the input. The output must validate against the model's schema (or ``schema``: a JSON
    Schema file beside the project); decoding is constrained to it, an invalid draft is retried once with the
    validation error, then the pipeline fails: a draft is never passed on unvalidated. ``output`` names it."""

    model: str
    schema_file: str | None = Field(None, alias="schema")
    system: str | None = None
    output: str = "draft"
    max_tokens: int = Field(256, ge=1, le=4096)

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


STEP_TYPES: dict[str, type[StepBase]] = {
    "retrieve": RetrieveStep, "answer": AnswerStep, "classify": ClassifyStep, "verify": VerifyStep,
    "route": RouteStep, "generate": GenerateStep,
}


class PipelineSpec(_Strict):
    """A named list of steps, run in order."""

    name: str
    description: str = ""
    steps: list[tuple[str, StepBase]]

    @model_validator(mode="before")
    @classmethod
    def _parse_steps(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise ValueError("a pipeline is a mapping with `name:` and `steps:`")
        raw = data.get("steps")
        if not isinstance(raw, list) or not raw:
            raise ValueError("`steps:` must be a non-empty list, e.g. `- retrieve: {top_k: 5}`")
        steps = []
        for n, item in enumerate(raw, start=1):
            if not isinstance(item, dict) or len(item) != 1:
                raise ValueError(f"step {n} must be one `kind: {{options}}` pair; kinds: {', '.join(STEP_TYPES)}")
            ((kind, options),) = item.items()
            if kind not in STEP_TYPES:
                raise ValueError(f"step {n}: unknown kind {kind!r}; kinds: {', '.join(STEP_TYPES)}")
            try:
                steps.append((kind, STEP_TYPES[kind].model_validate(options or {})))
            except ValidationError as exc:  # name the step: a nested error's location starts inside it
                raise ValueError(f"step {n} ({kind}): {describe(exc, STEP_TYPES[kind])}") from None
        return {**data, "steps": steps}

    @model_validator(mode="after")
    def _references_exist(self) -> PipelineSpec:
        outputs: set[str] = set()
        kinds: list[str] = []
        for n, (kind, step) in enumerate(self.steps, start=1):
            conditions = [step.when] + ([r.when for r in step.rules] if isinstance(step, RouteStep) else [])
            for cond in (c for c in conditions if c is not None):
                for name in (cond.label, cond.low_confidence):
                    if name is not None and name not in outputs:
                        raise ValueError(f"step {n} ({kind}) tests label {name!r}, which no earlier classify "
                                         f"step outputs (outputs so far: {sorted(outputs) or 'none'})")
            if kind in ("answer",) and "retrieve" not in kinds:
                raise ValueError(f"step {n} (answer) needs a retrieve step before it")
            if kind == "verify" and "answer" not in kinds:
                raise ValueError(f"step {n} (verify) needs an answer step before it")
            if isinstance(step, ClassifyStep):
                outputs.add(step.output or step.model)
            kinds.append(kind)
        return self

    def to_yaml(self) -> str:
        """The pipeline as YAML that ``load_pipeline`` reads back to an equal spec: ``name``, ``description``
        (when given) and ``steps`` as ``- kind: {options}``, with only the options that were set."""
        data: dict[str, Any] = self.model_dump(mode="json", include={"name", "description"}, exclude_unset=True)
        data["steps"] = [{kind: step.model_dump(mode="json", by_alias=True, exclude_unset=True)}
                         for kind, step in self.steps]
        return yaml.safe_dump(data, sort_keys=False, default_flow_style=None, allow_unicode=True, width=10_000)


def load_pipeline(name_or_path: str | Path) -> PipelineSpec:
    """A built-in pipeline by name (``compliance-copilot``, ``support-triage``) or a YAML file."""
    path = Path(name_or_path)
    if not path.is_file():
        builtin = BUILTIN_DIR / f"{name_or_path}.yaml"
        if not builtin.is_file():
            names = ", ".join(sorted(p.stem for p in BUILTIN_DIR.glob("*.yaml")))
            raise ConfigError(f"no pipeline file {name_or_path!r} and no built-in of that name; built-ins: {names}")
        path = builtin
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(exc).split())}): fix the syntax") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a UTF-8 text file: give a pipeline YAML file") from exc
    try:
        return PipelineSpec.model_validate(data)
    except ValidationError as exc:  # e.g. "p.yaml: step 2 (retrieve): unknown key 'topk' (did you mean 'top_k'?); …"
        raise ConfigError(f"{path}: {describe(exc, PipelineSpec)}") from exc


def builtin_names() -> list[str]:
    """Names of the pipelines that ship with ragtune."""
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.yaml"))
