"""Labelled (sentence, evidence) pairs for the groundedness checker: BEGIN and SciFact readers, group splits.

BEGIN (Dziri et al., 2022) rates dialogue responses against the knowledge snippet they were generated from.
Label mapping:

- ``Fully attributable`` -> supported: every claim of the response is in the knowledge.
- ``Not fully attributable`` -> unsupported: at least part of the response is not in the knowledge.
- ``Generic`` -> dropped: chit-chat ("haha", "me too") makes no claim about the knowledge. Calling it
  unsupported would teach the checker to flag harmless filler; calling it supported would teach it that a
  text sharing nothing with the evidence is fine. Neither is what checking a RAG answer sentence needs.

SciFact (Wadden et al., 2020) pairs a scientific claim with rationale sentences of an abstract: SUPPORT
rationales are supported pairs, CONTRADICT rationales are unsupported pairs (the evidence states the opposite),
and ``negatives_per_rationale`` other sentences of the same abstract, not part of any rationale for the claim,
are unsupported pairs too (on topic, but they do not state the claim — like an answer sentence citing the
right document for the wrong statement).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import random
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ragtune.errors import DataError

SUPPORTED = "supported"
UNSUPPORTED = "unsupported"
BEGIN_LABELS = {"fully attributable": SUPPORTED, "not fully attributable": UNSUPPORTED, "generic": None}
BEGIN_COLUMNS = ("knowledge", "response", "begin_label")
SCIFACT_SPLITS = ("claims_train.csv", "claims_validation.csv")  # the test claims carry no labels
SCIFACT_CORPUS = ("corpus_sentences.jsonl", "corpus_sentences.jsonl.gz")  # the release's, or a gzipped subset
VALIDATION_FRACTION = 0.2  # of the BEGIN groups left after the test split: the combiner and threshold are fitted here
TEST_FRACTION = 0.2  # of every source's groups: held out from training and every choice, for the model card
PACKAGED = ("data", "groundedness")  # inside the ragtune package: begin/*.tsv, scifact/original/, their licenses
_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class LabelledPair:
    """A sentence, the evidence it is checked against, and whether the evidence supports it.

    ``group`` ties pairs that share evidence, so splits can keep a knowledge text on one side only;
    ``source`` names the data set (``begin/wow``, ``begin/cmu``, ``scifact``); ``kind`` the original
    annotation (BEGIN's label; SciFact's ``support``, ``contradict`` or ``other`` for a non-rationale sentence).
    """

    sentence: str
    evidence: str
    label: str
    group: str
    source: str
    kind: str = ""

    @property
    def supported(self) -> bool:
        """Whether the label is ``supported``."""
        return self.label == SUPPORTED


def packaged_data_dir() -> Path:
    """The BEGIN and SciFact pairs shipped with ragtune (``ragtune/data/groundedness``), with their licenses.

    It has the layout :func:`load_training_pairs` reads; see its ``README.md`` for sources and licenses."""
    folder = Path(str(resources.files("ragtune").joinpath(*PACKAGED)))
    if not (folder / "begin").is_dir():
        raise DataError(f"the groundedness data packaged with ragtune is missing ({folder}): reinstall ragtune, "
                        "or pass a folder holding begin/*.tsv and/or scifact/original/ with --data")
    return folder


def begin_files(folder: Path) -> list[Path]:
    """The BEGIN TSV files in ``folder`` (or in its ``begin/`` subfolder)."""
    folder = Path(folder)
    for candidate in (folder / "begin", folder):
        files = sorted(candidate.glob("*.tsv")) if candidate.is_dir() else []
        if files:
            return files
    return []


def load_begin(files: Iterable[Path], generic: str = "drop") -> list[LabelledPair]:
    """Read BEGIN TSV files (columns knowledge, response, begin_label) as pairs.

    ``generic``: ``drop`` (default; see the module docstring) or ``unsupported``. Each pair's group is the
    group of its knowledge text (see :func:`knowledge_groups`).
    """
    if generic not in ("drop", "unsupported"):
        raise DataError(f"generic must be 'drop' or 'unsupported', not {generic!r}")
    rows: list[tuple[str, str, str, str, str]] = []  # knowledge, response, label, source, original label
    for path in files:
        path = Path(path)
        if not path.is_file():
            raise DataError(f"BEGIN file not found: {path}")
        with path.open(encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
            missing = [c for c in BEGIN_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise DataError(f"{path}: not a BEGIN file, missing column(s) {', '.join(missing)} "
                                f"(expected {', '.join(BEGIN_COLUMNS)}, tab-separated)")
            for n, row in enumerate(reader, start=2):
                raw = (row["begin_label"] or "").strip()
                if raw.lower() not in BEGIN_LABELS:
                    raise DataError(f"{path} line {n}: unknown begin_label {raw!r} (expected one of: "
                                    "Fully attributable, Not fully attributable, Generic)")
                label = BEGIN_LABELS[raw.lower()]
                if label is None:
                    if generic == "drop":
                        continue
                    label = UNSUPPORTED
                knowledge, response = (row["knowledge"] or "").strip(), (row["response"] or "").strip()
                if not knowledge or not response:
                    continue
                source = "begin/" + (row.get("data_source") or path.stem.split("_")[0]).strip()
                rows.append((knowledge, response, label, source, raw))
    groups = knowledge_groups([r[0] for r in rows])
    return [LabelledPair(response, knowledge, label, groups[knowledge], source, kind)
            for knowledge, response, label, source, kind in rows]


def knowledge_groups(texts: Sequence[str], ngram: int = 8) -> dict[str, str]:
    """Group id per distinct text: texts sharing any ``ngram``-word sequence are in one group (transitively).

    BEGIN's CMU-DoG snippets are overlapping sections of the same film article, and some WoW snippets repeat
    a sentence: grouping by exact text would leave shared passages on both sides of a split.
    """
    distinct = sorted(set(texts))
    parent = list(range(len(distinct)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first_with: dict[tuple[str, ...], int] = {}
    for i, text in enumerate(distinct):
        words = _WORD.findall(text.lower())
        grams = {tuple(words[j : j + ngram]) for j in range(max(1, len(words) - ngram + 1))}
        for g in grams:
            j = first_with.setdefault(g, i)
            if j != i:
                parent[find(i)] = find(j)
    # The group is named after its first text in sorted order, so ids do not depend on the union order.
    first: dict[int, int] = {}
    for i in range(len(distinct)):
        first.setdefault(find(i), i)
    return {text: "k" + hashlib.sha256(distinct[first[find(i)]].encode("utf-8")).hexdigest()[:12]
            for i, text in enumerate(distinct)}


def load_scifact(folder: Path, negatives_per_rationale: int = 1, seed: int = 0) -> list[LabelledPair]:
    """SciFact claim-verification pairs from ``folder`` (holding claims_train.csv, claims_validation.csv and
    corpus_sentences.jsonl, or a gzipped subset of it as corpus_sentences.jsonl.gz, i.e. ``scifact/original``)."""
    folder = Path(folder)
    corpus_path = next((folder / n for n in SCIFACT_CORPUS if (folder / n).is_file()), None)
    claim_files = [folder / name for name in SCIFACT_SPLITS if (folder / name).is_file()]
    if corpus_path is None or not claim_files:
        raise DataError(f"{folder}: not SciFact's original release (needs {' or '.join(SCIFACT_CORPUS)} and "
                        f"{' / '.join(SCIFACT_SPLITS)})")
    abstracts: dict[str, list[str]] = {}
    opener = gzip.open if corpus_path.suffix == ".gz" else open
    with opener(corpus_path, "rt", encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                doc = json.loads(line)
                abstracts[str(doc["doc_id"])] = [str(s) for s in doc["abstract"]]
    # (claim id, doc id) -> claim text and its rationale sets with their labels
    rationales: dict[tuple[str, str], tuple[str, list[tuple[list[int], str]]]] = {}
    for path in claim_files:
        with path.open(encoding="utf-8", newline="") as fh:
            for row in csv.DictReader(fh):
                label = (row.get("evidence_label") or "").strip().upper()
                if label not in ("SUPPORT", "CONTRADICT"):
                    continue
                doc_id = (row.get("evidence_doc_id") or "").strip()
                ids = [int(x) for x in re.findall(r"\d+", row.get("evidence_sentences") or "")]
                if doc_id not in abstracts or not ids:
                    continue
                key = (f"{path.stem}:{row['id']}", doc_id)
                rationales.setdefault(key, (row["claim"].strip(), []))[1].append((ids, label))
    rng = random.Random(seed)
    pairs: list[LabelledPair] = []
    seen: set[tuple[str, str]] = set()
    for (claim_id, doc_id), (claim, sets) in sorted(rationales.items()):
        sentences = abstracts[doc_id]
        group = f"scifact:{claim_id}"
        used = {i for ids, _ in sets for i in ids}
        for ids, label in sets:
            if any(i >= len(sentences) for i in ids):
                continue
            evidence = " ".join(sentences[i] for i in sorted(ids))
            if (claim, evidence) not in seen:
                seen.add((claim, evidence))
                pairs.append(LabelledPair(claim, evidence, SUPPORTED if label == "SUPPORT" else UNSUPPORTED,
                                          group, "scifact", label.lower()))
        others = [i for i in range(len(sentences)) if i not in used and len(_WORD.findall(sentences[i])) >= 5]
        for i in rng.sample(others, min(len(others), negatives_per_rationale * len(sets))):
            if (claim, sentences[i]) not in seen:
                seen.add((claim, sentences[i]))
                pairs.append(LabelledPair(claim, sentences[i], UNSUPPORTED, group, "scifact", "other"))
    return pairs


def load_training_pairs(folder: Path | None = None, generic: str = "drop", negatives_per_rationale: int = 1,
                        seed: int = 0) -> list[LabelledPair]:
    """Every pair found under ``folder``: BEGIN TSVs (``begin/*.tsv`` or ``*.tsv``) and SciFact
    (``scifact/original/``). At least one of the two must be there. ``None``: the packaged data
    (:func:`packaged_data_dir`)."""
    folder = packaged_data_dir() if folder is None else Path(folder)
    if not folder.is_dir():
        raise DataError(f"data folder not found: {folder} (expected begin/*.tsv and/or scifact/original/)")
    pairs: list[LabelledPair] = []
    files = begin_files(folder)
    if files:
        pairs += load_begin(files, generic=generic)
    scifact = folder / "scifact" / "original"
    if scifact.is_dir():
        pairs += load_scifact(scifact, negatives_per_rationale, seed)
    if not pairs:
        raise DataError(f"{folder} holds no groundedness data: expected BEGIN TSV files in {folder / 'begin'} "
                        f"and/or SciFact's original release in {scifact}")
    return pairs


def group_split(pairs: Sequence[LabelledPair], fraction: float, seed: int = 0
                ) -> tuple[list[LabelledPair], list[LabelledPair]]:
    """Split into (rest, held) with about ``fraction`` of the pairs in ``held`` and no group on both sides.

    Groups are assigned by a seeded hash of their id, so a group's side does not depend on which other
    pairs are present; the stratification is approximate (per source).
    """
    if not 0 < fraction < 1:
        raise DataError(f"split fraction must be between 0 and 1, not {fraction}")
    held_groups: set[str] = set()
    for source in sorted({p.source for p in pairs}):
        sizes = Counter(p.group for p in pairs if p.source == source)
        order = sorted(sizes, key=lambda g: hashlib.sha256(f"{seed}:{g}".encode()).hexdigest())
        target, taken = fraction * sum(sizes.values()), 0
        for g in order:
            if taken >= target:
                break
            held_groups.add(g)
            taken += sizes[g]
    rest = [p for p in pairs if p.group not in held_groups]
    held = [p for p in pairs if p.group in held_groups]
    return rest, held


@dataclass(frozen=True)
class PairSplits:
    """The pairs a checker is trained on, chosen on (``validation``: combiner and threshold) and tested on."""

    train: list[LabelledPair]
    validation: list[LabelledPair]
    test: list[LabelledPair]


def split_pairs(pairs: Sequence[LabelledPair], validation_fraction: float = VALIDATION_FRACTION,
                test_fraction: float = TEST_FRACTION, seed: int = 0) -> PairSplits:
    """The splits of :func:`~ragtune.verify.train.train_groundedness`, by group (see :func:`group_split`).

    ``test``: ``test_fraction`` of every source's groups (0: none), never trained on nor used for a choice.
    ``validation``: ``validation_fraction`` of the remaining BEGIN groups (of all remaining groups when there is
    no BEGIN data; none below 20 such pairs). ``train``: everything else, in the input order. A source's split
    does not depend on the other sources present (the default lexical scorer relies on it).
    """
    pairs = list(pairs)
    test = group_split(pairs, test_fraction, seed)[1] if test_fraction > 0 else []
    tested = {id(p) for p in test}
    rest = [p for p in pairs if id(p) not in tested]
    target = [p for p in rest if p.source.startswith("begin")] or rest
    validation = group_split(target, validation_fraction, seed)[1] if len(target) >= 20 else []
    held = tested | {id(p) for p in validation}
    return PairSplits([p for p in pairs if id(p) not in held], validation, test)


def describe(pairs: Sequence[LabelledPair]) -> dict[str, dict[str, int]]:
    """Counts of supported / unsupported pairs per source."""
    out: dict[str, dict[str, int]] = {}
    for p in pairs:
        counts = out.setdefault(p.source, {SUPPORTED: 0, UNSUPPORTED: 0})
        counts[p.label] += 1
    return out
