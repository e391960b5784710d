"""A synthetic equipment-manual corpus for the retriever tests: every document follows the same templates and
differs only in its invented names and numbers, so a general-purpose encoder ranks by template words while the
corpus rewards the names (what adapting to the corpus can learn)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from helpers import write

SYLLABLES = ["qor", "vex", "ban", "tul", "mir", "zep", "dra", "kov", "lis", "fen", "gor", "hax", "jun", "pel",
             "ruv", "sot", "wim", "yar", "cel", "nup"]
TEAMS = ["Ardent", "Borealis", "Cobalt", "Delta", "Ember", "Falcon", "Granite", "Harbor"]
LEDGERS = ["amber", "slate", "ivory", "copper", "linen", "walnut"]
PUBLIC, HR = 8, 4  # the session corpus: public manuals, then manuals only group hr may read
SECRET = "The nobody memo says the Quillon merger closes in spring and the Quillon board is unaware."


@dataclass
class Corpus:
    """An ingested project and the pump names of its manuals (public ones first, then the hr-only ones)."""

    project: Path
    names: list[str]

    @property
    def hr_names(self) -> list[str]:
        return self.names[PUBLIC:]


def _name(rng: random.Random) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(3)).capitalize()


def manual(name: str, rng: random.Random) -> str:
    """One document: a title and two sections about the named pump."""
    team, ledger, other = rng.choice(TEAMS), rng.choice(LEDGERS), rng.choice(TEAMS)
    days, bar = rng.randint(5, 90), rng.randint(2, 9)
    return (
        f"# The {name} pump\n\n"
        f"## Maintenance of the {name} pump\n\n"
        f"The {name} pump is serviced by the {team} crew every {days} days. Its seals are replaced when the "
        f"pressure drops below {bar} bar. Operators record each inspection of the {name} unit in the {ledger} "
        f"ledger. Spare parts for {name} are kept in the {other} store room.\n\n"
        f"## Faults of the {name} pump\n\n"
        f"When the {name} pump overheats, the {team} crew closes its intake valve first. A red warning light "
        f"means that {name} has lost prime and must be bled. Restart {name} only after the {ledger} ledger is "
        f"signed by a supervisor. Repeated faults on {name} are reported to the {other} office.\n"
    )


def make_corpus(root: Path, public: int = 24, hr: int = 0, seed: int = 0) -> list[str]:
    """``public`` public manuals and ``hr`` manuals only group hr may read under ``root``; returns the names."""
    rng = random.Random(seed)
    names: list[str] = []
    while len(names) < public + hr:
        n = _name(rng)
        if n not in names:
            names.append(n)
    for i, name in enumerate(names):
        acl = "public" if i < public else "{groups: [hr]}"
        write(root / ("hr" if i >= public else "ops") / f"{name.lower()}.md",
              f"---\nacl: {acl}\n---\n" + manual(name, rng))
    return names
