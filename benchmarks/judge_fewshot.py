"""Few-shot grade-token judging, 5-fold by query (issue 16 lever "few-shot templates").

For each outer fold (the folds of ``benchmarks/judge_preset.py``: by query, seed 0) the judge prompt
(``relevance-0to3``) gets ``k`` examples **per grade** drawn from that fold's *training* pairs (human
LiveQA-Med grades; never a pair of the fold it judges), as user/assistant chat turns in shuffled order; the
fold's pairs are then judged once (``probs`` mode: the distribution over the grade tokens). Reported per
shot count: pair / per-query Kendall tau_b of the expected grade, and quadratic kappa / accuracy / macro-F1
of the argmax grade, mean +- sd over folds, beside raw MiniLM cosine on the same folds, with pairs/s of
each judge measured in this run.

    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 python benchmarks/judge_fewshot.py --shots 0 1 2 \\
        [--llm smollm2] [--precision bf16] [--out runs/fewshot.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from judge_preset import METRICS, folds_by_query, load_pairs, summarise  # noqa: E402

from relforge.judge.agreement import pair_metrics  # noqa: E402
from relforge.judge.judge import judge_pairs  # noqa: E402
from relforge.judge.preset import compute_features, load_embedder  # noqa: E402
from relforge.judge.prompt import JudgeTemplate  # noqa: E402


def draw_examples(pairs, grades, queries, docs, train, k: int, rng) -> list[dict]:
    """``k`` training pairs per grade (fewer if a grade has fewer), shuffled: the template's ``few_shot``."""
    shots = []
    for g in (0, 1, 2, 3):
        rows = [i for i in train if grades[i] == g]
        for i in rng.choice(rows, size=min(k, len(rows)), replace=False):
            q, d = pairs[i]
            shots.append({"query": queries[q].text, "title": docs[d].title, "text": docs[d].text, "grade": g})
    return [shots[i] for i in rng.permutation(len(shots))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shots", type=int, nargs="+", default=[0, 1, 2], help="examples per grade")
    ap.add_argument("--llm", default="smollm2")
    ap.add_argument("--precision", default="bf16")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-doc-tokens", type=int, default=128, help="for the judged pair and every example")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--smoke", type=int, default=0, help="judge only the first N pairs of each fold (a check)"
    )
    ap.add_argument("--out", default=None, help="also write the table and per-fold numbers as JSON here")
    args = ap.parse_args()

    import torch

    from relforge.judge.run import open_llm

    torch.set_num_threads(args.threads)
    pairs, grades, queries, docs = load_pairs()
    qids = [q for q, _ in pairs]
    full = folds_by_query(qids, args.folds, args.seed)  # examples come from the other folds' pairs
    folds = [f[: args.smoke] for f in full] if args.smoke else full
    t = time.time()
    cos = np.asarray(
        compute_features(
            ["cos"],
            [queries[q].text for q in qids],
            [docs[d] for _, d in pairs],
            embedder=load_embedder("minilm"),
        )["cos"]
    )
    rates = {"MiniLM cosine": len(pairs) / (time.time() - t)}
    per = {"MiniLM cosine (raw, ranking only)": []}
    for test in folds:
        m = pair_metrics(grades[test], [0] * len(test), cos[test], [qids[i] for i in test], [0, 1, 2, 3])
        per["MiniLM cosine (raw, ranking only)"].append(
            {x: m.get(x) if "tau" in x else None for x in METRICS}
        )
    llm = open_llm(args.llm, cache=False, batch_size=args.batch_size, options={"precision": args.precision})
    base = JudgeTemplate.load("relevance-0to3")
    for k in args.shots:
        name = f"{args.llm} {k}-shot per grade ({4 * k} examples)" if k else f"{args.llm} zero-shot"
        per[name], secs = [], 0.0
        for f, test in enumerate(folds):
            train = np.setdiff1d(np.arange(len(pairs)), full[f])
            rng = np.random.default_rng(args.seed * 1000 + f)
            tpl = JudgeTemplate.from_dict(
                {**base.to_dict(), "few_shot": draw_examples(pairs, grades, queries, docs, train, k, rng)},
                source=f"relevance-0to3 + {k}-shot",
            )
            t = time.time()
            js = judge_pairs(
                llm, tpl, queries, docs, [pairs[i] for i in test], progress=False,
                batch_size=args.batch_size, max_doc_tokens=args.max_doc_tokens,
            )  # fmt: skip
            secs += time.time() - t
            m = pair_metrics(
                grades[test],
                [j.grade for j in js],
                [j.expected for j in js],
                [qids[i] for i in test],
                [0, 1, 2, 3],
            )
            per[name].append({x: m.get(x) for x in METRICS})
            dist = np.bincount([j.grade for j in js], minlength=4).tolist()
            print(f"{name} fold {f}: tau_b {m['kendall_tau_b']:.3f}, argmax grades {dist}", flush=True)
        rates[name] = sum(map(len, folds)) / secs
    print(
        f"{args.folds}-fold by query, {len(pairs)} pairs, {len(set(qids))} queries, seed {args.seed}; mean +- sd"
    )
    print(f"{'labeller':44s} " + " ".join(f"{m:>15s}" for m in METRICS) + "   pairs/s")
    table = {}
    for name, folds_m in per.items():
        table[name] = summarise(folds_m)
        cells = [f"{v[0]:.3f}+-{v[1]:.3f}" if v[0] is not None else "-" for v in table[name].values()]
        rate = next((r for n, r in rates.items() if name.startswith(n)), float("nan"))
        print(f"{name:44s} " + " ".join(f"{c:>15s}" for c in cells) + f"  {rate:8.2f}")
    if args.out:
        Path(args.out).write_text(json.dumps({"table": table, "folds": per, "pairs_per_s": rates}, indent=1))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
