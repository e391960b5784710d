"""Pipelines, classify and the model registry in the web UI.

A pipeline runs like ``POST /v1/pipelines/{name}/run`` (action ``run``, only a built-in or the project's
``pipelines/<name>.yaml``, audited, here as route ``ui:run``); classify labels texts with a registered classifier
like ``POST /v1/classify`` (action ``classify``) and shows the top-k probabilities and the abstain threshold. The
registry pages are for admins (action ``models``), as ``/v1/registry/models`` is: each model's versions,
promotion and card, and its evaluation report in a sandboxed frame. The report is served only from inside the
registry folder, under a CSP that allows no script at all.
"""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations at runtime.

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from ragtune.errors import RagtuneError
from ragtune.project import Project
from ragtune.server import schemas as S
from ragtune.server.deps import Service, audited
from ragtune.server.operations import model_out, pipeline_file
from ragtune.server.schemas import MAX_QUESTION_CHARS
from ragtune.server.ui.pages import FormError, respond, ui_errors
from ragtune.server.ui.render import SECURITY_HEADERS, page
from ragtune.server.ui.session import UiContext, UiError, context, posted
from ragtune.service.identity import Action

MAX_TEXTS = 256  # as POST /v1/classify
MAX_TOP_K = 5
TRAIN_HINT = "ragtune train labelled.csv --text-col text --label-col label --name my-classifier"
# A report is a self-contained file of its own: no script of any kind, its own inline stylesheet, inline images.
REPORT_CSP = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; sandbox; base-uri 'none'; "
              "form-action 'none'; frame-ancestors 'self'")


def check_name(name: str) -> str:
    """A registry model name, else ``RagtuneError`` (the registry is imported here: it loads numpy and the
    classifiers, which the server does not import at start)."""
    from ragtune.tuning.registry import check_name as check

    return check(name)


def pipeline_names(project: Project) -> list[str]:
    """The pipelines a user may run: the built-ins and the project's own ``pipelines/<name>.yaml``."""
    from ragtune.pipelines.spec import builtin_names

    own = sorted(p.stem for p in (project.settings.project_dir / "pipelines").glob("*.yaml"))
    names = builtin_names() + [n for n in own if n not in builtin_names()]
    ok = []
    for name in names:
        try:
            pipeline_file(project, name)
        except Exception:  # noqa: BLE001 - a file whose name no run route accepts is not offered
            continue
        ok.append(name)
    return ok


def run_pipeline(project: Project, ctx: UiContext, name: str, text: str) -> dict[str, Any]:
    """Run ``name`` on ``text`` as the logged-in user (audited as ``ui:run``); what the result fragment shows."""
    from ragtune.pipelines.runner import PipelineRunner
    from ragtune.pipelines.spec import load_pipeline

    spec = load_pipeline(pipeline_file(project, name))
    with audited(project, "ui:run", ctx.identity, text) as trail:
        runner = PipelineRunner(spec, project)
        runner.warm_up()  # model loading is start-up, not step latency
        result = runner.run(text, ctx.identity.principal)
        trail.ran(result)
    return {"pipeline": result.pipeline, "route": result.route, "skipped": result.skipped,
            "answer": None if result.answer is None else S.AnswerOut.from_answer(result.answer).model_dump(),
            "labels": [{"output": key, "model": lab.model, "label": lab.label,
                        "probability": round(lab.probability, 3),
                        "top_k": [{"label": t["label"], "probability": round(t["probability"], 3)} for t in lab.top_k]}
                       for key, lab in result.labels.items()],
            "groundedness": None if result.groundedness is None else round(result.groundedness, 3),
            "groundedness_model": result.groundedness_model, "unsupported": result.unsupported_sentences,
            "latency_ms": {k: round(v, 1) for k, v in result.latency_ms.items()}}


def classify(project: Project, model: str, texts: list[str], top_k: int) -> dict[str, Any]:
    """Label ``texts`` with ``model`` (its promoted version, else its latest): top-k per text and the threshold."""
    from ragtune.tuning.classify import classify_texts

    version = project.registry.resolve(check_name(model))
    clf = project.classifier(model, version)
    rows = classify_texts(clf, texts, top_k=min(top_k, len(clf.classes_)))
    return {"model": model, "version": version, "threshold": round(float(clf.threshold), 3),
            "rows": [{"text": t, "label": r["label"], "probability": round(r["probability"], 3),
                      "top_k": [{"label": k["label"], "probability": round(k["probability"], 3)} for k in r["top_k"]]}
                     for t, r in zip(texts, rows, strict=True)]}


def report_file(project: Project, name: str, file: str) -> Path:
    """The HTML report ``file`` of model ``name`` inside the registry folder; 404 for anything else (another
    folder, ``..``, a link out of the registry, a file that is not a report)."""
    root = project.registry.root.resolve()
    try:
        check_name(name)
        target = (root / name / file).resolve()
    except (RagtuneError, OSError, ValueError):
        target = None
    if target is None or not target.is_relative_to(root / name) or target.suffix != ".html" or not target.is_file():
        raise UiError(404, "Not found", "no such report in the model registry")
    return target


