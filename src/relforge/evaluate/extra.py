"""Further test collections (``evaluate.extra``): every system scored again on another BEIR collection.

:func:`run_extra` is the pipeline's ``evaluate_extra`` stage for one collection: the questions with a
relevant document, BM25 / dense / hybrid first stages on the collection, every reranker on the chosen
first stage, the metrics; ``eval/extra/summary.json`` (:class:`ExtraIndex`) lists the collections for
the report.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, RootModel

from relforge.evaluate.config import EvalConfig

if TYPE_CHECKING:
    from relforge.config import ExtraCollection
    from relforge.retrieve.config import RetrieveConfig
    from relforge.train.config import RerankConfig
    from relforge.train.rerank_run import Reranker


class ExtraEntry(BaseModel):
    """One collection of ``eval/extra/summary.json``."""

    #: its metrics file (an :class:`~relforge.evaluate.EvalResult`), relative to the run folder
    metrics: str
    source: str
    split: str
    mode: str
    #: the first stage the rerankers reranked, and to what depth
    first_stage: str
    top_k: int
    queries: int
    documents: int
    description: str = ""


class ExtraIndex(RootModel[dict[str, ExtraEntry]]):
    """``eval/extra/summary.json``: collection name -> :class:`ExtraEntry`."""

    @classmethod
    def read(cls, path: str | os.PathLike) -> ExtraIndex:
        return cls.model_validate_json(Path(path).read_text(encoding="utf-8"))

    def write(self, path: str | os.PathLike) -> None:
        from relforge.data import atomic_write

        with atomic_write(path) as fh:
            json.dump(self.model_dump(mode="json"), fh, indent=2, ensure_ascii=False)
            fh.write("\n")


def extra_questions(ec: ExtraCollection, source: Path, seed: int) -> tuple[dict, dict, dict]:
    """Corpus, queries and qrels of one extra collection: the questions with a relevant document (at
    most ``max_queries``, a ``seed``-ed sample), in ``pool`` mode the corpus cut to their judged documents."""
    from relforge.data import read_beir

    corpus, queries, qrels = read_beir(source, ec.split)
    qids = sorted(q for q, docs in qrels.items() if q in queries and any(g > 0 for g in docs.values()))
    if ec.max_queries is not None and len(qids) > ec.max_queries:
        qids = sorted(random.Random(seed).sample(qids, ec.max_queries))
    qrels = {q: {d: g for d, g in qrels[q].items() if d in corpus} for q in qids}
    queries = {q: queries[q] for q in qids}
    if ec.mode == "pool":
        corpus = {d: corpus[d] for d in sorted({d for docs in qrels.values() for d in docs})}
    return corpus, queries, qrels


def rank_pools(runs: dict[str, dict], qrels: dict) -> None:
    """Every system ranks exactly the judged pool (in place); unscored documents go last."""
    for run in runs.values():
        for q in qrels:
            got = {d: v for d, v in run.get(q, {}).items() if d in qrels[q]}
            floor = min(got.values(), default=0.0) - 1.0
            rest = sorted(set(qrels[q]) - set(got))
            run[q] = {**got, **{d: floor - i * 1e-3 for i, d in enumerate(rest)}}


def first_stages(
    corpus: dict, queries: dict, qrels: dict, mode: str, rc: RetrieveConfig, cache: Path
) -> dict[str, dict]:
    """BM25, dense and hybrid runs of one collection (``pool`` mode: each ranks exactly the judged pool),
    retrieved with ``rc``'s settings (stemmer, dense model, length, precision, RRF constant, as the
    in-domain retrieve stage: :func:`relforge.retrieve.search.retrieve_methods`) to the collection's depth,
    the indexes and embeddings cached under ``cache``."""
    from relforge.retrieve.config import RetrieveConfig
    from relforge.retrieve.search import retrieve_methods

    depth = len(corpus) if mode == "pool" else rc.top_k
    settings = rc.model_dump(include=set(RetrieveConfig.model_fields))
    settings.update(top_k=depth, index_dir=str(cache / "bm25-index"), cache_dir=str(cache / "embeddings"))
    runs = retrieve_methods(corpus, queries, RetrieveConfig(**settings), ["bm25", "dense", "hybrid"])
    if mode == "pool":
        rank_pools(runs, qrels)
    return runs


def rerank_systems(
    rerank: RerankConfig, systems: list[Reranker], corpus: dict, queries: dict, first: dict, top_k: int
) -> dict[str, dict]:
    """Each system's reranking of ``first`` (a system ``same_as`` another gets that one's run)."""
    from relforge.train.rerank_run import rerank_with

    runs: dict[str, dict] = {}
    for s in systems:
        if s.same_as is not None:
            runs[s.name] = runs[s.same_as]  # the same model: the same run
        else:
            over: dict[str, Any] = {"top_k": top_k, "backend": s.backend or rerank.backend}
            runs[s.name] = rerank_with(rerank, s.model, s.kind, corpus, queries, first, **over)
    return runs


def run_extra(
    ec: ExtraCollection,
    cfg: EvalConfig,
    folder: Path,
    *,
    source: Path,
    rel_folder: str,
    retrieve: RetrieveConfig,
    methods: list[str],
    rerank: RerankConfig,
    first_stage: str,
    systems: list[Reranker],
    seed: int,
    log: Callable[[str], None] = lambda msg: None,
) -> tuple[ExtraEntry, dict[str, float]]:
    """Score ``methods`` and ``systems`` (reranking ``ec.first_stage or first_stage``) on collection ``ec``
    (its BEIR folder: ``source``); runs and metrics written to ``folder`` (``rel_folder`` relative to the run folder); (its entry, every
    system's first measure). ``cfg.baseline`` is used when it is one of the systems, else the first."""
    from relforge.data import write_run
    from relforge.evaluate.core import evaluate
    from relforge.evaluate.run import EvalOutputs, comparison_pairs, summarize, write_result

    folder.mkdir(parents=True, exist_ok=True)
    corpus, queries, qrels = extra_questions(ec, source, seed)
    first = first_stages(corpus, queries, qrels, ec.mode, retrieve, folder / "cache")
    stage = ec.first_stage or first_stage
    top_k = ec.top_k or (max(len(v) for v in qrels.values()) if ec.mode == "pool" else rerank.top_k)
    runs = {m: first[m] for m in methods}
    runs.update(rerank_systems(rerank, systems, corpus, queries, first[stage], top_k))
    for name, run in runs.items():
        write_run(folder / f"{name}.trec", run, tag=name)
    baseline = cfg.baseline if cfg.baseline in runs else next(iter(runs))
    result = evaluate(qrels, runs, **{**cfg.model_dump(), "baseline": baseline}, pairs=comparison_pairs(runs))
    write_result(result, EvalOutputs.folder(folder))
    entry = ExtraEntry(
        metrics=f"{rel_folder}/metrics.json",
        source=ec.source,
        split=ec.split,
        mode=ec.mode,
        first_stage=stage,
        top_k=top_k,
        queries=len(queries),
        documents=len(corpus),
        description=ec.description,
    )
    scores = summarize(result).scores
    log(f"extra {ec.name} ({len(queries)} queries, {ec.mode}): {result.measures[0]} {scores}")
    return entry, scores
