"""Reranking on MedQuAD: LCE-trained cross-encoder vs BM25, bi-encoder and the untrained backbone,
and the speed of relforge's reranking paths (ONNX Runtime fp32 and int8, length-sorted batches) vs plain
``CrossEncoder.predict`` on the same pairs, measured in one run.

Stand-in training data (until synthetic queries + judgments exist): MedQuAD TRAINING questions, their
answer as the positive, BM25 top-``depth`` candidates as (unjudged) negatives, groups of 8 (1 + 7).
Evaluation: a seeded sample of the MedQuAD human TEST questions, BM25 top-``depth`` reranked.

    python benchmarks/rerank.py --beir /tmp/mq --out /tmp/rf-mq \
        --train-queries 400 --test-queries 200 --depth 30 --max-length 128

Prints a JSON line per stage and a final table; writes ``OUT/results.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _sample(qrels: dict, queries: dict, n: int, seed: int) -> list[str]:
    qids = sorted(q for q in qrels if q in queries and any(g > 0 for g in qrels[q].values()))
    random.Random(seed).shuffle(qids)
    return sorted(qids[:n])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--beir", required=True, help="MedQuAD BEIR folder (relforge.data.medquad.import_medquad)"
    )
    ap.add_argument("--out", required=True)
    ap.add_argument("--train-queries", type=int, default=400)
    ap.add_argument("--dev-queries", type=int, default=40)
    ap.add_argument("--test-queries", type=int, default=200)
    ap.add_argument(
        "--depth", type=int, default=30, help="BM25 candidates per query (negatives and reranking)"
    )
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--batch-groups", type=int, default=8)
    ap.add_argument("--lr", type=float, default=3e-5)
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--batch-size", type=int, default=32, help="inference batch size (both paths)")
    ap.add_argument("--model", default=None, help="skip training: use this trained model folder")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)

    from relforge.data import read_beir, read_qrels
    from relforge.dataset import GroupConfig, build_groups, doc_text, write_groups
    from relforge.evaluate import evaluate
    from relforge.retrieve import bm25_search
    from relforge.train import TrainConfig, train_cross_encoder
    from relforge.train.rerank import OnnxCrossEncoder, load_cross_encoder, rerank
    from relforge.train.trainer import DevSet

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    corpus, queries, test_qrels = read_beir(a.beir, "test")
    train_qrels = read_qrels(Path(a.beir) / "qrels" / "train.tsv")
    dev_qrels = read_qrels(Path(a.beir) / "qrels" / "dev.tsv")
    tr, dv, te = (
        _sample(train_qrels, queries, a.train_queries, a.seed),
        _sample(dev_qrels, queries, a.dev_queries, a.seed),
        _sample(test_qrels, queries, a.test_queries, a.seed),
    )
    res: dict = {
        "args": vars(a),
        "corpus_docs": len(corpus),
        "train_queries": len(tr),
        "test_queries": len(te),
    }

    def log(**kw):
        res.update(kw)
        print(json.dumps(kw), flush=True)

    t = time.perf_counter()
    bm25 = bm25_search(corpus, {q: queries[q] for q in tr + dv + te}, top_k=a.depth, index_dir=out / "bm25")
    log(bm25_s=round(time.perf_counter() - t, 1))
    test_run = {q: bm25[q] for q in te}
    qrels_te = {q: test_qrels[q] for q in te}
    runs = {"bm25": test_run}

    model_dir = a.model
    if model_dir is None:
        ds, summary = build_groups(
            {q: queries[q] for q in tr},
            {q: train_qrels[q] for q in tr},
            {q: bm25[q] for q in tr},
            corpus,
            None,
            GroupConfig(group_size=8, depth=a.depth),
        )
        write_groups(ds, summary, out / "groups")
        log(groups=summary["groups"], dropped=summary["dropped_queries"])
        dev = DevSet(corpus, queries, {q: dev_qrels[q] for q in dv}, {q: bm25[q] for q in dv}, top_k=10)
        cfg = TrainConfig(
            max_length=a.max_length,
            batch_groups=a.batch_groups,
            lr=a.lr,
            epochs=a.epochs,
            seed=a.seed,
            logging_steps=5,
        )
        ts = train_cross_encoder(ds, out / "model", cfg, dev=dev)
        model_dir = str(out / "model")
        log(
            train_time_s=ts["train_time_s"],
            train_steps=ts["steps"],
            train_pairs_per_s=ts["pairs_per_s"],
            dev_curve=ts["dev_curve"],
            best_checkpoint_step=ts["best_checkpoint_step"],
            loss_first=ts["loss_curve"][0]["loss"],
            loss_last=ts["loss_curve"][-1]["loss"],
        )

    t = time.perf_counter()
    runs["bi-encoder (MiniLM, untrained)"] = rerank(
        "minilm", corpus, queries, test_run, top_k=a.depth, kind="bi", batch_size=a.batch_size
    )
    log(bi_s=round(time.perf_counter() - t, 1))
    t = time.perf_counter()
    runs["cross-encoder backbone (untrained)"] = rerank(
        "minilm",
        corpus,
        queries,
        test_run,
        top_k=a.depth,
        backend="torch",
        batch_size=a.batch_size,
        max_length=a.max_length,
    )
    log(untrained_ce_s=round(time.perf_counter() - t, 1))

    # speed: the same pairs through plain CrossEncoder.predict and through relforge's path
    import numpy as np

    lists = {
        q: [d for d, _ in sorted(test_run[q].items(), key=lambda kv: (-kv[1], kv[0]))][: a.depth] for q in te
    }
    pairs = [(queries[q].text, doc_text(corpus[d])) for q in te for d in lists[q]]
    ce = load_cross_encoder(model_dir, a.max_length)
    onnx = OnnxCrossEncoder(ce, model_dir)  # export (or cache hit) outside the timed region
    onnx8 = OnnxCrossEncoder(ce, model_dir, quantize="int8")
    onnx.predict(pairs[:64], a.batch_size)
    onnx8.predict(pairs[:64], a.batch_size)
    ce.predict(pairs[:64], batch_size=a.batch_size)
    t = time.perf_counter()
    s_plain = np.asarray(ce.predict(pairs, batch_size=a.batch_size, show_progress_bar=False))
    plain_s = time.perf_counter() - t
    t = time.perf_counter()
    s_fast = onnx.predict(pairs, a.batch_size)
    fast_s = time.perf_counter() - t
    t = time.perf_counter()
    s_int8 = onnx8.predict(pairs, a.batch_size)
    int8_s = time.perf_counter() - t

    def to_run(scores):
        r, i = {}, 0
        for q in te:
            r[q] = {d: float(s) for d, s in zip(lists[q], scores[i : i + len(lists[q])], strict=True)}
            i += len(lists[q])
        return r

    runs["cross-encoder LCE (CrossEncoder.predict)"] = to_run(s_plain)
    runs["cross-encoder LCE (relforge ONNX)"] = to_run(s_fast)
    runs["cross-encoder LCE (relforge ONNX int8)"] = to_run(s_int8)
    log(
        pairs=len(pairs),
        predict_pairs_per_s=round(len(pairs) / plain_s, 1),
        onnx_pairs_per_s=round(len(pairs) / fast_s, 1),
        onnx_int8_pairs_per_s=round(len(pairs) / int8_s, 1),
        speedup=round(plain_s / fast_s, 2),
        speedup_int8=round(plain_s / int8_s, 2),
        int8_pearson_vs_fp32=round(float(np.corrcoef(s_fast, s_int8)[0, 1]), 4),
        max_abs_logit_diff_vs_sigmoid_monotone=float(np.abs(1 / (1 + np.exp(-s_fast)) - s_plain).max()),
    )

    ev = evaluate(qrels_te, runs, measures=["nDCG@10", "RR@10", "R@10"], permutation_rounds=1000)
    agg = {name: {m: round(v, 4) for m, v in ev.aggregates[name].items()} for name in runs}
    d = (
        agg["cross-encoder LCE (relforge ONNX)"]["nDCG@10"]
        - agg["cross-encoder LCE (CrossEncoder.predict)"]["nDCG@10"]
    )
    d8 = (
        agg["cross-encoder LCE (relforge ONNX int8)"]["nDCG@10"]
        - agg["cross-encoder LCE (CrossEncoder.predict)"]["nDCG@10"]
    )
    log(results=agg, ndcg10_onnx_minus_predict=round(d, 5), ndcg10_int8_minus_predict=round(d8, 5))
    print(f"\n{'run':45s} nDCG@10  RR@10   R@10   (MedQuAD test, {len(te)} questions, BM25 top-{a.depth})")
    for name in runs:
        m = agg[name]
        print(f"{name:45s} {m['nDCG@10']:.4f}  {m['RR@10']:.4f}  {m['R@10']:.4f}")
    print(
        f"speed: predict {res['predict_pairs_per_s']} pairs/s, relforge ONNX {res['onnx_pairs_per_s']} pairs/s, "
        f"ratio {res['speedup']}x; nDCG@10 difference {d:+.5f}"
    )
    print(
        f"speed: relforge ONNX int8 {res['onnx_int8_pairs_per_s']} pairs/s, ratio {res['speedup_int8']}x "
        f"vs predict; nDCG@10 difference {d8:+.5f} (target: >= 2x with no nDCG@10 loss beyond 0.005, "
        f"i.e. difference >= -0.005)"
    )
    (out / "results.json").write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
