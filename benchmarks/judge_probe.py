"""Issue 16 lever "a scoring head on the LLM": frozen LLM hidden states + a ridge probe, 5-fold by query.

    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 python benchmarks/judge_probe.py \\
        --cache runs/probe-smollm2-ql.npz --prompt ql

Steps: (1) MiniLM cosine and the LLM's hidden states (last token and mean over tokens, 5 layers) of
one prompt per pair for the 1,147 distinct judged pairs of the bundled LiveQA-Med sample, cached in
``--cache`` (npz; a rerun skips the LLM) with the extraction's pairs/s; ``--prompt ql`` also yields
``ql_cond`` from the same pass (``ql_prior`` is one extra pass per query); (2) on the folds of
``benchmarks/judge_preset.py`` (same helper, same seed) every labeller: a ridge probe (alpha by inner
4-fold CV by query on the training folds only) gives a score; an ordinal
:class:`~relforge.judge.calibrate.CalibrationHead` on that score (stacking: its training rows get the
probe's inner out-of-fold scores, the test fold the mean of the inner models' scores, never in-sample
ones), alone or with cosine / QL, gives grades; (3) the
table: pair tau_b, per-query tau_b, quadratic kappa, accuracy, macro-F1 as mean +- sd over folds, and
each labeller's per-fold tau_b difference to cosine-only (mean +- sd).
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
from relforge.judge.calibrate import CalibrationHead  # noqa: E402
from relforge.judge.preset import compute_features, load_embedder  # noqa: E402
from relforge.judge.probe import ALPHAS, hidden_features, inner_cv, select, standardise  # noqa: E402
from relforge.judge.ql import NO_DOC, QL_INSTRUCTION, _chat, _mean, continuation_logprobs  # noqa: E402
from relforge.types import doc_text  # noqa: E402


def extract_cached(path: Path, pairs) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise SystemExit(f"{path}: no such feature cache (run this script with --cache {path} first)")
    z = dict(np.load(path, allow_pickle=False))
    if z["qid"].tolist() == [q for q, _ in pairs] and z["docid"].tolist() == [d for _, d in pairs]:
        print(f"features from {path} ({float(z['pairs_per_s']):.2f} pairs/s when extracted)")
        return z
    raise SystemExit(f"{path}: cached pairs differ from the sample's; delete it to recompute")


def extract(args, pairs, queries, docs) -> dict[str, np.ndarray]:
    path = Path(args.cache)
    if path.is_file():
        return extract_cached(path, pairs)
    import torch

    from relforge.judge.run import open_llm

    torch.set_num_threads(args.threads)
    qt = [queries[q].text for q, _ in pairs]
    ds = [docs[d] for _, d in pairs]
    t = time.time()
    out = {
        k: np.asarray(v)
        for k, v in compute_features(["cos"], qt, ds, embedder=load_embedder("minilm")).items()
    }
    out["cos_pairs_per_s"] = np.float64(len(pairs) / (time.time() - t))
    print(f"cosine: {float(out['cos_pairs_per_s']):.1f} pairs/s")
    llm = open_llm(args.llm, cache=False, batch_size=args.batch_size, options={"precision": args.precision})
    texts = [doc_text(d) for d in ds]
    n = args.limit or len(pairs)
    t = time.time()
    hf = hidden_features(llm, qt[:n], texts[:n], prompt=args.prompt, max_doc_tokens=args.max_doc_tokens)
    secs = time.time() - t
    print(
        f"hidden states ({args.llm} {args.precision}, prompt {args.prompt}): {secs:.0f} s = {n / secs:.2f} pairs/s"
    )
    out.update(hf, pairs_per_s=np.float64(n / secs), qid=np.array([q for q, _ in pairs]))
    out["docid"] = np.array([d for _, d in pairs])
    if args.prompt == "ql":
        uniq = sorted(set(qt))
        prior = dict(
            zip(
                uniq,
                map(_mean, continuation_logprobs(llm, [_chat(NO_DOC, q, QL_INSTRUCTION) for q in uniq])),
                strict=True,
            )
        )
        out["ql_prior"] = np.array([prior[q] for q in qt[:n]])
        out["ql_pmi"] = out["ql_cond"] - out["ql_prior"]
    if args.limit:
        return out
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **out)
    print(f"wrote {path}")
    return out


def grams(feats, train: np.ndarray) -> dict[str, np.ndarray]:
    """Linear-kernel grams of every probe input, standardised with the training rows' statistics:
    each pooling at each layer, over the middle layers, over all layers (sums of the layer grams) and
    both poolings; with a second prompt's states (``--also``) the same again, and both prompts."""
    out: dict[str, np.ndarray] = {}
    sets = [("", feats)] + [(f"{t}:", f) for t, f in feats.get("_also", [])]
    for tag, fs in sets:
        h, layers = fs["hidden"], fs["layers"].tolist()
        for pool in ("last", "mean"):
            for layer in layers:
                x = select(h, fs["layers"], pool, [layer]).astype(np.float64)
                mu, sd = standardise(x[train])
                z = (x - mu) / sd
                out[f"{tag}{pool}@L{layer}"] = z @ z.T
            out[f"{tag}{pool}@all"] = sum(out[f"{tag}{pool}@L{v}"] for v in layers)
            mid = layers[1:-1]
            out[f"{tag}{pool}@L{mid[0]}-{mid[-1]}"] = sum(out[f"{tag}{pool}@L{v}"] for v in mid)
        out[f"{tag}last+mean@all"] = out[f"{tag}last@all"] + out[f"{tag}mean@all"]
    for tag, _ in sets[1:]:
        out[f"last@all + {tag}last@all"] = out["last@all"] + out[f"{tag}last@all"]
    return out


