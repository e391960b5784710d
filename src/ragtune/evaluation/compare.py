"""``ragtune eval compare RUN_A RUN_B``: paired differences of two retrieval runs, or of two answers runs, with
bootstrap intervals.

Retrieval runs are paired by configuration name and by query id; answers runs (``eval answers``) by question
id, as one configuration named ``answers`` with the metrics EM, F1, abstained, citation precision and citation
recall, each over the questions both runs have a value for. Only the queries both runs scored count, so a run
over a subset still compares on what it shares; runs that share no query are refused, and so is a retrieval
run against an answers run. Each difference is ``B − A`` per query, its mean and the paired bootstrap interval
(``evaluation.bootstrap``). What changed between the runs that could explain a difference (settings and answer
fingerprints, embedder, index version, checker) is listed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ragtune.errors import DataError
from ragtune.evaluation.bootstrap import paired_bootstrap

SHOWN = ("ndcg@10", "mrr@10")  # plus every recall@k: the rows of the terminal table
ANSWER_METRICS = ("em", "f1", "abstained", "citation_precision", "citation_recall")


def load_run(path: Path) -> dict[str, Any]:
    """A ``run.json`` of ``ragtune eval retrieval`` or an ``answers.json`` of ``ragtune eval answers`` (a folder
    holding one is accepted too)."""
    if path.is_dir():
        path = next((path / n for n in ("run.json", "answers.json") if (path / n).is_file()), path / "run.json")
    if not path.is_file():
        raise DataError(f"{path}: no such file; give a run.json written by `ragtune eval retrieval` or an "
                        "answers.json written by `ragtune eval answers`")
    try:
        run = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a JSON file ({exc})") from exc
    if isinstance(run, dict) and run.get("kind") == "answers" and isinstance(run.get("per_question"), list):
        run["results"] = {"answers": {"per_query": _answer_scores(run["per_question"])}}
        run["answer_fingerprint"] = (run.get("settings") or {}).get("answer_fingerprint")
        run["checker_name"] = (run.get("checker") or {}).get("name")
    elif not isinstance(run, dict) or run.get("kind") != "retrieval" or "results" not in run:
        raise DataError(f"{path}: not a run of `ragtune eval retrieval` (no kind 'retrieval' with results) or of "
                        "`ragtune eval answers` (kind 'answers' with per_question rows)")
    run["_path"] = str(path)
    return run


def _answer_scores(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Question id → its compared metrics (those without a value for the question left out)."""
    out: dict[str, dict[str, float]] = {}
    for r in rows:
        scores = {m: float(r[m]) for m in ANSWER_METRICS if r.get(m) is not None}
        out[str(r["id"])] = scores
    return out


def _metric_order(key: str) -> tuple[int, int]:
    if key in ANSWER_METRICS:
        return 5, ANSWER_METRICS.index(key)
    name, _, k = key.partition("@")
    rank = {"ndcg": 0, "mrr": 1, "recall": 2, "precision": 3}.get(name, 4)
    return rank, int(k) if k.isdigit() else 0


def compare_runs(a: dict[str, Any], b: dict[str, Any], resamples: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Per shared configuration and metric: A's and B's mean on the shared queries and the paired interval."""
    if a.get("kind") != b.get("kind"):
        raise DataError(f"run A is a run of `eval {a.get('kind')}` and run B of `eval {b.get('kind')}`: compare two "
                        "runs of the same command")
    configs = [c for c in a["results"] if c in b["results"]]
    if not configs:
        raise DataError(f"the runs share no configuration: A has {', '.join(a['results'])}, B has "
                        f"{', '.join(b['results'])}")
    out: dict[str, Any] = {"run_a": a.get("_path"), "run_b": b.get("_path"), "resamples": resamples, "seed": seed,
                           "changed": {k: [a.get(k), b.get(k)] for k in
                                       ("settings_fingerprint", "answer_fingerprint", "embedder_fingerprint",
                                        "index_version", "checker_name")
                                       if a.get(k) != b.get(k)},
                           "configs": {}}
    for name in configs:
        pa, pb = a["results"][name]["per_query"], b["results"][name]["per_query"]
        shared = sorted(set(pa) & set(pb))
        if not shared:
            raise DataError(f"the runs share no query id (configuration {name}: A scored {len(pa)} queries, "
                            f"e.g. {', '.join(sorted(pa)[:3])}; B scored {len(pb)}, e.g. {', '.join(sorted(pb)[:3])}"
                            "): compare runs of the same query set")
        metrics = sorted({m for q in shared for m in pa[q]} & {m for q in shared for m in pb[q]}, key=_metric_order)
        rows = {}
        for m in metrics:
            both = [q for q in shared if m in pa[q] and m in pb[q]]  # answers: a metric may not apply to each
            if not both:
                continue
            xa, xb = [pa[q][m] for q in both], [pb[q][m] for q in both]
            d = paired_bootstrap(xa, xb, resamples, seed)
            rows[m] = {"a": sum(xa) / len(xa), "b": sum(xb) / len(xb), **d.to_dict()}
        out["configs"][name] = {"shared_queries": len(shared), "only_a": len(set(pa) - set(pb)),
                                "only_b": len(set(pb) - set(pa)), "metrics": rows}
    return out


def shown_metrics(metrics: dict[str, Any]) -> list[str]:
    """The metrics of the terminal table: nDCG@10, MRR@10 and each recall@k; or the answers metrics."""
    return [m for m in metrics if m in SHOWN or m in ANSWER_METRICS or m.startswith("recall@")]
