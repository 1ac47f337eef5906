"""A shipped judge preset (`relforge judge --preset best`): its SmolLM2 features (query likelihood, hidden-state
probe) in fp32 vs bf16, throughput as ratios in one run, and what the precision does to the labels.

Same pairs (the first ``--pairs`` distinct human-judged pairs of the bundled liveqa-med sample, whole
queries), same features and head as ``judge --preset best`` (`relforge.judge.preset.compute_features`,
the preset's calibration head). The MiniLM cosine feature is computed once in fp32 and shared (its
precision is measured by precision_encode.py). The two LLMs run chunk by chunk in rotation, so machine
load hits them alike.

Quality, per precision: pair Kendall tau_b of the preset's expected grade vs the human grades, Pearson of
each QL feature and of the expected grade vs fp32, share of pairs with the same grade. The head was fitted
on all these pairs (fp32 features), so the tau_b values are not held out; their *difference* is what a
precision costs.

Run:  HF_HUB_OFFLINE=1 python benchmarks/precision_preset.py [--pairs 400] [--chunk 48]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402

PRECISIONS = ("fp32", "bf16")


def main() -> None:
    from judge_preset import load_pairs
    from scipy.stats import kendalltau, pearsonr

    from relforge.judge.preset import COS_FEATURES, LLM_FEATURES, JudgePreset, compute_features, load_embedder
    from relforge.judge.run import open_llm

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=400)
    ap.add_argument("--chunk", type=int, default=48, help="pairs per precision turn")
    ap.add_argument("--batch-size", type=int, default=16, help="as the pipeline's judge.batch_size")
    ap.add_argument("--preset", default="best", help="a shipped preset's name or a preset JSON file")
    args = ap.parse_args()

    preset = JudgePreset.load(args.preset)
    pairs, grades, queries, docs = load_pairs()
    pairs, grades = pairs[: args.pairs], grades[: args.pairs]
    qt = [queries[q].text for q, _ in pairs]
    ds = [docs[d] for _, d in pairs]
    names = preset.head.features
    ql_names = [f for f in names if f in LLM_FEATURES]
    cos = compute_features(
        [f for f in names if f in COS_FEATURES], qt, ds, embedder=load_embedder(preset.embedder)
    )
    llms = {
        p: open_llm(preset.llm, cache=False, batch_size=args.batch_size, options={"precision": p})
        for p in PRECISIONS
    }
    for llm in llms.values():  # warm-up
        compute_features(
            ql_names, qt[:4], ds[:4], llm=llm, ql_max_doc_tokens=preset.ql_max_doc_tokens, probe=preset.probe
        )
    wall = dict.fromkeys(PRECISIONS, 0.0)
    cpu = dict.fromkeys(PRECISIONS, 0.0)
    feats: dict[str, dict[str, list]] = {p: {f: [] for f in ql_names} for p in PRECISIONS}
    for k, start in enumerate(range(0, len(pairs), args.chunk)):
        sl = slice(start, start + args.chunk)
        order = PRECISIONS[k % 2 :] + PRECISIONS[: k % 2]
        for p in order:
            t0, c0 = time.perf_counter(), time.process_time()
            got = compute_features(
                ql_names,
                qt[sl],
                ds[sl],
                llm=llms[p],
                ql_max_doc_tokens=preset.ql_max_doc_tokens,
                ql_instruction=preset.ql_instruction,
                probe=preset.probe,
            )
            wall[p] += time.perf_counter() - t0
            cpu[p] += time.process_time() - c0
            for f in ql_names:
                feats[p][f].extend(got[f].tolist())
        print(f"  {min(start + args.chunk, len(pairs))}/{len(pairs)} pairs", flush=True)

    out = {}
    for p in PRECISIONS:
        f = {**{n: np.asarray(v) for n, v in feats[p].items()}, **cos}
        _, expected, grade = preset.head.predict({n: f[n] for n in names})
        out[p] = (f, np.asarray(expected), np.asarray(grade))
    ref_f, ref_e, ref_g = out["fp32"]
    tau_ref = kendalltau(ref_e, grades, variant="b").statistic
    print(
        f"\n{len(pairs)} human-judged liveqa-med pairs ({len(set(q for q, _ in pairs))} queries); preset "
        f"{preset.name}: {', '.join(names)}; SmolLM2 batch {args.batch_size}, docs cut to "
        f"{preset.probe.max_doc_tokens if 'probe' in names else preset.ql_max_doc_tokens} tokens; load average {os.getloadavg()[0]:.1f}"
    )
    feat_cols = "  ".join(f"r({n})" for n in ql_names)
    print(
        f"precision  wall s  pairs/s  vs fp32   CPU s  vs fp32   tau_b  d tau_b  {feat_cols}  r(E)  same grade"
    )
    for p in PRECISIONS:
        f, e, g = out[p]
        tau = kendalltau(e, grades, variant="b").statistic
        rs = "  ".join(f"{pearsonr(f[n], ref_f[n]).statistic:{len(n) + 3}.4f}" for n in ql_names)
        print(
            f"{p:9s} {wall[p]:7.1f} {len(pairs) / wall[p]:8.2f} {wall['fp32'] / wall[p]:7.2f}x "
            f"{cpu[p]:7.1f} {cpu['fp32'] / cpu[p]:7.2f}x  {tau:6.3f} {tau - tau_ref:+7.3f}  {rs} "
            f"{pearsonr(e, ref_e).statistic:.4f}  {100 * np.mean(g == ref_g):8.1f}%"
        )


if __name__ == "__main__":
    main()
