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


# --- labelled queries (issue 17): two ACLs, where the best BM25 hit of a query on an hr-only document is public ---

LABELLED_DOCS = {
    "hr/payroll.md": ("{groups: [hr]}",
                      "# Payroll handbook\n\n## Salary bands\n\nEvery role sits in one of nine salary bands, reviewed "
                      "each spring by the compensation panel. Band changes take effect on the first payday of "
                      "April and appear on the next payslip.\n\n## Overtime claims\n\nOvertime claims for the "
                      "Kestrel night shift are filed on form OT-7 within ten days. The shift lead approves each "
                      "claim before payroll pays it with the following salary run.\n"),
    "hr/leave.md": ("{groups: [hr]}",
                    "# Leave policy\n\n## Parental leave\n\nParents receive twenty weeks of paid parental leave, "
                    "taken in up to three blocks before the child turns two. Tell your manager eight weeks "
                    "before the first block starts.\n"),
    "hr/benefits.md": ("{groups: [hr]}",
                       "# Benefits guide\n\n## Night shift allowance\n\nStaff on a night shift earn an allowance "
                       "of twelve percent on top of base pay. The allowance is paid monthly and is not counted "
                       "as an overtime claim or a salary band change.\n"),
    "ops/overtime-faq.md": ("public",
                            "# Overtime FAQ\n\n## Filing overtime claims\n\nOvertime claims for the Kestrel night "
                            "shift are filed on form OT-7 within ten days, and claims for the Kestrel night "
                            "shift go to the shift lead. Kestrel night shift overtime claims on form OT-7 only.\n"),
    "ops/canteen.md": ("public",
                       "# Canteen hours\n\n## Opening times\n\nThe canteen opens at seven and closes at three. The "
                       "night shift may order cold meals from the vending room next to gate four.\n"),
}
LABELLED_QUERIES = {
    "q1": "how are overtime claims for the kestrel night shift filed",
    "q2": "how many weeks of parental leave do parents get",
    "q3": "when does the quillon merger close",
    "q4": "where is the archive of old rotas",
    "q5": "what is paid for night shift overtime and leave",
}
LABELLED_QRELS = [("q1", "payroll", 1), ("q1", "canteen", 0), ("q2", "hr/leave.md", 1), ("q3", "memo", 1),
                  ("q4", "ghost-doc", 1), ("q5", "payroll", 1), ("q5", "leave", 1)]


def make_labelled_corpus(root: Path) -> None:
    """The documents of :data:`LABELLED_DOCS` under ``root`` (plus ``memo.md``, which has no ACL: nobody reads it)."""
    for rel, (acl, text) in LABELLED_DOCS.items():
        write(root / rel, f"---\nacl: {acl}\n---\n{text}")
    write(root / "memo.md", f"# Nobody memo\n\n{SECRET} It was filed without an ACL of any kind at all.\n")


def write_labelled_files(folder: Path) -> tuple[Path, Path]:
    """``queries.jsonl`` and ``qrels.tsv`` (BEIR layout) of the labelled corpus in ``folder``."""
    import json

    queries = write(folder / "queries.jsonl",
                    "".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in LABELLED_QUERIES.items()))
    qrels = write(folder / "qrels.tsv", "query-id\tcorpus-id\tscore\n"
                  + "".join(f"{q}\t{d}\t{s}\n" for q, d, s in LABELLED_QRELS))
    return queries, qrels