def score(grades, qids, test, feat_tr, feat_te, train) -> dict:
    """Ordinal head on the named features (training rows: honest values), metrics on the test fold."""
    names = sorted(feat_tr)
    head = CalibrationHead.fit(feat_tr, grades[train], names, kind="ordinal")
    _, expected, pred = head.predict(feat_te)
    m = pair_metrics(grades[test], pred, expected, [qids[i] for i in test], [0, 1, 2, 3])
    return {x: m.get(x) for x in METRICS}


def fold_run(feats, grades, qids, train, test, inner_k, seed) -> tuple[dict, dict]:
    """All labellers on one outer fold; returns (metrics by labeller, probe choice info)."""
    g, y = np.array(qids), grades.astype(np.float64)
    probes = {}
    for v, gram in grams(feats, train).items():
        inner, oof, bag = inner_cv(gram, y, g, train, inner_k, seed, ALPHAS, extra=test)
        j = int(np.argmax(inner))
        probes[v] = {"inner": float(inner[j]), "alpha": ALPHAS[j], "tr": oof[j], "te": bag[j]}
    best = max(probes, key=lambda v: probes[v]["inner"])  # chosen on the training folds only
    res: dict[str, dict] = {}
    for v, pr in probes.items():
        res[f"probe {v}"] = score(grades, qids, test, {"probe": pr["tr"]}, {"probe": pr["te"]}, train)
    tr_p, te_p = probes[best]["tr"], probes[best]["te"]
    base = [["cos"]] + ([["ql_cond", "ql_pmi"], ["ql_cond", "ql_pmi", "cos"]] if "ql_pmi" in feats else [])
    for names in base:
        tr = {n: feats[n][train] for n in names}
        res[" + ".join(names)] = score(grades, qids, test, tr, {n: feats[n][test] for n in names}, train)
    for names in [[], *base]:
        tr = {"probe": tr_p, **{n: feats[n][train] for n in names}}
        te = {"probe": te_p, **{n: feats[n][test] for n in names}}
        res[" + ".join(["PROBE*", *names])] = score(grades, qids, test, tr, te, train)
    info = {"chosen": best, "alpha": probes[best]["alpha"], "inner_tau": round(probes[best]["inner"], 3)}
    return res, info


