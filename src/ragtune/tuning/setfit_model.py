"""``setfit``: contrastive fine-tuning of the packaged MiniLM encoder, then logistic regression on its embeddings.

The SetFit recipe (Tunstall et al. 2022): pairs of training texts with the same label are pulled together and
pairs with different labels pushed apart (cosine-similarity loss), so few examples per class reshape the
embedding space; a multinomial logistic regression is then fitted on the tuned embeddings. The encoder tuning
runs through the ``setfit`` library's Trainer, started from the packaged weights on local disk (never the hub).
The head is fitted here and saved as plain arrays (no pickle), the tuned encoder as safetensors.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from sklearn.linear_model import LogisticRegression

from ragtune.errors import ModelNotFoundError
from ragtune.models.embedder import minilm_model_dir
from ragtune.models.hf import offline, quiet, torch_threads
from ragtune.tuning.base import Progress, TextClassifier
from ragtune.tuning.head import HEAD_FILE, LogisticHead

ENCODER_DIR = "encoder"


def _load_encoder(path: Path, max_length: int) -> Any:
    """A private copy of a sentence-transformers encoder (training changes its weights in place)."""
    offline()
    from sentence_transformers import SentenceTransformer

    with quiet():
        model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
    model.max_seq_length = max_length
    return model


class SetFitClassifier(LogisticHead, TextClassifier):
    """SetFit: the MiniLM encoder tuned contrastively on label pairs, then logistic regression on it.

    Each iteration draws one same-label and one different-label pair per training text, so one epoch is
    ``2 * num_iterations * len(texts) / batch_size`` steps. The default of 5 iterations (setfit's paper uses 20)
    keeps CPU training to minutes; on the banking77 slice 1, 2 and 5 iterations scored alike. ``max_steps`` > 0
    caps the steps. ``max_length`` truncates texts in tokens; ``C``/``max_iter`` configure the head;
    ``encode_batch_size`` is the batch for embedding; ``threads`` is torch's CPU thread count while it trains or embeds.
    """

    method: ClassVar[str] = "setfit"

    def __init__(
        self,
        num_iterations: int = 5,
        num_epochs: int = 1,
        max_steps: int = -1,
        body_learning_rate: float = 2e-5,
        batch_size: int = 16,
        max_length: int = 128,
        C: float = 10.0,  # noqa: N803 - scikit-learn's name
        max_iter: int = 3000,
        encode_batch_size: int = 64,
        threads: int = 2,
        calibration_fraction: float = 0.1,
        threshold: float = 0.5,
        random_state: int = 0,
    ) -> None:
        self.num_iterations = num_iterations
        self.num_epochs = num_epochs
        self.max_steps = max_steps
        self.body_learning_rate = body_learning_rate
        self.batch_size = batch_size
        self.max_length = max_length
        self.C = C
        self.max_iter = max_iter
        self.encode_batch_size = encode_batch_size
        self.threads = threads
        self.calibration_fraction = calibration_fraction
        self.threshold = threshold
        self.random_state = random_state

    # -- training -------------------------------------------------------------------------------------------
    def _fit_model(self, texts: list[str], y: np.ndarray, progress: Progress | None) -> None:
        self.encoder_ = _load_encoder(minilm_model_dir(), self.max_length)
        with torch_threads(self.threads):
            self.train_loss_ = self._tune_encoder(texts, [int(v) for v in y], progress)
        self._fit_head(self.embed(texts, progress), y, progress)

    def _tune_encoder(self, texts: list[str], y: list[int], progress: Progress | None) -> float:
        """Contrastive tuning of ``encoder_`` in place with setfit's Trainer; returns the mean training loss."""
        import datasets
        from setfit import SetFitModel, Trainer, TrainingArguments
        from setfit import logging as setfit_logging
        from transformers import PrinterCallback, ProgressCallback, TrainerCallback

        setfit_logging.set_verbosity_warning()  # its "***** Running training *****" banner would break the bar
        datasets.disable_progress_bars()
        report = progress

        class _Progress(TrainerCallback):
            """Per-step loss to ragtune's progress callback (setfit logs every step, see logging_steps)."""

            def __init__(self) -> None:
                self.losses: list[float] = []

            def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None,
                       **kwargs: Any) -> None:
                if logs and "embedding_loss" in logs:
                    loss = float(logs["embedding_loss"])
                    self.losses.append(loss)
                    if report:
                        report("train", int(state.global_step), int(state.max_steps), {"loss": loss})

        callback = _Progress()
        # The head passed here is never trained: train_embeddings tunes the body only; our head comes after.
        model = SetFitModel(model_body=self.encoder_, model_head=LogisticRegression())
        with tempfile.TemporaryDirectory(prefix="ragtune-setfit-") as tmp:
            args = TrainingArguments(
                output_dir=tmp, batch_size=self.batch_size, num_epochs=self.num_epochs,
                num_iterations=self.num_iterations, max_steps=self.max_steps,
                body_learning_rate=self.body_learning_rate, seed=self.random_state, report_to="none",
                save_strategy="no", logging_strategy="steps", logging_steps=1, logging_first_step=True,
                show_progress_bar=False,
            )
            trainer = Trainer(model=model, args=args, callbacks=[callback])
            for noisy in (ProgressCallback, PrinterCallback):  # tqdm bar or printed log dicts
                trainer.remove_callback(noisy)
            trainer.st_trainer.args.dataloader_pin_memory = False  # CPU: pinning only warns
            trainer.train_embeddings(texts, y, args=args)
        self.encoder_.eval()
        self.encoder_.to("cpu")
        return float(np.mean(callback.losses)) if callback.losses else float("nan")

    # -- inference ------------------------------------------------------------------------------------------
    def embed(self, texts: Sequence[str], progress: Progress | None = None) -> np.ndarray:
        """Unit-length embeddings from the tuned encoder, in batches, reporting progress."""
        out = []
        step = max(self.encode_batch_size * 8, 1)
        for start in range(0, len(texts), step):
            with torch_threads(self.threads):
                vecs = self.encoder_.encode(
                    list(texts[start : start + step]), batch_size=self.encode_batch_size,
                    normalize_embeddings=True, show_progress_bar=False, convert_to_numpy=True,
                )
            out.append(np.asarray(vecs, dtype=np.float32))
            if progress:
                progress("embed", min(start + step, len(texts)), len(texts), {})
        return np.vstack(out) if out else np.zeros((0, self.model_.coef_.shape[1]), dtype=np.float32)

    def _logits(self, texts: Sequence[str]) -> np.ndarray:
        return self.logits_from_embeddings(self.embed(texts))

    # -- persistence ----------------------------------------------------------------------------------------
    def _save_model(self, folder: Path) -> None:
        self.encoder_.save(str(folder / ENCODER_DIR), create_model_card=False)
        self._save_head(folder)

    def _load_model(self, folder: Path) -> None:
        encoder_dir = folder / ENCODER_DIR
        if not (folder / HEAD_FILE).is_file() or not encoder_dir.is_dir():
            raise ModelNotFoundError(f"{folder} holds no complete setfit model ({ENCODER_DIR}/ or {HEAD_FILE} "
                                     "missing): train it again")
        self.encoder_ = _load_encoder(encoder_dir, self.max_length)
        self._load_head(folder)
