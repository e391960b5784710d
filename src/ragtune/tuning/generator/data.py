"""Generator training data: chat JSONL (OpenAI's fine-tuning format) or prompt/completion pairs.

A line is either ``{"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}`` whose last
message is the assistant's reply to learn, or ``{"prompt": "...", "completion": "..."}`` (a one-turn chat). Each
becomes a :class:`GenExample`: the conversation before the reply (``prompt``) and the reply (``target``).
Malformed lines stop with a :class:`DataError` naming ``file:line``; nothing is guessed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ragtune.errors import DataError
from ragtune.tuning.jsonl import jsonl_rows, read_utf8

ROLES = ("system", "user", "assistant")
Message = dict[str, str]


@dataclass(frozen=True)
class GenExample:
    """One training conversation: ``prompt`` (the messages before the reply, system and user turns and any
    earlier assistant turns) and ``target`` (the assistant reply to learn). ``where``: ``file:line``, for
    messages (not part of equality)."""

    prompt: tuple[tuple[str, str], ...]
    target: str
    where: str = field(default="", compare=False)

    @property
    def messages(self) -> list[Message]:
        """The prompt as chat messages (``role``/``content`` dicts)."""
        return [{"role": r, "content": c} for r, c in self.prompt]

    @property
    def user_text(self) -> str:
        """The last user turn (what a few-shot prompt shows as the example's input)."""
        return next((c for r, c in reversed(self.prompt) if r == "user"), "")

    def prompt_key(self) -> str:
        """The prompt, whitespace-normalised: equal keys are the same input (duplicates, conflicts, leakage)."""
        return json.dumps([[r, " ".join(c.split())] for r, c in self.prompt], ensure_ascii=False)


class GenData(list[GenExample]):
    """The examples of one file (a list), with the file's name and SHA-256."""

    def __init__(self, examples: list[GenExample], source: str, sha256: str) -> None:
        super().__init__(examples)
        self.source, self.sha256 = source, sha256


def examples_digest(examples: list[GenExample]) -> str:
    """SHA-256 of the examples' prompts and targets (the card's ``data_sha256``)."""
    h = hashlib.sha256()
    for e in examples:
        h.update(json.dumps([list(map(list, e.prompt)), e.target], ensure_ascii=False).encode())
    return h.hexdigest()


def _string(value: Any, what: str, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        got = "missing" if value is None else f"not a non-empty string ({type(value).__name__})"
        raise DataError(f"{where}: {what} is {got}")
    return value


def _from_messages(messages: Any, where: str) -> GenExample:
    if not isinstance(messages, list) or len(messages) < 2:
        raise DataError(f"{where}: 'messages' must be a list of at least two messages (a user turn and the "
                        "assistant reply to learn)")
    turns: list[tuple[str, str]] = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise DataError(f"{where}: message {i + 1} is not an object with 'role' and 'content'")
        role = m.get("role")
        if role not in ROLES:
            raise DataError(f"{where}: message {i + 1} has role {role!r}; expected one of {', '.join(ROLES)}")
        turns.append((str(role), _string(m.get("content"), f"the content of message {i + 1}", where)))
    if turns[-1][0] != "assistant":
        raise DataError(f"{where}: the last message must be the assistant's reply to learn (role 'assistant'), "
                        f"not {turns[-1][0]!r}")
    if not any(r == "user" for r, _ in turns[:-1]):
        raise DataError(f"{where}: no user message before the assistant's reply")
    return GenExample(tuple(turns[:-1]), turns[-1][1], where)


def _from_pair(row: dict[str, Any], where: str) -> GenExample:
    prompt = _string(row.get("prompt"), "'prompt'", where)
    completion = _string(row.get("completion"), "'completion'", where)
    system = row.get("system")
    turns = ((("system", _string(system, "'system'", where)),) if system is not None else ()) + (("user", prompt),)
    return GenExample(turns, completion, where)


def parse_line(row: Any, where: str) -> GenExample:
    """One JSONL row as an example: ``{"messages": [...]}`` or ``{"prompt", "completion"[, "system"]}``."""
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
    if "messages" in row:
        return _from_messages(row["messages"], where)
    if "prompt" in row or "completion" in row:
        return _from_pair(row, where)
    raise DataError(f"{where}: expected {{\"messages\": [...]}} (chat format) or {{\"prompt\": ..., "
                    f"\"completion\": ...}}; got keys {sorted(row)[:5]}")


def load_gen_examples(path: Path | str) -> GenData:
    """The examples in a JSONL file (blank lines skipped). Raises :class:`DataError` naming ``file:line`` for a
    line that is not JSON or not one of the two shapes."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path}: is a folder; give a .jsonl file of chat or prompt/completion examples")
    text = read_utf8(path)
    out = [parse_line(row, where) for _, where, row in jsonl_rows(path, text)]
    if not out:
        raise DataError(f"{path}: no examples (one JSON object per line)")
    return GenData(out, str(path), hashlib.sha256(text.encode("utf-8")).hexdigest())


def load_schema(path: Path | str) -> dict[str, Any]:
    """A JSON Schema file, checked to be a valid schema (Draft 2020-12) so a typo is an error now, not later."""
    import jsonschema

    path = Path(path)
    try:
        schema = json.loads(read_utf8(path))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(schema, dict):
        raise DataError(f"{path}: a JSON Schema is an object, got {type(schema).__name__}")
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise DataError(f"{path}: not a valid JSON Schema: {exc.message}") from None
    return schema


def validate_output(text: str, schema: dict[str, Any] | None) -> str | None:
    """Why ``text`` is not a valid output (not JSON, or not matching ``schema``), or None when it is. Without a
    schema every text is valid."""
    if schema is None:
        return None
    import jsonschema

    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return f"not JSON ({exc.msg})"
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(value))
    if error is None:
        return None
    at = "/".join(str(p) for p in error.absolute_path)
    return f"{error.message}" + (f" (at {at})" if at else "")
