"""Build ragtune's committed sample corpus from PolicyQA (privacy policies of 20 websites).

PolicyQA (Ahmad et al., Findings of EMNLP 2020; MIT license) ships each website's privacy policy as
SQuAD-style paragraphs with reading-comprehension questions labelled by OPP-115 category. This script
turns its ``dev.json`` into what ragtune's demo and tests ingest:

- one Markdown document per website, ``<out>/corpus/<folder>/<website>.md``, with front matter, an H1 title
  and an ``## <Category>`` heading wherever the dominant OPP-115 category of the paragraphs changes;
- one ``_acl.yaml`` per folder: ``public/`` is public, ``retail/`` is the ``retail`` group's and
  ``media/`` is the ``media`` group's, so the demo users alice (retail) and bob (media) see different
  policies;
- ``questions.jsonl``: three gold questions per website (question, website, folder, answer, category);
- ``demo_questions.txt``: two questions whose best answer only alice, or only bob, may read;
- ``SOURCE.md`` (provenance and how to use the sample) and PolicyQA's ``LICENSE``.

The output is deterministic: run it again on the same input and nothing changes.

Usage::

    python examples/build_demo_corpus.py [--data DIR] [--out DIR]

``--data`` is the shared data folder holding ``policyqa/dev.json`` (default: ``$RAGTUNE_DATA``, else
``../shared/data`` relative to the repository root).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shutil
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "examples" / "data" / "policies"
QUESTIONS_PER_SITE = 3
ADVISOR_PER_SITE = 30
MIN_ANSWER_WORDS = 4
MAX_ANSWER_WORDS = 40

# Folder (and so ACL) of each website, chosen by what the site is:
# retail = sells goods, food, tickets or subscriptions to consumers; media = news and magazine
# publishers; public = non-profits, portals, corporate and reference sites.
FOLDERS: dict[str, tuple[str, ...]] = {
    "public": (
        "dogbreedinfo.com",
        "internetbrands.com",
        "kaleidahealth.org",
        "naturalnews.com",
        "ted.com",
        "yahoo.com",
    ),
    "retail": (
        "buffalowildwings.com",
        "cariboucoffee.com",
        "eatchicken.com",
        "fool.com",
        "mlb.mlb.com",
        "ticketmaster.com",
        "walmart.com",
    ),
    "media": (
        "adweek.com",
        "cbsinteractive.com",
        "post-gazette.com",
        "sci-news.com",
        "style.com",
        "theatlantic.com",
        "washingtonian.com",
    ),
}
ACLS: dict[str, str] = {
    "public": "acl: public\n",
    "retail": "acl: {groups: [retail]}\n",
    "media": "acl: {groups: [media]}\n",
}
DEMO_USERS: dict[str, str] = {"alice": "retail", "bob": "media"}
# Each is answered best by a policy in a group-restricted folder (checked with BM25 and MiniLM over the
# paragraphs), so alice and bob get different answers and citations:
# (question, website that answers it best, other websites in the same folder that also answer it).
DEMO_QUESTIONS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (
        "Do you share my personal information with vendors who help fulfill my purchases?",
        "ticketmaster.com",
        ("buffalowildwings.com",),
    ),
    (
        "Can I opt out of having my personal information shared with business partners "
        "for marketing and advertising?",
        "theatlantic.com",
        ("style.com",),
    ),
)


@dataclass(frozen=True)
class Paragraph:
    """One policy paragraph with the dominant OPP-115 category of its questions."""

    text: str
    category: str


@dataclass(frozen=True)
class GoldQuestion:
    """A PolicyQA question about one website with its gold answer span."""

    question: str
    answers: tuple[str, ...]
    category: str


@dataclass(frozen=True)
class Policy:
    """One website's privacy policy as PolicyQA gives it."""

    website: str
    paragraphs: tuple[Paragraph, ...]
    questions: tuple[GoldQuestion, ...]
    n_questions: int


def default_data_dir() -> Path:
    """``$RAGTUNE_DATA`` if set, else the shared data folder beside the repository."""
    env = os.environ.get("RAGTUNE_DATA")
    return Path(env) if env else (REPO_ROOT / ".." / "shared" / "data").resolve()


