"""Retrieval speed and recall on MedQuAD (~16.4k answers), on 2 CPU threads.

Prints BM25 index docs/s and queries/s (1,000 queries), dense (MiniLM) corpus-encoding docs/s and
queries/s, and recall@100 (ir_measures) of the human MedQuAD *test* questions' own answers for
BM25, dense and hybrid (RRF). All numbers come from one run of this script.

    HF_HUB_OFFLINE=1 python benchmarks/retrieve.py                       # imports MedQuAD from shared/
    HF_HUB_OFFLINE=1 python benchmarks/retrieve.py --beir /tmp/mq        # an existing BEIR import

Dense encoding speed is measured on a random sample of ``--speed-docs`` documents (no cache); the
full-corpus embeddings needed for recall are cached (resumably, in parts) in ``--work``: tens of
minutes on 2 busy cores the first time, seconds afterwards.
"""

from __future__ import annotations

import argparse
import os
import random
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # no spin-waiting when other jobs share the 2 cores

DEFAULT_TAR = Path(__file__).resolve().parents[2] / "shared" / "data" / "medquad" / "medquad-xml.tar.xz"


def load_medquad(args):
    from relforge.data import read_beir

    folder = Path(args.beir) if args.beir else Path(args.work) / "medquad"
    if not (folder / "corpus.jsonl").is_file():
        from relforge.data.medquad import import_medquad

        print(f"importing {args.tar} -> {folder}")
        import_medquad(args.tar, folder)
    return read_beir(folder, "test")


def recall(qrels, run, k=100) -> float:
    import ir_measures

    return ir_measures.calc_aggregate([ir_measures.R @ k], qrels, run)[ir_measures.R @ k]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--beir", help="existing MedQuAD BEIR folder (default: import into --work)")
    ap.add_argument("--tar", default=str(DEFAULT_TAR), help="medquad-xml.tar.xz")
    ap.add_argument(
        "--work", default="/tmp/relforge-bench", help="folder for the import and the embedding cache"
    )
    ap.add_argument("--n-queries", type=int, default=1000, help="queries for the speed measurement")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--top-k", type=int, default=100)
    ap.add_argument("--no-dense", action="store_true", help="BM25 only")
    ap.add_argument(
        "--max-seq-length", type=int, default=None, help="dense truncation in tokens (default: model's 256)"
    )
    ap.add_argument(
        "--speed-docs", type=int, default=512, help="documents for the dense encoding-speed measurement"
    )
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from relforge.retrieve import bm25_search, build_bm25_index, dense_search, rrf
    from relforge.retrieve.dense import encode_corpus

    corpus, queries, qrels = load_medquad(args)
    docs = list(corpus.values())
    test_q = {qid: queries[qid] for qid in sorted(qrels)}
    rng = random.Random(0)
    all_ids = sorted(queries)
    speed_q = {qid: queries[qid] for qid in rng.sample(all_ids, min(args.n_queries, len(all_ids)))}
    print(
        f"corpus {len(docs):,} docs; {len(test_q):,} test queries; {len(speed_q):,} speed queries; "
        f"{args.threads} threads; dense max_seq_length {args.max_seq_length or 'model default'}"
    )
    rows = []

    t = time.perf_counter()
    build_bm25_index(docs, None)
    t_index = time.perf_counter() - t
    t = time.perf_counter()
    bm25_search(docs, speed_q, top_k=args.top_k, index_dir=Path(args.work) / "bm25-index")  # builds + saves
    t = time.perf_counter()
    bm25_search(docs, speed_q, top_k=args.top_k, index_dir=Path(args.work) / "bm25-index")  # reuses the index
    t_bm25_total = time.perf_counter() - t
    rows.append(("bm25 index", f"{len(docs) / t_index:,.0f} docs/s", f"{t_index:.1f} s"))
    rows.append(
        ("bm25 load+search", f"{len(speed_q) / t_bm25_total:,.0f} queries/s", f"{t_bm25_total:.2f} s")
    )
    runs = {"bm25": bm25_search(docs, test_q, top_k=args.top_k, index_dir=Path(args.work) / "bm25-index")}

    if not args.no_dense:
        cache = Path(args.work) / "emb"
        msl = args.max_seq_length
        sample_docs = rng.sample(docs, min(args.speed_docs, len(docs)))
        encode_corpus(sample_docs[:8], "minilm", max_seq_length=msl, progress=False)  # load + warm up
        t = time.perf_counter()
        encode_corpus(sample_docs, "minilm", max_seq_length=msl, progress=False)
        t_enc = time.perf_counter() - t
        rows.append(
            (
                f"dense encode ({len(sample_docs)} docs)",
                f"{len(sample_docs) / t_enc:,.1f} docs/s",
                f"{t_enc:.1f} s",
            )
        )
        encode_corpus(docs, "minilm", cache_dir=cache, max_seq_length=msl)  # full corpus, cached
        dense_search(docs, {"warm": "warm up"}, top_k=1, cache_dir=cache, max_seq_length=msl, progress=False)
        t = time.perf_counter()
        dense_search(docs, speed_q, top_k=args.top_k, cache_dir=cache, max_seq_length=msl, progress=False)
        t_dq = time.perf_counter() - t
        rows.append(("dense encode+search", f"{len(speed_q) / t_dq:,.0f} queries/s", f"{t_dq:.2f} s"))
        runs["dense"] = dense_search(
            docs, test_q, top_k=args.top_k, cache_dir=cache, max_seq_length=msl, progress=False
        )
        runs["hybrid"] = rrf([runs["bm25"], runs["dense"]], k=60, top_k=args.top_k)

    print(f"\n{'stage':24} {'speed':>20} {'time':>10}")
    for name, speed, secs in rows:
        print(f"{name:24} {speed:>20} {secs:>10}")
    print(
        f"\nrecall@{args.top_k} of the {len(test_q):,} MedQuAD test questions' own answers (ir_measures R@{args.top_k}):"
    )
    for name, run in runs.items():
        print(f"  {name:8} {recall(qrels, run, args.top_k):.4f}")


if __name__ == "__main__":
    main()
