"""The OpenAI-compatible chat API: ``POST /v1/chat/completions`` (JSON or streamed) and ``GET /v1/models``.

Chat front ends and SDKs built for OpenAI point their base URL at ``<server>/v1`` and their API key at a ragtune
key (or OIDC token). The last user message is the question; ``model`` picks what answers it: ``ragtune`` (the
project's RAG) or ``pipeline:<name>`` (a built-in pipeline, or ``<project>/pipelines/<name>.yaml``). The
answer's text carries the ``[n]`` markers and a ``Sources:`` list; the extra top-level ``citations`` field has
the structured citations. The principal comes only from the ``Authorization`` header: OpenAI's ``user`` field
(a free-text end-user id) and any ``groups`` field are accepted and ignored.
"""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations, which name local dependencies.

import asyncio
import json
import math
import re
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from ragtune.cli_common import cited_place
from ragtune.core import Answer
from ragtune.errors import EmptyCorpusError, ModelNotFoundError, RagtuneError
from ragtune.pipelines.spec import PipelineSpec, builtin_names, load_pipeline
from ragtune.project import Project
from ragtune.server.deps import ApiError, Service, audited
from ragtune.server.schemas import MAX_QUESTION_CHARS, AnswerOut, CitationOut
from ragtune.service.identity import AuthError, Identity, allowed

RAG_MODEL = "ragtune"
PIPELINE_PREFIX = "pipeline:"
_PIPELINE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_STREAM_PIECE = re.compile(r"\S+\s*|\s+")


class ChatMessage(BaseModel):
    """One message of the conversation; only the last ``user`` message is answered."""

    model_config = ConfigDict(extra="allow")  # OpenAI clients send name, tool_calls, ...

    role: str
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        """The message's text: a string, or the ``text`` parts of a list of content parts."""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(str(p.get("text", "")) for p in self.content or [] if p.get("type") == "text")


class ChatCompletionRequest(BaseModel):
    """OpenAI's chat completions body. Unknown fields are allowed (SDKs send extras) and ignored; ``user`` and
    ``groups`` never change whom the request runs as; ``temperature`` and ``max_tokens`` are accepted and
    ignored (answers are extractive or verified, not sampled to a length)."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=200)
    messages: list[ChatMessage] = Field(min_length=1, max_length=1000)
    stream: bool = False
    n: int = Field(1, ge=1, le=1)
    temperature: float | None = None
    max_tokens: int | None = None
    user: str | None = None  # OpenAI's end-user id: free text, never an identity


class ChatMessageOut(BaseModel):
    """The assistant's reply."""

    role: Literal["assistant"] = "assistant"
    content: str


class ChoiceOut(BaseModel):
    """The one choice a ragtune completion has."""

    index: int = 0
    message: ChatMessageOut
    finish_reason: Literal["stop"] = "stop"
    logprobs: None = None


class UsageOut(BaseModel):
    """Token counts, approximated as characters / 4 (ragtune's answers are not sampled by a metered model)."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class RagtuneExtra(BaseModel):
    """ragtune's own fields: abstention, flags, stage latency, and a pipeline's whole result."""

    abstained: bool
    flags: list[str]
    latency_ms: dict[str, float]
    pipeline: dict[str, Any] | None = None


class ChatCompletionOut(BaseModel):
    """A ``chat.completion`` object, plus ``citations`` and ``ragtune``."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChoiceOut]
    usage: UsageOut
    citations: list[CitationOut]
    ragtune: RagtuneExtra


class ModelOut(BaseModel):
    """An entry of ``GET /v1/models`` in OpenAI's shape."""

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelListOut(BaseModel):
    """``GET /v1/models``: ``ragtune`` and each ``pipeline:<name>``."""

    object: Literal["list"] = "list"
    data: list[ModelOut]


def approx_tokens(text: str) -> int:
    """OpenAI's rule of thumb, about four characters a token (no tokenizer of a generating model is involved)."""
    return math.ceil(len(text) / 4)