def category_of(qa_type: str) -> str:
    """The Category part of PolicyQA's ``Category|||Attribute|||Value`` label."""
    return qa_type.split("|||", 1)[0].strip()


def dominant_category(qas: list[dict[str, Any]], previous: str | None) -> str:
    """The most common category of a paragraph's questions; ties keep the previous section's category."""
    counts = Counter(category_of(qa["type"]) for qa in qas)
    if not counts:
        return previous or "General"
    best = max(counts.values())
    tied = sorted(c for c, n in counts.items() if n == best)
    return previous if previous in tied else tied[0]


def is_whole_words(context: str, answer: dict[str, Any]) -> bool:
    """Whether an answer span starts and ends on word boundaries (some annotations cut words in half)."""
    start = int(answer["answer_start"])
    end = start + len(answer["text"])
    if context[start:end] != answer["text"]:
        return False
    starts_clean = start == 0 or not context[start - 1].isalnum()
    return starts_clean and (end == len(context) or not context[end].isalnum())


def load_policies(dev_json: Path) -> list[Policy]:
    """Read PolicyQA's ``dev.json`` into one :class:`Policy` per website, paragraphs in policy order."""
    raw = json.loads(dev_json.read_text(encoding="utf-8"))
    policies: list[Policy] = []
    for article in raw["data"]:
        paragraphs: list[Paragraph] = []
        questions: list[GoldQuestion] = []
        previous: str | None = None
        for para in sorted(article["paragraphs"], key=lambda p: int(p.get("index", 0))):
            category = dominant_category(para["qas"], previous)
            paragraphs.append(Paragraph(text=" ".join(para["context"].split()), category=category))
            previous = category
            for qa in para["qas"]:
                answers = tuple(
                    " ".join(a["text"].split()) for a in qa["answers"] if is_whole_words(para["context"], a)
                )
                if answers:
                    questions.append(
                        GoldQuestion(
                            question=" ".join(qa["question"].split()),
                            answers=answers,
                            category=category_of(qa["type"]),
                        )
                    )
        n_questions = sum(len(para["qas"]) for para in article["paragraphs"])
        policies.append(Policy(article["title"].strip(), tuple(paragraphs), tuple(questions), n_questions))
    return policies


def folder_of(website: str) -> str:
    """The folder a website's policy goes to; an unknown website is an error, never a silent default."""
    for folder, sites in FOLDERS.items():
        if website in sites:
            return folder
    raise SystemExit(f"{website}: no folder assigned; add it to FOLDERS in {Path(__file__).name}")


def render_markdown(policy: Policy) -> str:
    """The policy as Markdown: front matter, H1 title, an H2 wherever the paragraph category changes."""
    title = f"{policy.website} privacy policy"
    lines = [
        "---",
        f"title: {title}",
        f"website: {policy.website}",
        "source: PolicyQA dev.json (Ahmad et al., 2020), MIT license",
        "---",
        "",
        f"# {title}",
        "",
    ]
    current: str | None = None
    for para in policy.paragraphs:
        if para.category != current:
            lines += [f"## {para.category}", ""]
            current = para.category
        lines += [para.text, ""]
    return "\n".join(lines)


def gold_answer(question: GoldQuestion) -> str | None:
    """The fullest whole-word answer span of 4-40 words (annotators often marked shorter fragments)."""
    fitting = [a for a in question.answers if MIN_ANSWER_WORDS <= len(a.split()) <= MAX_ANSWER_WORDS]
    return max(fitting, key=lambda a: len(a.split()), default=None)


def pick_questions(policy: Policy, k: int = QUESTIONS_PER_SITE) -> list[tuple[GoldQuestion, str]]:
    """``k`` distinct questions with their gold answers, spread over the site's commonest categories."""
    seen: set[str] = set()
    candidates: list[tuple[GoldQuestion, str]] = []
    for q in policy.questions:
        answer = gold_answer(q)
        key = q.question.lower()
        if answer is not None and key not in seen and answer.lower() not in seen:
            seen.update((key, answer.lower()))
            candidates.append((q, answer))
    frequency = Counter(q.category for q in policy.questions)
    by_category = sorted({q.category for q, _ in candidates}, key=lambda c: (-frequency[c], c))
    # Per category, the question with the fullest answer: short spans are often fragments.
    picked = [
        max((qa for qa in candidates if qa[0].category == c), key=lambda qa: len(qa[1].split()))
        for c in by_category[:k]
    ]
    candidates.sort(key=lambda qa: -len(qa[1].split()))
    picked += [qa for qa in candidates if qa not in picked][: k - len(picked)]
    if len(picked) < k:
        raise SystemExit(f"{policy.website}: only {len(picked)} questions with usable gold answers")
    return picked


