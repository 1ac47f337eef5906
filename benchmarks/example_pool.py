"""Build a few-shot example pool of human TRAINING questions with their answers (for
``generate.example_selection: nearest``), never touching evaluation questions.

    python benchmarks/example_pool.py --data runs/medquad-cpu-human/data \\
        --exclude runs/medquad-cpu/data --n 200 --out configs/medquad-train-pool.jsonl

``--data``: a data-stage folder (``relforge run`` / ``relforge data import``) with ``train-queries.jsonl``,
``train-qrels.tsv`` and ``corpus.jsonl``. Every folder given to ``--exclude`` (and ``--data`` itself)
contributes its test and dev qrels: a pool pair is dropped if its question, its answer, or any answer of
the same MedQuAD source document (``metadata.document``) is among them. Answers are cut to ``--words``.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from relforge.data import read_corpus, read_qrels, read_queries


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--exclude", nargs="*", default=[])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--words", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    data = Path(a.data)
    corpus = read_corpus(data / "corpus.jsonl")
    queries, qrels = read_queries(data / "train-queries.jsonl"), read_qrels(data / "train-qrels.tsv")
    banned_q, banned_d = set(), set()
    for folder in [data, *map(Path, a.exclude)]:
        docs = read_corpus(folder / "corpus.jsonl")
        for split in ("test", "dev"):
            f = folder / f"{split}-qrels.tsv"
            if f.is_file():
                for qid, rel in read_qrels(f).items():
                    banned_q.add(qid)
                    for d in rel:
                        banned_d.add(d)
                        if d in docs:
                            banned_d.add(docs[d].metadata.get("document"))
    pairs = []
    for qid in sorted(qrels):
        did = max(qrels[qid], key=lambda d: (qrels[qid][d], d))
        doc = corpus[did]
        if qid in banned_q or did in banned_d or doc.metadata.get("document") in banned_d:
            continue
        text = " ".join(f"{doc.title}\n{doc.text}".split(" ")[: a.words])
        pairs.append(
            {"document": text, "query": queries[qid].text, "qid": qid, "docid": did, "split": "train"}
        )
    pool = sorted(random.Random(a.seed).sample(pairs, min(a.n, len(pairs))), key=lambda r: r["qid"])
    Path(a.out).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in pool), encoding="utf-8")
    print(f"{len(pool)} pairs of {len(pairs)} eligible ({len(qrels) - len(pairs)} excluded) -> {a.out}")


if __name__ == "__main__":
    main()
