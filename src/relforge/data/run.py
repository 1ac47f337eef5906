"""The import stage's one entry point: a data source in, the corpus and the picked human questions out.

``run(cfg, inputs, out)`` reads a BEIR folder (a MedQuAD archive or XML folder is converted first), picks
the held-out test questions and, when the config names their splits, the training and dev questions (each
excluding those picked before, from one seeded random stream), caps the corpus (every judged document
kept) and writes the files of :class:`ImportOutputs`. The pipeline's stage import and ``relforge data
import`` both call it.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from relforge.data.config import ImportConfig
from relforge.data.summary import SummaryFile
from relforge.errors import MissingInputError, UsageError

Qrels = dict[str, dict[str, int]]

#: the manifest counts of the pipeline's stage import (what :func:`run`'s summary reports there)
COUNTS = ("documents", "test_queries")


class ImportInputs(BaseModel):
    """The data source: a BEIR folder, or a MedQuAD ``.tar.xz`` / XML folder (converted to ``medquad_dir``)."""

    source: Path


class ImportOutputs(BaseModel):
    """Where the import writes (the pipeline's names are in :mod:`relforge.pipeline.layout`)."""

    corpus: Path
    test_queries: Path
    test_qrels: Path
    train_queries: Path
    train_qrels: Path
    dev_queries: Path
    dev_qrels: Path
    summary: Path
    #: the BEIR folder a MedQuAD source is converted to
    medquad_dir: Path

    @classmethod
    def in_folder(cls, out: Path) -> ImportOutputs:
        """The pipeline's file names (those of its ``data/`` folder), in the folder ``out``."""
        return cls(
            corpus=out / "corpus.jsonl",
            test_queries=out / "test-queries.jsonl",
            test_qrels=out / "test-qrels.tsv",
            train_queries=out / "train-queries.jsonl",
            train_qrels=out / "train-qrels.tsv",
            dev_queries=out / "dev-queries.jsonl",
            dev_qrels=out / "dev-qrels.tsv",
            summary=out / "summary.json",
            medquad_dir=out / "medquad",
        )


class ImportSummary(SummaryFile):
    """``data/summary.json``: the source, the questions picked per split and the documents kept."""

    source: str
    #: a MedQuAD source: its conversion's pair counts (answered_pairs, skipped_total, splits)
    medquad: dict[str, Any] | None = None
    train_split: str | None = None
    train_queries: int | None = None
    dev_split: str | None = None
    dev_queries: int | None = None
    documents: int
    documents_in_source: int
    test_queries: int
    test_queries_eligible: int
    test_split: str
    test_judgments: int


# --------------------------------------------------------------------------- picking questions


def split_qrels(beir: Path, splits: str, key: str) -> Qrels:
    """The qrels of the comma-separated ``splits`` (the error names the config key ``data.<key>``)."""
    from relforge.data.io import read_qrels

    qrels: Qrels = {}
    for split in [x.strip() for x in splits.split(",") if x.strip()]:
        qrels_file = beir / "qrels" / f"{split}.tsv"
        if not qrels_file.exists():
            raise MissingInputError(
                f"{qrels_file}: no such qrels split; set data.{key} to one or more "
                f"(comma-separated) of {sorted(p.stem for p in (beir / 'qrels').glob('*.tsv'))}"
            )
        for q, docs in read_qrels(qrels_file).items():
            qrels.setdefault(q, {}).update(docs)
    return qrels


def eligible(qrels: Qrels, queries: Mapping, corpus: Mapping, exclude: set[str] = frozenset()) -> list[str]:
    """The questions (not in ``exclude``) with a relevant document in the corpus, sorted."""
    return sorted(
        q
        for q, docs in qrels.items()
        if q in queries and q not in exclude and any(g > 0 and d in corpus for d, g in docs.items())
    )


def sample_ids(qids: list[str], cap: int | None, rng: random.Random) -> list[str]:
    """At most ``cap`` of ``qids`` (sorted), drawn from ``rng``; all of them when there are not more."""
    return sorted(rng.sample(qids, cap)) if cap is not None and len(qids) > cap else qids


def in_corpus(qrels: Qrels, qids: list[str], corpus: Mapping) -> Qrels:
    """The qrels of ``qids``, keeping only documents of the corpus."""
    return {q: {d: g for d, g in qrels[q].items() if d in corpus} for q in qids}


def pick_split(
    beir: Path,
    queries: Mapping,
    corpus: Mapping,
    splits: str,
    name: str,
    cap: int | None,
    exclude: set[str],
    rng: random.Random,
) -> Qrels:
    """Questions of ``splits`` (not in ``exclude``) with a relevant document, at most ``cap``."""
    got = split_qrels(beir, splits, f"{name}_split")
    qids = eligible(got, queries, corpus, exclude=exclude)
    if not qids:
        raise UsageError(f"data.{name}_split {splits!r} has no question with a relevant document")
    return in_corpus(got, sample_ids(qids, cap, rng), corpus)


def kept_docs(corpus: Mapping, max_docs: int | None, rng: random.Random, *qrels: Qrels) -> set[str]:
    """The documents kept: all, or (``max_docs``) every judged one plus a sample of the rest."""
    if max_docs is None or len(corpus) <= max_docs:
        return set(corpus)
    needed = {d for part in qrels for docs in part.values() for d in docs}
    rest = sorted(set(corpus) - needed)
    fill = max(0, max_docs - len(needed))
    return needed | set(rng.sample(rest, min(fill, len(rest))))


@dataclass
class Questions:
    """The human questions picked: held out for evaluation, and (optional) for training and dev."""

    test_eligible: list[str]
    test: Qrels
    train: Qrels
    dev: Qrels


def pick_questions(
    beir: Path, queries: Mapping, corpus: Mapping, cfg: ImportConfig, rng: random.Random
) -> Questions:
    """Test, then train and dev questions (each excluding the ones picked before), from one ``rng``."""
    qrels = split_qrels(beir, cfg.test_split, "test_split")
    test_eligible = eligible(qrels, queries, corpus)
    test = in_corpus(qrels, sample_ids(test_eligible, cfg.test_queries, rng), corpus)
    train: Qrels = {}
    if cfg.train_split:
        train = pick_split(beir, queries, corpus, cfg.train_split, "train", cfg.train_queries, set(test), rng)
        train = {q: {d: g for d, g in docs.items() if g > 0} for q, docs in train.items()}
    dev: Qrels = {}
    if cfg.dev_split:
        dev = pick_split(
            beir, queries, corpus, cfg.dev_split, "dev", cfg.dev_queries, set(test) | set(train), rng
        )
    return Questions(test_eligible, test, train, dev)


# --------------------------------------------------------------------------- the stage


def open_source(
    source: Path, cfg: ImportConfig, out: ImportOutputs, log: Callable[[str], None]
) -> tuple[Path, dict[str, Any] | None]:
    """The BEIR folder of ``source`` (a MedQuAD archive or folder is converted to ``out.medquad_dir``) and,
    for MedQuAD, its conversion's counts."""
    if source.is_dir() and (source / "corpus.jsonl").exists():
        return source, None
    from relforge.data.medquad import import_medquad

    log(f"importing MedQuAD from {source}")
    imp = import_medquad(source, out.medquad_dir, seed=cfg.seed)
    return out.medquad_dir, {k: imp.get(k) for k in ("answered_pairs", "skipped_total", "splits")}


def _write_questions(queries_path: Path, qrels_path: Path, queries: Mapping, qrels: Qrels) -> None:
    """The questions of ``qrels`` (sorted by id) and their qrels."""
    from relforge.data.io import write_qrels, write_queries

    write_queries(queries_path, [queries[q] for q in sorted(qrels)])
    write_qrels(qrels_path, qrels)


def run(
    cfg: ImportConfig, inputs: ImportInputs, out: ImportOutputs | Path, *, log: Callable[[str], None] = print
) -> ImportSummary:
    """Read ``inputs.source``, pick the questions, write the corpus, the questions and ``summary.json``.

    ``out`` is a folder (the pipeline's file names in it) or :class:`ImportOutputs`. The random stream
    (``cfg.seed``) is drawn in this order: test, train, dev questions, documents."""
    from relforge.data.io import read_corpus, read_queries, write_corpus

    out = out if isinstance(out, ImportOutputs) else ImportOutputs.in_folder(Path(out))
    beir, medquad = open_source(Path(inputs.source), cfg, out, log)
    corpus = read_corpus(beir / "corpus.jsonl")
    queries = read_queries(beir / "queries.jsonl")
    rng = random.Random(cfg.seed)
    qs = pick_questions(beir, queries, corpus, cfg, rng)
    keep = kept_docs(corpus, cfg.max_docs, rng, qs.test, qs.train, qs.dev)
    write_corpus(out.corpus, [corpus[d] for d in sorted(keep)])
    _write_questions(out.test_queries, out.test_qrels, queries, qs.test)
    picked: dict[str, Any] = {"medquad": medquad} if medquad is not None else {}
    if cfg.train_split:
        _write_questions(out.train_queries, out.train_qrels, queries, qs.train)
        picked.update(train_split=cfg.train_split, train_queries=len(qs.train))
    if cfg.dev_split:
        _write_questions(out.dev_queries, out.dev_qrels, queries, qs.dev)
        picked.update(dev_split=cfg.dev_split, dev_queries=len(qs.dev))
    summary = ImportSummary(
        source=cfg.source,
        **picked,
        documents=len(keep),
        documents_in_source=len(corpus),
        test_queries=len(qs.test),
        test_queries_eligible=len(qs.test_eligible),
        test_split=cfg.test_split,
        test_judgments=sum(len(v) for v in qs.test.values()),
    )
    summary.write(out.summary)
    return summary
