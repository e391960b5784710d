"""Write the results of ``banking77_sweep.py`` into docs/benchmarks.md, with what ensembling adds.

Usage (each RUN folder holds the sweep's ``results.jsonl`` and ``logits.npz`` from ``--logits``):

    RAGTUNE_DATA=../shared/data .venv/bin/python benchmarks/banking77_sweep_report.py RUN1 RUN2 \
        --combine 1:0+1:28 --combine 1:18+2:0+2:1

One row per trained configuration: its validation accuracy alone and averaged with the frozen ``head`` (packaged
MiniLM embeddings + logistic regression fitted on the same training part, C 10 for the full split and 100 for 10
per class). ``--combine`` adds a row for an average of several runs (RUN number:config number, joined by ``+``),
again alone and with the head. Everything is scored on the sweep's validation split of *train*.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import log_softmax
from sklearn.linear_model import LogisticRegression

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import command_line, data_dir, emit, write_row  # noqa: E402
from banking77_sweep import DEFAULTS, load, split  # noqa: E402

from ragtune.models.embedder import MiniLMEmbedder  # noqa: E402

SECTION = "banking77 validation sweep"
HEADER = ["run / mode / settings (seed)", "validation accuracy", "averaged with head", "GPU train time"]
HEAD_C = {"full": 10.0, "few": 100.0}


def settings(cfg: dict[str, Any]) -> str:
    changed = {k: v for k, v in cfg.items() if k not in ("mode", "seed") and DEFAULTS.get(k) != v}
    return json.dumps(changed) if changed else "defaults"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--combine", action="append", default=[], help="e.g. 1:0+1:28")
    args = parser.parse_args()
    texts, labels = load(data_dir() / "banking77" / "train.csv")
    classes = sorted(set(labels))
    y = np.array([classes.index(label) for label in labels])
    emb = MiniLMEmbedder(batch_size=64).embed(texts)
    head: dict[str, np.ndarray] = {}
    for mode in HEAD_C:
        tr, va = split(mode, labels, DEFAULTS["shots"])
        lr = LogisticRegression(C=HEAD_C[mode], max_iter=3000).fit(emb[tr], y[tr])
        head[mode] = lr.predict_log_proba(emb[va])
    results: dict[str, tuple[dict[str, Any], np.ndarray]] = {}
    for r, run in enumerate(args.runs, start=1):
        logits = np.load(run / "logits.npz")
        for line in (run / "results.jsonl").read_text().splitlines():
            res = json.loads(line)
            results[f"{r}:{res['n']}"] = (res, log_softmax(logits[str(res["n"])].astype(np.float32), axis=1))

    def score(keys: list[str]) -> tuple[str, float, float]:
        modes = {results[k][0]["cfg"]["mode"] for k in keys}
        if len(modes) != 1:
            raise SystemExit(f"{'+'.join(keys)}: runs of different modes cannot be averaged")
        mode = modes.pop()
        _, va = split(mode, labels, DEFAULTS["shots"])
        mean = np.mean([results[k][1] for k in keys], axis=0)
        alone = float((mean.argmax(1) == y[va]).mean())
        # the head counts as one more member: weight 1/(n+1)
        with_head = float(((mean * len(keys) + head[mode]).argmax(1) == y[va]).mean())
        return mode, alone, with_head

    rows = []
    for key, (res, _) in sorted(results.items(), key=lambda kv: (kv[1][0]["cfg"]["mode"], kv[0])):
        mode, alone, with_head = score([key])
        cfg = res["cfg"]
        name = f"{key} / {mode} / {settings(cfg)} (seed {cfg['seed']})"
        rows.append((name, f"| {name} | {alone * 100:.2f} % | {with_head * 100:.2f} % | {res['train_s']:.0f} s |"))
        emit("banking77_sweep", run=key, mode=mode, settings=cfg, accuracy=alone, with_head=with_head)
    for combo in args.combine:
        keys = combo.split("+")
        mode, alone, with_head = score(keys)
        name = f"average of {' + '.join(keys)} / {mode}"
        rows.append((name, f"| {name} | {alone * 100:.2f} % | {with_head * 100:.2f} % | — |"))
        emit("banking77_sweep", combine=keys, mode=mode, accuracy=alone, with_head=with_head)
    for name, row in rows:
        write_row(
            SECTION, name, row, header=HEADER, command=command_line(),
            intro=("Settings for `finetune` and `ensemble` were chosen here, on validation splits of banking77's "
                   "*training* set only (`full`: 20 % held out, stratified; `few`: 10 per class, scored on 2,000 "
                   "other training messages). Each configuration was trained by `benchmarks/banking77_sweep.py` "
                   "on a lent H100 GPU, 10 to 14 runs sharing it (train times are not CPU times); 'averaged with "
                   f"head' adds the frozen-embedding logistic regression as one more member. Measured "
                   f"{time.strftime('%Y-%m-%d')}. With 2,000 validation messages one standard error is about "
                   "0.6 points: single differences below a point are noise."),
        )


if __name__ == "__main__":
    main()
