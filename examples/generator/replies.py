"""The support reply as free text in a fixed house style: a customer message and the matching help article in,
the reply a support agent would send out.

The house style (checked by :func:`house_style_problems`; an empty list means the reply complies):

1. The first line is exactly ``Hi there,``.
2. Then a blank line and the body: one paragraph (a single line) of 2 to 3 sentences and 40 to 90 words (a word
   is a whitespace-separated token with a letter or digit in it), ending with a full stop.
3. The body answers that customer's message from the help article only, speaks to the customer as "you" and
   for the team as "we" (never "I", "me" or "my"), with no exclamation mark and no Markdown (no ``*``, ``#``,
   backticks or list items).
4. Then a blank line and ``See: <the article's title>``, the title exactly as in the article's front matter.
5. The last line is exactly ``— Support team`` (an em dash).

So a reply is six lines: greeting, blank, body, blank, ``See:`` line, sign-off. A base model asked for this in
the system prompt still writes its own greeting, length and sign-off most of the time: the format is what
fine-tuning has to teach, and ROUGE-L against the references measures the wording.

Data: ``replies_references.jsonl`` beside this file, one line per reference, ``{"intent", "message",
"article", "reply"}``: 15 customer messages for each of the 8 intents of the banking77 slice in
``examples/data/banking77/`` (texts unchanged; banking77 is CC BY 4.0, Casanueva et al. 2020, see that
folder's SOURCE.md), each with a reply written by hand by the ragtune authors from the intent's help article in
``examples/data/help/articles/`` (sample articles, Apache-2.0, the project's) and from nothing else: no fee, time
limit or feature the article does not state. The replies are released with the project under Apache-2.0.

The chat examples give the system prompt (:data:`SYSTEM`, the house style in short), then the article (its
Markdown body, title heading included) and the message as the user turn; the reference reply is the assistant
turn. The split is by customer message, seeded: :data:`TEST_PER_INTENT` messages of each intent are held out.
Run this file to rebuild ``replies_train.jsonl`` and ``replies_test.jsonl`` from the references:

    .venv/bin/python examples/generator/replies.py
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

from ragtune.errors import DataError
from ragtune.tuning.jsonl import jsonl_rows, read_utf8

HERE = Path(__file__).resolve().parent
ARTICLES = HERE.parent / "data" / "help" / "articles"
REFERENCES = HERE / "replies_references.jsonl"
TRAIN_FILE, TEST_FILE = "replies_train.jsonl", "replies_test.jsonl"
TEST_PER_INTENT = 4
SEED = 0

GREETING = "Hi there,"
SEE = "See: "
SIGN_OFF = "\u2014 Support team"
MIN_WORDS, MAX_WORDS = 40, 90
MIN_SENTENCES, MAX_SENTENCES = 2, 3
SHORT_LINE = 6  # words: a greeting or sign-off in the wrong words is still read as one

ARTICLE_OF = {
    "card_arrival": "card-arrival",
    "cash_withdrawal_charge": "cash-withdrawal-fees",
    "exchange_rate": "exchange-rates",
    "lost_or_stolen_card": "lost-or-stolen-card",
    "pin_blocked": "pin-blocked",
    "request_refund": "refunds",
    "top_up_failed": "top-up",
    "verify_my_identity": "verify-identity",
}
"""The help article (file stem in ``examples/data/help/articles``) that answers each intent."""

SYSTEM = ("You write replies for a bank's support team, using only the facts in the help article given. House "
          "style: the first line is exactly \"Hi there,\"; then a blank line and one paragraph of 2 to 3 sentences "
          "(40 to 90 words) that answers the customer's message, speaking to the customer as \"you\" and for the "
          "team as \"we\", with no exclamation marks; then a blank line and \"See: \" followed by the article's "
          "title; the last line is exactly \"\u2014 Support team\".")

_WORD = re.compile(r"\S*[^\W_]\S*")
_SENTENCE_END = re.compile(r"[.?!](?=\s|$)")
_YOU = re.compile(r"\byou(?:r|rs|rself)?\b", re.IGNORECASE)
_FIRST_PERSON = re.compile(r"\bI\b|\b(?:me|my|mine|myself)\b", re.IGNORECASE)
_MARKDOWN = re.compile(r"[*#`]|^\s*(?:[-\u2022]|\d+[.)])\s", re.MULTILINE)


# ---------------------------------------------------------------- articles


def _split_front_matter(stem: str) -> tuple[str, str]:
    """(front matter, Markdown body) of the article ``stem``."""
    path = ARTICLES / f"{stem}.md"
    text = path.read_text(encoding="utf-8")
    if not text.startswith("---\n") or "\n---\n" not in text[4:]:
        raise DataError(f"{path}: no front matter (--- title: ... ---)")
    front, body = text[4:].split("\n---\n", 1)
    return front, body.strip()


def article_title(stem: str) -> str:
    """The ``title`` in the front matter of the help article ``stem`` (what a reply's ``See:`` line names)."""
    path = ARTICLES / f"{stem}.md"
    front, _ = _split_front_matter(stem)
    for line in front.splitlines():
        if line.startswith("title:"):
            return line.removeprefix("title:").strip()
    raise DataError(f"{path}: no title in the front matter")


def article_text(stem: str) -> str:
    """The help article ``stem`` as the model reads it: its Markdown body (title heading included)."""
    return _split_front_matter(stem)[1]


# ---------------------------------------------------------------- the house style


@dataclass(frozen=True)
class _Parts:
    """A reply cut into the house style's slots (see :func:`_parts`)."""

    greeting: str | None
    body: list[str]
    see: str | None
    closing: list[str]


def _short(line: str) -> bool:
    return 0 < len(line.split()) <= SHORT_LINE


def _parts(reply: str) -> _Parts:
    """The slots of a reply (leading and trailing whitespace ignored), found even when a slot is wrong so that
    each problem is reported once: the greeting is the first line when it is the house greeting or a short line
    followed by a blank one; the ``See:`` line is the last line starting with ``See:``; the closing is what
    follows it (without one, the last line when it is short); the body is what lies between."""
    lines = reply.strip().replace("\r\n", "\n").split("\n")
    start = 1 if lines[0] == GREETING or (len(lines) > 2 and not lines[1].strip() and _short(lines[0])) else 0
    see_at = next((i for i in range(len(lines) - 1, start - 1, -1) if lines[i].startswith("See:")), None)
    if see_at is not None:
        return _Parts(lines[0] if start else None, lines[start:see_at], lines[see_at], lines[see_at + 1:])
    end = len(lines) - 1 if len(lines) - start > 1 and _short(lines[-1]) else len(lines)
    return _Parts(lines[0] if start else None, lines[start:end], None, lines[end:])


def body_text(reply: str) -> str:
    """The reply's body as one paragraph: the lines between the greeting and the ``See:`` line or sign-off
    (the whole reply when it has none of them), joined."""
    return " ".join(line.strip() for line in _parts(reply).body if line.strip())


def body_words(reply: str) -> int:
    """The number of words in the reply's body (whitespace-separated tokens with a letter or digit in them)."""
    return len(_WORD.findall(body_text(reply)))


def house_style_problems(reply: str, article_title: str) -> list[str]:
    """Why ``reply`` breaks the house style (see the module docstring), one ``kind: detail`` line per problem;
    an empty list when it complies. ``article_title``: the front-matter title the ``See:`` line must name.
    Leading and trailing whitespace around the whole reply is ignored."""
    problems: list[str] = []
    parts = _parts(reply)
    if parts.greeting != GREETING:
        first = reply.strip().split("\n", 1)[0]
        problems.append(f"greeting: the first line must be exactly {GREETING!r}, not {first[:40]!r}")
    lines = parts.body
    if len(lines) != 3 or lines[0].strip() or lines[2].strip() or not lines[1].strip():
        problems.append("layout: the body must be one paragraph on one line, with a blank line before and after "
                        f"it (found {sum(1 for ln in lines if ln.strip())} non-blank line(s) in {len(lines)})")
    body = body_text(reply)
    words = len(_WORD.findall(body))
    if not MIN_WORDS <= words <= MAX_WORDS:
        problems.append(f"length: the body has {words} words; the house style is {MIN_WORDS} to {MAX_WORDS}")
    sentences = len(_SENTENCE_END.findall(body))
    if body and not MIN_SENTENCES <= sentences <= MAX_SENTENCES:
        problems.append(f"sentences: the body has {sentences} sentence(s); the house style is {MIN_SENTENCES} "
                        f"to {MAX_SENTENCES}")
    if body and not body.endswith("."):
        problems.append(f"full stop: the body must end with a full stop, not {body[-1:]!r}")
    if "!" in reply:
        problems.append("exclamation: no exclamation marks")
    if body and not _YOU.search(body):
        problems.append("second person: the body must speak to the customer as 'you'")
    mine = _FIRST_PERSON.search(body)
    if mine:
        problems.append(f"first person: the team writes as 'we', not {mine[0]!r}")
    if _MARKDOWN.search("\n".join(parts.body)):
        problems.append("markdown: plain text only (no *, #, backticks or list items)")
    if parts.see is None:
        problems.append(f"see: no {SEE + article_title!r} line before the sign-off")
    elif parts.see != SEE + article_title:
        problems.append(f"see: {parts.see!r} must be exactly {SEE + article_title!r}")
    if parts.closing != [SIGN_OFF]:
        got = " / ".join(parts.closing) or "nothing"
        problems.append(f"sign-off: the last line must be exactly {SIGN_OFF!r}, after the See: line (got "
                        f"{got[:40]!r})")
    return problems


def compliant(reply: str, article_title: str) -> bool:
    """Whether ``reply`` follows the house style (:func:`house_style_problems` finds nothing)."""
    return not house_style_problems(reply, article_title)


# ---------------------------------------------------------------- references and chat files


@dataclass(frozen=True)
class Reference:
    """One hand-written reference: a banking77 message of ``intent``, the help ``article`` (file stem) that
    answers it and the ``reply`` in the house style. ``where``: ``file:line``."""

    intent: str
    message: str
    article: str
    reply: str
    where: str = ""


def load_references(path: Path = REFERENCES) -> list[Reference]:
    """The references in ``path``, in file order. DataError naming ``file:line`` for a line that is not a JSON
    object with the four fields, an unknown intent, or an article other than the intent's."""
    out: list[Reference] = []
    for _, where, row in jsonl_rows(path, read_utf8(path)):
        fields = ("intent", "message", "article", "reply")
        if not isinstance(row, dict) or any(not isinstance(row.get(k), str) or not row[k] for k in fields):
            raise DataError(f"{where}: expected an object with non-empty strings {', '.join(fields)}")
        if row["intent"] not in ARTICLE_OF:
            raise DataError(f"{where}: unknown intent {row['intent']!r}; known: {', '.join(ARTICLE_OF)}")
        if row["article"] != ARTICLE_OF[row["intent"]]:
            raise DataError(f"{where}: intent {row['intent']} is answered by {ARTICLE_OF[row['intent']]!r}, not "
                             f"{row['article']!r}")
        out.append(Reference(row["intent"], row["message"], row["article"], row["reply"], where))
    return out


def user_turn(message: str, article: str) -> str:
    """The user turn of an example: the help article, then the customer's message."""
    return f"Help article:\n{article_text(article)}\n\nCustomer message:\n{message}"


def chat_line(ref: Reference) -> str:
    """One example in OpenAI's chat fine-tuning format."""
    return json.dumps({"messages": [{"role": "system", "content": SYSTEM},
                                    {"role": "user", "content": user_turn(ref.message, ref.article)},
                                    {"role": "assistant", "content": ref.reply}]}, ensure_ascii=False)


def split(refs: list[Reference], per_intent: int = TEST_PER_INTENT, seed: int = SEED
          ) -> tuple[list[Reference], list[Reference]]:
    """(train, test): ``per_intent`` seeded messages of each intent held out, each side in file order. The unit
    is the message, so a message is never on both sides."""
    rng = random.Random(seed)
    held: set[str] = set()
    for intent in sorted({r.intent for r in refs}):
        messages = sorted({r.message for r in refs if r.intent == intent})
        rng.shuffle(messages)
        held.update(messages[:per_intent])
    return [r for r in refs if r.message not in held], [r for r in refs if r.message in held]


def write_jsonl(path: Path, refs: list[Reference]) -> Path:
    """``refs`` as chat JSONL at ``path``."""
    path.write_text("".join(chat_line(r) + "\n" for r in refs), encoding="utf-8")
    return path


def build(folder: Path, references: Path = REFERENCES) -> tuple[Path, Path]:
    """Write the train and test chat files built from ``references`` into ``folder``; returns their paths."""
    train, test = split(load_references(references))
    return write_jsonl(folder / TRAIN_FILE, train), write_jsonl(folder / TEST_FILE, test)


def main() -> None:
    train, test = build(HERE)
    print(f"wrote {train} and {test}")


if __name__ == "__main__":
    main()