def router(service: Service) -> APIRouter:
    """``/ui/pipelines``, ``/ui/classify``, ``/ui/models`` and the models' reports."""
    r = APIRouter(include_in_schema=False)
    project = service.project

    def pipelines_page(request: Request, ctx: UiContext, status: int = 200, **values: Any) -> Response:
        values = {"selected": "", "text": "", "result": None, "error": "", **values}
        return respond(request, ctx, "pipelines.html", "pipeline_result.html", status, title="Pipelines",
                       names=pipeline_names(project), **values)

    @r.get("/ui/pipelines")
    def pipelines(request: Request) -> Response:
        ctx = context(service, request)
        ctx.require(Action.RUN)
        return page("pipelines.html", ctx, title="Pipelines", names=pipeline_names(project), selected="", text="",
                    result=None, error="")

    @r.post("/ui/pipelines/run")
    def run(request: Request, name: Annotated[str, Form(max_length=200)] = "",
            text: Annotated[str, Form(max_length=100_000)] = "",
            csrf: Annotated[str, Form(max_length=100)] = "") -> Response:
        ctx = posted(service, request, csrf, Action.RUN)
        try:
            if not text.strip() or len(text) > MAX_QUESTION_CHARS:
                raise FormError(f"Text: write the input to run the pipeline on (1 to {MAX_QUESTION_CHARS} "
                                "characters)")
            with ui_errors():
                service.require_ready()
                result = run_pipeline(project, ctx, name, text)
        except FormError as exc:
            return pipelines_page(request, ctx, exc.status, selected=name, text=text, error=exc.message)
        return pipelines_page(request, ctx, selected=name, text=text, result=result)

    def model_names() -> list[str]:
        try:
            return [c.name for c in project.registry.list()]
        except (RagtuneError, OSError, ValueError):
            return []

    @r.get("/ui/classify")
    def classify_form(request: Request) -> Response:
        ctx = context(service, request)
        ctx.require(Action.CLASSIFY)
        return page("classify.html", ctx, title="Classify", models=model_names(), model="", texts="", top_k=3,
                    max_top_k=MAX_TOP_K, train_hint=TRAIN_HINT, result=None, error="")

    @r.post("/ui/classify")
    def classify_run(request: Request, model: Annotated[str, Form(max_length=200)] = "",
                     texts: Annotated[str, Form(max_length=500_000)] = "",
                     top_k: Annotated[str, Form(max_length=5)] = "3",
                     csrf: Annotated[str, Form(max_length=100)] = "") -> Response:
        ctx = posted(service, request, csrf, Action.CLASSIFY)
        lines = [t.strip() for t in texts.splitlines() if t.strip()]
        k = int(top_k) if top_k.isdigit() else 0
        values: dict[str, Any] = {"models": model_names(), "model": model, "texts": texts, "top_k": k or 3,
                                  "max_top_k": MAX_TOP_K, "train_hint": TRAIN_HINT, "result": None, "error": ""}
        try:
            if not model:
                raise FormError("Classifier: choose a registered classifier")
            if not lines or len(lines) > MAX_TEXTS:
                raise FormError(f"Texts: write 1 to {MAX_TEXTS} texts, one per line")
            if not 1 <= k <= MAX_TOP_K:
                raise FormError(f"Top labels: choose a number from 1 to {MAX_TOP_K}")
            with ui_errors():
                values["result"] = classify(project, model, lines, k)
        except FormError as exc:
            values["error"] = exc.message
            return respond(request, ctx, "classify.html", "classify_result.html", exc.status, title="Classify",
                           **values)
        return respond(request, ctx, "classify.html", "classify_result.html", title="Classify", **values)

    @r.get("/ui/models")
    def models(request: Request) -> Response:
        ctx = context(service, request)
        ctx.require(Action.MODELS)
        cards = [model_out(project, c).model_dump() for c in project.registry.list()]
        return page("models.html", ctx, title="Models", cards=cards, train_hint=TRAIN_HINT)

    @r.get("/ui/models/{name}")
    def model(request: Request, name: str, version: int | None = None) -> Response:
        ctx = context(service, request)
        ctx.require(Action.MODELS)
        try:
            card = model_out(project, project.registry.card(check_name(name), version))
        except RagtuneError as exc:
            raise UiError(404, "Not found", str(exc)) from exc
        folder = project.registry.root / name / f"v{card.version}"
        report = f"/ui/models/{name}/report/v{card.version}/report.html" if (folder / "report.html").is_file() else ""
        return page("model.html", ctx, title=f"Model {name}", card=card.model_dump(), report=report)

    @r.get("/ui/models/{name}/report/{file:path}")
    def model_report(request: Request, name: str, file: str) -> Response:
        ctx = context(service, request)
        ctx.require(Action.MODELS)
        body = report_file(project, name, file).read_bytes()
        return Response(body, media_type="text/html; charset=utf-8",
                        headers={**SECURITY_HEADERS, "Content-Security-Policy": REPORT_CSP})

    return r
