"""The free-text house-style reply task (``examples/generator/replies.py``): every hand-written reference follows
the house style of its article, the checker flags each kind of violation, and the committed chat files are what
the module builds, load as generator data and split cleanly by message (no model is loaded)."""

from __future__ import annotations

import csv
import importlib.util
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest

from ragtune.errors import DataError
from ragtune.tuning.generator.audit import audit_examples
from ragtune.tuning.generator.data import load_gen_examples

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "examples" / "generator"
SLICE = ROOT / "examples" / "data" / "banking77"


def _load_task() -> ModuleType:
    spec = importlib.util.spec_from_file_location("replies_task", EXAMPLES / "replies.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


task = _load_task()
TITLE = "Lost or stolen card"
BODY = ("Freeze your card at once in the app under Cards > Freeze, because a frozen card cannot be used for "
        "payments. Then report it as lost in the app to cancel it permanently and order a replacement, and our "
        "card security team reviews any payments you do not recognise.")
GOOD = f"Hi there,\n\n{BODY}\n\nSee: {TITLE}\n\u2014 Support team"


def kinds(reply: str, title: str = TITLE) -> set[str]:
    """The kinds of problem (the text before the first colon) the checker finds in ``reply``."""
    return {p.split(":", 1)[0] for p in task.house_style_problems(reply, title)}


def test_every_reference_follows_the_house_style_of_its_article() -> None:
    refs = task.load_references()
    assert len(refs) >= 120
    assert Counter(r.intent for r in refs) == {intent: 15 for intent in task.ARTICLE_OF}
    assert len({r.message for r in refs}) == len(refs)  # one reply per customer message
    for ref in refs:
        title = task.article_title(ref.article)
        assert task.house_style_problems(ref.reply, title) == [], ref.where
        assert task.compliant(ref.reply, title)
        assert ref.reply.splitlines()[4] == f"See: {title}"
    titles = {task.article_title(stem) for stem in task.ARTICLE_OF.values()}
    assert "When will my new card arrive?" in titles and len(titles) == 8


def test_every_message_is_a_banking77_message_of_its_intent() -> None:
    labelled: set[tuple[str, str]] = set()
    for split in ("train", "test"):
        with (SLICE / f"{split}.csv").open(encoding="utf-8") as fh:
            labelled |= {(row["text"], row["category"]) for row in csv.DictReader(fh)}
    refs = task.load_references()
    missing = [r.where for r in refs if (r.message, r.intent) not in labelled]
    assert missing == []


def test_the_checker_accepts_a_good_reply_and_counts_its_body() -> None:
    assert task.house_style_problems(GOOD, TITLE) == []
    assert task.house_style_problems("\n" + GOOD + "\n\n", TITLE) == []  # surrounding whitespace is ignored
    assert task.body_text(GOOD) == BODY
    assert task.body_words(GOOD) == 48 and task.body_words("Cards > Freeze now.") == 3  # '>' is not a word


@pytest.mark.parametrize(("reply", "expected"), [
    (GOOD.replace("Hi there,", "Hello,"), {"greeting"}),
    (GOOD.replace("Hi there,", "Hi there!"), {"greeting", "exclamation"}),
    (GOOD.replace("Hi there,\n\n", ""), {"greeting", "layout"}),
    (GOOD.replace("\u2014 Support team", "- Support team"), {"sign-off"}),
    (GOOD.replace("\u2014 Support team", "Best regards,\nSupport team"), {"sign-off"}),
    (GOOD.removesuffix("\n\u2014 Support team"), {"sign-off"}),
    (GOOD.replace(f"See: {TITLE}", "See: Lost card"), {"see"}),
    (GOOD.replace(f"See: {TITLE}", f"See: {TITLE}."), {"see"}),
    (GOOD.replace(f"See: {TITLE}\n", ""), {"see"}),
    (GOOD.replace("payments.", "payments!"), {"exclamation"}),
    (GOOD.replace("replacement, and", "replacement! And"), {"exclamation"}),  # 3 sentences: '!' ends one
    (GOOD.replace(BODY, "Freeze your card in the app. Then report it as lost."), {"length"}),
    (GOOD.replace("payments.", "payments, " + "and you can do this at once " * 8 + "in the app."), {"length"}),
    (GOOD.replace(BODY, BODY + " We review them. Cards > Freeze works."), {"sentences"}),
    (GOOD.replace(BODY, BODY.replace("payments. Then", "payments, and then")), {"sentences"}),
    (GOOD.replace("recognise.", "recognise"), {"full stop", "sentences"}),
    (GOOD.replace("recognise.", "recognise?"), {"full stop"}),
    (GOOD.replace("Freeze your card", "I would freeze your card"), {"first person"}),
    (GOOD.replace("any payments you", "any payments my team and you"), {"first person"}),
    (GOOD.replace("your card", "the card").replace("you do not", "nobody can"), {"second person"}),
    (GOOD.replace("Cards > Freeze", "**Cards > Freeze**"), {"markdown"}),
    (GOOD.replace(" Then", "\n- Then"), {"markdown", "layout"}),
    (GOOD.replace("Hi there,\n\n", "Hi there,\n"), {"layout"}),
    (GOOD.replace(" Then", "\n\nThen"), {"layout"}),
])
def test_the_checker_flags_each_kind_of_violation(reply: str, expected: set[str]) -> None:
    assert kinds(reply) == expected, task.house_style_problems(reply, TITLE)
    assert not task.compliant(reply, TITLE)


def test_a_typical_base_model_reply_breaks_several_rules() -> None:
    reply = ("Dear customer,\n\nI'm sorry to hear that! Please freeze your card in the app.\n\nBest regards,\n"
             "The Support Team")
    assert {"greeting", "layout", "length", "exclamation", "first person", "see", "sign-off"} <= kinds(reply)
    assert kinds("") >= {"greeting", "length", "see", "sign-off"}


def test_the_committed_chat_files_are_what_main_builds(tmp_path: Path) -> None:
    train_path, test_path = task.build(tmp_path)
    assert train_path.read_bytes() == (EXAMPLES / task.TRAIN_FILE).read_bytes()
    assert test_path.read_bytes() == (EXAMPLES / task.TEST_FILE).read_bytes()


def test_the_chat_files_load_and_split_by_message() -> None:
    train = load_gen_examples(EXAMPLES / task.TRAIN_FILE)
    test = load_gen_examples(EXAMPLES / task.TEST_FILE)
    refs = task.load_references()
    ref_train, ref_test = task.split(refs)
    assert (len(train), len(test)) == (len(ref_train), len(ref_test)) == (88, 32)
    assert {r.message for r in ref_train}.isdisjoint(r.message for r in ref_test)
    assert {e.prompt_key() for e in train}.isdisjoint(e.prompt_key() for e in test)
    assert Counter(r.intent for r in ref_test) == {intent: task.TEST_PER_INTENT for intent in task.ARTICLE_OF}
    assert {r.intent for r in ref_train} == set(task.ARTICLE_OF)
    for example, ref in zip([*train, *test], [*ref_train, *ref_test], strict=True):
        assert example.target == ref.reply
        assert example.prompt[0] == ("system", task.SYSTEM)
        assert example.user_text.endswith("Customer message:\n" + ref.message)
        assert task.article_text(ref.article) in example.user_text
        assert f"# {task.article_title(ref.article)}" in example.user_text  # the title the reply must cite
    audit = audit_examples(train, test, None)
    assert not audit.blocking and not audit.leakage and not audit.duplicates and not audit.conflicts
    assert task.split(refs, seed=1) != (ref_train, ref_test)  # the seed decides the held-out messages


def test_a_malformed_reference_names_its_line(tmp_path: Path) -> None:
    good = (EXAMPLES / "replies_references.jsonl").read_text(encoding="utf-8").splitlines()[0]
    for bad, message in [("{", "not valid JSON"), ('{"intent": "card_arrival"}', "non-empty strings"),
                         (good.replace('"card_arrival"', '"atm_support"'), "unknown intent"),
                         (good.replace('"card-arrival"', '"refunds"'), "is answered by 'card-arrival'")]:
        path = tmp_path / "refs.jsonl"
        path.write_text(good + "\n\n" + bad + "\n", encoding="utf-8")
        with pytest.raises(DataError, match=f"refs.jsonl:3: .*{message}"):
            task.load_references(path)