SOURCE_MD = """\
# Sample corpus: website privacy policies (from PolicyQA)

This folder is **sample data** for ragtune's demo and tests. It is derived from a public research data
set; it is not legal advice, and the policies are historical snapshots (collected around 2015), not the
websites' current policies.

## Source

- **PolicyQA** — Wasi Uddin Ahmad, Jianfeng Chi, Yuan Tian and Kai-Wei Chang, *PolicyQA: A Reading
  Comprehension Dataset for Privacy Policies*, Findings of EMNLP 2020.
- File: `data/dev.json` of <https://github.com/wasiahmad/PolicyQA> (SQuAD v1.1 JSON). PolicyQA builds on
  the OPP-115 corpus of annotated website privacy policies (Wilson et al., ACL 2016).
- License: MIT, copyright (c) 2020 Wasi Ahmad — see `LICENSE` in this folder, which must stay beside the
  derived files.

## What was derived, and how

`examples/build_demo_corpus.py` (run `python examples/build_demo_corpus.py`) wrote every file here from
`dev.json`; nothing was edited by hand. For each of the {n_sites} websites ({n_paragraphs} paragraphs,
{n_questions} questions in all):

- `<folder>/<website>.md` — the website's policy: YAML front matter (`title`, `website`, `source`), a
  `# <website> privacy policy` heading, then PolicyQA's paragraphs in their original order with
  whitespace normalised. A `## <Category>` heading starts wherever the paragraph's dominant OPP-115
  category (the most common Category among its questions' `type` labels; ties keep the previous
  section's) changes, so each document has sections to cite.
- `questions.jsonl` — {per_site} questions per website ({n_gold} in all) taken from its PolicyQA
  questions that have a gold answer of {min_words} to {max_words} words, one from each of the site's
  three most common categories where possible. Fields: `question`, `website`, `folder`, `answer` (the
  longest such PolicyQA answer span that does not cut a word), `category` (the Category part of
  `type`). Per category the question with the fullest answer is taken. PolicyQA's questions
  are generic ("Do you share my data with third parties?"), so the gold website is where the answer
  *was annotated*; other policies may answer the question too.
- `demo_questions.txt` — two questions for the permission demo (below), one per line.
- `advisor_questions.csv` — for the advisor's tests: up to {advisor_per_site} distinct PolicyQA questions
  per website, taken round-robin over the site's categories, with `source` (the policy's file name) and
  `category` (the Category part of `type`).

## Folders and who may read them

Each folder's `_acl.yaml` sets the ACL of the documents in it (ragtune applies it inside the store
query, so a user never retrieves a document they may not read):

| folder | ACL | websites |
|---|---|---|
{folder_rows}

Demo users (principals):

| user | groups | sees |
|---|---|---|
{user_rows}

So alice and bob get different answers, with different citations, to the same question. The questions
in `demo_questions.txt` show it; each is answered best by a policy only one of them may read:

| question | answered by | alice | bob |
|---|---|---|---|
{demo_rows}

## Ingesting it

The policies are the Markdown files under `corpus/` (in `public/`, `retail/` and `media/`, each with its
`_acl.yaml`); this `SOURCE.md`, `LICENSE`, `questions.jsonl` and `demo_questions.txt` describe the sample.
Ingest `corpus/`: `ragtune ingest examples/data/policies/corpus`.
"""


