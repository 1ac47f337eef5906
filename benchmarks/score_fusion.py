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

from relforge.data.samples import sample_path
from relforge.evaluate.core import evaluate
from relforge.types import Run


def read_run(path: Path) -> Run:
    run: Run = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        qid, _, docid, _, score, _ = line.split()
        run.setdefault(qid, {})[docid] = float(score)
    return run


def zscores(run: Run) -> Run:
    out: Run = {}
    for qid, docs in run.items():
        mean, sd = statistics.fmean(docs.values()), statistics.pstdev(docs.values()) or 1.0
        out[qid] = {d: (s - mean) / sd for d, s in docs.items()}
    return out


def zfuse(backbone: Run, variant: Run, w: float) -> Run:
    zb, zv = zscores(backbone), zscores(variant)
    return {
        q: {
            d: (1 - w) * s + w * zv.get(q, {}).get(d, min(zv.get(q, {0: 0.0}).values()))
            for d, s in docs.items()
        }
        for q, docs in zb.items()
    }


def rrf(a: Run, b: Run, k: int = 60) -> Run:
    out: Run = {}
    for q in a:
        ra = {d: i for i, d in enumerate(sorted(a[q], key=lambda d: -a[q][d]), 1)}
        rb = {d: i for i, d in enumerate(sorted(b.get(q, {}), key=lambda d: -b[q][d]), 1)}
        out[q] = {d: 1 / (k + ra[d]) + 1 / (k + rb.get(d, len(rb) + 1)) for d in a[q]}
    return out


def collections(run_dir: Path) -> list[tuple[str, Path, Path]]:
    """(name, qrels, folder with backbone.trec and <variant>.trec) for the test set and every extra."""
    found = [("in domain", run_dir / "data" / "test-qrels.tsv", run_dir / "rerank")]
    summary = run_dir / "eval" / "extra" / "summary.json"
    if summary.exists():
        for name, meta in json.loads(summary.read_text()).items():
            src = meta["source"]
            root = sample_path(src.split(":", 1)[1]) if src.startswith("sample:") else Path(src)
            found.append((name, root / "qrels" / f"{meta['split']}.tsv", run_dir / "eval" / "extra" / name))
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--variant", default="plain")
    ap.add_argument("--weights", default="0,0.25,0.5,0.75,1")
    args = ap.parse_args()
    weights = [float(w) for w in args.weights.split(",")]
    for name, qrels, folder in collections(args.run_dir):
        backbone = read_run(folder / "backbone.trec")
        variant = read_run(folder / f"{args.variant}.trec")
        runs = {"backbone": backbone, **{f"z w={w:g}": zfuse(backbone, variant, w) for w in weights}}
        runs["rrf k=60"] = rrf(backbone, variant)
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
