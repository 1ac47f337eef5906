"""WiSE-FT curve of a pipeline run's bi-encoder variant: ``(1 - a) * backbone + a * trained`` weights.

    python benchmarks/wise_curve.py RUN_DIR [--variant plain] [--alphas 0,0.25,0.5,0.75,1]

For the in-domain test questions and every ``evaluate.extra`` collection it reranks the candidates the
backbone reranked (``rerank/backbone.trec``, ``eval/extra/<name>/backbone.trec``) with the interpolated
weights (fp32, the run's ``rerank.max_length``) and prints nDCG@10 at each alpha with its paired randomisation test against the backbone (a = 0).
The pipeline chooses alpha on the dev questions (``train.interpolate``); this script draws the whole
curve on the test sets, to be read as a curve, not to choose alpha (that would be tuning on them). The
trained end (a = 1) is the variant as written: for a variant that kept an interpolation itself, alpha
runs from the backbone to that interpolation.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from relforge.config import load_yaml
from relforge.data import read_run
from relforge.evaluate.core import evaluate

sys.path.insert(0, str(Path(__file__).parent))
from score_fusion import collections  # noqa: E402  (the run's test sets, read as score_fusion.py does)


def main() -> None:
    from sentence_transformers import SentenceTransformer

    from relforge.models import resolve_model
    from relforge.train.rerank import rerank
    from relforge.train.trainer import interpolate_states

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--variant", default="plain")
    ap.add_argument("--alphas", default="0,0.25,0.5,0.75,1")
    args = ap.parse_args()
    alphas = [float(a) for a in args.alphas.split(",")]
    summary = json.loads((args.run_dir / "train" / args.variant / "training_summary.json").read_text())
    if summary.get("kind") != "bi":
        raise SystemExit(f"{args.variant} is a {summary.get('kind')} model: the curve needs a bi-encoder")
    model = SentenceTransformer(resolve_model(summary["base"]))
    start = {k: v.detach().clone() for k, v in model.state_dict().items()}
    trained = SentenceTransformer(str(args.run_dir / "train" / args.variant)).state_dict()
    max_length = load_yaml(args.run_dir / "config.yaml").get("rerank", {}).get("max_length")
    sets = [
        (n, c, q, r, read_run(folder / "backbone.trec")) for n, c, q, r, folder in collections(args.run_dir)
    ]
    runs: dict[str, dict] = {name: {} for name, *_ in sets}
    for a in alphas:
        model.load_state_dict(interpolate_states(start, trained, a))
        for name, corpus, queries, _, cands in sets:
            top = max(len(d) for d in cands.values())
            runs[name][f"a={a:g}"] = rerank(
                "", corpus, queries, cands, top_k=top, kind="bi", model=model, max_length=max_length
            )
    for name, _, _, qrels, _ in sets:
        base = f"a={alphas[0]:g}"
        res = evaluate(qrels, runs[name], measures=["nDCG@10"], baseline=base)
        print(f"{name} ({len(res.queries)} queries): {base} nDCG@10 {res.aggregates[base]['nDCG@10']:.4f}")
        for run, tests in res.significance.items():
            t = tests["nDCG@10"]
            print(
                f"  {run:7s} {res.aggregates[run]['nDCG@10']:.4f}  {t.delta:+.4f} vs {base} (p {t.perm_p:.4f})"
            )


if __name__ == "__main__":
    main()