def advisor_questions_csv(policies: list[Policy], per_site: int = ADVISOR_PER_SITE) -> str:
    """CSV (question, source, category) for the advisor's tests: ``per_site`` distinct questions per website,
    taken round-robin over its categories (each in PolicyQA's order) so small categories are represented;
    ``source`` is the policy's file name."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["question", "source", "category"])
    for policy in sorted(policies, key=lambda p: p.website):
        queues: dict[str, list[str]] = {}
        for q in policy.questions:
            queues.setdefault(q.category, []).append(q.question)
        seen: set[str] = set()
        while len(seen) < per_site and any(queues.values()):
            for category in sorted(queues):
                while queues[category] and len(seen) < per_site:
                    question = queues[category].pop(0)
                    if question not in seen:
                        seen.add(question)
                        w.writerow([question, f"{policy.website}.md", category])
                        break
    return buf.getvalue()


def write_outputs(policies: list[Policy], dev_json: Path, out: Path) -> list[Path]:
    """Write the documents, folder ACLs, gold questions, SOURCE.md and LICENSE; return the files written."""
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def write(path: Path, text: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)

    for folder, acl in ACLS.items():
        write(out / "corpus" / folder / "_acl.yaml", acl)
    gold: list[dict[str, str]] = []
    for policy in sorted(policies, key=lambda p: (list(FOLDERS).index(folder_of(p.website)), p.website)):
        folder = folder_of(policy.website)
        write(out / "corpus" / folder / f"{policy.website}.md", render_markdown(policy))
        for q, answer in pick_questions(policy):
            gold.append(
                {
                    "question": q.question,
                    "website": policy.website,
                    "folder": folder,
                    "answer": answer,
                    "category": q.category,
                }
            )
    # Policies removed from FOLDERS (or moved) must not linger under their old ACL.
    for folder in FOLDERS:
        for stale in sorted((out / "corpus" / folder).glob("*.md")):
            if stale not in written:
                stale.unlink()
    write(out / "questions.jsonl", "".join(json.dumps(g, ensure_ascii=False) + "\n" for g in gold))
    write(out / "advisor_questions.csv", advisor_questions_csv(policies))
    write(out / "demo_questions.txt", "".join(q + "\n" for q, _, _ in DEMO_QUESTIONS))

    websites_present = {p.website for p in policies}
    folder_rows = "\n".join(
        f"| `{folder}/` | `{ACLS[folder].strip().removeprefix('acl: ')}` | "
        + ", ".join(s for s in FOLDERS[folder] if s in websites_present)
        + " |"
        for folder in FOLDERS
    )
    user_rows = "\n".join(
        f"| `{user}` | `{group}` | `public/` + `{group}/` |" for user, group in DEMO_USERS.items()
    )
    demo_rows = "\n".join(
        f"| {q} | `{folder_of(site)}/{site}.md`"
        + "".join(f" (also `{other}`)" for other in also)
        + " | "
        + " | ".join(
            "cites it" if folder_of(site) in ("public", group) else "cannot see it: another policy, or none"
            for group in DEMO_USERS.values()
        )
        + " |"
        for q, site, also in DEMO_QUESTIONS
    )
    write(
        out / "SOURCE.md",
        SOURCE_MD.format(
            n_sites=len(policies),
            n_paragraphs=sum(len(p.paragraphs) for p in policies),
            n_questions=sum(p.n_questions for p in policies),
            per_site=QUESTIONS_PER_SITE,
            advisor_per_site=ADVISOR_PER_SITE,
            n_gold=len(gold),
            min_words=MIN_ANSWER_WORDS,
            max_words=MAX_ANSWER_WORDS,
            folder_rows=folder_rows,
            user_rows=user_rows,
            demo_rows=demo_rows,
        ),
    )
    license_file = dev_json.parent / "LICENSE"
    shutil.copyfile(license_file, out / "LICENSE")
    written.append(out / "LICENSE")
    return written


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, build the corpus and print a one-line summary."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--data", type=Path, help="shared data folder that holds policyqa/dev.json")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: %(default)s)")
    args = parser.parse_args(argv)
    data_dir: Path = args.data or default_data_dir()
    dev_json = data_dir / "policyqa" / "dev.json"
    if not dev_json.is_file():
        print(f"error: {dev_json} not found; pass --data DIR or set RAGTUNE_DATA", file=sys.stderr)
        return 2
    policies = load_policies(dev_json)
    written = write_outputs(policies, dev_json, args.out)
    size = sum(p.stat().st_size for p in written)
    print(f"wrote {len(written)} files ({size / 1e3:.0f} kB) for {len(policies)} policies to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
