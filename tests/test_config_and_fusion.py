"""Settings resolution (file, environment, errors) and reciprocal rank fusion."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragtune.config import find_project, init_project, load_settings, reader_spec
from ragtune.errors import ConfigError
from ragtune.retrieval.fusion import reciprocal_rank_fusion


def test_init_writes_commented_defaults_that_load(tmp_path: Path) -> None:
    path = init_project(tmp_path / "p")
    assert "# ragtune project settings" in path.read_text()
    s = load_settings(tmp_path / "p")
    assert s.retrieval.rrf_k == 20 and s.chunking.max_tokens == 256 and s.index_dir == (tmp_path / "p" / "index")
    with pytest.raises(ConfigError, match="already exists"):
        init_project(tmp_path / "p")


def test_project_is_found_from_a_subfolder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    init_project(tmp_path)
    (tmp_path / "a" / "b").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "a" / "b")
    assert find_project() == tmp_path.resolve()


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    init_project(tmp_path)
    monkeypatch.setenv("RAGTUNE_RETRIEVAL__TOP_K", "3")
    assert load_settings(tmp_path).retrieval.top_k == 3


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("retrieval: [1, 2", "not valid YAML"),
        ("- a list", "must be a mapping"),
        ("retrieval:\n  top_k: 0\n", "retrieval.top_k"),
        ("retrieval:\n  topk: 3\n", "retrieval.topk"),
        ("answer:\n  kind: reader\n", "answer.kind reader needs answer.reader"),
        ("answer:\n  kind: reader\n  reader: 'bad name!'\n", "ragtune tune reader"),
        ("answer:\n  kind: span\n", "answer.kind"),
    ],
)
def test_bad_config_names_the_problem(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "ragtune.yaml").write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_settings(tmp_path)


def test_a_span_reader_is_named_with_or_without_a_version(tmp_path: Path) -> None:
    for name, spec in (("policy-reader", "registry:policy-reader"), ("policy-reader@2", "registry:policy-reader@2"),
                       ("registry:r@1", "registry:r@1")):
        (tmp_path / "ragtune.yaml").write_text(f"answer:\n  kind: reader\n  reader: {name}\n")
        s = load_settings(tmp_path)
        assert s.answer.kind == "reader" and reader_spec(s.answer.reader) == spec


def test_missing_project_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ragtune init"):
        load_settings(tmp_path)


def test_rrf_matches_the_formula_and_weights() -> None:
    fused = dict(reciprocal_rank_fusion([["a", "b"], ["b", "c"]], k=10))
    assert fused["b"] == pytest.approx(1 / 12 + 1 / 11)
    assert fused["a"] == pytest.approx(1 / 11) and fused["c"] == pytest.approx(1 / 12)
    order = [key for key, _ in reciprocal_rank_fusion([["a", "b"], ["b", "a"]], k=10, weights=[2.0, 1.0])]
    assert order == ["a", "b"]
    with pytest.raises(ValueError):
        reciprocal_rank_fusion([["a"]], weights=[1.0, 2.0])
    # A switched-off ranking adds nothing, not even zero-score padding.
    assert reciprocal_rank_fusion([["a"], ["b", "c"]], weights=[1.0, 0.0]) == [("a", pytest.approx(1 / 61))]
