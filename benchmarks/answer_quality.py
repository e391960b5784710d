"""Extractive answers a person can use: token-F1, complete sentences and abstention, on PolicyQA dev as written and
hard-wrapped at 80 columns.

Each PolicyQA dev policy becomes a Markdown document readable only by its website's group (as in
``compliance_copilot.py``); a second copy of the corpus has every paragraph hard-wrapped at 80 columns, as
plain-text exports and PDFs are. The help-centre articles of ``examples/data/help`` are indexed next to them,
readable only by the group ``help-desk``. For every ``--every``-th question with a whole-word gold answer:

- **token-F1** (SQuAD normalisation, best over the gold spans) of the default extractive answer, asked as a user
  of the policy's group (abstentions score 0);
- **complete sentences**: the share of quoted sentences that begin like a sentence (capital letter, digit,
  quote or bracket) and end with ``.``, ``!`` or ``?`` (closing quotes or brackets allowed) — a fragment cut at a
  line break or a heading fails;
- **sentences per answer**, and **answered**: the share of those questions answered at all;
- **abstention, no readable policy**: the same questions asked as a ``help-desk`` user, who may read only the help
  articles — no accessible source answers a privacy-policy question, so abstaining is the right answer.

    RAGTUNE_DATA=../shared/data .venv/bin/python benchmarks/answer_quality.py --label after
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

from _common import cache_dir, command_line, data_dir, emit, machine, write_row  # noqa: E402
from build_demo_corpus import Policy, load_policies, render_markdown  # noqa: E402
from compliance_copilot import group_of, token_f1  # noqa: E402

from ragtune.config import init_project  # noqa: E402
from ragtune.core import Principal  # noqa: E402
from ragtune.project import Project  # noqa: E402
from ragtune.text import CITATION  # noqa: E402

SECTION = "Answers a person can use (PolicyQA dev, as written and hard-wrapped)"
HELP = Path(__file__).resolve().parents[1] / "examples" / "data" / "help" / "articles"
COMPLETE = re.compile(r"^[\"'(\[\u201c\u2018A-Z0-9].*[.!?][\"')\]\u201d\u2019]*$", re.S)


def wrap_markdown(text: str, width: int = 80) -> str:
    """Hard-wrap every paragraph line at ``width`` columns; front matter and headings stay as they are."""
    out, in_front = [], False
    for i, line in enumerate(text.split("\n")):
        if line == "---" and (i == 0 or in_front):
            in_front = i == 0
            out.append(line)
        elif in_front or not line.strip() or line.startswith("#"):
            out.append(line)
        else:
            out.append(textwrap.fill(line, width=width, break_long_words=False, break_on_hyphens=False))
    return "\n".join(out)


def build(root: Path, policies: list[Policy], wrapped: bool) -> Project:
    """The bench project: one document per policy (its site's group only) and the help articles (help-desk)."""
    docs = root / "docs"
    for policy in policies:
        text = render_markdown(policy).replace("---\n", f"---\nacl: {{groups: [{group_of(policy)}]}}\n", 1)
        if wrapped:
            text = wrap_markdown(text)
        path = docs / "policies" / f"{policy.website}.md"
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    help_dir = docs / "help"
    if not help_dir.is_dir():
        shutil.copytree(HELP, help_dir)
        (help_dir / "_acl.yaml").write_text("acl: {groups: [help-desk]}\n", encoding="utf-8")
    if not (root / "project" / "ragtune.yaml").is_file():
        init_project(root / "project")
    project = Project.open(root / "project")
    project.ingest(docs)
    return project


def quoted_sentences(answer_text: str) -> list[str]:
    """The sentences an extractive answer quotes: the text before each citation marker."""
    return [part.strip() for part in CITATION.split(answer_text)[::2] if part.strip()]


def measure(project: Project, items: list[tuple[Policy, str, list[str]]]) -> dict[str, float]:
    """Token-F1, complete-sentence share, sentences per answer, answered share, and abstention as help-desk."""
    help_desk = Principal("bench-help", frozenset({"help-desk"}))
    f1s, complete, quoted, answered, abstained = [], 0, 0, 0, 0
    for policy, question, gold in items:
        answer = project.ask(question, Principal("bench", frozenset({group_of(policy)})))
        text = "" if answer.abstained else answer.text
        f1s.append(max(token_f1(CITATION.sub("", text), g) for g in gold))
        if not answer.abstained:
            answered += 1
            sentences = quoted_sentences(text)
            quoted += len(sentences)
            complete += sum(bool(COMPLETE.match(s)) for s in sentences)
        abstained += project.ask(question, help_desk).abstained
    n = len(items)
    return {"questions": n, "f1": 100 * sum(f1s) / n, "complete": 100 * complete / max(1, quoted),
            "sentences": quoted / max(1, answered), "answered": 100 * answered / n,
            "abstain_unreadable": 100 * abstained / n}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--label", required=True, help="the row's name, e.g. 'before (e28f866)' or 'after'")
    ap.add_argument("--every", type=int, default=4, help="ask every N-th question (default 4)")
    ap.add_argument("--limit", type=int, default=None, help="only the first N questions (no docs row written)")
    args = ap.parse_args(argv)
    policies = load_policies(data_dir() / "policyqa" / "dev.json")
    items = [(p, q.question, [" ".join(a.split()) for a in q.answers]) for p in policies for q in p.questions]
    items = items[:: args.every][: args.limit]
    intro = (f"PolicyQA dev, every {args.every}th question with a whole-word gold answer ({len(items)} of them); the "
             "default extractive answerer (no generator). *As written*: the policies' paragraphs one per line; "
             "*wrapped*: every paragraph hard-wrapped at 80 columns. Complete sentences: quoted sentences that "
             "begin like a sentence and end with . ! or ?. Abstention: the same questions asked by a user who may "
             "read only the help-centre articles. *before* rows: this script on the answerer and sentence rules "
             "of commit e28f866 (`--label 'before (e28f866)'`); the answerer's thresholds were chosen on the "
             "questions in between (offset 2, every 4th), never on these. "
             f"Machine: {machine()}.")
    for wrapped in (False, True):
        corpus = "wrapped at 80 columns" if wrapped else "as written"
        root = cache_dir("answers", "wrapped" if wrapped else "plain")
        figures = measure(build(root, policies, wrapped), items)
        emit("answers", label=args.label, corpus=corpus, **{k: round(v, 2) for k, v in figures.items()})
        if args.limit:
            continue
        key = f"{args.label}, {corpus}"
        write_row(SECTION, key,
                  f"| {key} | {figures['f1']:.1f} | {figures['complete']:.1f} % | {figures['sentences']:.2f} | "
                  f"{figures['answered']:.1f} % | {figures['abstain_unreadable']:.1f} % |",
                  header=["code, corpus", "token-F1", "complete sentences", "sentences per answer", "answered",
                          "abstained, no readable policy"],
                  command=command_line(), intro=intro)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
