"""Settings errors are one clear ConfigError naming their real source; the project folder is never chosen silently."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import write

from ragtune.config import init_project, load_settings
from ragtune.errors import ConfigError


@pytest.fixture(autouse=True)
def _no_project_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAGTUNE_PROJECT_DIR", raising=False)


# --- errors from environment variables -----------------------------------------------------------------------


@pytest.mark.parametrize("value", ["{bad", '{"top_k": ', "not json at all"])
def test_invalid_json_in_a_section_variable_names_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               value: str) -> None:
    init_project(tmp_path)
    monkeypatch.setenv("RAGTUNE_RETRIEVAL", value)
    with pytest.raises(ConfigError, match="environment variable RAGTUNE_RETRIEVAL is not valid JSON"):
        load_settings(tmp_path)


def test_a_bad_value_from_the_environment_names_the_variable_not_the_file(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    init_project(tmp_path)
    monkeypatch.setenv("RAGTUNE_RETRIEVAL__TOP_K", "0")
    with pytest.raises(ConfigError, match="environment variable RAGTUNE_RETRIEVAL__TOP_K: ") as info:
        load_settings(tmp_path)
    assert "ragtune.yaml" not in str(info.value)


def test_an_unknown_key_from_the_environment_names_the_variable(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    init_project(tmp_path)
    monkeypatch.setenv("RAGTUNE_RETRIEVAL__TOPK", "3")
    with pytest.raises(ConfigError, match=r"environment variable RAGTUNE_RETRIEVAL__TOPK: unknown key 'topk' "
                                          r"\(did you mean 'top_k'\?\)"):
        load_settings(tmp_path)


def test_a_bad_key_inside_a_json_section_variable_names_the_variable(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    init_project(tmp_path)
    monkeypatch.setenv("RAGTUNE_RETRIEVAL", '{"top_k": 0}')
    with pytest.raises(ConfigError, match=r"environment variable RAGTUNE_RETRIEVAL \(key 'top_k'\)"):
        load_settings(tmp_path)


def test_a_bad_value_in_the_file_still_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "ragtune.yaml", "retrieval:\n  top_k: 0\n")
    monkeypatch.setenv("RAGTUNE_RETRIEVAL__LEXICAL_K", "50")  # an unrelated, valid override
    with pytest.raises(ConfigError, match=r"ragtune.yaml: setting 'retrieval.top_k'") as info:
        load_settings(tmp_path)
    assert "RAGTUNE_RETRIEVAL__LEXICAL_K" not in str(info.value)


def test_messages_carry_no_pydantic_value_error_prefix(tmp_path: Path) -> None:
    write(tmp_path / "ragtune.yaml", "generator:\n  api_key: sk-123\n")
    with pytest.raises(ConfigError, match="never put an API key") as info:
        load_settings(tmp_path)
    assert "Value error" not in str(info.value)


@pytest.mark.parametrize(("body", "parts"), [
    # issue 19, bug 7: an unknown key names the closest valid one and all valid keys of its section
    ("retrieval:\n  topk: 5\n", ["setting 'retrieval.topk': unknown key 'topk' (did you mean 'top_k'?); valid "
                                  "keys: dense_k, dense_weight, ", "lexical_k, ", ", top_k"]),
    ("retrievel:\n  top_k: 5\n", ["setting 'retrievel': unknown key 'retrievel' (did you mean 'retrieval'?)",
                                   "valid keys: answer, audit, cache, chunking, embedder, ", ", retrieval, ",
                                   ", store_path"]),
    ("retrieval: 5\n", ["setting 'retrieval': expected a mapping of `key: value` pairs (got int)"]),
])
def test_an_unknown_key_in_the_file_names_the_closest_valid_key(tmp_path: Path, body: str,
                                                                parts: list[str]) -> None:
    write(tmp_path / "ragtune.yaml", body)
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path)
    message = str(info.value)
    assert "Extra inputs" not in message and "Value error" not in message
    assert "project_dir" not in message  # set by the loader, never a key to write
    for part in parts:
        assert part in message, message


# --- chunking ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("max_tokens", "overlap"), [(64, 64), (64, 100), (16, 512)])
def test_overlap_must_be_smaller_than_the_chunk_budget(tmp_path: Path, max_tokens: int, overlap: int) -> None:
    write(tmp_path / "ragtune.yaml", f"chunking:\n  max_tokens: {max_tokens}\n  overlap_tokens: {overlap}\n")
    with pytest.raises(ConfigError, match="overlap_tokens .* must be smaller than max_tokens") as info:
        load_settings(tmp_path)
    assert "setting 'chunking'" in str(info.value) and "Value error" not in str(info.value)


def test_an_overlap_from_the_environment_is_checked_and_named(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    init_project(tmp_path)  # max_tokens 256
    monkeypatch.setenv("RAGTUNE_CHUNKING__OVERLAP_TOKENS", "300")
    with pytest.raises(ConfigError, match="RAGTUNE_CHUNKING__OVERLAP_TOKENS.*must be smaller"):
        load_settings(tmp_path)
    monkeypatch.setenv("RAGTUNE_CHUNKING__OVERLAP_TOKENS", "255")
    assert load_settings(tmp_path).chunking.overlap_tokens == 255


# --- store and model folders ---------------------------------------------------------------------------------


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
@pytest.mark.parametrize("key", ["store_path", "models_path"])
def test_a_folder_that_cannot_be_created_is_refused_at_load(tmp_path: Path, key: str) -> None:
    write(tmp_path / "ragtune.yaml", f"{key}: /proc/nonexistent/x\n")
    with pytest.raises(ConfigError, match=f"setting '{key}': cannot create /proc/nonexistent/x"):
        load_settings(tmp_path)


def test_a_folder_below_a_file_is_refused_at_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    init_project(tmp_path)
    write(tmp_path / "blocker", "a file, not a folder\n")
    monkeypatch.setenv("RAGTUNE_STORE_PATH", "blocker/index")
    with pytest.raises(ConfigError, match=r"environment variable RAGTUNE_STORE_PATH: cannot create .*blocker"):
        load_settings(tmp_path)
    monkeypatch.setenv("RAGTUNE_STORE_PATH", "blocker")
    with pytest.raises(ConfigError, match="exists and is not a folder"):
        load_settings(tmp_path)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root passes every permission check")
def test_a_folder_under_a_read_only_parent_is_refused_at_load(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    write(tmp_path / "p" / "ragtune.yaml", f"store_path: {locked}/index\n")
    locked.chmod(0o500)
    try:
        with pytest.raises(ConfigError, match="is not writable"):
            load_settings(tmp_path / "p")
    finally:
        locked.chmod(0o700)


def test_loading_creates_nothing(tmp_path: Path) -> None:
    write(tmp_path / "ragtune.yaml", "store_path: deep/er/index\nmodels_path: other/models\n")
    settings = load_settings(tmp_path)
    assert settings.index_dir == tmp_path / "deep" / "er" / "index"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ragtune.yaml"]


# --- which project: --project, RAGTUNE_PROJECT_DIR, or the current folder ------------------------------------


def test_the_project_variable_never_silently_overrides_an_explicit_project(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    init_project(tmp_path / "flag")
    init_project(tmp_path / "env")
    monkeypatch.setenv("RAGTUNE_PROJECT_DIR", str(tmp_path / "env"))
    with pytest.raises(ConfigError, match="unset RAGTUNE_PROJECT_DIR") as info:
        load_settings(tmp_path / "flag")
    assert str((tmp_path / "flag").resolve()) in str(info.value)
    assert str(tmp_path / "env") in str(info.value)


def test_the_project_variable_may_agree_with_the_explicit_project(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    init_project(tmp_path / "p")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RAGTUNE_PROJECT_DIR", "p")  # relative to the current folder
    settings = load_settings(tmp_path / "p")
    assert settings.project_dir == (tmp_path / "p").resolve()
    assert settings.index_dir == (tmp_path / "p").resolve() / "index"


def test_without_an_explicit_project_the_variable_chooses_it(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    init_project(tmp_path / "here")
    write(tmp_path / "there" / "ragtune.yaml", "retrieval:\n  top_k: 3\n")
    monkeypatch.chdir(tmp_path / "here")
    assert load_settings().project_dir == (tmp_path / "here").resolve()
    monkeypatch.setenv("RAGTUNE_PROJECT_DIR", str(tmp_path / "there"))
    settings = load_settings()
    assert settings.retrieval.top_k == 3  # its settings, not just its folder name
    assert settings.project_dir == (tmp_path / "there").resolve()
    assert settings.index_dir == (tmp_path / "there").resolve() / "index"


def test_a_project_variable_naming_no_project_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    init_project(tmp_path / "here")
    monkeypatch.chdir(tmp_path / "here")
    monkeypatch.setenv("RAGTUNE_PROJECT_DIR", str(tmp_path / "nothing"))
    with pytest.raises(ConfigError, match="RAGTUNE_PROJECT_DIR=.*not a ragtune project"):
        load_settings()


@pytest.mark.parametrize(("body", "key"), [("index_build_memory: lots", "store.index_build_memory"),
                                           ("index_build_memory: 2GB; DROP TABLE x", "store.index_build_memory"),
                                           ("ef_search: 5000", "store.ef_search")])
def test_bad_postgres_store_settings_are_refused_at_load(tmp_path: Path, body: str, key: str) -> None:
    write(tmp_path / "ragtune.yaml", f"store:\n  {body}\n")
    with pytest.raises(ConfigError, match=rf"ragtune.yaml: setting '{key}'"):
        load_settings(tmp_path)
