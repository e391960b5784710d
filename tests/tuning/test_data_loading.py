"""Loading labelled data for `ragtune train`: encodings, streaming with progress, and checks made before any
work (model name, method, settings, classes too small to split)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import random
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from ragtune.errors import ConfigError, DataError, RagtuneError
from ragtune.tuning import data as data_module
from ragtune.tuning import train as train_module
from ragtune.tuning.data import load_labelled, read_records
from ragtune.tuning.registry import Registry
from ragtune.tuning.train import train_classifier

LATIN = [
    ("café au lait with two sugars", "drink"),
    ("a naïve question about the crème brûlée", "food"),
    ("el señor pidió la cuenta", "person"),
    ("Größe 42, bitte; très bien", "size"),
]


def csv_bytes(rows: list[tuple[str, str]], encoding: str, header: tuple[str, str] = ("text", "label")) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue().encode(encoding)


# -- encodings ---------------------------------------------------------------------------------------------------
def test_latin1_csv_loads_with_the_original_texts(tmp_path: Path) -> None:
    # charset-normalizer ranks cp1250 first for these bytes; read as cp1250 "crème" would become "crčme".
    path = tmp_path / "latin.csv"
    path.write_bytes(csv_bytes(LATIN, "latin-1"))
    data = load_labelled(path)
    assert data.texts == [t for t, _ in LATIN] and data.labels == [lab for _, lab in LATIN]
    assert data.encoding == "cp1252"
    # The same texts as UTF-8 give the same data and hash: the encoding is not part of the data.
    (tmp_path / "utf8.csv").write_bytes(csv_bytes(LATIN, "utf-8"))
    assert load_labelled(tmp_path / "utf8.csv").sha256 == data.sha256


def test_windows_1252_punctuation_and_undefined_bytes_decode(tmp_path: Path) -> None:
    rows = [("“smart quotes” cost 5 €", "a"), ("an en dash – here", "b")]
    path = tmp_path / "cp1252.csv"
    path.write_bytes(csv_bytes(rows, "cp1252") + b"caf\xe9 \x81 byte,c\n")  # 0x81: undefined in cp1252
    data = load_labelled(path)
    assert data.texts == ["“smart quotes” cost 5 €", "an en dash – here", "café \x81 byte"]


def test_non_utf8_bytes_far_into_the_file_are_detected_there(tmp_path: Path) -> None:
    ascii_rows = [(f"plain ascii row {i}", "a" if i % 2 else "b") for i in range(20_000)]
    path = tmp_path / "late.csv"
    path.write_bytes(csv_bytes(ascii_rows + LATIN, "latin-1"))
    data = load_labelled(path)
    assert data.texts[-len(LATIN):] == [t for t, _ in LATIN] and len(data) == 20_004


@pytest.mark.parametrize(("encoding", "text"), [
    ("cp1251", "Привет, как дела? Это строка номер"),
    ("cp1250", "Příliš žluťoučký kůň úpěl ďábelské ódy, řádek číslo"),  # not a tie: Windows-1252 must not win
])
def test_other_legacy_encodings_are_detected(tmp_path: Path, encoding: str, text: str) -> None:
    rows = [(f"{text} {i}", "greet") for i in range(20)]
    path = tmp_path / "legacy.csv"
    path.write_bytes(csv_bytes(rows, encoding))
    data = load_labelled(path)
    assert data.texts == [t for t, _ in rows] and data.encoding == encoding


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-32"])
def test_byte_order_marks_are_honoured(tmp_path: Path, encoding: str) -> None:
    path = tmp_path / "bom.csv"
    path.write_bytes(csv_bytes(LATIN, encoding))
    data = load_labelled(path)
    assert data.texts == [t for t, _ in LATIN]
    assert read_records(path)[1] == ["text", "label"]  # no BOM glued to the first column name


def test_mixed_encodings_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "mixed.csv"
    path.write_bytes("text,label\ncafé in utf-8,a\n".encode() + "café in latin-1,b\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"line 3 \(byte 0xE9.*is not UTF-8 but line 2 is.*mixes encodings"):
        load_labelled(path)


def test_bytes_invalid_in_the_detected_encoding_get_a_conversion_hint(tmp_path: Path) -> None:
    rows = [(f"Привет, как дела? Это строка номер {i}", "greet") for i in range(6000)]
    body = csv_bytes(rows, "cp1251")
    assert len(body) > data_module._SAMPLE  # the bad byte lies beyond the detection sample
    path = tmp_path / "ru.csv"
    path.write_bytes(body + b"bad \x98 byte,x\n")  # 0x98 is undefined in cp1251
    with pytest.raises(DataError, match=r"read as cp1251.*line 6002 .*mixes encodings.*iconv -f cp1251 -t utf-8"):
        load_labelled(path)


def test_undetectable_bytes_say_how_to_convert(tmp_path: Path) -> None:
    path = tmp_path / "noise.csv"
    path.write_bytes(b"text,label\n" + random.Random(0).randbytes(4000).replace(b"\x00", b"x"))
    with pytest.raises(DataError, match="no text encoding could be detected.*save it as UTF-8"):
        load_labelled(path)


def test_latin1_jsonl_loads_line_by_line(tmp_path: Path) -> None:
    path = tmp_path / "latin.jsonl"
    lines = [json.dumps({"text": t, "label": lab}, ensure_ascii=False) for t, lab in LATIN]
    path.write_bytes(("\n".join(lines[:2]) + "\n\n" + "\n".join(lines[2:]) + "\n").encode("latin-1"))
    assert load_labelled(path).texts == [t for t, _ in LATIN]
    path.write_bytes(b'{"text": "a", "label": "x"}\n\n{"text": oops}\n')
    with pytest.raises(DataError, match="line 3 is not valid JSON"):
        load_labelled(path)


# -- streaming ---------------------------------------------------------------------------------------------------
def test_line_numbers_are_physical_lines(tmp_path: Path) -> None:
    # A quoted field over two lines and a blank line: the empty text is on line 6 of the file.
    path = tmp_path / "lines.csv"
    path.write_text('text,label\n"two\nlines",a\n\nok,b\n ,a\n', encoding="utf-8")
    with pytest.raises(DataError, match="empty 'text' \\(first at line 6\\)"):
        load_labelled(path)
    path.write_text("text,label\nok,a\n\nx,b,extra\n", encoding="utf-8")
    with pytest.raises(DataError, match="line 4 has more fields than the header"):
        load_labelled(path)


def test_the_hash_is_that_of_the_whole_data(tmp_path: Path) -> None:
    texts = [f'text "{i}" — é\\ {i}' for i in range(25)]
    labels = [f"l{i % 3}" for i in range(25)]
    expected = hashlib.sha256(json.dumps([texts, labels]).encode("utf-8")).hexdigest()
    assert data_module._digest(texts, labels, batch=4) == data_module._digest(texts, labels) == expected


def test_loading_reports_rows_and_bytes(tmp_path: Path) -> None:
    path = tmp_path / "many.csv"
    path.write_bytes(csv_bytes([(f"row {i}", f"l{i % 4}") for i in range(25_000)], "utf-8"))
    calls: list[tuple[int, int, int]] = []
    data = load_labelled(path, progress=lambda rows, done, size: calls.append((rows, done, size)))
    size = path.stat().st_size
    assert [c[0] for c in calls] == [10_000, 20_000, 25_000]
    assert all(c[2] == size for c in calls) and 0 < calls[0][1] < calls[1][1] < calls[2][1] == size
    assert len(data) == 25_000
    seen: list[tuple[str, int, int, dict[str, float]]] = []
    report = train_module.load_progress(lambda *a: seen.append(a), path)
    assert report is not None
    report(10, 1_500_000, 3_200_000)
    assert seen == [("load many.csv", 2, 4, {"rows": 10.0})]


def test_loading_streams_instead_of_copying_the_file(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    rows = [(f"row {i}: some words about a card that never arrived, please help", f"l{i % 20}")
            for i in range(30_000)]
    path.write_bytes(csv_bytes(rows, "utf-8"))
    size = path.stat().st_size
    tracemalloc.start()
    try:
        data = load_labelled(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(data) == 30_000
    # Reading the bytes, decoding them and parsing a StringIO copy peaked at ~10x the file size; streaming
    # keeps little more than the texts themselves (~4x).
    assert peak < 6 * size, f"peak {peak / 1e6:.1f} MB for a {size / 1e6:.1f} MB file"


def test_plain_progress_prints_phase_changes_and_at_most_every_interval() -> None:
    now = [0.0]
    lines: list[str] = []
    p = train_module.PlainProgress(lines.append, interval=10.0, clock=lambda: now[0])
    p("load data.csv", 0, 201, {"rows": 0.0})
    for step in range(1, 50):
        now[0] += 1.0
        p("load data.csv", step, 201, {"rows": step * 24_000.0})
    p("load data.csv", 201, 201, {"rows": 1_234_567.0})
    p("load data.csv", 201, 201, {"rows": 1_234_567.0})
    p("audit", 0, 1, {})
    p("fit", 0, 1, {"loss": 0.5})
    assert lines[0] == "load data.csv: 0 rows, 0/201 MB"
    assert lines[1] == "load data.csv: 240k rows, 10/201 MB"
    assert len([ln for ln in lines if ln.startswith("load")]) == 6  # start, every 10 s (4), done
    assert lines[-3:] == ["load data.csv: 1.2M rows, 201/201 MB (done)", "audit: 0/1", "fit: 0/1, loss 0.5"]


# -- checks before any work --------------------------------------------------------------------------------------
@pytest.fixture
def no_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("data was loaded before the arguments were checked")

    monkeypatch.setattr(train_module, "load_labelled", refuse)
    monkeypatch.setattr(train_module, "audit_labels", refuse)


def small_csv(tmp_path: Path) -> Path:
    path = tmp_path / "small.csv"
    path.write_bytes(csv_bytes([(f"text {i}", "a" if i % 2 else "b") for i in range(10)], "utf-8"))
    return path


@pytest.mark.parametrize("name", ["../x", "bad name", "", "a/b", "x" * 65])
def test_invalid_model_name_is_refused_before_loading(tmp_path: Path, no_loading: None, name: str) -> None:
    with pytest.raises(RagtuneError, match="invalid model name"):
        train_classifier(Registry(tmp_path / "models"), small_csv(tmp_path), name, method="head")


@pytest.mark.parametrize(("method", "params", "error", "message"), [
    ("setfitt", {}, DataError, "unknown method 'setfitt'"),
    ("head", {"epochs": 3}, ConfigError, "head has no setting 'epochs'"),
    ("auto", {"bogus": 1}, ConfigError, "neither has setting.*'bogus'"),
    ("ensemble", {"members": [{"method": "head", "epochs": 1}]}, ConfigError, "head has no setting 'epochs'"),
    ("ensemble", {"members": [{"method": "auto"}]}, ConfigError, "give its method"),
])
def test_unknown_method_or_setting_is_refused_before_loading(tmp_path: Path, no_loading: None, method: str,
                                                             params: dict[str, Any], error: type[Exception],
                                                             message: str) -> None:
    with pytest.raises(error, match=message):
        train_classifier(Registry(tmp_path / "models"), small_csv(tmp_path), "m", method=method, params=params)


def test_missing_test_file_is_refused_before_loading(tmp_path: Path, no_loading: None) -> None:
    with pytest.raises(DataError, match="nope.csv: no such file"):
        train_classifier(Registry(tmp_path / "models"), small_csv(tmp_path), "m", method="head",
                         test_path=tmp_path / "nope.csv")


def test_auto_setting_of_the_other_method_names_the_choice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(train_module, "audit_labels", lambda *a, **k: pytest.fail("audited"))
    with pytest.raises(ConfigError, match="--method auto chose head .*no setting 'epochs'.*pass --method"):
        train_classifier(Registry(tmp_path / "models"), small_csv(tmp_path), "m", params={"epochs": 2})


def test_classes_with_one_example_are_named_before_splitting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(train_module, "audit_labels", lambda *a, **k: pytest.fail("audited"))
    monkeypatch.setattr(train_module, "split_data", lambda *a, **k: pytest.fail("split"))
    path = tmp_path / "singletons.csv"
    path.write_bytes(csv_bytes([(f"example number {i}", f"class_{i:02d}") for i in range(50)], "utf-8"))
    with pytest.raises(DataError, match=r"each class needs at least 2 examples.*50 of 50 classes have only 1: "
                                        r"class_00, class_01, .*class_09 and 40 more.*--test FILE"):
        train_classifier(Registry(tmp_path / "models"), path, "m", method="head")
    rows = [(f"text {i}", "a" if i % 2 else "b") for i in range(20)] + [("lonely", "rare")]
    path.write_bytes(csv_bytes(rows, "utf-8"))
    with pytest.raises(DataError, match="1 of 3 classes have only 1: rare;"):
        train_classifier(Registry(tmp_path / "models"), path, "m", method="head")
