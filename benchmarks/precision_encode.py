"""Dense encoder precision: fp32 vs bf16 (weights) vs int8 (ONNX Runtime) docs/s and nDCG@10, in ONE run.

A seeded MedQuAD sample: ``--queries`` human TEST questions, their answers, and random other answers up
to ``--docs`` documents. Each variant encodes the same documents in chunks, the variants in rotation (so
machine load hits them alike); CPU seconds (process time) and wall seconds are summed per variant. Then
dense retrieval (cosine, top 10) of the questions is scored with relforge.evaluate.

    relforge data medquad ../shared/data/medquad/medquad-xml.tar.xz --out /tmp/mq
    python benchmarks/precision_encode.py --beir /tmp/mq --docs 1000 --queries 100 --max-seq-length 256
"""

from __future__ import annotations

import argparse
import os
import random
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

VARIANTS = ("fp32", "bf16", "int8")


def sample(beir: str, n_docs: int, n_queries: int, seed: int):
    from relforge.data import read_beir

    corpus, queries, qrels = read_beir(beir, "test")
    qids = sorted(q for q in qrels if q in queries)
    random.Random(seed).shuffle(qids)
    qids = sorted(qids[:n_queries])
    need = {d for q in qids for d in qrels[q]}
    rest = sorted(set(corpus) - need)
    random.Random(seed).shuffle(rest)
    docs = sorted(need) + rest[: max(0, n_docs - len(need))]
    return [corpus[d] for d in docs], {q: queries[q] for q in qids}, {q: qrels[q] for q in qids}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--beir", required=True, help="MedQuAD BEIR folder (relforge data medquad)")
    ap.add_argument("--docs", type=int, default=1000)
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--max-seq-length", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--chunk", type=int, default=128, help="documents per variant turn")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)

    import numpy as np

    from relforge.evaluate import evaluate
    from relforge.retrieve.dense import _top_k_numpy, encode_texts, load_encoder
    from relforge.types import doc_text

    docs, queries, qrels = sample(a.beir, a.docs, a.queries, a.seed)
    texts = [doc_text(d) for d in docs]
    encs = {p: load_encoder("minilm", a.max_seq_length, p) for p in VARIANTS}
    for enc in encs.values():  # warm-up (ONNX session, first-call allocations)
        encode_texts(enc, texts[:8], a.batch_size)
    cpu = dict.fromkeys(VARIANTS, 0.0)
    wall = dict.fromkeys(VARIANTS, 0.0)
    parts: dict[str, list] = {p: [] for p in VARIANTS}
    for start in range(0, len(texts), a.chunk):
        for p, enc in encs.items():
            t0, c0 = time.perf_counter(), time.process_time()
            parts[p].append(encode_texts(enc, texts[start : start + a.chunk], a.batch_size))
            wall[p] += time.perf_counter() - t0
            cpu[p] += time.process_time() - c0
    qids = list(queries)
    runs, emb = {}, {}
    for p, enc in encs.items():
        emb[p] = np.concatenate(parts[p])
        q = encode_texts(enc, [queries[x].text for x in qids], a.batch_size)
        idx, sc = _top_k_numpy(q, emb[p], 10)
        runs[p] = {
            qid: {docs[int(i)].id: float(s) for i, s in zip(idx[r], sc[r], strict=True)}
            for r, qid in enumerate(qids)
        }
    res = evaluate(qrels, runs, measures=["nDCG@10"], permutation_rounds=0)
    print(
        f"{len(docs)} MedQuAD docs, {len(qids)} test questions, MiniLM-L6, max_seq_length {a.max_seq_length}, "
        f"batch {a.batch_size}; load average {os.getloadavg()[0]:.1f}"
    )
    print(
        f"{'precision':10} {'wall s':>7} {'docs/s':>7} {'vs fp32':>7} {'CPU s':>7} {'vs fp32':>7} "
        f"{'nDCG@10':>8} {'d nDCG':>7} {'min cos':>8}"
    )
    base = res.aggregates["fp32"]["nDCG@10"]
    for p in VARIANTS:
        nd = res.aggregates[p]["nDCG@10"]
        cos = float((emb[p] * emb["fp32"]).sum(1).min())
        print(
            f"{p:10} {wall[p]:7.1f} {len(docs) / wall[p]:7.1f} {wall['fp32'] / wall[p]:6.2f}x {cpu[p]:7.1f} "
            f"{cpu['fp32'] / cpu[p]:6.2f}x {nd:8.4f} {nd - base:+7.4f} {cos:8.4f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
