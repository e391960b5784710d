"""The support-triage task as structured output, from banking77: a customer message in,
``{"intent": ..., "priority": ...}`` out.

The priority is derived from the intent by a fixed rule (:func:`priority`): ``high`` for an intent naming a lost,
stolen, compromised or unrecognised card, payment or withdrawal; ``medium`` for money in flight or refused
(pending, failed, declined, reverted, not received, wrong amount, refund, blocked, not working); ``low`` for
everything else. The schema enumerates the intents and the three priorities.

Run it to rebuild the example files beside it from the banking77 slice in ``examples/data/banking77/``
(CC BY 4.0, see its SOURCE.md); ``benchmarks/banking77_generator.py`` builds the same task on all 77 intents:

    .venv/bin/python examples/generator/triage.py
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SLICE = HERE.parent / "data" / "banking77"
SYSTEM = ("You triage messages to a bank's support team. Reply with JSON only: "
          "{\"intent\": the intent name, \"priority\": \"high\", \"medium\" or \"low\"}.")
HIGH = ("stolen", "compromised", "not_recognised", "lost", "swallowed")
MEDIUM = ("pending", "failed", "declined", "reverted", "not_received", "wrong", "refund", "blocked", "not_working")


def priority(intent: str) -> str:
    """The fixed priority rule of the task (see the module docstring)."""
    if any(word in intent for word in HIGH):
        return "high"
    if any(word in intent for word in MEDIUM):
        return "medium"
    return "low"


def target(intent: str) -> str:
    """The reply to learn for a message of ``intent``."""
    return json.dumps({"intent": intent, "priority": priority(intent)})


def schema(intents: list[str]) -> dict[str, Any]:
    """The output schema: the intent and the priority enumerated."""
    return {"type": "object", "additionalProperties": False, "required": ["intent", "priority"],
            "properties": {"intent": {"enum": sorted(intents)}, "priority": {"enum": ["high", "medium", "low"]}}}


def chat_line(text: str, intent: str) -> str:
    """One training example in OpenAI's chat fine-tuning format."""
    return json.dumps({"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text},
                                    {"role": "assistant", "content": target(intent)}]}, ensure_ascii=False)


def write_jsonl(path: Path, rows: list[tuple[str, str]]) -> Path:
    """``rows`` of (message, intent) as chat JSONL at ``path``."""
    path.write_text("".join(chat_line(t, y) + "\n" for t, y in rows), encoding="utf-8")
    return path


def per_intent(rows: list[tuple[str, str]], count: int, seed: int) -> list[tuple[str, str]]:
    """``count`` seeded rows of each intent, shuffled."""
    by: dict[str, list[tuple[str, str]]] = {}
    for row in rows:
        by.setdefault(row[1], []).append(row)
    rng = random.Random(seed)
    out = [r for y in sorted(by) for r in rng.sample(by[y], min(count, len(by[y])))]
    rng.shuffle(out)
    return out


def read_csv(path: Path) -> list[tuple[str, str]]:
    """(text, category) rows of a banking77 CSV."""
    with path.open(encoding="utf-8") as fh:
        return [(r["text"], r["category"]) for r in csv.DictReader(fh)]


def main() -> None:
    train = read_csv(SLICE / "train.csv")
    write_jsonl(HERE / "triage_train.jsonl", per_intent(train, 10, seed=0))
    write_jsonl(HERE / "triage_test.jsonl", per_intent(read_csv(SLICE / "test.csv"), 5, seed=0))
    intents = sorted({y for _, y in train})
    (HERE / "triage_schema.json").write_text(json.dumps(schema(intents), indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
