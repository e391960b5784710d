"""The advisor in the web UI: the decision guide's eight questions as a form, the recommendation with the reason
for every answer, and (for admins) the evidence reports ``ragtune advise --report-dir`` wrote into the project.

The form is read by the same rules as an answers file (:func:`ragtune.advisor.answers.parse_answers`), so a bad
answer gets the CLI's message. Evidence reports are listed from ``<project>/advisor-report/`` (the CLI's default
folder when run in the project) and ``<project>/advisor-reports/NAME/``; a report is picked from that list by name
(never read as a path) and its Markdown is rendered with raw HTML off and images shown as their alt text, so
nothing in it can run or load anything.
"""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations at runtime.

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from markupsafe import Markup, escape

from ragtune.errors import ConfigError
from ragtune.project import Project
from ragtune.server.deps import Service
from ragtune.server.ui.pages import FormError, respond
from ragtune.server.ui.render import page
from ragtune.server.ui.session import UiError, context, posted
from ragtune.service.identity import Action

DEFAULT_REPORT_DIR = "advisor-report"
REPORTS_DIR = "advisor-reports"
YES_NO = ("citations", "structured_output", "fast_iteration", "regulated")


def questions() -> list[dict[str, Any]]:
    """The guide's questions as form fields: key, label, help and kind (choice, yes/no or a number)."""
    from ragtune.advisor.answers import prompt_text
    from ragtune.advisor.questions import QUESTIONS, KnowledgeChange, Task

    out = []
    for q in QUESTIONS:
        field: dict[str, Any] = {"key": q.key, "label": q.text, "help": prompt_text(q.key)}
        if q.key in ("task", "knowledge_change"):
            field.update(kind="choice", choices=[k.value for k in (Task if q.key == "task" else KnowledgeChange)])
        elif q.key in YES_NO:
            field.update(kind="choice", choices=["yes", "no"])
        else:
            field.update(kind="number")
        out.append(field)
    return out


def advise(answers: dict[str, str]) -> dict[str, Any]:
    """The recommendation for the form's answers (``ConfigError`` naming each bad answer)."""
    from ragtune.advisor.answers import parse_answers
    from ragtune.advisor.guide import recommend
    from ragtune.advisor.questions import DISPLAY

    data: dict[str, Any] = {k: v for k, v in answers.items() if v.strip()}
    rec = recommend(parse_answers(data, "the form"))
    view = rec.to_dict()
    view["winner"] = DISPLAY[rec.winner]
    view["display"] = DISPLAY
    return view


def evidence_reports(project: Project) -> dict[str, Path]:
    """The advisor's evidence reports in the project, by name: ``advisor-report`` and ``advisor-reports/NAME``."""
    root = project.settings.project_dir
    found = {DEFAULT_REPORT_DIR: root / DEFAULT_REPORT_DIR / "report.md"}
    if (root / REPORTS_DIR).is_dir():
        found.update({f"{REPORTS_DIR}/{p.name}": p / "report.md" for p in sorted((root / REPORTS_DIR).iterdir())})
    return {name: path for name, path in found.items() if path.is_file()}


def markdown_html(text: str) -> Markup:
    """Markdown as HTML with raw HTML off (it shows as text), each image as its alt text (nothing is loaded) and
    unsafe links (``javascript:`` and the like) left as text."""
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", options_update={"html": False}).enable("table")
    md.add_render_rule("image", lambda tokens, idx, options, env: escape(f"[image: {tokens[idx].content}]"))
    tokens = md.parse(text)
    for t in tokens:  # the page has its own h1: the report's headings go one level down
        if t.type in ("heading_open", "heading_close"):
            t.tag = f"h{min(int(t.tag[1]) + 1, 6)}"
    return Markup(md.renderer.render(tokens, md.options, {}))  # markdown-it escaped every character of the source


def router(service: Service) -> APIRouter:
    """``/ui/advisor`` (the guide) and ``/ui/advisor/reports/{name}`` (admins)."""
    r = APIRouter(include_in_schema=False)
    project = service.project

    def listed(can_see: bool) -> list[dict[str, Any]]:
        if not can_see:
            return []
        return [{"name": n, "modified": p.stat().st_mtime} for n, p in evidence_reports(project).items()]

    @r.get("/ui/advisor")
    def advisor(request: Request) -> Response:
        ctx = context(service, request)
        return page("advisor.html", ctx, title="Advisor", questions=questions(), answers={}, result=None, error="",
                    reports=listed(ctx.can(Action.MODELS)))

    @r.post("/ui/advisor")
    def advisor_run(request: Request, task: Annotated[str, Form(max_length=100)] = "",
                    knowledge_change: Annotated[str, Form(max_length=100)] = "",
                    citations: Annotated[str, Form(max_length=10)] = "",
                    structured_output: Annotated[str, Form(max_length=10)] = "",
                    examples_per_class: Annotated[str, Form(max_length=12)] = "",
                    fast_iteration: Annotated[str, Form(max_length=10)] = "",
                    latency_ms: Annotated[str, Form(max_length=12)] = "",
                    regulated: Annotated[str, Form(max_length=10)] = "",
                    csrf: Annotated[str, Form(max_length=100)] = "") -> Response:
        ctx = posted(service, request, csrf)
        answers = {"task": task, "knowledge_change": knowledge_change, "citations": citations,
                   "structured_output": structured_output, "examples_per_class": examples_per_class,
                   "fast_iteration": fast_iteration, "latency_ms": latency_ms, "regulated": regulated}
        values: dict[str, Any] = {"questions": questions(), "answers": answers, "result": None, "error": "",
                                  "reports": listed(ctx.can(Action.MODELS))}
        try:
            try:
                values["result"] = advise(answers)
            except ConfigError as exc:
                raise FormError(str(exc)) from exc
        except FormError as exc:
            values["error"] = exc.message
            return respond(request, ctx, "advisor.html", "advisor_result.html", exc.status, title="Advisor",
                           **values)
        return respond(request, ctx, "advisor.html", "advisor_result.html", title="Advisor", **values)

    @r.get("/ui/advisor/reports/{name:path}")
    def report(request: Request, name: str) -> Response:
        ctx = context(service, request)
        ctx.require(Action.MODELS)
        path = evidence_reports(project).get(name)
        if path is None:
            raise UiError(404, "Not found", "no such advisor report; the advisor page lists them")
        return page("advisor_report.html", ctx, title=f"Advisor report {name}", report_name=name,
                    body=markdown_html(path.read_text(encoding="utf-8", errors="replace")))

    return r
