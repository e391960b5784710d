"""LLM generation against a real local OpenAI-compatible server: llama.cpp serving the packaged SmolLM2."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import write

from ragtune.answer.generative import (
    GenerativeAnswerer,
    StructuredOutputError,
    build_messages,
    generate_json,
    verify_citations,
)
from ragtune.config import load_settings
from ragtune.core import Hit, Principal
from ragtune.errors import ConfigError
from ragtune.ingest.sync import Syncer
from ragtune.models.embedder import MiniLMEmbedder
from ragtune.models.generator import (
    GenerationError,
    LlamaCppGenerator,
    OpenAICompatibleGenerator,
    resolve_api_key,
)
from ragtune.retrieval.hybrid import HybridRetriever, Retrieval
from ragtune.store.lance import LanceStore

pytestmark = pytest.mark.integration

LEGAL = Principal("ann", frozenset({"legal"}))
OUTSIDER = Principal("bob")


@pytest.fixture
def retriever(tmp_path: Path, corpus: Path, embedder: MiniLMEmbedder) -> HybridRetriever:
    store = LanceStore(tmp_path / "index")
    Syncer(store, embedder).sync(corpus)
    return HybridRetriever(store, embedder, top_k=4)


# --- citation verification (pure logic) --------------------------------------------------------------------


def test_verify_citations_keeps_readable_sources_and_flags_the_rest() -> None:
    text, used, flags = verify_citations("Backups run nightly [2]. Kept 90 days [1, 7]. Salaries [3].",
                                         [True, True, False])
    assert text == "Backups run nightly [2]. Kept 90 days [1]. Salaries."
    assert used == [2, 1]
    assert flags == ["citation [7] dropped: there is no source 7",
                     "citation [3] dropped: the source is not readable by the asker"]


# --- the generator protocol against the real server --------------------------------------------------------


def test_openai_compatible_client_talks_to_the_local_server_and_streams(local: LlamaCppGenerator) -> None:
    client = OpenAICompatibleGenerator(local.base_url, model="local")
    messages = [{"role": "user", "content": "Name one colour."}]
    whole = client.generate(messages, max_tokens=12)
    tokens: list[str] = []
    streamed = client.generate(messages, max_tokens=12, on_token=tokens.append)
    assert whole.strip() and len(tokens) > 1
    assert "".join(tokens) == streamed == whole  # temperature 0: the same reply, token by token


def test_unreachable_endpoint_is_a_clear_error() -> None:
    gen = OpenAICompatibleGenerator("http://127.0.0.1:9/v1", model="x", timeout_s=2)
    with pytest.raises(GenerationError, match="cannot reach the generator at http://127.0.0.1:9/v1"):
        gen.generate([{"role": "user", "content": "hi"}])


# --- answers with verified citations -----------------------------------------------------------------------


def test_generated_answer_cites_only_readable_numbered_sources(local: LlamaCppGenerator,
                                                              retriever: HybridRetriever,
                                                              embedder: MiniLMEmbedder) -> None:
    answerer = GenerativeAnswerer(local, embedder, max_tokens=80)
    question = "How long are backups kept?"
    r = retriever.retrieve(question, LEGAL)
    answer = answerer.answer(question, r, LEGAL)
    assert not answer.abstained and answer.text
    assert [c.number for c in answer.citations] == list(range(1, len(answer.citations) + 1))
    cited = {int(n) for n in __import__("re").findall(r"\[(\d+)\]", answer.text)}
    assert cited <= {c.number for c in answer.citations}
    assert all(LEGAL.can_read(c.chunk.acl) for c in answer.citations)
    assert answer.flags or answer.citations  # either verified citations, or a flag saying there are none
    assert answer.latency_ms["generate"] > 0


def test_unreadable_hits_never_reach_the_prompt_or_the_citations(local: LlamaCppGenerator,
                                                                retriever: HybridRetriever,
                                                                embedder: MiniLMEmbedder) -> None:
    question = "What do engineers earn?"
    leaked = retriever.retrieve("salary bands engineers", Principal("carol")).hits  # carol may read salaries
    assert any("salaries" in h.chunk.source_path for h in leaked)
    outsider_hits = retriever.retrieve(question, OUTSIDER).hits
    mixed: list[Hit] = leaked + outsider_hits  # as if a bug had handed over chunks bob may not read
    prompt = build_messages(question, [h for h in mixed if OUTSIDER.can_read(h.chunk.acl)])[1]["content"]
    assert "150,000" not in prompt
    answer = GenerativeAnswerer(local, embedder, max_tokens=60, min_relevance=-1).answer(question, Retrieval(mixed),
                                                                                          OUTSIDER)
    assert "150,000" not in answer.text
    assert all(OUTSIDER.can_read(c.chunk.acl) for c in answer.citations)


# --- structured output -------------------------------------------------------------------------------------

SCHEMA = {"type": "object", "properties": {"queue": {"type": "string", "enum": ["billing", "security", "other"]}},
          "required": ["queue"], "additionalProperties": False}


def test_structured_output_is_constrained_to_the_schema(local: LlamaCppGenerator) -> None:
    value = generate_json(local, [{"role": "user", "content": "My card was stolen. Which queue?"}], SCHEMA)
    assert set(value) == {"queue"} and value["queue"] in {"billing", "security", "other"}


def test_invalid_structured_output_is_retried_once_then_reported(local: LlamaCppGenerator) -> None:
    impossible = {"type": "object", "required": ["ticket_id"],
                  "properties": {"ticket_id": {"type": "integer", "minimum": 10**12}}}
    with pytest.raises(StructuredOutputError, match="after a retry"):
        generate_json(local, [{"role": "user", "content": "Say hello."}], impossible, max_tokens=24,
                      constrain=False)


# --- secrets -------------------------------------------------------------------------------------------------


def test_api_key_comes_from_the_environment_or_the_secrets_file(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = tmp_path / "secrets.yaml"
    monkeypatch.delenv("RAGTUNE_LLM_API_KEY", raising=False)
    assert resolve_api_key(secrets_file=secrets) is None
    write(secrets, "llm_api_key: from-file\n")
    secrets.chmod(0o600)  # a secrets file readable by others is refused
    assert resolve_api_key(secrets_file=secrets) == "from-file"
    monkeypatch.setenv("RAGTUNE_LLM_API_KEY", "from-env")
    assert resolve_api_key(secrets_file=secrets) == "from-env"


def test_an_api_key_in_ragtune_yaml_is_refused(tmp_path: Path) -> None:
    write(tmp_path / "ragtune.yaml", "generator:\n  kind: openai\n  api_key: sk-123\n")
    with pytest.raises(ConfigError, match="never put an API key in ragtune.yaml"):
        load_settings(tmp_path)
