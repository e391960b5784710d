"""Hyperparameter sweep for fine-tuning MiniLM on banking77, scored on a validation split of *train* only.

This chooses the recipe and settings that ``ragtune.tuning.finetune.FineTuneClassifier`` uses; the reported test
figures come from ``banking77_classifiers.py``. It needs only torch, transformers and scikit-learn, so it runs on
any machine (a GPU makes the whole grid take minutes instead of hours):

    python benchmarks/banking77_sweep.py --model-dir MODEL --data DATA/banking77 --configs GRID.json \
        [--worker 0 --workers 1] --out results.jsonl

``GRID.json`` is a list of settings dicts (keys: see ``DEFAULTS``); the grids behind ragtune's settings are
``benchmarks/sweeps/banking77_grid*.json``, run with ``benchmarks/sweeps/run_on_gpu.sh`` (several workers
sharing one GPU) on a copy of the packaged MiniLM stored in float16 (to travel light; it is loaded as float32),
and written into docs/benchmarks.md by ``banking77_sweep_report.py``. ``mode`` ``full`` trains on 80 % of train and
validates on the other 20 % (stratified, seed 0); ``few`` trains on 10 examples per class (the same sample as
``banking77_classifiers.py --shots 10``) and validates on 2,000 other training messages. The test set is never read.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from transformers import AutoModel, AutoTokenizer

DEFAULTS: dict[str, Any] = {
    "mode": "full", "epochs": 3.0, "lr": 1e-4, "head_lr": 3e-3, "bs": 32, "wd": 0.01, "warmup": 0.1,
    "ls": 0.0, "head": "linear", "scale": 20.0, "supcon": 0.0, "temp": 0.1, "llrd": 1.0, "labelnames": False,
    "sampler": "random", "k": 4, "seed": 0, "maxlen": 64, "shots": 10, "aug": 0.0,
}


def load(path: Path) -> tuple[list[str], list[str]]:
    rows = list(csv.DictReader(path.open(encoding="utf-8")))
    return [r["text"] for r in rows], [r["category"] for r in rows]


def few_shot_indices(labels: list[str], shots: int, seed: int) -> list[int]:
    by_class: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        by_class.setdefault(label, []).append(i)
    rng = random.Random(seed)
    return sorted(i for idx in by_class.values() for i in rng.sample(idx, min(shots, len(idx))))


def split(mode: str, labels: list[str], shots: int) -> tuple[list[int], list[int]]:
    from sklearn.model_selection import train_test_split

    if mode == "full":
        tr, va = train_test_split(np.arange(len(labels)), test_size=0.2, stratify=labels, random_state=0)
        return list(tr), list(va)
    tr = few_shot_indices(labels, shots, 0)
    rest = sorted(set(range(len(labels))) - set(tr))
    return tr, random.Random(1).sample(rest, 2000)


class Classifier(torch.nn.Module):
    def __init__(self, encoder: Any, n: int, head: str, scale: float) -> None:
        super().__init__()
        self.encoder, self.head, self.scale = encoder, head, scale
        self.classifier = torch.nn.Linear(encoder.config.hidden_size, n, bias=head == "linear")

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        states = self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        m = mask.unsqueeze(-1).to(states.dtype)
        pooled = (states * m).sum(1) / m.sum(1).clamp(min=1e-9)
        if self.head == "cosine":
            logits = self.scale * F.normalize(pooled, dim=-1) @ F.normalize(self.classifier.weight, dim=-1).T
        else:
            logits = self.classifier(pooled)
        return logits, pooled


def supcon(z: torch.Tensor, y: torch.Tensor, temp: float) -> torch.Tensor:
    z = F.normalize(z, dim=-1)
    sim = z @ z.T / temp
    eye = torch.eye(len(y), device=z.device, dtype=torch.bool)
    sim = sim.masked_fill(eye, -1e9)
    pos = (y[:, None] == y[None, :]) & ~eye
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    has = pos.any(1)
    if not has.any():
        return z.sum() * 0
    return -((log_prob * pos).sum(1)[has] / pos.sum(1)[has]).mean()


def batches(y: np.ndarray, cfg: dict[str, Any], rng: np.random.Generator) -> list[np.ndarray]:
    """One epoch of index batches: shuffled, or P classes x K examples each (``pk``)."""
    if cfg["sampler"] == "random":
        order = rng.permutation(len(y))
        return [order[i : i + cfg["bs"]] for i in range(0, len(y), cfg["bs"])]
    k, p = cfg["k"], cfg["bs"] // cfg["k"]
    pools = {c: list(rng.permutation(np.flatnonzero(y == c))) for c in np.unique(y)}
    out = []
    for _ in range(math.ceil(len(y) / cfg["bs"])):
        classes = rng.choice(list(pools), size=p, replace=False)
        idx = []
        for c in classes:
            if len(pools[c]) < k:
                pools[c] = list(rng.permutation(np.flatnonzero(y == c)))
            idx += [pools[c].pop() for _ in range(k)]
        out.append(np.array(idx))
    return out


def augment(text: str, p: float, rng: np.random.Generator) -> str:
    """Drop each word with probability ``p`` (keeping at least one) and swap one random pair of words."""
    words = text.split()
    kept = [w for w in words if rng.random() >= p] or [words[int(rng.integers(len(words)))]]
    if len(kept) > 2 and rng.random() < p * 3:
        i, j = rng.choice(len(kept), size=2, replace=False)
        kept[i], kept[j] = kept[j], kept[i]
    return " ".join(kept)


def encode(tok: Any, texts: list[str], maxlen: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    enc = tok(texts, padding=True, truncation=True, max_length=maxlen, return_tensors="pt")
    return enc["input_ids"].to(device), enc["attention_mask"].to(device)


def run(cfg: dict[str, Any], model_dir: str, texts: list[str], labels: list[str], device: str) -> dict[str, Any]:
    cfg = {**DEFAULTS, **cfg}
    torch.manual_seed(cfg["seed"])
    rng = np.random.default_rng(cfg["seed"])
    classes = sorted(set(labels))
    index = {c: i for i, c in enumerate(classes)}
    tr, va = split(cfg["mode"], labels, cfg["shots"])
    tr_texts, tr_y = [texts[i] for i in tr], [index[labels[i]] for i in tr]
    if cfg["labelnames"]:
        tr_texts += [c.replace("_", " ") for c in classes]
        tr_y += list(range(len(classes)))
    y = np.array(tr_y)
    tok = AutoTokenizer.from_pretrained(model_dir)
    encoder = AutoModel.from_pretrained(model_dir, torch_dtype=torch.float32)
    model = Classifier(encoder, len(classes), cfg["head"], cfg["scale"]).to(device)
    groups = []
    n_layers = encoder.config.num_hidden_layers
    for name, p in model.named_parameters():
        if name.startswith("classifier."):
            lr = cfg["head_lr"]
        else:
            depth = n_layers  # embeddings get the most decay, the top layer none
            if ".layer." in name:
                depth = n_layers - 1 - int(name.split(".layer.")[1].split(".")[0])
            lr = cfg["lr"] * cfg["llrd"] ** depth
        wd = 0.0 if "bias" in name or "LayerNorm" in name else cfg["wd"]
        groups.append({"params": [p], "lr": lr, "weight_decay": wd})
    opt = torch.optim.AdamW(groups)
    steps_per_epoch = math.ceil(len(y) / cfg["bs"])
    total = max(1, int(steps_per_epoch * cfg["epochs"]))
    warm = int(total * cfg["warmup"])
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / max(1, warm) if s < warm else max(0.0, (total - s) / max(1, total - warm)))
    va_texts, va_y = [texts[i] for i in va], np.array([index[labels[i]] for i in va])
    t0 = time.perf_counter()
    step, curve = 0, []
    while step < total:
        model.train()
        for b in batches(y, cfg, rng):
            if step >= total:
                break
            batch = [tr_texts[i] for i in b]
            if cfg["aug"]:
                batch = [augment(t, cfg["aug"], rng) for t in batch]
            ids, mask = encode(tok, batch, cfg["maxlen"], device)
            target = torch.from_numpy(y[b]).to(device)
            logits, pooled = model(ids, mask)
            loss = F.cross_entropy(logits, target, label_smoothing=cfg["ls"])
            if cfg["supcon"]:
                loss = loss + cfg["supcon"] * supcon(pooled, target, cfg["temp"])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
        curve.append(round(float(accuracy(model, tok, va_texts, va_y, cfg["maxlen"], device)[0]), 4))
    acc, logits = accuracy(model, tok, va_texts, va_y, cfg["maxlen"], device)
    return {"cfg": cfg, "val_acc": acc, "curve": curve, "train_s": time.perf_counter() - t0,
            "val_logits": logits}


@torch.no_grad()
def accuracy(model: Classifier, tok: Any, texts: list[str], y: np.ndarray, maxlen: int, device: str
             ) -> tuple[float, np.ndarray]:
    model.eval()
    out = []
    for i in range(0, len(texts), 256):
        ids, mask = encode(tok, texts[i : i + 256], maxlen, device)
        out.append(model(ids, mask)[0].float().cpu().numpy())
    logits = np.concatenate(out)
    return float((logits.argmax(1) == y).mean()), logits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--data", required=True, type=Path, help="folder with banking77 train.csv")
    parser.add_argument("--configs", required=True, type=Path)
    parser.add_argument("--worker", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--logits", type=Path, help="folder to save validation logits (.npy) in")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    texts, labels = load(args.data / "train.csv")
    grid = json.loads(args.configs.read_text())
    for n, cfg in enumerate(grid):
        if n % args.workers != args.worker:
            continue
        result = run(cfg, args.model_dir, texts, labels, device)
        logits = result.pop("val_logits")
        if args.logits:
            args.logits.mkdir(parents=True, exist_ok=True)
            np.save(args.logits / f"{n}.npy", logits.astype(np.float16))
        result["n"] = n
        with args.out.open("a") as f:
            f.write(json.dumps(result) + "\n")
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