def last_user_message(messages: list[ChatMessage]) -> str:
    """The question: the text of the last ``user`` message (422 when there is none, or it is empty or long)."""
    question = next((m.text() for m in reversed(messages) if m.role == "user"), None)
    if question is None or not question.strip():
        raise ApiError(422, "invalid_request", "messages: no user message with text; the last user message is the "
                                               "question ragtune answers")
    if len(question) > MAX_QUESTION_CHARS:
        raise ApiError(422, "invalid_request", f"messages: the last user message is {len(question)} characters; "
                                               f"ragtune answers questions of up to {MAX_QUESTION_CHARS}")
    return question


def project_pipelines(project: Project) -> dict[str, Path]:
    """The project's own pipelines: ``<project>/pipelines/<name>.yaml``."""
    folder = project.settings.project_dir / "pipelines"
    return {p.stem: p for p in sorted(folder.glob("*.yaml")) if _PIPELINE_NAME.match(p.stem)} if folder.is_dir() \
        else {}


def resolve_pipeline(project: Project, model: str) -> PipelineSpec:
    """The spec ``pipeline:<name>`` names: the project's file first, else a built-in (404 when neither)."""
    name = model.removeprefix(PIPELINE_PREFIX)
    own = project_pipelines(project)
    if not _PIPELINE_NAME.match(name) or (name not in own and name not in builtin_names()):
        raise ApiError(404, "model_not_found", f"model {model!r}: no such pipeline; GET /v1/models lists the models "
                                               "(ragtune and pipeline:<name>)")
    return load_pipeline(own.get(name) or name)


def content_with_sources(answer: Answer) -> str:
    """The answer text with its ``[n]`` markers, then a ``Sources:`` list (none when it abstained)."""
    if not answer.citations:
        return answer.text
    lines = [f"[{c.number}] {c.chunk.source_path} — {cited_place(c.chunk)}" for c in answer.citations]
    return answer.text + "\n\nSources:\n" + "\n".join(lines)


def _pipeline_text(result: dict[str, Any]) -> str:
    lines = [f"{name}: {label['label']} ({label['probability']:.2f})" for name, label in result["labels"].items()]
    if result["route"] is not None:
        lines.append(f"route: {result['route']}")
    return "\n".join(lines)


def complete(project: Project, identity: Identity, body: ChatCompletionRequest, question: str,
             spec: PipelineSpec | None) -> ChatCompletionOut:
    """Answer ``question`` as ``identity`` (RAG, or ``spec``), audited as ``api:chat``, as a completion object."""
    from ragtune.pipelines.runner import PipelineRunner

    pipeline: dict[str, Any] | None = None
    with audited(project, "api:chat", identity, question) as trail:
        if spec is None:
            asked = project.ask(question, identity.principal)
            trail.answered(asked)
            answer: Answer | None = asked
        else:
            result = PipelineRunner(spec, project).run(question, identity.principal)
            trail.ran(result)
            answer, pipeline = result.answer, result.to_dict()
    parts = [content_with_sources(answer)] if answer is not None else []
    if pipeline is not None and (summary := _pipeline_text(pipeline)):
        parts.append(summary)
    content = "\n\n".join(parts) or "(the pipeline produced no answer)"
    out = AnswerOut.from_answer(answer) if answer is not None else None
    latency = out.latency_ms if out is not None else {}
    if pipeline is not None:
        latency = pipeline["latency_ms"]
    prompt_tokens = sum(approx_tokens(m.text()) for m in body.messages)
    completion_tokens = approx_tokens(content)
    return ChatCompletionOut(
        id=f"chatcmpl-{uuid.uuid4().hex}", created=int(time.time()), model=body.model,
        choices=[ChoiceOut(message=ChatMessageOut(content=content))],
        usage=UsageOut(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                       total_tokens=prompt_tokens + completion_tokens),
        citations=out.citations if out is not None else [],
        ragtune=RagtuneExtra(abstained=out.abstained if out is not None else False,
                             flags=out.flags if out is not None else [], latency_ms=latency, pipeline=pipeline))


def _chunk(completion_id: str, created: int, model: str, delta: dict[str, str], finish: str | None = None,
           **extra: Any) -> str:
    data = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}], **extra}
    return f"data: {json.dumps(data)}\n\n"


