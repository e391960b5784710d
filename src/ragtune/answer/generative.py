"""LLM answers with verified citations, and structured (JSON-schema) output with one retry.

The prompt numbers the accessible sources [1]..[n]. The generator's citations are parsed; a number that is
not one of the sources, or whose chunk the principal may not read, is removed from the text and the answer
is flagged — a citation is never shown that does not point to a readable chunk.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ragtune.answer.base import GatedAnswerer
from ragtune.core import Answer, Citation, Hit, Principal
from ragtune.errors import RagtuneError, StructuredOutputError
from ragtune.models.embedder import Embedder
from ragtune.models.generator import Generator, Message
from ragtune.observability.tracing import span
from ragtune.text import CITATION, QUERY_STOP_WORDS, citation_numbers, content_terms, head_line, split_sentences

SYSTEM_PROMPT = (
    "You answer questions using only the numbered sources given. After each sentence, cite the sources that "
    "support it by number in square brackets, like [1] or [1][2]. If the sources do not contain the answer, "
    "reply exactly: I cannot answer from the accessible sources."
)


def build_messages(question: str, hits: Sequence[Hit]) -> list[Message]:
    """The chat messages: the system rules, then the numbered sources and the question."""
    sources = []
    for n, h in enumerate(hits, start=1):
        head = head_line(h.chunk.title, h.chunk.section_path)
        sources.append(f"[{n}] ({head})\n{h.chunk.text}" if head else f"[{n}] {h.chunk.text}")
    user = "Sources:\n\n" + "\n\n".join(sources) + f"\n\nQuestion: {question}"
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def verify_citations(text: str, readable: Sequence[bool]) -> tuple[str, list[int], list[str]]:
    """Keep citations ``[n]`` (or ``[n, m]``) that name a source the principal may read.

    ``readable[i]`` says whether source ``i + 1`` may be read. Returns the text with every other citation
    removed, the valid source numbers in order of first use, and one flag per dropped citation.
    """
    used: list[int] = []
    flags: list[str] = []

    def keep(match: re.Match[str]) -> str:
        good = []
        for n in citation_numbers(match.group(1)):
            if 1 <= n <= len(readable) and readable[n - 1]:
                good.append(n)
                if n not in used:
                    used.append(n)
            elif 1 <= n <= len(readable):
                flags.append(f"citation [{n}] dropped: the source is not readable by the asker")
            else:
                flags.append(f"citation [{n}] dropped: there is no source {n}")
        return "".join(f"[{n}]" for n in good)

    cleaned = CITATION.sub(keep, text)
    return re.sub(r"[ \t]+([.,;:])", r"\1", cleaned).strip(), used, flags


def _snippet(chunk_text: str, answer: str) -> str:
    """The chunk sentence sharing the most terms with the answer (what a reviewer should read first)."""
    words = content_terms(answer, QUERY_STOP_WORDS)
    candidates = split_sentences(chunk_text) or [chunk_text]
    return max(candidates, key=lambda s: len(words & content_terms(s, QUERY_STOP_WORDS)))


class GenerativeAnswerer(GatedAnswerer):
    """Answers with a generator over the top accessible hits; abstains when retrieval is not confident."""

    def __init__(self, generator: Generator, embedder: Embedder, min_relevance: float = 0.35,
                 context_chunks: int = 4, max_tokens: int = 256) -> None:
        super().__init__(embedder, min_relevance=min_relevance, context_chunks=context_chunks)
        self.generator = generator
        self.max_tokens = max_tokens

    def _compose(self, question: str, readable: list[Hit], hits: Sequence[Hit], principal: Principal,
                 query_vector: np.ndarray, started: float, on_token: Callable[[str], None] | None) -> Answer:
        """Generate an answer citing the sources; invalid citations are dropped and flagged."""
        t0 = started
        with span("generate", generator=self.generator.name, sources=len(readable), max_tokens=self.max_tokens) as sp:
            raw = self.generator.generate(build_messages(question, readable), max_tokens=self.max_tokens,
                                          on_token=on_token)
            sp.set(output_chars=len(raw))
        gen_ms = (time.perf_counter() - t0) * 1000
        # The ACL is checked again per cited source: the prompt held only readable chunks, but a citation
        # is shown only if it still points to one.
        text, used, flags = verify_citations(raw, [principal.can_read(h.chunk.acl) for h in readable])
        if not text:
            raise RagtuneError(f"the generator ({self.generator.name}) returned an empty answer")
        if not used:
            flags.append("the answer cites no source: treat it as unsupported")
        # Renumber 1..k in order of first use, so the source list has no gaps.
        renumber = {old: new for new, old in enumerate(used, start=1)}
        text = CITATION.sub(lambda m: "".join(f"[{renumber[n]}]" for n in citation_numbers(m.group(1))), text)
        citations = tuple(Citation(renumber[n], readable[n - 1].chunk, _snippet(readable[n - 1].chunk.text, text))
                          for n in used)
        return Answer(question=question, text=text, citations=citations, abstained=False,
                      latency_ms={"generate": gen_ms, "answer": (time.perf_counter() - t0) * 1000},
                      hits=tuple(hits), flags=tuple(flags))


def generate_json(generator: Generator, messages: Sequence[Message], schema: dict[str, Any],
                  max_tokens: int = 256, constrain: bool = True, instruct: bool = True) -> Any:
    """Output that validates against ``schema``: asked for (``instruct``: the schema is appended as a system
    message; off for a model fine-tuned to the format, whose prompt should stay as in training) and, where the
    server can, constrained to it; on invalid output the model is told what was wrong and asked once more;
    then StructuredOutputError."""
    import jsonschema

    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    request = list(messages) + ([{"role": "system", "content": "Reply with JSON only, matching this JSON schema: "
                                  + json.dumps(schema)}] if instruct else [])
    problem = ""
    for attempt in (1, 2):
        raw = generator.generate(request, max_tokens=max_tokens, json_schema=schema if constrain else None)
        try:
            value = json.loads(_strip_fences(raw))
            errors = sorted(validator.iter_errors(value), key=lambda e: list(e.path))
            if not errors:
                return value
            problem = "; ".join(f"{'/'.join(map(str, e.path)) or 'the value'}: {e.message}" for e in errors[:3])
        except json.JSONDecodeError as exc:
            problem = f"not JSON ({exc.msg} at character {exc.pos})"
        if attempt == 1:
            request = request + [{"role": "assistant", "content": raw},
                                 {"role": "user", "content": f"That output is invalid: {problem}. Reply again "
                                  "with JSON only that matches the schema."}]
    raise StructuredOutputError(f"the generator's output did not match the schema after a retry: {problem}")


def _strip_fences(text: str) -> str:
    m = re.search(r"```(?:json)?\s*(.*?)```", text, re.DOTALL)
    return (m.group(1) if m else text).strip()
