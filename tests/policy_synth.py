"""A regular synthetic reading task shaped like a privacy policy (a retention period, a contact address and an
effective date among filler sentences), for the tests that train a tiny span reader on it (``ragtune extract``,
``answer.kind: reader``), and a Markdown policy document with ACL front matter."""

from __future__ import annotations

import random

from ragtune.tuning.reader.data import ReaderExample

FILLER = ["Our service helps teams share documents.", "We care about the people who use our website.",
          "Cookies help us remember your settings.", "The company is based in a small town.",
          "You can change your preferences at any time.", "This page explains our practices in plain words.",
          "Security matters to every member of our staff.", "We review this policy from time to time."]
NAMES = ["acme", "globex", "initech", "umbrella", "hooli", "vandelay", "stark", "wayne", "tyrell", "wonka"]
MONTHS = ["January", "February", "March", "April", "June", "July", "September", "October", "November", "December"]
QUESTIONS = {"retention": ["How long is data retained?", "How long do you keep my information?"],
             "contact": ["What email address can I contact about privacy?"],
             "effective": ["When does this policy take effect?"]}


def retention(n: int, unit: str) -> str:
    return f"Data is retained for {n} {unit}."


def contact(name: str) -> str:
    return f"Questions about privacy go to privacy@{name}.example for an answer."


def effective(date: str) -> str:
    return f"This policy is effective as of {date}."


def synthetic_examples(n: int, seed: int = 0) -> list[ReaderExample]:
    """``n`` passages of three filler sentences and most of the three facts, each asked all three questions."""
    rng, out = random.Random(seed), []
    for i in range(n):
        num, unit = rng.choice([7, 14, 30, 45, 60, 90, 120, 180, 365]), rng.choice(["days", "months", "years"])
        name = rng.choice(NAMES)
        date = f"{rng.choice(MONTHS)} {rng.randint(1, 28)}, {rng.randint(2010, 2024)}"
        facts = {"retention": (retention(num, unit), f"{num} {unit}"),
                 "contact": (contact(name), f"privacy@{name}.example"), "effective": (effective(date), date)}
        kept = [k for k in facts if rng.random() < 0.8]
        sentences = rng.sample(FILLER, 3) + [facts[k][0] for k in kept]
        rng.shuffle(sentences)
        passage = " ".join(sentences)
        for key, phrasings in QUESTIONS.items():
            answers = ((passage.index(facts[key][1]), facts[key][1]),) if key in kept else ()
            out.append(ReaderExample(rng.choice(phrasings), passage, answers, f"{i}-{key}", str(i)))
    return out


def policy(title: str, acl: str | None, *sentences: str) -> str:
    front = f"---\ntitle: {title}\n" + (f"acl: {acl}\n" if acl else "") + "---\n"
    return front + f"# {title}\n\n" + " ".join(sentences) + "\n"
