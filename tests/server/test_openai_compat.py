"""The OpenAI-compatible endpoint end to end with the official ``openai`` client against the real test server.

The client points its base URL at ragtune and its API key at a ragtune key, unchanged otherwise: answers and
citations follow the key (never the ``user`` or ``groups`` fields), streaming yields the same text as the JSON
answer, errors reach the client as its own exception classes, and each chat is audited as ``api:chat``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from .conftest import Server

QUESTION = "How long are backups kept?"
OPS_PIPELINE = "retrieve-answer-test"


def _client(server: Server, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=server.keys.get(key, key), max_retries=0,
                         timeout=60)


def _chat(server: Server, key: str, model: str = "ragtune", question: str = QUESTION, **kw: Any) -> dict[str, Any]:
    with _client(server, key) as c:
        r = c.chat.completions.create(model=model, messages=[{"role": "user", "content": question}], **kw)
    return r.model_dump()


@pytest.fixture(scope="module")
def ops_pipeline(server: Server) -> Iterator[str]:
    """A project pipeline (``<project>/pipelines/<name>.yaml``): retrieve then answer."""
    folder = server.project.settings.project_dir / "pipelines"
    folder.mkdir(exist_ok=True)
    path = folder / f"{OPS_PIPELINE}.yaml"
    path.write_text(f"name: {OPS_PIPELINE}\nsteps:\n  - retrieve: {{top_k: 5}}\n  - answer: {{}}\n", encoding="utf-8")
    yield f"pipeline:{OPS_PIPELINE}"
    path.unlink()


def test_the_openai_client_gets_an_answer_with_citations_in_text_and_field(server: Server) -> None:
    r = _chat(server, "ops")
    content = r["choices"][0]["message"]["content"]
    assert r["object"] == "chat.completion" and r["model"] == "ragtune"
    assert "ninety days" in content and "[1]" in content
    assert "\n\nSources:\n[1] " in content and "backups.md" in content.split("Sources:")[1]
    assert [c["path"].endswith("backups.md") for c in r["citations"]] == [True]
    assert r["citations"][0]["number"] == 1 and "ninety" in r["citations"][0]["snippet"]
    u = r["usage"]
    assert u["completion_tokens"] == -(-len(content) // 4) and u["total_tokens"] == u["prompt_tokens"] + \
        u["completion_tokens"]
    assert r["ragtune"]["abstained"] is False


def test_answers_follow_the_key_never_the_user_or_groups_fields(server: Server) -> None:
    r = _chat(server, "hr", user="otto", extra_body={"groups": ["ops"]})
    assert r["ragtune"]["abstained"] is True and r["citations"] == []
    assert "ninety" not in str(r) and "Sources:" not in r["choices"][0]["message"]["content"]


def test_only_the_last_user_message_is_the_question(server: Server) -> None:
    with _client(server, "ops") as c:
        r = c.chat.completions.create(model="ragtune", temperature=0.2, max_tokens=50, messages=[
            {"role": "system", "content": "You are helpful."}, {"role": "user", "content": "Parental leave?"},
            {"role": "assistant", "content": "I cannot say."},
            {"role": "user", "content": [{"type": "text", "text": QUESTION}]}])
    assert "ninety days" in (r.choices[0].message.content or "")


def test_streaming_yields_the_same_answer_in_openai_chunks(server: Server) -> None:
    whole = _chat(server, "ops")
    with _client(server, "ops") as c:
        chunks = [ch.model_dump() for ch in c.chat.completions.create(
            model="ragtune", stream=True, messages=[{"role": "user", "content": QUESTION}])]
    assert {ch["object"] for ch in chunks} == {"chat.completion.chunk"}
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(ch["choices"][0]["delta"].get("content") or "" for ch in chunks)
    assert text == whole["choices"][0]["message"]["content"] and len(chunks) > 3
    last = chunks[-1]
    assert last["choices"][0]["finish_reason"] == "stop"
    assert [c["chunk_id"] for c in last["citations"]] == [c["chunk_id"] for c in whole["citations"]]
    assert last["usage"]["completion_tokens"] == whole["usage"]["completion_tokens"]


def test_the_stream_ends_with_done(server: Server) -> None:
    with server.client("hr") as c:
        r = c.post("/v1/chat/completions", json={"model": "ragtune", "stream": True,
                                                 "messages": [{"role": "user", "content": QUESTION}]})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = [line[6:] for line in r.text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]" and "ninety" not in r.text


@pytest.mark.parametrize("key", ["rtk_bad", "revoked"])
def test_bad_keys_raise_the_clients_authentication_error(server: Server, key: str) -> None:
    with pytest.raises(openai.AuthenticationError) as info:
        _chat(server, key)
    assert info.value.status_code == 401 and "ninety" not in str(info.value.body)
    assert isinstance(info.value.body, dict) and info.value.body.get("code") in {"malformed_credentials",
                                                                                "revoked_key"}


@pytest.mark.parametrize("model", ["gpt-4o", "pipeline:no-such", "pipeline:../../../etc/passwd"])
def test_unknown_models_are_404_with_the_way_out(server: Server, model: str) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        _chat(server, "ops", model=model)
    assert "GET /v1/models" in str(info.value)


def test_a_pipeline_whose_classifier_is_missing_says_which(server: Server) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        _chat(server, "ops", model="pipeline:compliance-copilot")
    assert "policy-category" in str(info.value)
    with _client(server, "ops") as c, pytest.raises(openai.APIError) as streamed:
        list(c.chat.completions.create(model="pipeline:compliance-copilot", stream=True,
                                       messages=[{"role": "user", "content": QUESTION}]))
    assert "policy-category" in str(streamed.value)
    assert isinstance(streamed.value.body, dict) and streamed.value.body["code"] == "model_not_found"


def test_a_request_without_a_user_message_is_refused(server: Server) -> None:
    with _client(server, "ops") as c, pytest.raises(openai.UnprocessableEntityError) as info:
        c.chat.completions.create(model="ragtune", messages=[{"role": "system", "content": "hi"}])
    assert "no user message" in str(info.value)


def test_models_lists_ragtune_and_the_pipelines(server: Server, ops_pipeline: str) -> None:
    with _client(server, "hr") as c:
        ids = [m.id for m in c.models.list()]
    assert ids[0] == "ragtune"
    assert {"pipeline:compliance-copilot", "pipeline:support-triage", ops_pipeline} <= set(ids)


def test_a_project_pipeline_answers_as_a_model(server: Server, ops_pipeline: str) -> None:
    ops = _chat(server, "ops", model=ops_pipeline)
    assert "ninety days" in ops["choices"][0]["message"]["content"]
    assert ops["ragtune"]["pipeline"]["pipeline"] == OPS_PIPELINE and ops["citations"]
    hr = _chat(server, "hr", model=ops_pipeline)
    assert hr["ragtune"]["abstained"] is True and "ninety" not in str(hr)


def test_chats_are_audited_with_the_callers_role(server: Server) -> None:
    from ragtune.audit.export import read_records
    from ragtune.audit.log import log_path

    _chat(server, "editor", user="someone-else")
    last = list(read_records(log_path(server.project.settings)))[-1]
    assert (last["route"], last["principal"], last["role"], last["outcome"]) == ("api:chat", "eve", "editor",
                                                                                 "answered")
