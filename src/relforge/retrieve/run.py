"""The retrieve stage's one entry point: a corpus and queries in, first-stage runs (and negatives) out.

``run(cfg, inputs, out)`` retrieves for every query at once (each retriever run once, hybrid fusing
them), writes the training queries' candidates (``cfg.method``), one run per ``cfg.methods`` for the
held-out (and dev) questions, and, given the training queries' positives, mines hard negatives among
the candidates (``cfg.mining``). ``relforge retrieve`` (candidates only) and the pipeline's stage
retrieve both call it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel

from relforge.data.summary import SummaryFile
from relforge.retrieve.config import RetrieveConfig, RetrieveStageConfig

#: the manifest counts of the pipeline's stage retrieve (``dev_queries`` only with dev questions)
COUNTS = ("synthetic_queries", "test_queries", "dev_queries", "queries_with_negatives", "negatives")


class RetrieveInputs(BaseModel):
    corpus: Path
    #: the queries whose candidates are written (the pipeline's synthetic training queries)
    queries: Path
    #: their positives (qrels): when given, hard negatives are mined from the candidates
    positives: Path | None = None
    #: held-out questions: one first-stage run per ``cfg.methods``
    test_queries: Path | None = None
    #: dev questions (checkpoint selection): one first-stage run per ``cfg.methods``
    dev_queries: Path | None = None


class RetrieveOutputs(BaseModel):
    candidates: Path
    #: ``{method: path}`` of the held-out / dev questions' runs (needed when those inputs are given)
    test_runs: dict[str, Path] = {}
    dev_runs: dict[str, Path] = {}
    negatives: Path | None = None
    summary: Path | None = None


class RetrieveRecord(SummaryFile):
    """``retrieve/summary.json``: the mining counts, the methods run and the dense encoder's precision."""

    mining: dict[str, Any]
    methods: list[str]
    candidates: str
    top_k: int
    dense: dict[str, Any] | None = None


class RetrieveSummary(BaseModel):
    """What the stage reports."""

    synthetic_queries: int
    test_queries: int
    dev_queries: int | None = None
    queries_with_negatives: int
    negatives: int
    #: TREC lines written to the candidates run
    candidate_lines: int
    #: the dense encoder's resolved precision (None: no dense retrieval)
    dense_precision: str | None = None

    def counts(self) -> dict[str, int]:
        """The pipeline manifest's counts."""
        return self.model_dump(include=set(COUNTS), exclude_none=True)


def _read(path: Path | None) -> dict | None:
    from relforge.data.io import read_queries

    return read_queries(path) if path is not None else None


def write_first_stage_runs(
    cfg: RetrieveStageConfig,
    runs: dict,
    queries: dict,
    test: dict | None,
    dev: dict | None,
    out: RetrieveOutputs,
    tag_prefix: str,
) -> tuple[dict, int]:
    """The candidates run (``cfg.method`` for ``queries``) and the test/dev runs per method (``None``: no
    such questions; an empty set of them still gets its, empty, runs); the candidates and the candidates
    run's line count."""
    from relforge.data.io import write_run

    cand = {q: runs[cfg.method].get(q, {}) for q in queries}
    lines = write_run(out.candidates, cand, tag=tag_prefix + cfg.method, top_k=cfg.top_k)
    for m in cfg.methods:
        if test is not None:
            write_run(out.test_runs[m], {q: runs[m].get(q, {}) for q in test}, tag=m)
        if dev:  # the dev questions' first stage: reranked when choosing checkpoints (stage train)
            write_run(out.dev_runs[m], {q: runs[m].get(q, {}) for q in dev}, tag=m)
    return cand, lines


def run(
    cfg: RetrieveStageConfig,
    inputs: RetrieveInputs,
    out: RetrieveOutputs,
    *,
    engine: Any = None,
    tag_prefix: str = "",
) -> RetrieveSummary:
    """Retrieve, write the runs, mine negatives (with ``inputs.positives``) and the summary (``out.summary``).

    Args:
        engine: the pipeline's engine (``engine: {kind: ray}`` encodes on Ray); None: local.
        tag_prefix: put before the method name in the candidates run's TREC tag column.
    """
    from relforge.data.io import read_corpus, read_qrels
    from relforge.retrieve.candidates import mined_candidates, write_candidates
    from relforge.retrieve.dense import encoder_plan
    from relforge.retrieve.mining import mine_negatives_split
    from relforge.retrieve.search import retrieve_methods

    corpus = read_corpus(inputs.corpus)
    queries, test, dev = _read(inputs.queries) or {}, _read(inputs.test_queries), _read(inputs.dev_queries)
    with_eval = test is not None or dev is not None
    methods = list(dict.fromkeys([*cfg.methods, cfg.method])) if with_eval else [cfg.method]
    settings = RetrieveConfig(**cfg.model_dump(include=set(RetrieveConfig.model_fields)))
    everything = {**queries, **(test or {}), **(dev or {})}
    runs = retrieve_methods(corpus, everything, settings, methods, engine=engine)
    cand, lines = write_first_stage_runs(cfg, runs, queries, test, dev, out, tag_prefix)
    negs: dict = {}
    stats: dict[str, Any] = {}
    if inputs.positives is not None:
        split = mine_negatives_split(
            cand, read_qrels(inputs.positives), cfg.mining, corpus_ids=list(corpus), stats=stats
        )
        negs = {qid: hard + rand for qid, (hard, rand) in split.items()}
        if out.negatives is not None:  # the candidates file, as `relforge retrieve mine` writes it
            write_candidates(out.negatives, mined_candidates(split, cand, cfg.method))
    dense = encoder_plan(cfg.precision) if {"dense", "hybrid"} & set(methods) else None
    if out.summary is not None:
        RetrieveRecord(
            mining=stats,
            methods=cfg.methods,
            candidates=cfg.method,
            top_k=cfg.top_k,
            **({"dense": dense.metadata()} if dense is not None else {}),
        ).write(out.summary)
    return RetrieveSummary(
        synthetic_queries=len(queries),
        test_queries=len(test or {}),
        dev_queries=len(dev) if dev else None,
        queries_with_negatives=len(negs),
        negatives=sum(len(v) for v in negs.values()),
        candidate_lines=lines,
        dense_precision=dense.resolved if dense is not None else None,
    )
