"""A regular synthetic reading task: short notes about a record type (how long it is kept, where it is stored,
who approves access), questions about each, and questions a note does not answer (one fact left out)."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragtune.tuning.reader.data import ReaderData
from ragtune.tuning.reader.train import TrainedReader

SEED = 0  # of the notes, the held-out split and the training of the session's reader


@dataclass
class Trained:
    """The session's reader: its registry folder, the data it was trained on and what training returned."""

    models: Path
    data: ReaderData
    result: TrainedReader

THINGS = ["billing", "payroll", "invoice", "audit", "support", "marketing", "sales", "travel", "expense", "badge",
          "camera", "email", "chat", "backup", "contract", "health", "pension", "vendor", "training", "recruiting",
          "warehouse", "shipping", "refund", "loyalty", "survey", "parking", "library", "canteen"]
CITIES = ["Dublin", "Lisbon", "Oslo", "Madrid", "Vienna", "Prague", "Berlin", "Warsaw", "Helsinki", "Zurich",
          "Athens", "Milan", "Lyon", "Porto", "Ghent", "Bergen"]
OWNERS = ["Alice Moreau", "Bruno Costa", "Chen Wei", "Dana Kovacs", "Emil Novak", "Farah Haddad", "Greta Lind",
          "Hugo Martin", "Ines Duarte", "Jonas Berg", "Kira Ivanova", "Liam Walsh"]


def questions(thing: str) -> dict[str, str]:
    return {"days": f"How long are {thing} records kept?", "city": f"Where are {thing} records stored?",
            "owner": f"Who approves access to {thing} records?"}


def synthetic_rows(seed: int = 0, things: list[str] | None = None) -> list[dict[str, Any]]:
    """Three questions per note, one note per record type (its group); three notes in four leave a fact out, so
    a quarter of the questions have no answer in their passage."""
    rng = random.Random(seed)
    rows = []
    for k, thing in enumerate(things or THINGS):
        facts = {"days": f"{rng.randrange(7, 900)} days", "city": rng.choice(CITIES), "owner": rng.choice(OWNERS)}
        sentences = {"days": f"The {thing} records are kept for {facts['days']}.",
                     "city": f"They are stored in {facts['city']}.",
                     "owner": f"{facts['owner']} approves access to them."}
        present = list(sentences)
        if k % 4 != 0:
            present.remove(rng.choice(present))
        rng.shuffle(present)
        if present[0] == "city":  # "They" needs the records named first
            present[0], present[1] = present[1], present[0]
        passage = f"{thing.title()} data. " + " ".join(sentences[s] for s in present)
        for key, question in questions(thing).items():
            rows.append({"question": question, "passage": passage,
                         "answer": facts[key] if key in present else None, "group": thing})
    return rows


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path
