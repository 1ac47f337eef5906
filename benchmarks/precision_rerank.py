"""Reranking precision: fp32 (torch and ONNX) vs bf16 vs int8 pairs/s and nDCG@10, in ONE run.

BM25 top-``--depth`` of a seeded sample of MedQuAD human TEST questions, reranked by ``--model`` as
``--kind`` (default: the MiniLM bi-encoder, cosine; pass a trained cross-encoder folder with ``--kind
cross``). Variants run query batch by query batch in rotation so machine load hits them alike; CPU
seconds include model loading only in the warm-up, which is excluded.

    python benchmarks/precision_rerank.py --beir /tmp/mq --queries 100 --depth 20
"""

from __future__ import annotations

import argparse
import os
import random
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

#: name -> (backend, precision) of relforge.train.rerank.rerank
VARIANTS = {
    "fp32": ("torch", "fp32"),
    "fp32-onnx": ("onnx", "fp32"),
    "bf16": ("auto", "bf16"),
    "int8": ("auto", "int8"),
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--beir", required=True, help="MedQuAD BEIR folder (relforge data medquad)")
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--kind", default="bi", choices=["bi", "cross"])
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--depth", type=int, default=20)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--per-turn", type=int, default=50, help="queries per variant turn")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)

    from relforge.data import read_beir
    from relforge.evaluate import evaluate
    from relforge.retrieve import bm25_search
    from relforge.train.rerank import rerank

    corpus, queries, qrels = read_beir(a.beir, "test")
    qids = sorted(q for q in qrels if q in queries)
    random.Random(a.seed).shuffle(qids)
    qids = sorted(qids[: a.queries])
    first = bm25_search(corpus, {q: queries[q] for q in qids}, top_k=a.depth)
    kw = dict(top_k=a.depth, kind=a.kind, max_length=a.max_length)
    for backend, prec in VARIANTS.values():  # warm-up: load, export / quantise once
        rerank(a.model, corpus, queries, {qids[0]: first[qids[0]]}, backend=backend, precision=prec, **kw)
    runs = {n: {} for n in VARIANTS}
    cpu = dict.fromkeys(VARIANTS, 0.0)
    wall = dict.fromkeys(VARIANTS, 0.0)
    for start in range(0, len(qids), a.per_turn):
        part = {q: first[q] for q in qids[start : start + a.per_turn]}
        for name, (backend, prec) in VARIANTS.items():
            t0, c0 = time.perf_counter(), time.process_time()
            runs[name].update(rerank(a.model, corpus, queries, part, backend=backend, precision=prec, **kw))
            wall[name] += time.perf_counter() - t0
            cpu[name] += time.process_time() - c0
    res = evaluate(
        {q: qrels[q] for q in qids}, {"bm25": first, **runs}, measures=["nDCG@10"], permutation_rounds=0
    )
    pairs = sum(len(first[q]) for q in qids)
    print(
        f"{len(qids)} MedQuAD test questions x BM25 top {a.depth} ({pairs} pairs), {a.kind} {a.model}, "
        f"max_length {a.max_length}; BM25 nDCG@10 {res.aggregates['bm25']['nDCG@10']:.4f}; "
        f"load average {os.getloadavg()[0]:.1f} (each call reloads the model: rates include loading)"
    )
    print(
        f"{'variant':10} {'wall s':>7} {'pairs/s':>8} {'vs fp32':>7} {'CPU s':>7} {'vs fp32':>7} {'nDCG@10':>8} {'d nDCG':>7}"
    )
    base = res.aggregates["fp32"]["nDCG@10"]
    for n in VARIANTS:
        nd = res.aggregates[n]["nDCG@10"]
        print(
            f"{n:10} {wall[n]:7.1f} {pairs / wall[n]:8.1f} {wall['fp32'] / wall[n]:6.2f}x {cpu[n]:7.1f} "
            f"{cpu['fp32'] / cpu[n]:6.2f}x {nd:8.4f} {nd - base:+7.4f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
