"""Statistics of a BEIR folder in one streaming pass per file (only id sets and word counts are held)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from relforge.data.io import _get_id, beir_file, iter_jsonl, iter_qrels_lines
from relforge.errors import MissingInputError

#: percentiles reported for word lengths
PERCENTILES = (5, 25, 50, 75, 95, 99)


def length_stats(lengths: list[int]) -> dict[str, float]:
    """``{"min", "p5", ..., "p99", "max", "mean"}`` of word counts (empty list -> zeros)."""
    import numpy as np

    if not lengths:
        return {"min": 0, **{f"p{p}": 0 for p in PERCENTILES}, "max": 0, "mean": 0.0}
    a = np.asarray(lengths)
    out: dict[str, float] = {"min": int(a.min())}
    for p, v in zip(PERCENTILES, np.percentile(a, PERCENTILES), strict=True):
        out[f"p{p}"] = round(float(v), 1)
    out["max"] = int(a.max())
    out["mean"] = round(float(a.mean()), 1)
    return out


def _records_stats(path: Path, with_title: bool) -> tuple[dict[str, Any], set[str]]:
    ids: set[str] = set()
    lengths: list[int] = []
    title_lengths: list[int] = []
    dups = empty = 0
    for lineno, obj in iter_jsonl(path):
        rid = _get_id(obj, path, lineno)
        if rid in ids:
            dups += 1
        ids.add(rid)
        text = obj.get("text") if isinstance(obj.get("text"), str) else ""
        n = len(text.split())
        lengths.append(n)
        title = str(obj.get("title") or "") if with_title else ""
        if with_title:
            title_lengths.append(len(title.split()))
        if n == 0 and not title.strip():
            empty += 1
    out: dict[str, Any] = {
        "path": str(path),
        "count": len(lengths),
        "unique_ids": len(ids),
        "duplicate_ids": dups,
        "empty": empty,
        "words": length_stats(lengths),
    }
    if with_title:
        out["title_words"] = length_stats(title_lengths)
    return out, ids


def _qrels_files(folder: Path) -> dict[str, Path]:
    files: dict[str, Path] = {}
    qdir = folder / "qrels"
    order = {"train": 0, "dev": 1, "test": 2}
    if qdir.is_dir():
        for p in sorted(qdir.iterdir(), key=lambda p: (order.get(p.name.split(".")[0], 3), p.name)):
            if p.name.endswith((".tsv", ".tsv.gz", ".trec", ".txt")):
                files[p.name.split(".")[0]] = p
    for name in ("qrels.tsv", "qrels.tsv.gz", "qrels.trec"):
        if (folder / name).is_file():
            files.setdefault(name.split(".")[0], folder / name)
    return files


def beir_stats(folder: str | Path) -> dict[str, Any]:
    """Counts, duplicate/empty records, word-length percentiles and, per qrels split, the label
    distribution, judged queries and rows naming unknown queries or documents.

    Args:
        folder: a BEIR folder (``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``; ``.gz`` accepted).

    Returns:
        ``{"folder", "corpus", "queries", "qrels": {split: {...}}, "splits": {split: n_queries},
        "queries_without_qrels", "import_summary"?}``; ``import_summary`` holds the MedQuAD import's
        ``answered_pairs`` / ``skipped`` when a ``summary.json`` is present.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise MissingInputError(f"{folder}: no such folder (expected a BEIR folder with corpus.jsonl)")
    out: dict[str, Any] = {"folder": str(folder)}
    corpus_ids: set[str] | None = None
    query_ids: set[str] | None = None
    cpath, qpath = beir_file(folder, "corpus.jsonl"), beir_file(folder, "queries.jsonl")
    if cpath.exists():
        out["corpus"], corpus_ids = _records_stats(cpath, with_title=True)
    if qpath.exists():
        out["queries"], query_ids = _records_stats(qpath, with_title=False)
    if corpus_ids is None and query_ids is None:
        raise MissingInputError(f"{folder}: holds neither corpus.jsonl nor queries.jsonl")
    out["qrels"] = {}
    judged: set[str] = set()
    for split, path in _qrels_files(folder).items():
        labels: Counter = Counter()
        qids: set[str] = set()
        pairs: dict[tuple[str, str], int] = {}
        unknown_q = unknown_d = dup = conflicting = 0
        for _, qid, docid, grade in iter_qrels_lines(path):
            labels[grade] += 1
            qids.add(qid)
            if (qid, docid) in pairs:
                dup += 1
                conflicting += pairs[(qid, docid)] != grade
            pairs[(qid, docid)] = grade
            if query_ids is not None and qid not in query_ids:
                unknown_q += 1
            if corpus_ids is not None and docid not in corpus_ids:
                unknown_d += 1
        judged |= qids
        per_query = Counter(q for q, _ in pairs)
        out["qrels"][split] = {
            "path": str(path),
            "rows": sum(labels.values()),
            "pairs": len(pairs),
            "queries": len(qids),
            "labels": {str(k): v for k, v in sorted(labels.items())},
            "judged_per_query": length_stats(list(per_query.values())),
            "duplicate_pairs": dup,
            "conflicting_duplicates": conflicting,
            "unknown_queries": unknown_q,
            "unknown_documents": unknown_d,
        }
    out["splits"] = {s: v["queries"] for s, v in out["qrels"].items()}
    if query_ids is not None:
        out["queries_without_qrels"] = len(query_ids - judged)
    summary = folder / "summary.json"
    if summary.is_file():
        try:
            s = json.loads(summary.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            s = {}
        keep = (
            "answered_pairs",
            "pairs_total",
            "skipped",
            "skipped_by_subset",
            "skipped_total",
            "duplicate_answer_texts",
            "question_texts_in_several_splits",
        )
        if isinstance(s, dict) and "answered_pairs" in s:
            out["import_summary"] = {k: s[k] for k in keep if k in s}
    return out
