"""``ragtune eval compare RUN_A RUN_B``: paired differences of two retrieval runs, with bootstrap intervals.

Runs are paired by configuration name and by query id: only the queries both runs scored count, so a run
over a subset still compares on what it shares; runs that share no query are refused. Each difference is
``B − A`` per query, its mean and the paired bootstrap interval (``evaluation.bootstrap``). What changed
between the runs that could explain a difference (settings fingerprint, embedder, index version) is listed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ragtune.errors import DataError
from ragtune.evaluation.bootstrap import paired_bootstrap

SHOWN = ("ndcg@10", "mrr@10")  # plus every recall@k: the rows of the terminal table


def load_run(path: Path) -> dict[str, Any]:
    """A ``run.json`` written by ``ragtune eval retrieval`` (a folder holding one is accepted too)."""
    path = path / "run.json" if path.is_dir() else path
    if not path.is_file():
        raise DataError(f"{path}: no such file; give a run.json written by `ragtune eval retrieval`")
    try:
        run = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a JSON file ({exc})") from exc
    if not isinstance(run, dict) or run.get("kind") != "retrieval" or "results" not in run:
        raise DataError(f"{path}: not a run of `ragtune eval retrieval` (no kind 'retrieval' with results)")
    run["_path"] = str(path)
    return run


def _metric_order(key: str) -> tuple[int, int]:
    name, _, k = key.partition("@")
    rank = {"ndcg": 0, "mrr": 1, "recall": 2, "precision": 3}.get(name, 4)
    return rank, int(k) if k.isdigit() else 0


def compare_runs(a: dict[str, Any], b: dict[str, Any], resamples: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Per shared configuration and metric: A's and B's mean on the shared queries and the paired interval."""
    configs = [c for c in a["results"] if c in b["results"]]
    if not configs:
        raise DataError(f"the runs share no configuration: A has {', '.join(a['results'])}, B has "
                        f"{', '.join(b['results'])}")
    out: dict[str, Any] = {"run_a": a.get("_path"), "run_b": b.get("_path"), "resamples": resamples, "seed": seed,
                           "changed": {k: [a.get(k), b.get(k)] for k in
                                       ("settings_fingerprint", "embedder_fingerprint", "index_version")
                                       if a.get(k) != b.get(k)},
                           "configs": {}}
    for name in configs:
        pa, pb = a["results"][name]["per_query"], b["results"][name]["per_query"]
        shared = sorted(set(pa) & set(pb))
        if not shared:
            raise DataError(f"the runs share no query id (configuration {name}: A scored {len(pa)} queries, "
                            f"e.g. {', '.join(sorted(pa)[:3])}; B scored {len(pb)}, e.g. {', '.join(sorted(pb)[:3])}"
                            "): compare runs of the same query set")
        metrics = sorted(set(pa[shared[0]]) & set(pb[shared[0]]), key=_metric_order)
        rows = {}
        for m in metrics:
            xa, xb = [pa[q][m] for q in shared], [pb[q][m] for q in shared]
            d = paired_bootstrap(xa, xb, resamples, seed)
            rows[m] = {"a": sum(xa) / len(xa), "b": sum(xb) / len(xb), **d.to_dict()}
        out["configs"][name] = {"shared_queries": len(shared), "only_a": len(set(pa) - set(pb)),
                                "only_b": len(set(pb) - set(pa)), "metrics": rows}
    return out


def shown_metrics(metrics: dict[str, Any]) -> list[str]:
    """The metrics of the terminal table: nDCG@10, MRR@10 and each recall@k."""
    return [m for m in metrics if m in SHOWN or m.startswith("recall@")]
