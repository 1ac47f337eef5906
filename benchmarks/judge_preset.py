"""The recipe of ``relforge judge --preset ql`` (the shipped ``best`` until 2026-12-06; today's ``best`` is
judge_probe_preset.py's): features on the bundled LiveQA-Med human labels, 5-fold cross-validation by
query of every labeller, and the shipped calibration fitted on all pairs.

    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 python benchmarks/judge_preset.py \\
        --features runs/liveqa-features.jsonl --out src/relforge/judge/presets/ql.json

Steps: (1) compute every feature of :mod:`relforge.judge.preset` for the 1,147 distinct judged pairs
(``--features`` caches them: a second run skips the LLM); (2) for each labeller (feature set x head kind)
fit the head on 4 folds, predict the 5th, report pair tau_b of the expected grade, per-query tau_b,
quadratic kappa, accuracy and macro-F1 as mean +- sd over the folds (folds by query, seeded); the raw
MiniLM cosine and the raw ``ql_pmi`` are scored on the same folds; (3) fit the ``--pick`` labeller on all
pairs and write the preset JSON with the table in ``measured``. ``--llm qwen0.5b`` computes the QL
features with the larger judge (slow: ~4x SmolLM2).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from relforge.data import read_corpus, read_qrels, read_queries
from relforge.data.samples import sample_path
from relforge.judge.agreement import pair_metrics
from relforge.judge.calibrate import CalibrationHead
from relforge.judge.preset import FEATURES, JudgePreset, compute_features, load_embedder

LABELLERS = {  # name -> (features, uses an LLM)
    "llm-only (QL)": ["ql_cond", "ql_pmi"],
    "cosine-only (MiniLM)": ["cos"],
    "combined (QL + cosine)": ["ql_cond", "ql_pmi", "cos"],
}
METRICS = ("kendall_tau_b", "per_query_tau_b", "quadratic_kappa", "accuracy", "macro_f1")


def load_pairs() -> tuple[list[tuple[str, str]], np.ndarray, dict, dict]:
    root = sample_path("liveqa-med")
    qrels = read_qrels(root / "qrels" / "test.tsv")
    pairs = [(q, d) for q in sorted(qrels) for d in sorted(qrels[q])]
    grades = np.array([qrels[q][d] for q, d in pairs])
    return pairs, grades, read_queries(root / "queries.jsonl"), read_corpus(root / "corpus.jsonl")


def features(args, pairs, queries, docs) -> dict[str, np.ndarray]:
    path = Path(args.features) if args.features else None
    if path and path.is_file():
        rows = [json.loads(x) for x in path.read_text().splitlines()]
        if [(r["qid"], r["docid"]) for r in rows] == [list(p) for p in pairs] or [
            (r["qid"], r["docid"]) for r in rows
        ] == pairs:
            print(f"features from {path}")
            return {f: np.array([r[f] for r in rows]) for f in rows[0] if f in FEATURES}
    from relforge.judge.run import open_llm

    qt = [queries[q].text for q, _ in pairs]
    ds = [docs[d] for _, d in pairs]
    t = time.time()
    cos_cache = Path(str(path) + ".cos.json") if path else None
    if cos_cache and cos_cache.is_file():
        feats = {k: np.array(v) for k, v in json.loads(cos_cache.read_text()).items()}
    else:
        feats = compute_features(["cos"], qt, ds, embedder=load_embedder("minilm"))
        print(f"cosine features: {time.time() - t:.0f} s = {len(pairs) / (time.time() - t):.2f} pairs/s")
        if cos_cache:
            cos_cache.parent.mkdir(parents=True, exist_ok=True)
            cos_cache.write_text(json.dumps({k: v.tolist() for k, v in feats.items()}))
    llm = open_llm(args.llm, cache=False, batch_size=args.batch_size, options={"precision": args.precision})
    t = time.time()
    feats.update(
        compute_features(
            ["ql_cond", "ql_prior", "ql_pmi"], qt, ds, llm=llm, ql_max_doc_tokens=args.max_doc_tokens
        )
    )
    secs = time.time() - t
    print(f"QL features ({args.llm}): {secs:.0f} s = {len(pairs) / secs:.2f} pairs/s")
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w") as fh:
            for i, (q, d) in enumerate(pairs):
                fh.write(json.dumps({"qid": q, "docid": d, **{f: float(feats[f][i]) for f in feats}}) + "\n")
    return feats


def folds_by_query(qids: list[str], k: int, seed: int) -> list[np.ndarray]:
    uq = sorted(set(qids))
    rng = np.random.default_rng(seed)
    rng.shuffle(uq)
    fold_of = {q: i % k for i, q in enumerate(uq)}
    f = np.array([fold_of[q] for q in qids])
    return [np.flatnonzero(f == i) for i in range(k)]


def cross_validate(feats, grades, qids, labeller, kind, k, seed) -> list[dict]:
    out = []
    for test in folds_by_query(qids, k, seed):
        train = np.setdiff1d(np.arange(len(grades)), test)
        if labeller in LABELLERS:
            names = LABELLERS[labeller]
            head = CalibrationHead.fit({n: feats[n][train] for n in names}, grades[train], names, kind=kind)
            _, score, pred = head.predict({n: feats[n][test] for n in names})
        else:  # a raw feature: ranking only (grade = a constant, so only the taus are meaningful)
            score, pred = feats[labeller][test], [0] * len(test)
        m = pair_metrics(grades[test], pred, score, [qids[i] for i in test], [0, 1, 2, 3])
        out.append({x: m.get(x) for x in METRICS})
    return out


def summarise(per_fold: list[dict]) -> dict[str, list[float]]:
    res = {}
    for m in METRICS:
        v = [f[m] for f in per_fold if f[m] is not None]
        res[m] = [round(float(np.mean(v)), 3), round(float(np.std(v)), 3)] if v else [None, None]
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--features", default="runs/liveqa-features.jsonl")
    ap.add_argument("--out", default=None, help="write the preset JSON here")
    ap.add_argument("--llm", default="smollm2")
    ap.add_argument("--max-doc-tokens", type=int, default=96)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pick", default="combined (QL + cosine)|ordinal")
    ap.add_argument("--precision", default="fp32", help="of the LLM computing the QL features")
    ap.add_argument(
        "--max-pairs", type=int, default=0, help="only the first N pairs (whole queries, by qid); 0 = all"
    )
    args = ap.parse_args()
    pairs, grades, queries, docs = load_pairs()
    if args.max_pairs and args.max_pairs < len(pairs):
        n = args.max_pairs
        while n > 0 and pairs[n - 1][0] == pairs[n][0]:  # end on a query boundary
            n -= 1
        pairs, grades = pairs[:n], grades[:n]
    qids = [q for q, _ in pairs]
    feats = features(args, pairs, queries, docs)
    table: dict[str, dict] = {}
    for name in ["cos", "ql_pmi", "ql_cond"]:
        table[f"raw {name}"] = summarise(
            cross_validate(feats, grades, qids, name, None, args.folds, args.seed)
        )
    for lab in LABELLERS:
        for kind in ("ordinal", "multinomial"):
            per = cross_validate(feats, grades, qids, lab, kind, args.folds, args.seed)
            table[f"{lab}|{kind}"] = summarise(per)
    print(
        f"{args.folds}-fold by query, {len(pairs)} pairs, {len(set(qids))} queries, seed {args.seed}; mean +- sd"
    )
    print(f"{'labeller':44s} " + " ".join(f"{m:>16s}" for m in METRICS))
    for name, res in table.items():
        cells = [f"{v[0]:.3f}+-{v[1]:.3f}" if v[0] is not None else "-" for v in res.values()]
        print(f"{name:44s} " + " ".join(f"{c:>16s}" for c in cells))
    if args.out:
        lab, kind = args.pick.split("|")
        names = LABELLERS[lab]
        head = CalibrationHead.fit(
            {n: feats[n] for n in names},
            grades,
            names,
            kind=kind,
            meta={"data": "bundled liveqa-med (51 queries, 1147 distinct pairs)", "labeller": lab},
        )
        preset = JudgePreset(
            name=Path(args.out).stem,
            description=f"{lab}, {kind} head fitted on the bundled LiveQA-Med human grades",
            llm=args.llm,
            # features are computed in fp32 here; the preset runs its LLM in bf16 where the CPU has it
            # (same labels: benchmarks/precision_preset.py, docs/precision.md)
            precision="auto",
            ql_max_doc_tokens=args.max_doc_tokens,
            head=head,
            measured={"folds": args.folds, "seed": args.seed, "table": table},
        )
        Path(args.out).write_text(preset.model_dump_json(indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
