"""A span reader trained once for the session on the synthetic notes (2 layers, 64-token windows, 63 steps of 8:
about 10 s on one shared core)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from reader_synth import SEED, Trained, synthetic_rows, write_jsonl  # noqa: E402

from ragtune.tuning.reader.data import load_reader_examples  # noqa: E402
from ragtune.tuning.reader.train import train_reader  # noqa: E402
from ragtune.tuning.registry import Registry  # noqa: E402


@pytest.fixture(scope="session")
def trained_reader(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """``rd`` v1 in a registry of its own; a quarter of the notes (groups) held out."""
    tmp = tmp_path_factory.mktemp("reader")
    data = load_reader_examples(write_jsonl(tmp / "notes.jsonl", synthetic_rows(SEED)))
    result = train_reader(Registry(tmp / "models"), "rd", data, layers=2, max_length=64, batch_size=8, epochs=8.0,
                          learning_rate=8e-4, holdout=0.25, seed=SEED, threads=1, data_source="notes.jsonl")
    return Trained(tmp / "models", data, result)
