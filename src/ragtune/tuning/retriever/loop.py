"""The training loop the bi-encoder and the reranker share (AdamW with linear warm-up and decay, gradient
clipping, a progress report per step, a time budget that stops cleanly after any step), and the part of their
reports that describes the run."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

if TYPE_CHECKING:
    from ragtune.tuning.registry import ModelCard

Progress = Callable[[str, int, int, dict[str, float]], None]
B = TypeVar("B")


@dataclass
class LoopResult:
    """Steps taken, each step's loss, seconds of training, and ``finished`` or ``time budget``."""

    steps: int
    seconds: float
    stopped: str
    losses: list[float] = field(default_factory=list)

    @property
    def final_loss(self) -> float:
        """Mean loss of the last 20 steps (NaN without any)."""
        return float(np.mean(self.losses[-20:])) if self.losses else math.nan


def train_steps(model: Any, batches: Iterator[B], loss_of: Callable[[B], Any], *, total: int,
                learning_rate: float, time_budget: float | None = None,
                progress: Progress | None = None) -> LoopResult:
    """Run ``total`` optimiser steps of ``loss_of(next(batches))`` on ``model`` (AdamW, weight decay 0.01, 10 %
    linear warm-up then linear decay, gradients clipped at norm 1), the model in train mode and back in eval mode
    after. ``time_budget`` seconds: stop after the step that crosses it (the result says so)."""
    import torch
    from transformers import get_linear_schedule_with_warmup

    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.01)
    schedule = get_linear_schedule_with_warmup(optimizer, max(1, total // 10), total)
    model.train()
    result = LoopResult(0, 0.0, "finished")
    started = time.monotonic()
    try:
        while result.steps < total:
            loss = loss_of(next(batches))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            result.steps += 1
            result.losses.append(float(loss.detach()))
            if progress is not None:
                progress("train", result.steps, total, {"loss": result.final_loss})
            if time_budget is not None and time.monotonic() - started >= time_budget and result.steps < total:
                result.stopped = "time budget"
                break
    finally:
        result.seconds = time.monotonic() - started
        model.eval()
    return result


def training_sections(card: ModelCard) -> list[str]:
    """The report lines both tuned retrieval models share: their pairs, their training run, and the heading of
    the held-out check (labelled queries or documents never trained on)."""
    m = card.metrics
    lines = ["## Pairs", ""] + [f"- {k.replace('_', ' ')}: {v}" for k, v in sorted(card.notes.get("pairs", {}).items())]
    unit = "labelled queries" if card.notes.get("holdout_unit") == "query" else "documents"
    return lines + ["", "## Training", "",
                    f"- {m['steps']} of {m['planned_steps']} steps ({card.notes['stopped']}), {m['train_seconds']} s, "
                    f"final loss {m['final_loss']:.4f}",
                    f"- settings: {', '.join(f'{k} {v}' for k, v in card.params.items())}", "",
                    f"## Held-out check ({unit} never trained on)", ""]
