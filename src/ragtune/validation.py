"""Readable one-line messages from pydantic validation errors, shared by settings, pipelines and the advisor.

pydantic words an unknown key as "Extra inputs are not permitted" and prefixes the message of every
``ValueError`` a validator raises with "Value error, ". Here an unknown key names the closest valid key and
lists all of them, and the prefixes are dropped. No message repeats the offending *value* (it may be a secret).
"""

from __future__ import annotations

import difflib
import typing
from collections.abc import Collection, Iterable, Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

# What pydantic puts before the message of an exception raised inside a validator.
_PREFIXES = ("Value error, ", "Assertion failed, ")


def clean_message(msg: str) -> str:
    """A pydantic message without its "Value error, " / "Assertion failed, " prefix."""
    for prefix in _PREFIXES:
        if msg.startswith(prefix):
            return msg[len(prefix):]
    return msg


def closest(key: str, choices: Iterable[str]) -> str | None:
    """The choice closest to ``key`` (difflib), or None when nothing is close."""
    found = difflib.get_close_matches(key, list(choices), n=1, cutoff=0.6)
    return found[0] if found else None


def unknown_key(key: str, valid: Sequence[str]) -> str:
    """An unknown key with the closest valid one and all of them, e.g. "unknown key 'topk' (did you mean
    'top_k'?); valid keys: corpus, top_k, when"."""
    guess = closest(key, valid)
    return (f"unknown key {key!r}" + (f" (did you mean {guess!r}?)" if guess else "")
            + f"; valid keys: {', '.join(valid) or 'none'}")


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    for arg in typing.get_args(annotation):  # Optional[X], list[X], X | None, Annotated[X, ...]
        found += _models_in(arg)
    return found


def model_at(model: type[BaseModel], loc: Sequence[int | str]) -> type[BaseModel] | None:
    """The model that validates the mapping at ``loc`` inside ``model`` (list indexes skipped), if any."""
    current: type[BaseModel] | None = model
    for part in loc:
        if isinstance(part, int):
            continue
        if current is None:
            return None
        field = next((f for name, f in current.model_fields.items() if part in (name, f.alias)), None)
        if field is None:
            return None
        inner = _models_in(field.annotation)
        current = inner[0] if inner else None
    return current


def valid_keys(model: type[BaseModel], hidden: Collection[str] = ()) -> list[str]:
    """The keys a mapping for ``model`` may hold (aliases where set), sorted; ``hidden`` ones left out."""
    return sorted(f.alias or name for name, f in model.model_fields.items() if name not in hidden)


def error_message(error: Any, model: type[BaseModel], hidden: Collection[str] = ()) -> str:
    """The message of one pydantic error (an item of ``ValidationError.errors()``), without its location."""
    loc = tuple(error.get("loc", ()))
    if error.get("type") == "extra_forbidden" and loc:
        inner = model_at(model, loc[:-1])
        keys = valid_keys(inner, hidden if inner is model else ()) if inner is not None else []
        return unknown_key(str(loc[-1]), keys)
    if error.get("type") == "missing" and loc:
        return f"missing key {str(loc[-1])!r}"
    if error.get("type") == "model_type":  # pydantic: "Input should be a valid dictionary or instance of X"
        return f"expected a mapping of `key: value` pairs (got {type(error.get('input')).__name__})"
    return clean_message(str(error.get("msg", "")))


def error_location(error: Any) -> str:
    """Where an error is, dotted (``rules.0.when``); for an unknown or missing key, the mapping that holds it."""
    loc = tuple(error.get("loc", ()))
    if error.get("type") in ("extra_forbidden", "missing"):
        loc = loc[:-1]
    return ".".join(str(p) for p in loc)


def describe(exc: ValidationError, model: type[BaseModel], hidden: Collection[str] = ()) -> str:
    """Every error of ``exc`` as ``location: message``, joined by "; " (one line), unknown keys first (a
    misspelt key is usually why a required one is missing)."""
    parts = []
    for error in sorted(exc.errors(), key=lambda e: e.get("type") != "extra_forbidden"):
        where, message = error_location(error), error_message(error, model, hidden)
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(dict.fromkeys(parts))
