"""Reranking's one entry point: ``relforge rerank`` and the pipeline's ``rerank`` stage both call :func:`run`.

:func:`run` reranks one first-stage run file with one model and writes the reranked run;
:func:`run_systems` reranks the same run with several systems (the pipeline's untrained backbone and
each trained variant), a system that is the same model as another reusing that one's run.
:func:`rerank_with` is the in-memory form (already loaded corpus, queries and run) that the pipeline's
extra collections and ablation use.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from relforge.train.config import RerankConfig
from relforge.types import Run


class RerankInputs(BaseModel):
    """The files one reranking reads."""

    corpus: Path
    queries: Path
    #: the first-stage run (TREC); each query's top ``cfg.top_k`` are reranked
    run: Path


class RerankSummary(BaseModel):
    """What one reranking did."""

    queries: int
    #: (query, document) pairs scored
    pairs: int
    #: lines written to the output run
    lines: int
    #: pairs per second over reading the inputs and reranking (model loading included)
    pairs_per_s: float
    #: the backend and precision it ran with (:func:`relforge.train.rerank.rerank_plan`)
    backend: str
    precision: str


class Reranker(BaseModel):
    """One system of :func:`run_systems`."""

    name: str
    #: a model folder, a named default (``minilm``) or a hub id
    model: str
    kind: Literal["cross", "bi"] = "cross"
    #: the backend of this system (None: ``cfg.backend``)
    backend: str | None = None
    #: the name of an earlier system that is the same model: its run is written again, not recomputed
    same_as: str | None = None


class RerankSystemsSummary(BaseModel):
    """What :func:`run_systems` did (the pipeline's ``rerank`` stage record, key for key)."""

    #: system -> queries in its run
    queries: dict[str, int]
    #: system -> pairs/s, for the systems actually run
    pairs_per_s: dict[str, float]
    #: systems whose run is another's (``same_as``)
    same_as_backbone: list[str]
    #: ``cfg.backend``
    backend: str
    #: system -> ``{"backend", "precision", ...}`` it ran with (:meth:`PrecisionPlan.metadata`)
    precision: dict[str, dict[str, Any]] = Field(default_factory=dict)


def rerank_with(
    cfg: RerankConfig, model: str, kind: str, corpus: dict, queries: dict, first: Run, **override: Any
) -> Run:
    """``first`` reranked by ``model`` with ``cfg``'s settings (``override``: e.g. ``top_k``, ``backend``)."""
    from relforge.train.rerank import rerank

    c = cfg.model_copy(update=override)
    return rerank(
        model,
        corpus,
        queries,
        first,
        top_k=c.top_k,
        kind=kind,
        backend=c.backend,
        batch_size=c.batch_size,
        max_length=c.max_length,
        precision=c.precision,
        doc_fields=c.doc_fields,
    )


def _rerank_files(cfg: RerankConfig, inputs: RerankInputs, model: str, kind: str) -> tuple[Run, int, float]:
    """(reranked run, pairs, pairs/s over reading the inputs and reranking)."""
    from relforge.data import read_corpus, read_queries, read_run

    t0 = time.perf_counter()
    result = rerank_with(
        cfg, model, kind, read_corpus(inputs.corpus), read_queries(inputs.queries), read_run(inputs.run)
    )
    pairs = sum(len(docs) for docs in result.values())
    return result, pairs, round(pairs / max(time.perf_counter() - t0, 1e-9), 1)


def run(
    cfg: RerankConfig,
    inputs: RerankInputs,
    out: Path,
    *,
    model: str,
    kind: str = "cross",
    tag: str | None = None,
) -> RerankSummary:
    """Rerank ``inputs.run`` with ``model`` and write the reranked run to ``out`` (TREC, run tag ``tag``,
    default ``relforge-<kind>``)."""
    from relforge.data import write_run
    from relforge.train.rerank import rerank_plan

    backend, plan = rerank_plan(kind, cfg.backend, cfg.precision)
    result, pairs, speed = _rerank_files(cfg, inputs, model, kind)
    lines = write_run(out, result, tag=tag or f"relforge-{kind}")
    return RerankSummary(
        queries=len(result),
        pairs=pairs,
        lines=lines,
        pairs_per_s=speed,
        backend=backend,
        precision=plan.resolved,
    )


def run_systems(
    cfg: RerankConfig, inputs: RerankInputs, outs: dict[str, Path], systems: list[Reranker]
) -> RerankSystemsSummary:
    """Rerank ``inputs.run`` with every system in order, writing system ``s.name``'s run to ``outs[s.name]``
    (run tag = its name). ``same_as_backbone`` lists the systems that reused another's run."""
    from relforge.data import write_run
    from relforge.train.rerank import rerank_plan

    summary = RerankSystemsSummary(queries={}, pairs_per_s={}, same_as_backbone=[], backend=cfg.backend)
    runs: dict[str, Run] = {}
    for s in systems:
        backend = s.backend or cfg.backend
        if s.same_as is not None:
            runs[s.name] = runs[s.same_as]
            summary.same_as_backbone.append(s.name)
        else:
            one = cfg.model_copy(update={"backend": backend})
            runs[s.name], _, summary.pairs_per_s[s.name] = _rerank_files(one, inputs, s.model, s.kind)
        write_run(outs[s.name], runs[s.name], tag=s.name)
        summary.queries[s.name] = len(runs[s.name])
        used, plan = rerank_plan(s.kind, backend, cfg.precision)
        summary.precision[s.name] = {"backend": used, **plan.metadata()}
    return summary
