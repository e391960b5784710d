"""The chat page: streamed answers with numbered citations, each sentence marked by the groundedness checker,
feedback that becomes labelled examples, the user's own history, and the cited passage inside its document."""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations at runtime.

import json
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response, StreamingResponse

from ragtune.core import Answer
from ragtune.errors import RagtuneError
from ragtune.project import Project
from ragtune.server import schemas as S
from ragtune.server.deps import Service, audited
from ragtune.server.streaming import run_streamed, sse
from ragtune.server.ui.render import SECURITY_HEADERS, page, render
from ragtune.server.ui.session import UiContext, UiError, context, posted
from ragtune.service.identity import Action

CHECKER = "groundedness"  # the registry name `ragtune verify train` registers the trained checker under


def sentences(project: Project, answer: Answer) -> tuple[list[dict[str, Any]], str]:
    """The answer's sentences, each ``{"text", "state"}`` (supported / unsupported / unchecked), and the name
    of the checker that judged them (the trained one when registered, else lexical overlap)."""
    if answer.abstained or not answer.citations:
        return [{"text": answer.text, "state": "unchecked"}], ""
    try:
        checker = project.groundedness_checker(CHECKER)
        report = checker.check_answer(answer)
    except RagtuneError:
        return [{"text": answer.text, "state": "unchecked"}], ""
    marked = [{"text": s.text, "state": "supported" if s.supported else "unsupported",
               "probability": round(s.probability, 2)} for s in report.sentences]
    return marked or [{"text": answer.text, "state": "unchecked"}], report.model or type(checker).__name__


def answer_view(project: Project, answer: Answer) -> dict[str, Any]:
    """What the chat shows (and history keeps) of an answer: the API's body plus the marked sentences."""
    body = S.AnswerOut.from_answer(answer).model_dump()
    body["sentences"], body["checker"] = sentences(project, answer)
    return body


def router(service: Service) -> APIRouter:
    """The chat, history, feedback and document pages."""
    r = APIRouter(include_in_schema=False)
    project = service.project

    def ctx_of(request: Request) -> UiContext:
        return context(service, request)

    @r.get("/ui/")
    def chat(request: Request) -> Response:
        ctx = ctx_of(request)
        return page("chat.html", ctx, title="Chat")

    @r.post("/ui/ask")
    async def ask(request: Request, question: Annotated[str, Form(min_length=1, max_length=S.MAX_QUESTION_CHARS)],
                  csrf: Annotated[str, Form(max_length=100)] = "") -> Response:
        ctx = posted(service, request, csrf, Action.ASK)
        service.require_ready()

        def work(on_token: Callable[[str], None]) -> str:
            with audited(project, "ui:ask", ctx.identity, question) as trail:
                answer = project.ask(question, ctx.identity.principal, on_token=on_token)
                trail.answered(answer)
            view = answer_view(project, answer)
            item_id = project.ui_store.add_history(ctx.identity.principal, question, view)
            return render("answer.html", ctx, a=view, item_id=item_id)

        async def events() -> AsyncIterator[str]:
            async for event, data in run_streamed(work):
                if event == "token":
                    yield sse("token", {"text": data})
                elif event == "result":
                    yield sse("html", {"html": data})
                else:
                    yield sse("error", data)
            yield sse("done", {})

        return StreamingResponse(events(), media_type="text/event-stream", headers=SECURITY_HEADERS)

    @r.post("/ui/feedback")
    def feedback(request: Request, item: Annotated[int, Form(ge=1)],
                 verdict: Annotated[str, Form(pattern="^(up|down)$")],
                 comment: Annotated[str, Form(max_length=2000)] = "",
                 csrf: Annotated[str, Form(max_length=100)] = "") -> Response:
        ctx = posted(service, request, csrf)
        entry = project.ui_store.history_item(ctx.identity.principal, item)
        if entry is None:
            raise UiError(404, "Not found", "no such answer in your history")
        project.ui_store.add_feedback(ctx.identity.principal, entry, verdict, comment.strip())
        return page("thanks.html", ctx, verdict=verdict)

    @r.get("/ui/history")
    def history(request: Request) -> Response:
        ctx = ctx_of(request)
        return page("history.html", ctx, title="History", items=project.ui_store.history(ctx.identity.principal))

    @r.get("/ui/documents/{doc_id}")
    def document(request: Request, doc_id: str, chunk: str = "") -> Response:
        ctx = ctx_of(request)
        service.require_ready()
        chunks = project.document_chunks(doc_id, ctx.identity.principal)
        if not chunks:
            raise UiError(404, "Not found", "no such document, or you may not read it")
        return page("document.html", ctx, title=chunks[0].title or chunks[0].source_path, chunks=chunks,
                    cited=chunk)

    @r.get("/ui/feedback")
    def feedback_list(request: Request) -> Response:
        ctx = ctx_of(request)
        ctx.require(Action.AUDIT)
        return page("feedback.html", ctx, title="Feedback", rows=project.ui_store.feedback())

    @r.get("/ui/feedback.jsonl")
    def feedback_export(request: Request) -> Response:
        ctx = ctx_of(request)
        ctx.require(Action.AUDIT)
        body = "".join(json.dumps(row) + "\n" for row in project.ui_store.feedback())
        return Response(body, media_type="application/x-ndjson", headers={
            **SECURITY_HEADERS, "Content-Disposition": 'attachment; filename="feedback.jsonl"'})

    return r
