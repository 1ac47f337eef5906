"""The labelled pairs: collection, split by query (test / train / validation), class balancing, hashes."""

from __future__ import annotations

import hashlib
import json
import logging
import random
from dataclasses import dataclass
from typing import Any

from relforge.errors import DataError, UsageError
from relforge.judge.finetune_config import FinetuneConfig
from relforge.types import Document, Qrels, Query

logger = logging.getLogger("relforge.judge.finetune")


def split_by_query(qids: list[str], val_fraction: float, seed: int = 0) -> tuple[list[str], list[str]]:
    """Deterministic train/validation split of query ids (no query on both sides).

    Queries are ordered by ``sha256(f"{seed}:{qid}")`` and the first ``round(val_fraction * n)`` (at
    least one when ``val_fraction > 0`` and there are two or more queries) go to validation, so the
    split does not depend on input order and a query keeps its side when others are added.

    Args:
        qids: query ids that have labels.
        val_fraction: share of queries held out, in [0, 1).
        seed: changes the split.

    Returns:
        (train_qids, val_qids), each sorted.
    """
    uniq = sorted(set(qids))
    if val_fraction <= 0 or len(uniq) < 2:
        return uniq, []
    n_val = min(len(uniq) - 1, max(1, round(val_fraction * len(uniq))))
    order = sorted(uniq, key=lambda q: hashlib.sha256(f"{seed}:{q}".encode()).hexdigest())
    val = set(order[:n_val])
    return sorted(q for q in uniq if q not in val), sorted(val)


@dataclass
class Example:
    qid: str
    docid: str
    grade: int
    weight: float = 1.0


def class_counts(examples: list[Example], values: list[int]) -> dict[str, int]:
    return {str(v): sum(1 for e in examples if e.grade == v) for v in values}


def balance_examples(
    examples: list[Example], values: list[int], mode: str, *, seed: int = 0, max_per_class: int | None = None
) -> list[Example]:
    """Class balancing of the training examples.

    Args:
        examples: labelled training pairs.
        values: the grade values of the scale.
        mode: ``none`` (keep all), ``downsample`` (every class down to the rarest present class),
            ``upsample`` (every class up to the largest, repeating examples), ``weights`` (keep all,
            weight each example by ``n / (k * n_class)``).
        seed: sampling seed.
        max_per_class: cap per class applied first (random sample), in every mode.

    Returns:
        The examples to train on (with ``weight`` set), in a seeded random order.
    """
    if mode not in ("none", "downsample", "upsample", "weights"):
        raise UsageError(
            f"balance={mode!r} is not one of none, downsample, upsample, weights (setting: balance)"
        )
    rng = random.Random(seed)
    by_class: dict[int, list[Example]] = {v: [] for v in values}
    for e in examples:
        by_class.setdefault(e.grade, []).append(e)
    for v in by_class:
        by_class[v] = sorted(by_class[v], key=lambda e: (e.qid, e.docid))
        rng.shuffle(by_class[v])
        if max_per_class is not None:
            by_class[v] = by_class[v][:max_per_class]
    present = {v: xs for v, xs in by_class.items() if xs}
    out: list[Example] = []
    if not present:  # nothing to balance: the caller reports the empty training side
        return out
    if mode == "downsample":
        n = min(len(xs) for xs in present.values())
        for xs in present.values():
            out += [Example(e.qid, e.docid, e.grade) for e in xs[:n]]
    elif mode == "upsample":
        n = max(len(xs) for xs in present.values())
        for xs in present.values():
            reps = [xs[i % len(xs)] for i in range(n)]
            out += [Example(e.qid, e.docid, e.grade) for e in reps]
    else:
        total = sum(len(xs) for xs in present.values())
        for xs in present.values():
            w = total / (len(present) * len(xs)) if mode == "weights" else 1.0
            out += [Example(e.qid, e.docid, e.grade, w) for e in xs]
    rng.shuffle(out)
    return out


