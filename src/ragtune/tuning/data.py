"""Loading labelled examples from CSV or JSONL, with errors that say which row and column is wrong.

Files are streamed: rows are parsed as the bytes are read and only the text and label columns are kept, so a
file of hundreds of megabytes needs little more memory than its texts. The encoding is UTF-8 (with or without a
byte-order mark) unless the bytes say otherwise; then it is detected like the ingest side does it
(:func:`ragtune.ingest.parsers.decode`), with Windows-1252 winning ties.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ragtune.errors import DataError

LoadProgress = Callable[[int, int, int], None]
"""Loading progress callback: (rows read, bytes read, file size in bytes)."""

PROGRESS_EVERY = 10_000  # rows between two progress calls
_SAMPLE = 256 * 1024  # bytes from the first non-UTF-8 line on that encoding detection looks at
_BOMS = (
    (b"\xff\xfe\x00\x00", "utf-32"),
    (b"\x00\x00\xfe\xff", "utf-32"),
    (b"\xff\xfe", "utf-16"),
    (b"\xfe\xff", "utf-16"),
)
_WESTERN = ("cp1252", "latin_1")
_CP1252_UNDEFINED = b"\x81\x8d\x8f\x90\x9d"
_ENCODING_NAMES = {"cp1252": "Windows-1252", "latin_1": "ISO-8859-1", "utf-8": "UTF-8"}


def _c1_controls(exc: UnicodeError) -> tuple[str, int]:
    """The five bytes Windows-1252 leaves undefined decode as the C1 controls of the same value (as WHATWG's
    windows-1252 and ISO-8859-1 do), so Western European text always decodes."""
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    return exc.object[exc.start : exc.end].decode("latin-1"), exc.end


codecs.register_error("ragtune-c1", _c1_controls)


@dataclass(frozen=True)
class LabelledData:
    """Texts with their labels, and where they came from (``encoding``: the encoding the file was read in;
    ``lines``: the file line each example starts at, empty for data not read from a file)."""

    texts: list[str]
    labels: list[str]
    source: str
    sha256: str
    encoding: str = "utf-8"
    lines: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.texts)

    def line(self, i: int) -> int:
        """The file line example ``i`` starts at (a CSV's header is line 1); its 1-based row number when the
        data was not read from a file."""
        return self.lines[i] if self.lines else i + 1

    def subset(self, indices: Sequence[int], part: str) -> LabelledData:
        """The examples at ``indices`` (file lines kept), named ``<source>#<part>``."""
        return LabelledData([self.texts[i] for i in indices], [self.labels[i] for i in indices],
                            f"{self.source}#{part}", self.sha256, self.encoding, [self.line(i) for i in indices])

    def with_label_names(self) -> LabelledData:
        """These examples plus one per class whose text is the label's name (``card_arrival`` -> "card arrival").

        Meaningful label names are a free example each; from 10 examples per class they lifted banking77
        validation accuracy of ``finetune`` with a cosine head from 85.25 % to 85.90 % (docs/benchmarks.md).
        """
        names = sorted(set(self.labels))
        extra = [" ".join(name.replace("_", " ").replace("-", " ").split()) or name for name in names]
        lines = self.lines + [0] * len(names) if self.lines else []  # line 0: not from the file
        return LabelledData(self.texts + extra, self.labels + names, self.source, self.sha256, self.encoding, lines)


def encoding_name(encoding: str) -> str:
    """A codec name as people know it: cp1252 -> Windows-1252."""
    return _ENCODING_NAMES.get(encoding, encoding)


def _legacy_encoding(sample: bytes) -> str | None:
    """The encoding charset-normalizer detects in ``sample``, Windows-1252 winning ties.

    The same rule as :func:`ragtune.ingest.parsers.decode` (which decodes a whole file at once, so it cannot
    serve a stream): short Western-European texts decode equally "well" in several code pages, and
    charset-normalizer breaks the tie arbitrarily (cp1250 turns "crème" into "crčme"). Windows-1252 is by far
    the most common legacy encoding, and a superset of ISO-8859-1's printable characters."""
    from charset_normalizer import from_bytes

    # The five bytes Windows-1252 leaves undefined would rule it out, though ISO-8859-1 text (which this
    # module reads as Windows-1252 with those bytes as C1 controls) may hold them: detect without them.
    matches = from_bytes(sample.translate(None, _CP1252_UNDEFINED))
    best = matches.best()
    if best is None:
        return None
    for match in matches:  # could_be_from_charset: the encodings that decode the sample to the same text
        western = any(e in _WESTERN for e in (match.encoding, *match.could_be_from_charset))
        if western and match.chaos <= best.chaos and match.coherence >= best.coherence:
            return "cp1252"
    return str(best.encoding)


def _ascii_compatible(encoding: str) -> bool:
    try:
        return bytes(range(128)).decode(encoding) == "".join(map(chr, range(128)))
    except (UnicodeDecodeError, LookupError):
        return False


class _Lines:
    """The lines of a text file (line ends kept), decoded as they are read, with the line number and bytes read.

    UTF-8 until a line is not; then the encoding detected from that line on (earlier lines were ASCII, which
    reads the same in any ASCII-compatible encoding). A UTF-16/32 byte-order mark is honoured."""

    def __init__(self, path: Path, f: IO[bytes]) -> None:
        self.path, self.f = path, f
        self.size = os.fstat(f.fileno()).st_size
        self.line_no = 0
        self.bytes_read = 0
        self.encoding = "utf-8"
        self._errors = "strict"
        self._first_non_ascii = 0  # the first line with UTF-8 characters beyond ASCII
        self._legacy_from = 0  # the line the legacy encoding was detected at

    def __iter__(self) -> Iterator[str]:
        head = self.f.read(4)
        for bom, encoding in _BOMS:
            if head.startswith(bom):
                self.f.seek(0)
                yield from self._wide(encoding)
                return
        self.f.seek(3 if head.startswith(codecs.BOM_UTF8) else 0)
        self.bytes_read = self.f.tell()
        for raw in self.f:
            self.line_no += 1
            self.bytes_read += len(raw)
            try:
                line = raw.decode(self.encoding, self._errors)
            except UnicodeDecodeError as exc:
                line = self._switch(raw, exc)
            else:
                if not self._first_non_ascii and self.encoding == "utf-8" and not raw.isascii():
                    self._first_non_ascii = self.line_no
            yield line

    def _wide(self, encoding: str) -> Iterator[str]:
        """UTF-16/32 text (e.g. Excel's "Unicode text" export): a line split at b"\\n" would cut characters."""
        self.encoding = encoding
        text = io.TextIOWrapper(self.f, encoding=encoding, newline="")
        try:
            for line in text:
                self.line_no += 1
                self.bytes_read = self.f.tell()
                yield line
        except UnicodeDecodeError as exc:
            raise DataError(f"{self.path}: starts with a {encoding} byte-order mark but is not valid {encoding} "
                            f"after line {self.line_no} ({exc.reason}); save it as UTF-8") from exc
        finally:
            text.detach()

    def _switch(self, raw: bytes, exc: UnicodeDecodeError) -> str:
        """Handle the first line that is not in the current encoding: detect the file's legacy encoding, or say
        how to convert the file."""
        name, stem = self.path.name, self.path.stem + ".utf8" + self.path.suffix
        where = f"line {self.line_no} (byte 0x{raw[exc.start]:02X} at byte {self.bytes_read - len(raw) + exc.start})"
        if self.encoding != "utf-8":
            raise DataError(
                f"{self.path}: not UTF-8 and read as {encoding_name(self.encoding)} (detected at line "
                f"{self._legacy_from}), but {where} is not valid {encoding_name(self.encoding)} either: the file "
                f"mixes encodings; fix that line, or convert the file from the encoding it was saved in, e.g. "
                f"`iconv -f {self.encoding} -t utf-8 {name} > {stem}` if most of it is {self.encoding}"
            ) from exc
        if self._first_non_ascii:
            raise DataError(
                f"{self.path}: {where} is not UTF-8 but line {self._first_non_ascii} is: the file mixes "
                f"encodings; re-type the accented characters of line {self.line_no} and save the file as UTF-8"
            ) from exc
        with self.path.open("rb") as g:
            g.seek(self.bytes_read - len(raw))
            sample = g.read(_SAMPLE)
        if len(sample) == _SAMPLE and b"\n" in sample:
            sample = sample[: sample.rindex(b"\n") + 1]
        encoding = _legacy_encoding(sample)
        if encoding is None:
            raise DataError(
                f"{self.path}: {where} is not UTF-8 and no text encoding could be detected (is it a text "
                f"file?); open it in the program that made it and save it as UTF-8 (Excel: \"CSV UTF-8\")"
            ) from exc
        if not _ascii_compatible(encoding):
            raise DataError(f"{self.path}: not UTF-8; it looks like {encoding}: convert it with "
                            f"`iconv -f {encoding} -t utf-8 {name} > {stem}`") from exc
        self.encoding, self._legacy_from = encoding, self.line_no
        self._errors = "ragtune-c1" if encoding == "cp1252" else "strict"
        try:
            return raw.decode(self.encoding, self._errors)
        except UnicodeDecodeError as again:
            return self._switch(raw, again)


def _open(path: Path) -> IO[bytes]:
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        return path.open("rb")
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from exc


def _kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix in (".csv", ".tsv"):
        return suffix[1:]
    raise DataError(f"{path}: unsupported data file '{path.suffix}'; use .csv, .tsv or .jsonl")


def _csv_rows(path: Path, lines: _Lines, delimiter: str) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    """The header of a CSV/TSV and an iterator of (line the record starts at, fields); blank lines skipped."""
    reader = csv.reader(lines, delimiter=delimiter)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise DataError(f"{path}: malformed CSV at line {reader.line_num} ({exc})") from exc

    def rows() -> Iterator[tuple[int, list[str]]]:
        if header is None:
            return
        end = reader.line_num
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise DataError(f"{path}: malformed CSV at line {end + 1} ({exc})") from exc
            start, end = end + 1, reader.line_num
            if not row:
                continue
            if len(row) > len(header):
                raise DataError(f"{path}: line {start} has more fields than the header; quote fields containing "
                                f"{'tabs' if delimiter == chr(9) else 'commas'}")
            yield start, row

    return list(header or []), rows()


def _json_rows(path: Path, lines: _Lines) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for every non-blank line of a JSONL file."""
    for line in lines:
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: line {lines.line_no} is not valid JSON ({exc.msg})") from exc
        if not isinstance(obj, dict):
            raise DataError(f"{path}: line {lines.line_no} is not a JSON object")
        yield lines.line_no, obj


def read_records(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows of a CSV or JSONL file as dicts, and the column names."""
    path = Path(path)
    with _open(path) as f:
        kind = _kind(path)
        lines = _Lines(path, f)
        if kind == "jsonl":
            rows = [obj for _, obj in _json_rows(path, lines)]
            return rows, sorted({k for r in rows for k in r})
        header, fields = _csv_rows(path, lines, "\t" if kind == "tsv" else ",")
        width = len(header)
        records: list[dict[str, Any]] = [
            {k: (row[i] if i < len(row) else None) for i, k in enumerate(header)}
            if len(row) < width else dict(zip(header, row, strict=True))
            for _, row in fields
        ]
        return records, header


def _digest(texts: list[str], labels: list[str], batch: int = 10_000) -> str:
    """sha256 of ``json.dumps([texts, labels])``, computed in slices instead of one giant string."""
    h = hashlib.sha256(b"[")
    for i, values in enumerate((texts, labels)):
        h.update(b", [" if i else b"[")
        for start in range(0, len(values), batch):
            if start:
                h.update(b", ")
            h.update(json.dumps(values[start : start + batch])[1:-1].encode("utf-8"))
        h.update(b"]")
    h.update(b"]")
    return h.hexdigest()


def _value(v: Any) -> str:
    return str(v if v is not None else "").strip()


def load_labelled(path: Path, text_col: str = "text", label_col: str = "label",
                  require_labels: bool = True, progress: LoadProgress | None = None) -> LabelledData:
    """Load texts and labels; refuse missing columns, empty texts and missing labels with the row number.

    The file is streamed; ``progress(rows, bytes_read, file_size)`` is called every ``PROGRESS_EVERY`` rows
    and once at the end."""
    path = Path(path)
    wanted = (text_col, label_col) if require_labels else (text_col,)
    texts: list[str] = []
    labels: list[str] = []
    line_numbers: list[int] = []
    empty: list[int] = []
    unlabelled: list[int] = []
    names: dict[str, str] = {}  # one string object per label, not one per row

    def no_column(col: str, columns: list[str]) -> DataError:
        return DataError(f"{path}: no column '{col}'; columns are {', '.join(columns)} (use --text-col/--label-col)")

    def add(n: int, text: str, label: str) -> None:
        if not text:
            empty.append(n)
        if require_labels and not label:
            unlabelled.append(n)
        texts.append(text)
        labels.append(names.setdefault(label, label))
        line_numbers.append(n)
        if progress and len(texts) % PROGRESS_EVERY == 0:
            progress(len(texts), lines.bytes_read, lines.size)

    with _open(path) as f:
        kind = _kind(path)
        lines = _Lines(path, f)
        if kind == "jsonl":
            seen: set[str] = set()
            for n, obj in _json_rows(path, lines):
                seen.update(obj)
                label = _value(obj.get(label_col)) if require_labels else ""
                add(n, str(obj.get(text_col) or "").strip(), label)
            columns = sorted(seen)
            if texts:
                for col in wanted:
                    if col not in seen:
                        raise no_column(col, columns)
        else:
            header, rows = _csv_rows(path, lines, "\t" if kind == "tsv" else ",")
            if header:
                for col in wanted:
                    if col not in header:
                        raise no_column(col, header)
            # A repeated column name: the last one wins, as with csv.DictReader.
            ti = len(header) - 1 - header[::-1].index(text_col) if header else 0
            li = len(header) - 1 - header[::-1].index(label_col) if require_labels and header else -1
            for n, row in rows:
                text = row[ti].strip() if ti < len(row) else ""
                label = row[li].strip() if 0 <= li < len(row) else ""
                add(n, text, label)
        if progress:
            progress(len(texts), lines.bytes_read, lines.size)
        encoding = lines.encoding
    if not texts:
        raise DataError(f"{path}: no rows")
    if empty:
        raise DataError(f"{path}: {len(empty)} row(s) with empty '{text_col}' (first at line {empty[0]}); "
                        "remove or fill them")
    if unlabelled:
        raise DataError(f"{path}: {len(unlabelled)} row(s) with no '{label_col}' (first at line {unlabelled[0]})")
    return LabelledData(texts=texts, labels=labels, source=str(path), sha256=_digest(texts, labels),
                        encoding=encoding, lines=line_numbers)
