"""Reranker training precision: fp32 vs bf16 autocast (CPU) pairs/s and loss curve, in ONE run.

MiniLM cross-encoder, exact LCE, the same stand-in groups for both (MedQuAD TRAIN questions, their answer
as positive, BM25 negatives, groups of ``--group-size``), the same seed and steps. Training runs are too
long to interleave, so the order is fp32, bf16, fp32 again (``fp32b``): the two fp32 runs show how much
machine load alone moves the rate. Prints pairs/s ratios and the loss curves side by side. int8 is an
inference setting (no int8 training).

    python benchmarks/precision_train.py --beir /tmp/mq --queries 96 --steps 24 --max-length 128
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--beir", required=True, help="MedQuAD BEIR folder (relforge data medquad)")
    ap.add_argument("--queries", type=int, default=96)
    ap.add_argument("--steps", type=int, default=24)
    ap.add_argument("--batch-groups", type=int, default=4)
    ap.add_argument("--group-size", type=int, default=8)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)

    from relforge.data import read_beir, read_qrels
    from relforge.dataset import GroupConfig, build_groups
    from relforge.retrieve import bm25_search
    from relforge.train import TrainConfig, train_cross_encoder

    corpus, queries, _ = read_beir(a.beir, "test")
    qrels = read_qrels(Path(a.beir) / "qrels" / "train.tsv")
    qids = sorted(q for q in qrels if q in queries)
    random.Random(a.seed).shuffle(qids)
    qids = sorted(qids[: a.queries])
    run = bm25_search(corpus, {q: queries[q] for q in qids}, top_k=30)
    ds, _ = build_groups(
        {q: queries[q] for q in qids},
        {q: qrels[q] for q in qids},
        run,
        corpus,
        None,
        GroupConfig(group_size=a.group_size, depth=30),
    )
    res = {}
    for name, prec in (("fp32", "fp32"), ("bf16", "bf16"), ("fp32b", "fp32")):
        cfg = TrainConfig(
            max_length=a.max_length,
            batch_groups=a.batch_groups,
            max_steps=a.steps,
            lr=3e-5,
            logging_steps=max(1, a.steps // 8),
            precision=prec,
            seed=a.seed,
        )
        c0 = time.process_time()
        with tempfile.TemporaryDirectory() as tmp:
            s = train_cross_encoder(ds, Path(tmp) / "m", cfg)
        res[name] = (s, time.process_time() - c0)
    pairs = a.steps * a.batch_groups * a.group_size
    print(
        f"{len(ds)} groups of {a.group_size}, {a.steps} steps x {a.batch_groups} groups, max_length "
        f"{a.max_length}; load average {os.getloadavg()[0]:.1f}"
    )
    print(f"{'precision':10} {'train s':>8} {'pairs/s':>8} {'vs fp32':>8} {'CPU s':>7} {'final loss':>10}")
    base = res["fp32"][0]["train_time_s"]
    for name, (s, cpu) in res.items():
        t = s["train_time_s"]
        print(
            f"{name:10} {t:8.1f} {pairs / t:8.1f} {base / t:7.2f}x {cpu:7.1f} {s['loss_curve'][-1]['loss']:10.4f}"
        )
    print("loss curve (step: " + " | ".join(res) + ")")
    for pts in zip(*(s["loss_curve"] for s, _ in res.values()), strict=True):
        print(f"  {pts[0]['step']:4d}: " + "  ".join(f"{p['loss']:.4f}" for p in pts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