def cross_validate(feats, grades, qids, k, seed, inner_k) -> tuple[dict[str, list[dict]], list[dict]]:
    per: dict[str, list[dict]] = {}
    info = []
    for i, test in enumerate(folds_by_query(qids, k, seed)):
        t = time.time()
        train = np.setdiff1d(np.arange(len(grades)), test)
        res, choice = fold_run(feats, grades, qids, train, test, inner_k, seed)
        for name, m in res.items():
            per.setdefault(name, []).append(m)
        info.append(choice)
        print(f"fold {i}: chosen probe {choice} ({time.time() - t:.0f} s)")
    return per, info


def print_table(per: dict[str, list[dict]], pairs_per_s: dict[str, float]) -> None:
    ref = [f["kendall_tau_b"] for f in per["cos"]]
    print(
        f"{'labeller':34s} "
        + " ".join(f"{m:>15s}" for m in METRICS)
        + f" {'d tau vs cos':>15s} {'wins':>4s} {'pairs/s':>8s}"
    )
    for name, folds in per.items():
        res = summarise(folds)
        cells = [f"{v[0]:.3f}+-{v[1]:.3f}" if v[0] is not None else "-" for v in res.values()]
        d = np.array([f["kendall_tau_b"] for f in folds]) - np.array(ref)
        llm = "PROBE" in name or name.startswith("probe") or "ql" in name
        rate = pairs_per_s["llm"] if llm else pairs_per_s["cos"]
        print(
            f"{name:34s} "
            + " ".join(f"{c:>15s}" for c in cells)
            + f" {d.mean():+.3f}+-{d.std():.3f}".rjust(16)
            + f" {int((d > 0).sum())}/{len(d)}".rjust(5)
            + (f" {rate:8.2f}" if np.isfinite(rate) else f" {'-':>8s}")
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", default="runs/probe-smollm2-ql.npz")
    ap.add_argument(
        "--also", nargs="*", default=[], help="more caches (another prompt/model) whose states join the probe"
    )
    ap.add_argument("--llm", default="smollm2")
    ap.add_argument("--prompt", default="ql", choices=["ql", "judge"])
    ap.add_argument("--max-doc-tokens", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--precision", default="fp32", help="the LLM's precision (fp32, bf16, auto)")
    ap.add_argument("--limit", type=int, default=0, help="extract this many pairs only, print pairs/s, stop")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--inner-folds", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="also write the table and per-fold numbers as JSON here")
    args = ap.parse_args()
    pairs, grades, queries, docs = load_pairs()
    feats = extract(args, pairs, queries, docs)
    if args.limit:
        return
    feats["_also"] = [(Path(p).stem.split("-")[-1], extract_cached(Path(p), pairs)) for p in args.also]
    qids = [q for q, _ in pairs]
    per, info = cross_validate(feats, grades, qids, args.folds, args.seed, args.inner_folds)
    print(
        f"{args.folds}-fold by query (folds of benchmarks/judge_preset.py, seed {args.seed}), {len(pairs)} pairs, "
        f"{len(set(qids))} queries; mean +- sd over folds; PROBE* = the probe variant with the best inner-CV tau "
        f"(chosen per fold on its training folds); d tau = per-fold pair tau_b minus cosine-only's; "
        "wins = folds where it beats cosine-only"
    )
    rates = {"llm": float(feats["pairs_per_s"]), "cos": float(feats.get("cos_pairs_per_s", np.nan))}
    print_table(per, rates)
    if args.out:
        table = {n: {"summary": summarise(f), "folds": f} for n, f in per.items()}
        Path(args.out).write_text(
            json.dumps({"probe_choice": info, "pairs_per_s": rates, "table": table}, indent=1)
        )
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