async def stream_completion(project: Project, identity: Identity, body: ChatCompletionRequest, question: str,
                            spec: PipelineSpec | None) -> AsyncIterator[str]:
    """``chat.completion.chunk`` events: the role at once, then the verified answer in word-sized pieces (sent
    only once its citations are checked, so a stream never shows text the answer drops), a last chunk with
    ``finish_reason``, ``usage``, ``citations`` and ``ragtune``, and ``data: [DONE]``."""
    completion_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
    yield _chunk(completion_id, created, body.model, {"role": "assistant", "content": ""})
    try:
        done = await asyncio.get_running_loop().run_in_executor(None, complete, project, identity, body, question,
                                                                spec)
    except RagtuneError as exc:  # the codes the JSON route answers with, as the stream's last event
        code = "model_not_found" if isinstance(exc, ModelNotFoundError) else \
            "empty_index" if isinstance(exc, EmptyCorpusError) else "bad_request"
        yield f"data: {json.dumps({'error': {'code': code, 'message': str(exc)}})}\n\n"
        return
    except Exception:  # noqa: BLE001 - the stream ends with an error event, never a stack trace
        error = {"error": {"code": "internal_error", "message": "the answer failed; see the server log"}}
        yield f"data: {json.dumps(error)}\n\n"
        return
    for piece in _STREAM_PIECE.findall(done.choices[0].message.content):
        yield _chunk(completion_id, created, body.model, {"content": piece})
    yield _chunk(completion_id, created, body.model, {}, "stop", usage=done.usage.model_dump(),
                 citations=[c.model_dump() for c in done.citations], ragtune=done.ragtune.model_dump())
    yield "data: [DONE]\n\n"


def router(service: Service) -> APIRouter:
    """``POST /v1/chat/completions`` and ``GET /v1/models`` over ``service.project``."""
    r = APIRouter(tags=["openai-compatible"])
    project = service.project

    @r.get("/v1/models", response_model=ModelListOut)
    def models(identity: Annotated[Identity, Depends(service.caller("ask"))]) -> ModelListOut:
        """The models a chat completion may name, in OpenAI's list shape: ``ragtune`` and ``pipeline:<name>``."""
        own = project_pipelines(project)
        data = [ModelOut(id=RAG_MODEL, created=0, owned_by="ragtune")]
        data += [ModelOut(id=PIPELINE_PREFIX + n, created=0, owned_by="ragtune") for n in builtin_names()
                 if n not in own]
        data += [ModelOut(id=PIPELINE_PREFIX + n, created=int(p.stat().st_mtime), owned_by="project")
                 for n, p in own.items()]
        return ModelListOut(data=data)

    @r.post("/v1/chat/completions", response_model=ChatCompletionOut,
            responses={200: {"content": {"text/event-stream": {}}}})
    def chat_completions(body: ChatCompletionRequest, identity: Annotated[Identity, Depends(service.caller("ask"))]
                         ) -> Any:
        """OpenAI-compatible chat: the last user message answered by ragtune's RAG (``model: ragtune``) or a
        pipeline (``model: pipeline:<name>``), with ``[n]`` markers and a ``Sources:`` list in the message and
        structured ``citations`` beside it. ``stream: true`` sends ``chat.completion.chunk`` events and
        ``data: [DONE]``. ``user`` and ``groups`` fields are ignored: the caller is the credential's identity.
        Usage counts are approximate (characters / 4)."""
        service.require_ready()
        question = last_user_message(body.messages)
        spec: PipelineSpec | None = None
        if body.model.startswith(PIPELINE_PREFIX):
            if not allowed(identity.role, "run"):
                raise AuthError("forbidden", f"role {identity.role.value} may not run pipelines; ask an admin "
                                             "for a key with a role that may", 403)
            spec = resolve_pipeline(project, body.model)
        elif body.model != RAG_MODEL:
            raise ApiError(404, "model_not_found", f"model {body.model!r}: ragtune answers as model 'ragtune' or "
                                                   "'pipeline:<name>'; GET /v1/models lists them")
        if body.stream:
            return StreamingResponse(stream_completion(project, identity, body, question, spec),
                                     media_type="text/event-stream")
        return complete(project, identity, body, question, spec)

    return r
