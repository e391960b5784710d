"""Runs a pipeline spec for one input as one principal, producing one result object."""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ragtune.answer.base import ABSTAIN_TEXT
from ragtune.answer.reader import span_json
from ragtune.core import Answer, Principal
from ragtune.errors import ConfigError
from ragtune.observability.metrics import record_stages, record_verification
from ragtune.observability.tracing import span
from ragtune.pipelines.spec import (
    AnswerStep,
    ClassifyStep,
    Condition,
    GenerateStep,
    PipelineSpec,
    RetrieveStep,
    RouteStep,
    VerifyStep,
)
from ragtune.project import Project
from ragtune.retrieval.hybrid import Retrieval
from ragtune.tuning.base import NEEDS_REVIEW, TextClassifier
from ragtune.tuning.classify import classify_texts


@dataclass
class LabelResult:
    """One classify step's output: the label (``needs_review`` below the threshold) and its probability."""

    model: str
    label: str
    probability: float
    top_k: list[dict[str, Any]]


@dataclass
class PipelineResult:
    """Everything a pipeline produced for one input."""

    pipeline: str
    input: str
    user: str
    answer: Answer | None = None
    labels: dict[str, LabelResult] = field(default_factory=dict)
    route: str | None = None
    groundedness: float | None = None
    groundedness_model: str | None = None  # the checker's name, or the lexical scorer's when none is trained
    unsupported_sentences: list[str] = field(default_factory=list)
    generated: dict[str, Any] = field(default_factory=dict)  # a generate step's output name → its JSON value
    latency_ms: dict[str, float] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form; citations carry path, section, page and snippet, never unreadable chunks."""
        answer = None
        if self.answer is not None:
            a = self.answer
            answer = {"text": a.text, "abstained": a.abstained, "flags": list(a.flags), "citations": [
                {"number": c.number, "path": c.chunk.source_path, "section": c.chunk.section, "page": c.chunk.page,
                 "chunk_id": c.chunk.chunk_id, "snippet": c.snippet} for c in a.citations], "span": span_json(a)}
        return {
            "pipeline": self.pipeline, "input": self.input, "user": self.user, "answer": answer,
            "labels": {k: asdict(v) for k, v in self.labels.items()}, "route": self.route,
            "groundedness": self.groundedness, "groundedness_model": self.groundedness_model,
            "unsupported_sentences": self.unsupported_sentences, "generated": self.generated,
            "latency_ms": {k: round(v, 2) for k, v in self.latency_ms.items()}, "skipped": self.skipped,
        }


def _has_phrase(text: str, phrase: str) -> bool:
    return re.search(r"(?<!\w)" + re.escape(phrase.lower()) + r"(?!\w)", text.lower()) is not None


def holds(cond: Condition, result: PipelineResult, unsupported: bool) -> bool:
    """Whether every test in ``cond`` holds for the result so far."""
    if cond.label is not None:
        label = result.labels[cond.label].label
        if cond.in_ is not None and label not in cond.in_:
            return False
        if cond.not_in is not None and label in cond.not_in:
            return False
    if cond.keywords is not None and not any(_has_phrase(result.input, k) for k in cond.keywords):
        return False
    if cond.low_confidence is not None and result.labels[cond.low_confidence].label != NEEDS_REVIEW:
        return False
    if cond.route is not None:
        allowed = [cond.route] if isinstance(cond.route, str) else cond.route
        if result.route not in allowed:
            return False
    if cond.abstained is not None and (result.answer is None or result.answer.abstained != cond.abstained):
        return False
    return cond.unsupported is None or unsupported == cond.unsupported


class PipelineRunner:
    """Runs one spec against one project; classifiers and other corpora are loaded once and reused."""

    def __init__(self, spec: PipelineSpec, project: Project) -> None:
        self.spec = spec
        self.project = project
        self._corpora: dict[str, Project] = {}
        self._schemas: dict[str, dict[str, Any]] = {}

    def _classifier(self, step: ClassifyStep) -> TextClassifier:
        return self.project.classifier(step.model, step.version)  # version None: promoted, else latest

    def _corpus(self, folder: str | None) -> Project:
        if folder is None:
            return self.project
        if folder not in self._corpora:
            path = Path(folder)
            path = path if path.is_absolute() else self.project.settings.project_dir / path
            if not (path / "ragtune.yaml").is_file():
                raise ConfigError(f"pipeline {self.spec.name}: retrieve corpus {folder!r} is not a ragtune project "
                                  f"({path}); create it with `ragtune init {path}` and ingest into it")
            self._corpora[folder] = Project.open(path)
        return self._corpora[folder]

    def warm_up(self) -> None:
        """Load every model the steps name, so the first input does not pay for it."""
        self.project.embedder.warm_up()
        for _, step in self.spec.steps:
            if isinstance(step, ClassifyStep):
                self._classifier(step)
            elif isinstance(step, RetrieveStep):
                corpus = self._corpus(step.corpus)
                corpus.search("warm up", Principal("ragtune-warm-up"))  # opens the table and its indexes
            elif isinstance(step, VerifyStep):
                self._groundedness(step.model)
            elif isinstance(step, GenerateStep):
                self.project.tuned_generator(step.model).warm_up()

    def _schema(self, step: GenerateStep, generator: Any) -> dict[str, Any]:
        if step.schema_file is None:
            if generator.schema is None:
                raise ConfigError(f"pipeline {self.spec.name}: generate step model {step.model!r} was trained "
                                  "without --schema: give the step `schema: FILE.json`")
            return dict(generator.schema)
        if step.schema_file not in self._schemas:
            from ragtune.tuning.generator.data import load_schema

            path = Path(step.schema_file)
            self._schemas[step.schema_file] = load_schema(path if path.is_absolute()
                                                          else self.project.settings.project_dir / path)
        return self._schemas[step.schema_file]

    def _generate(self, step: GenerateStep, text: str) -> Any:
        """The step's JSON draft for ``text``: constrained to the schema, retried once, else an error."""
        from ragtune.answer.generative import generate_json

        generator = self.project.tuned_generator(step.model)
        system = step.system if step.system is not None else generator.system_prompt
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]
        return generate_json(generator, messages, self._schema(step, generator), max_tokens=step.max_tokens,
                             instruct=False)

    def _groundedness(self, model: str) -> Any:
        return self.project.groundedness_checker(model)  # one per model name, whatever the step order

    def run(self, text: str, principal: Principal) -> PipelineResult:
        """Run every step whose ``when`` holds, in order."""
        if not text.strip():
            raise ConfigError("the pipeline input is empty")
        result = PipelineResult(pipeline=self.spec.name, input=text, user=principal.user)
        retrieval = Retrieval(hits=[])
        unsupported = False
        t_all = time.perf_counter()
        for n, (kind, step) in enumerate(self.spec.steps, start=1):
            key = f"{n}.{kind}"
            if step.when is not None and not holds(step.when, result, unsupported):
                result.skipped.append(key)
                continue
            t0 = time.perf_counter()
            if isinstance(step, RetrieveStep):
                corpus = self._corpus(step.corpus)
                retrieval = corpus.search(text, principal, top_k=step.top_k)
            elif isinstance(step, AnswerStep):
                answerer = self.project.answerer if step.generator == "project" else self.project.extractive_answerer
                result.answer = answerer.answer(text, retrieval, principal)
            elif isinstance(step, ClassifyStep):
                clf = self._classifier(step)
                with span("classify", model=step.model, version=step.version) as sp:
                    (out,) = classify_texts(clf, [text], top_k=step.top_k, threshold=step.threshold)
                    sp.set(needs_review=out["label"] == NEEDS_REVIEW, probability=out["probability"])
                record_stages({"classify": (time.perf_counter() - t0) * 1000})
                result.labels[step.output or step.model] = LabelResult(step.model, out["label"], out["probability"],
                                                                       out["top_k"])
            elif isinstance(step, VerifyStep):
                assert result.answer is not None
                if not result.answer.abstained:
                    checker = self._groundedness(step.model)
                    with span("verify", checker=checker.name, threshold=step.threshold) as sp:
                        report = checker.check_answer(result.answer, threshold=step.threshold)
                        sp.set(score=report.score, unsupported=len(report.unsupported))
                    record_stages({"verify": (time.perf_counter() - t0) * 1000})
                    record_verification(bool(report.unsupported))
                    result.groundedness = report.score
                    result.groundedness_model = checker.name
                    result.unsupported_sentences = list(report.unsupported)
                    unsupported = bool(report.unsupported)
                    if not checker.trained:  # say so wherever the answer is shown (`ragtune run` prints flags)
                        result.answer = replace(result.answer, flags=(*result.answer.flags,
                                                                      f"groundedness checked by {checker.name}"))
                    if step.abstain and report.score < report.threshold:
                        result.answer = Answer(text, ABSTAIN_TEXT, (), True, result.answer.latency_ms,
                                               result.answer.hits, (*result.answer.flags,
                                                                    f"abstained: groundedness {report.score:.2f} "
                                                                    f"below {report.threshold:.2f}"))
            elif isinstance(step, GenerateStep):
                with span("generate", model=step.model):
                    result.generated[step.output] = self._generate(step, text)
            elif isinstance(step, RouteStep):
                result.route = next((r.queue for r in step.rules if holds(r.when, result, unsupported)),
                                    step.default)
            result.latency_ms[key] = (time.perf_counter() - t0) * 1000
        result.latency_ms["total"] = (time.perf_counter() - t_all) * 1000
        return result
