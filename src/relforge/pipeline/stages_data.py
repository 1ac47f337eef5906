"""Stages import, generate and retrieve: the documents, the training queries and the first-stage runs."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from relforge.config import GenerateConfig, PipelineConfig, RetrieveConfig, stage_part
from relforge.errors import MissingInputError, UsageError
from relforge.pipeline import layout
from relforge.pipeline.common import resolve_data_source, write_json
from relforge.pipeline.runner import StageContext

Qrels = dict[str, dict[str, int]]


# --------------------------------------------------------------------------- import


def _open_source(ctx: StageContext, summary: dict[str, Any]) -> Path:
    """The BEIR folder of ``data.source`` (a MedQuAD archive or folder is converted to ``data/medquad``)."""
    cfg: PipelineConfig = ctx.cfg
    src = resolve_data_source(cfg.data.source)
    if src.is_dir() and (src / "corpus.jsonl").exists():
        return src
    from relforge.data.medquad import import_medquad

    beir = ctx.path(layout.MEDQUAD_DIR)
    ctx.log(f"importing MedQuAD from {src}")
    imp = import_medquad(src, beir, seed=cfg.data.seed)
    summary["medquad"] = {k: imp.get(k) for k in ("answered_pairs", "skipped_total", "splits")}
    return beir


def _split_qrels(beir: Path, splits: str, key: str) -> Qrels:
    """The qrels of the comma-separated ``splits`` (the error names the config key ``data.<key>``)."""
    from relforge.data import read_qrels

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


def _eligible(qrels: Qrels, queries, corpus, exclude: set[str] = frozenset()) -> list[str]:
    """The questions (not in ``exclude``) with a relevant document in the corpus, sorted."""
    return sorted(
        q
        for q, docs in qrels.items()
        if q in queries and q not in exclude and any(g > 0 and d in corpus for d, g in docs.items())
    )


def _sample(qids: list[str], cap: int | None, rng: random.Random) -> list[str]:
    return sorted(rng.sample(qids, cap)) if cap is not None and len(qids) > cap else qids


def _in_corpus(qrels: Qrels, qids: list[str], corpus) -> Qrels:
    return {q: {d: g for d, g in qrels[q].items() if d in corpus} for q in qids}


def _pick(
    beir: Path, queries, corpus, splits: str, name: str, cap: int | None, exclude: set[str], rng
) -> Qrels:
    """Questions of ``splits`` (not in ``exclude``) with a relevant document, at most ``cap``."""
    got = _split_qrels(beir, splits, f"{name}_split")
    qids = _eligible(got, queries, corpus, exclude=exclude)
    if not qids:
        raise UsageError(f"data.{name}_split {splits!r} has no question with a relevant document")
    return _in_corpus(got, _sample(qids, cap, rng), corpus)


def _kept_docs(corpus, max_docs: int | None, rng: random.Random, *qrels: Qrels) -> set[str]:
    """The documents kept: all, or (``data.max_docs``) every judged one plus a sample of the rest."""
    if max_docs is None or len(corpus) <= max_docs:
        return set(corpus)
    needed = {d for part in qrels for docs in part.values() for d in docs}
    rest = sorted(set(corpus) - needed)
    fill = max(0, max_docs - len(needed))
    return needed | set(rng.sample(rest, min(fill, len(rest))))


def _write_questions(ctx: StageContext, queries_rel: str, qrels_rel: str, queries, qrels: Qrels) -> None:
    """The questions of ``qrels`` (sorted by id) and their qrels."""
    from relforge.data import write_qrels, write_queries

    write_queries(ctx.path(queries_rel), [queries[q] for q in sorted(qrels)])
    write_qrels(ctx.path(qrels_rel), qrels)


@dataclass
class _Questions:
    """The human questions picked: held out for evaluation, and (optional) for training and dev."""

    test_eligible: list[str]
    test: Qrels
    train: Qrels
    dev: Qrels


def _pick_questions(beir: Path, queries, corpus, dc, rng: random.Random) -> _Questions:
    """Test, then train and dev questions (each excluding the ones picked before), from one ``rng``."""
    qrels = _split_qrels(beir, dc.test_split, "test_split")
    test_eligible = _eligible(qrels, queries, corpus)
    test = _in_corpus(qrels, _sample(test_eligible, dc.test_queries, rng), corpus)
    train: Qrels = {}
    if dc.train_split:
        train = _pick(beir, queries, corpus, dc.train_split, "train", dc.train_queries, set(test), rng)
        train = {q: {d: g for d, g in docs.items() if g > 0} for q, docs in train.items()}
    dev: Qrels = {}
    if dc.dev_split:
        dev = _pick(beir, queries, corpus, dc.dev_split, "dev", dc.dev_queries, set(test) | set(train), rng)
    return _Questions(test_eligible, test, train, dev)


def stage_import(ctx: StageContext) -> dict[str, Any]:
    """Copy/convert the data source to ``data/`` and pick the held-out human evaluation questions."""
    from relforge.data import read_corpus, read_queries, write_corpus

    cfg: PipelineConfig = ctx.cfg
    dc = cfg.data
    summary: dict[str, Any] = {"source": dc.source}
    beir = _open_source(ctx, summary)
    corpus = read_corpus(beir / "corpus.jsonl")
    queries = read_queries(beir / "queries.jsonl")
    rng = random.Random(dc.seed)  # one stream, drawn in this order: test, train, dev questions, documents
    qs = _pick_questions(beir, queries, corpus, dc, rng)
    keep = _kept_docs(corpus, dc.max_docs, rng, qs.test, qs.train, qs.dev)
    docs = [corpus[d] for d in sorted(keep)]
    write_corpus(ctx.path(layout.CORPUS), docs)
    _write_questions(ctx, layout.TEST_QUERIES, layout.TEST_QRELS, queries, qs.test)
    if dc.train_split:
        _write_questions(ctx, layout.TRAIN_QUERIES, layout.TRAIN_QRELS, queries, qs.train)
        summary.update(train_split=dc.train_split, train_queries=len(qs.train))
    if dc.dev_split:
        _write_questions(ctx, layout.DEV_QUERIES, layout.DEV_QRELS, queries, qs.dev)
        summary.update(dev_split=dc.dev_split, dev_queries=len(qs.dev))
    summary.update(
        documents=len(docs),
        documents_in_source=len(corpus),
        test_queries=len(qs.test),
        test_queries_eligible=len(qs.test_eligible),
        test_split=dc.test_split,
        test_judgments=sum(len(v) for v in qs.test.values()),
    )
    write_json(ctx.path(layout.DATA_SUMMARY), summary)
    return {"documents": len(docs), "test_queries": len(qs.test)}


# --------------------------------------------------------------------------- generate


def _human_training_queries(ctx: StageContext) -> dict[str, Any]:
    """``data.train_split``: the human questions stand in for generated ones (no LLM)."""
    from relforge.data import read_qrels, read_queries, write_qrels, write_queries

    queries = read_queries(ctx.path(layout.TRAIN_QUERIES))
    qrels = read_qrels(ctx.path(layout.TRAIN_QRELS))
    write_queries(ctx.path(layout.GEN_QUERIES), list(queries.values()))
    write_qrels(ctx.path(layout.GEN_QRELS), qrels)
    summary = {"source": f"human questions, split {ctx.cfg.data.train_split!r}", "kept": len(queries)}
    write_json(ctx.path(layout.GEN_SUMMARY), summary)
    return {"queries": len(queries), "documents": len({d for v in qrels.values() for d in v})}


def stage_generate(ctx: StageContext) -> dict[str, Any]:
    """Synthetic queries for (a sample of) the corpus."""
    from relforge.data import read_corpus, write_jsonl, write_qrels, write_queries
    from relforge.generate import generate_queries, select_documents

    cfg: PipelineConfig = ctx.cfg
    if cfg.data.train_split:
        return _human_training_queries(ctx)
    corpus = read_corpus(ctx.path(layout.CORPUS))
    gc = stage_part(cfg.generate, GenerateConfig)
    sel_stats: dict[str, Any] = {}
    docs = select_documents(corpus, gc.select, stats=sel_stats)
    from relforge.engine.pipeline import stage_llm

    llm = stage_llm(ctx, cfg.llm_for("generate")) or ctx.llm(
        cfg.llm_for("generate"), batch_size=cfg.llm.batch_size, **cfg.llm_options("generate")
    )
    res = generate_queries(llm, docs, gc, corpus=corpus)
    write_jsonl(ctx.path(layout.GEN_REJECTED), res.rejected)
    if not res.queries:
        raise UsageError(
            f"query generation kept no query (summary: {res.summary}); loosen generate.filters or "
            f"use a stronger generate.llm"
        )
    write_queries(ctx.path(layout.GEN_QUERIES), res.queries)
    write_qrels(ctx.path(layout.GEN_QRELS), res.qrels)
    write_json(ctx.path(layout.GEN_SUMMARY), res.summary)
    return {"queries": len(res.queries), "documents": len(res.qrels)}


# --------------------------------------------------------------------------- retrieve


def _write_first_stage_runs(ctx: StageContext, runs, synth, test, dev) -> dict:
    """candidates.trec (the synthetic queries' candidates) and test-/dev-<method>.trec; the candidates."""
    from relforge.data import write_run

    rc = ctx.cfg.retrieve
    cand = {q: runs[rc.method].get(q, {}) for q in synth}
    write_run(ctx.path(layout.CANDIDATES), cand, tag=rc.method)
    for m in rc.methods:
        write_run(ctx.path(layout.first_stage_test(m)), {q: runs[m].get(q, {}) for q in test}, tag=m)
        if dev:  # the dev questions' first stage: reranked when choosing checkpoints (stage train)
            write_run(ctx.path(layout.first_stage_dev(m)), {q: runs[m].get(q, {}) for q in dev}, tag=m)
    return cand


def stage_retrieve(ctx: StageContext) -> dict[str, Any]:
    """First-stage runs for synthetic and held-out questions; hard-negative candidates for the judge."""
    from relforge.data import read_corpus, read_qrels, read_queries
    from relforge.retrieve.dense import encoder_plan
    from relforge.retrieve.mining import mine_negatives
    from relforge.retrieve.search import retrieve_methods

    cfg: PipelineConfig = ctx.cfg
    rc = cfg.retrieve
    corpus = read_corpus(ctx.path(layout.CORPUS))
    synth = read_queries(ctx.path(layout.GEN_QUERIES))
    test = read_queries(ctx.path(layout.TEST_QUERIES))
    dev = read_queries(ctx.path(layout.DEV_QUERIES)) if cfg.data.dev_split else {}
    where = {"index_dir": str(ctx.path(layout.BM25_INDEX)), "cache_dir": str(ctx.path(layout.EMBEDDINGS))}
    settings = stage_part(rc, RetrieveConfig, **where)
    methods = list(dict.fromkeys([*rc.methods, rc.method]))
    runs = retrieve_methods(corpus, {**synth, **test, **dev}, settings, methods, engine=cfg.engine)
    cand = _write_first_stage_runs(ctx, runs, synth, test, dev)
    positives = read_qrels(ctx.path(layout.GEN_QRELS))
    stats: dict[str, Any] = {}
    negs = mine_negatives(cand, positives, rc.mining, corpus_ids=list(corpus), stats=stats)
    write_json(ctx.path(layout.NEGATIVES), negs)
    dense = {"dense": encoder_plan(rc.precision).metadata()} if {"dense", "hybrid"} & set(methods) else {}
    write_json(
        ctx.path(layout.RETRIEVE_SUMMARY),
        {"mining": stats, "methods": rc.methods, "candidates": rc.method, "top_k": rc.top_k, **dense},
    )
    return {
        "synthetic_queries": len(synth),
        "test_queries": len(test),
        **({"dev_queries": len(dev)} if dev else {}),
        "queries_with_negatives": len(negs),
        "negatives": sum(len(v) for v in negs.values()),
    }
