"""SetFit's own trainer as a JSON-lines worker (runs in the peers venv; see jsonl_worker.py).

``SetFitModel.from_pretrained`` on the packaged MiniLM folder (local files only; its default head, scikit-learn
``LogisticRegression``), ``setfit.Trainer`` with ``TrainingArguments`` at SetFit's defaults except the fixed
``num_iterations`` and ``num_epochs`` the orchestrator sends, the seed, and no reporting or checkpoints (a
temporary output folder). ``trainer.train()`` tunes the body contrastively, then fits the head.

Requests: ``init`` {model_dir, threads}; ``train`` {texts, labels, seed, num_iterations, num_epochs} ->
{seconds, steps}; ``predict`` {texts} -> {labels, ms}; ``quit``.
"""

from __future__ import annotations

import tempfile
import time
from typing import Any

from jsonl_worker import claim_stdout, elapsed_ms, go_offline, serve, versions

go_offline()
PROTO = claim_stdout()  # before the frameworks are imported: their output goes to stderr
STATE: dict[str, Any] = {}


def init(msg: dict[str, Any]) -> dict[str, Any]:
    """Remember the model folder; set torch's threads."""
    import torch

    torch.set_num_threads(int(msg["threads"]))
    STATE["model_dir"] = str(msg["model_dir"])
    return {"versions": versions("setfit", "sentence-transformers", "transformers", "torch", "scikit-learn"),
            "threads": torch.get_num_threads()}


def train(msg: dict[str, Any]) -> dict[str, Any]:
    """Load the body, train body and head with SetFit's trainer; seconds from loading to a fitted head."""
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    texts, labels = list(msg["texts"]), list(msg["labels"])
    if len(texts) != len(labels) or not texts:
        raise ValueError(f"train: {len(texts)} texts and {len(labels)} labels (need the same number, > 0)")
    t0 = time.perf_counter()
    model = SetFitModel.from_pretrained(STATE["model_dir"], local_files_only=True, device="cpu")
    with tempfile.TemporaryDirectory(prefix="peers-setfit-") as tmp:
        args = TrainingArguments(output_dir=tmp, num_iterations=int(msg["num_iterations"]),
                                 num_epochs=int(msg["num_epochs"]), seed=int(msg["seed"]), report_to="none",
                                 save_strategy="no", show_progress_bar=False)
        trainer = Trainer(model=model, args=args,
                          train_dataset=Dataset.from_dict({"text": texts, "label": labels}))
        trainer.train()
    STATE["model"] = model
    steps = int(getattr(trainer.st_trainer.state, "global_step", 0) or 0)
    return {"seconds": time.perf_counter() - t0, "steps": steps}


def predict(msg: dict[str, Any]) -> dict[str, Any]:
    """Labels for ``texts`` (one batch call) and its milliseconds."""
    model = STATE.get("model")
    if model is None:
        raise RuntimeError("predict before train")
    t0 = time.perf_counter()
    out = model.predict(list(msg["texts"]), batch_size=64, show_progress_bar=False)
    ms = elapsed_ms(t0)
    return {"labels": [str(x) for x in out], "ms": ms}


if __name__ == "__main__":
    raise SystemExit(serve({"init": init, "train": train, "predict": predict}, stdout=PROTO))
