"""The guide's answers: read and validate a YAML answers file, merge it with flags, prompt for what is missing,
or read the answers off the data of an evidence run. Every problem is one ``ConfigError`` line.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import ValidationError

from ragtune.advisor.questions import QUESTION_BY_KEY, QUESTIONS, GuideAnswers, KnowledgeChange, Task
from ragtune.errors import ConfigError
from ragtune.validation import clean_message, closest, unknown_key

if TYPE_CHECKING:
    from ragtune.advisor.report import Evidence

# The `ragtune advise` flag of each answer, for the "missing answer(s)" message.
FLAGS = {
    "task": "--task", "knowledge_change": "--knowledge-change", "citations": "--citations/--no-citations",
    "structured_output": "--structured-output/--no-structured-output", "examples_per_class": "--examples-per-class",
    "fast_iteration": "--fast-iteration/--no-fast-iteration", "latency_ms": "--latency-ms",
    "regulated": "--regulated/--no-regulated",
}


KEYS = [q.key for q in QUESTIONS]
# A complete, valid set of answers: `parse_answer` validates one answer in its place, exactly as in a file.
_FILLER: dict[str, Any] = {"task": "classification", "knowledge_change": "never", "citations": False,
                           "structured_output": False, "examples_per_class": 0, "fast_iteration": False,
                           "latency_ms": 0, "regulated": False}


def _key(raw: Any) -> str:
    return str(raw).strip().replace("-", "_")


def parse_answers(data: Mapping[str, Any], source: str = "answers") -> GuideAnswers:
    """Validate a mapping of answers (keys may use - or _); every problem becomes one ``ConfigError`` line."""
    normalised = {_key(k): v for k, v in data.items()}
    try:
        return GuideAnswers.model_validate(normalised)
    except ValidationError as exc:
        raise ConfigError(f"{source}: " + "; ".join(_describe(e) for e in exc.errors())) from exc


def parse_answer(key: str, value: Any) -> Any:
    """One answer validated by the same rules as an answers file and the flags (``Answer_Generation``,
    ``YES``, ``no``, ``"0"``…); raises ``ConfigError`` with the message ``parse_answers`` would give."""
    value = value.strip() if isinstance(value, str) else value
    try:
        return getattr(GuideAnswers.model_validate({**_FILLER, key: value}), key)
    except ValidationError as exc:
        raise ConfigError("; ".join(_describe(e) for e in exc.errors())) from exc


def check_keys(data: Mapping[str, Any], source: str) -> None:
    """Refuse keys that are not questions, naming each with the closest valid key (one ``ConfigError``)."""
    bad = [str(k) for k in data if _key(k) not in QUESTION_BY_KEY]
    if not bad:
        return
    named = []
    for key in bad:
        guess = closest(_key(key), KEYS)
        named.append(f"{key!r}" + (f" (did you mean {guess!r}?)" if guess else ""))
    raise ConfigError(f"{source}: unknown key{'s' if len(bad) > 1 else ''} {', '.join(named)}; "
                      f"valid keys: {', '.join(KEYS)}")


def _describe(error: Any) -> str:
    key = str(error["loc"][0]) if error["loc"] else ""
    if error["type"] == "extra_forbidden":
        return unknown_key(key, KEYS)
    q = QUESTION_BY_KEY.get(key)
    if error["type"] == "missing":
        return f"missing answer {key!r} ({q.text if q else key}): add `{key}: ...` ({q.hint if q else ''})"
    hint = f" — give {q.hint}" if q else ""
    return f"{key}: {error['input']!r} is not valid ({clean_message(error['msg'])}){hint}"


def read_answers_file(path: Path) -> dict[str, Any]:
    """The raw mapping in a YAML answers file (possibly incomplete; the CLI fills the gaps)."""
    if not path.is_file():
        raise ConfigError(f"answers file {path} not found: give the path of a YAML file of answers "
                          "(examples in examples/advisor/)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(exc).split())}): fix the syntax") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a UTF-8 text file: give a YAML file of answers") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected `key: value` answers (keys: {', '.join(KEYS)}), "
                          f"got a {type(data).__name__}")
    check_keys(data, str(path))  # a typo is named here, before anything is missing or asked for
    return data


def load_answers(path: str | Path) -> GuideAnswers:
    """Load and validate a complete YAML answers file; any problem is one ``ConfigError`` line."""
    path = Path(path)
    return parse_answers(read_answers_file(path), str(path))


def prompt_text(key: str) -> str:
    """The question as prompted, with the answers it takes."""
    q = QUESTION_BY_KEY[key]
    if key in ("task", "knowledge_change"):
        kind = Task if key == "task" else KnowledgeChange
        return f"{q.text} ({'/'.join(k.value for k in kind)})"
    if key == "examples_per_class":
        return f"{q.text} (0 = none)"
    if key == "latency_ms":
        return f"{q.text} (0 = no strict budget)"
    return f"{q.text} (yes/no)"


def ask_answer(key: str) -> Any:
    """Prompt for one answer until it is valid, reading it with ``parse_answer`` (the answers file's rules:
    any case, ``yes``/``no``/``true``/``false``). Prompts go to stderr and nothing is echoed to stdout, so
    ``--json`` output stays clean."""
    from rich.console import Console
    from rich.markup import escape
    from rich.prompt import Prompt

    console = Console(stderr=True)
    while True:
        raw = Prompt.ask(escape(prompt_text(key)), console=console)
        try:
            return parse_answer(key, raw)
        except ConfigError as exc:
            console.print(f"[prompt.invalid]{escape(str(exc))}")


def collect_answers(answers_file: Path | None, flags: Mapping[str, Any], interactive: bool,
                    ask: Callable[[str], Any] = ask_answer) -> dict[str, Any]:
    """Merge the answers file, then flags (which win), then ``ask`` for the rest when ``interactive``."""
    data: dict[str, Any] = {}
    if answers_file is not None:
        data.update({_key(k): v for k, v in read_answers_file(answers_file).items()})
    data.update({k: v for k, v in flags.items() if v is not None})
    missing = [q.key for q in QUESTIONS if q.key not in data]
    if missing and not interactive:
        raise ConfigError(
            f"missing answer(s): {', '.join(missing)}; give them as flags ("
            + ", ".join(FLAGS[k] for k in missing)
            + ") or in --answers FILE.yaml (see examples/advisor/), or run in a terminal to be asked")
    for key in missing:
        data[key] = ask(key)
    return data


def evidence_run_answers(answers_file: Path | None, flags: Mapping[str, Any]) -> GuideAnswers | None:
    """The guide answers given with an evidence run: all of them or none (never prompted: it may be automated)."""
    given = {k: v for k, v in flags.items() if v is not None}
    if answers_file is None and not given:
        return None
    data = {_key(k): v for k, v in read_answers_file(answers_file).items()} if answers_file is not None else {}
    data.update(given)
    missing = [q.key for q in QUESTIONS if q.key not in data]
    if missing:
        raise ConfigError(f"guide answers are incomplete (missing: {', '.join(missing)}); give all of them "
                          "with the evidence options, or none")
    return parse_answers(data, str(answers_file or "flags"))


def inferred_answers(evidence: Evidence) -> GuideAnswers:
    """Guide answers read off the data, for the next steps and the starting pipeline of an evidence run."""
    if evidence.labels is not None and evidence.qa is not None:
        task = Task.ANSWER_AND_CLASSIFICATION
    elif evidence.labels is not None:
        task = Task.CLASSIFICATION
    else:
        task = Task.ANSWER_GENERATION
    weekly = evidence.corpus is not None and evidence.corpus.knowledge_changes_weekly
    per_class = min(evidence.label_audit.class_counts.values()) if evidence.label_audit is not None else 0
    return parse_answers({
        "task": task, "knowledge_change": KnowledgeChange.WEEKLY if weekly else KnowledgeChange.MONTHLY,
        "citations": evidence.qa is not None, "structured_output": False, "examples_per_class": per_class,
        "fast_iteration": False, "latency_ms": 0, "regulated": False,
    }, "the data")
