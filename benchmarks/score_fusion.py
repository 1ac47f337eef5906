"""Fuse a trained reranker's run with the untrained backbone's run, from a pipeline run's TREC files.

    python benchmarks/score_fusion.py RUN_DIR [--variant plain] [--weights 0,0.25,0.5,0.75,1]

For the in-domain test questions (``rerank/<system>.trec`` against ``data/test-qrels.tsv``) and every
``evaluate.extra`` collection (``eval/extra/<name>/<system>.trec`` against the collection's qrels), it
prints nDCG@10 of the backbone, of z-score fusion ``(1 - w) * z(backbone) + w * z(variant)`` (z per
query) at each weight, and of reciprocal-rank fusion (k = 60), each with its paired randomisation test
against the backbone. Nothing is tuned: read the weights as a curve, since choosing one on the test
questions would be tuning on them.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from relforge.data import read_beir, read_corpus, read_qrels, read_queries, read_run
from relforge.data.io import resolve_data_source
from relforge.evaluate.core import evaluate
from relforge.retrieve.fusion import rrf
from relforge.types import Qrels, Run


def zfuse(backbone: Run, variant: Run, w: float) -> Run:
    """``(1 - w) * z(backbone) + w * z(variant)`` per query (both runs rank the same candidates)."""
    out: Run = {}
    for qid, docs in backbone.items():
        parts = []
        for run in (docs, variant[qid]):
            mean, sd = statistics.fmean(run.values()), statistics.pstdev(run.values()) or 1.0
            parts.append({d: (s - mean) / sd for d, s in run.items()})
        out[qid] = {d: (1 - w) * parts[0][d] + w * parts[1][d] for d in docs}
    return out


def collections(run_dir: Path) -> list[tuple[str, dict, dict, Qrels, Path]]:
    """(name, corpus, queries, qrels, folder with backbone.trec and <variant>.trec) for the test set and
    every extra collection (also read by ``wise_curve.py``)."""
    data = run_dir / "data"
    found = [
        (
            "in domain",
            read_corpus(data / "corpus.jsonl"),
            read_queries(data / "test-queries.jsonl"),
            read_qrels(data / "test-qrels.tsv"),
            run_dir / "rerank",
        )
    ]
    summary = run_dir / "eval" / "extra" / "summary.json"
    for name, meta in (json.loads(summary.read_text()) if summary.exists() else {}).items():
        corpus, queries, qrels = read_beir(resolve_data_source(meta["source"]), meta["split"])
        found.append((name, corpus, queries, qrels, run_dir / "eval" / "extra" / name))
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--variant", default="plain")
    ap.add_argument("--weights", default="0,0.25,0.5,0.75,1")
    args = ap.parse_args()
    weights = [float(w) for w in args.weights.split(",")]
    for name, _, _, qrels, folder in collections(args.run_dir):
        backbone = read_run(folder / "backbone.trec")
        variant = read_run(folder / f"{args.variant}.trec")
        runs = {"backbone": backbone, **{f"z w={w:g}": zfuse(backbone, variant, w) for w in weights}}
        runs["rrf k=60"] = rrf([backbone, variant])
        res = evaluate(qrels, runs, measures=["nDCG@10"], baseline="backbone")
        print(
            f"{name} ({len(res.queries)} queries): backbone nDCG@10 {res.aggregates['backbone']['nDCG@10']:.4f}"
        )
        for run, tests in res.significance.items():
            t = tests["nDCG@10"]
            print(
                f"  {run:10s} {res.aggregates[run]['nDCG@10']:.4f}  {t.delta:+.4f} vs backbone (p {t.perm_p:.4f})"
            )


if __name__ == "__main__":
    main()