def data_hash(corpus: dict[str, Document], queries: dict[str, Query], qrels: Qrels) -> dict[str, str]:
    """Content hashes of the labelled data actually used (queries and documents that have labels)."""

    def h(obj: Any) -> str:
        return hashlib.sha256(json.dumps(obj, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]

    docids = sorted({d for q in qrels.values() for d in q})
    return {
        "qrels": h({q: qrels[q] for q in sorted(qrels)}),
        "queries": h({q: [queries[q].text, queries[q].metadata] for q in sorted(qrels) if q in queries}),
        "corpus": h({d: [corpus[d].title, corpus[d].text] for d in docids if d in corpus}),
    }


def query_view(queries: dict[str, Query], field: str) -> dict[str, Query]:
    """Queries whose ``text`` is the configured field (``text`` or a metadata key)."""
    if field == "text":
        return queries
    out = {}
    for qid, q in queries.items():
        value = q.metadata.get(field)
        if not value:
            raise DataError(f"query {qid} has no field {field!r} (setting: query_field)")
        out[qid] = Query(id=q.id, text=str(value), metadata=q.metadata)
    return out


@dataclass
class Split:
    """Labelled pairs by role (test held out, train/validation by query, train balanced) and their counts."""

    examples: list[Example]  # the pairs off the test queries
    test: list[Example]
    train_q: list[str]
    val_q: list[str]
    train_all: list[Example]
    train: list[Example]
    val: list[Example]
    counts: dict[str, Any]

    def describe(self, cfg: FinetuneConfig) -> dict[str, Any]:
        return {
            "method": "query hash" if cfg.val_queries is None else "explicit",
            "seed": cfg.seed,
            "val_fraction": cfg.val_fraction,
            "train_queries": self.train_q,
            "val_queries": self.val_q,
            "train_pairs": len(self.train_all),
            "val_pairs": len(self.val),
        }


def collect_examples(
    corpus: dict[str, Document], queries: dict[str, Query], qrels: Qrels, values: list[int]
) -> tuple[list[Example], dict[str, int]]:
    """The labelled pairs that have both query and document, and how many lacked one or the other."""
    examples: list[Example] = []
    missing: dict[str, int] = {"query": 0, "document": 0}
    off_scale = sorted({g for q in qrels.values() for g in q.values() if g not in values})
    if off_scale:
        raise DataError(
            f"qrels grades {off_scale} are not on the template's scale {values} (setting: template)"
        )
    for qid in sorted(qrels):
        if qid not in queries:
            missing["query"] += len(qrels[qid])
            continue
        for docid in sorted(qrels[qid]):
            if docid not in corpus:
                missing["document"] += 1
                continue
            examples.append(Example(qid, docid, int(qrels[qid][docid])))
    if not examples:
        raise DataError(
            "no labelled pair has both its query and its document; check --queries/--corpus/--qrels"
        )
    return examples, missing


def split_examples(examples: list[Example], values: list[int], cfg: FinetuneConfig) -> Split:
    """Hold out the test queries, split the rest by query, cap validation, balance training."""
    test_set = set(cfg.test_queries or [])
    test = [e for e in examples if e.qid in test_set]  # never trained on, never used to pick the epoch
    examples = [e for e in examples if e.qid not in test_set]
    if cfg.val_queries is not None:
        val_q = sorted(set(cfg.val_queries) & {e.qid for e in examples})
        if not val_q:
            raise UsageError("none of val_queries has labels (setting: val_queries)")
        train_q = sorted({e.qid for e in examples} - set(val_q))
    else:
        train_q, val_q = split_by_query([e.qid for e in examples], cfg.val_fraction, cfg.seed)
    train_all = [e for e in examples if e.qid in set(train_q)]
    val = [e for e in examples if e.qid in set(val_q)]
    if cfg.max_val_pairs is not None and len(val) > cfg.max_val_pairs:
        val = sorted(random.Random(cfg.seed).sample(val, cfg.max_val_pairs), key=lambda e: (e.qid, e.docid))
    train = balance_examples(train_all, values, cfg.balance, seed=cfg.seed, max_per_class=cfg.max_per_class)
    if not train and cfg.epochs > 0:
        raise DataError("no training examples left after the split; lower val_fraction")
    counts = {
        "train_available": class_counts(train_all, values),
        "train_used": class_counts(train, values),
        "train_weights": {
            str(v): round(next((e.weight for e in train if e.grade == v), 0.0), 4) for v in values
        },
        "validation": class_counts(val, values),
    }
    logger.info("class counts: %s", counts)
    return Split(examples, test, train_q, val_q, train_all, train, val, counts)
