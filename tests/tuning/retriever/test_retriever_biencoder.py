"""The bi-encoder trained on the corpus: it ranks held-out gold chunks higher than the base model, is saved as a
registry embedder served on onnxruntime, and its fingerprint keeps an index of the base model from mixing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ragtune.core import Principal
from ragtune.errors import ConfigError, ModelNotFoundError
from ragtune.index_reembed import reembed_index
from ragtune.models.embedder import MiniLMEmbedder, make_embedder
from ragtune.project import Project
from ragtune.tuning.retriever.biencoder import TrainedRetriever
from ragtune.tuning.retriever.tuned import TunedEmbedder


def test_training_moves_held_out_gold_chunks_up(trained: TrainedRetriever) -> None:
    base, adapted = trained.base_ranks, trained.adapted_ranks
    assert len(base) == len(adapted) >= 8
    assert np.mean(adapted) < np.mean(base)  # held-out documents were never trained on
    assert any(a < b for a, b in zip(adapted, base, strict=True))  # some query's gold chunk moved up
    assert sum(a > b for a, b in zip(adapted, base, strict=True)) < sum(a < b for a, b in zip(adapted, base,
                                                                                             strict=True))
    m = trained.card.metrics
    assert m["heldout_mean_rank_adapted"] == pytest.approx(np.mean(adapted))
    assert m["steps"] == m["planned_steps"] > 0 and trained.card.notes["stopped"] == "finished"


def test_registered_as_an_embedder_with_card_report_and_onnx(trained: TrainedRetriever) -> None:
    card = json.loads((trained.folder / "card.json").read_text())
    assert card["method"] == "embedder" and card["name"] == "ret" and card["version"] == 1
    assert len(card["notes"]["weights_sha256"]) == 64 and card["notes"]["pairs"]["pairs"] > 0
    assert (trained.folder / "model" / "model.onnx").is_file()
    assert (trained.folder / "model" / "encoder" / "model.safetensors").is_file()
    report = (trained.folder / "report.md").read_text()
    assert "recall@10" in report and "ragtune reindex --embedder registry:ret@1" in report


def test_served_on_onnx_like_torch_and_unlike_the_base(corpus_project: object, trained: TrainedRetriever) -> None:
    models = trained.folder.parent.parent
    onnx = make_embedder("registry:ret", models_dir=models, runtime="onnx")
    torch = make_embedder("registry:ret@1", models_dir=models, runtime="torch")
    texts = ["Maintenance of the pump", "Who closes the intake valve when a pump overheats?"]
    a, b = onnx.embed(texts), torch.embed(texts)
    assert np.all(np.sum(a * b, axis=1) > 0.9999)
    base = MiniLMEmbedder(runtime="onnx").embed(texts)
    assert np.all(np.sum(a * base, axis=1) < 0.9999)  # trained weights, not the packaged ones
    assert isinstance(onnx, TunedEmbedder) and onnx.dim == 384 and onnx.spec == "registry:ret@1"


def test_fingerprint_differs_and_the_base_index_is_refused_until_reindexed(project_copy: Path) -> None:
    base = Project.open(project_copy)
    config = project_copy / "ragtune.yaml"
    config.write_text(config.read_text().replace("model: minilm", "model: registry:ret"))
    tuned = Project.open(project_copy)
    fp = tuned.embedder.fingerprint
    assert fp != base.embedder.fingerprint and fp.startswith("registry:ret@v1+") and fp.endswith("/onnx/384")
    anyone = Principal("ann")
    with pytest.raises(ConfigError, match="cannot be searched together"):
        tuned.search("intake valve", anyone)
    reembed_index(tuned.store, tuned.embedder, "registry:ret@1", tuned.settings.index_dir / ".reembed")
    assert Project.open(project_copy).search("intake valve", anyone).hits
    config.write_text(config.read_text().replace("model: registry:ret", "model: minilm"))
    with pytest.raises(ConfigError, match="cannot be searched together"):
        Project.open(project_copy).search("intake valve", anyone)  # now the base model is the stranger


def test_unknown_or_non_embedder_registry_models_are_clear_errors(trained: TrainedRetriever,
                                                                 tmp_path: Path) -> None:
    models = trained.folder.parent.parent
    with pytest.raises(ModelNotFoundError, match="ragtune tune retriever --name nope"):
        _ = make_embedder("registry:nope", models_dir=models).fingerprint
    with pytest.raises(ModelNotFoundError, match="no version 7"):
        _ = make_embedder("registry:ret@7", models_dir=models).dim
    with pytest.raises(ConfigError, match="registry:NAME"):
        make_embedder("registry:bad name", models_dir=models)
    with pytest.raises(ConfigError, match="unknown embedder model"):
        make_embedder("bert")
