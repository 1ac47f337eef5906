"""Reciprocal-rank fusion (Cormack, Clarke & Büttcher, SIGIR 2009)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from relforge.errors import UsageError
from relforge.types import Run, sorted_ranking


def rrf(runs: Iterable[Run] | Mapping[str, Run], k: int = 60, top_k: int | None = None) -> Run:
    """Fuse runs: ``score(d) = sum over runs of 1 / (k + rank(d))``, ranks 1-based.

    Each run is ranked with relforge's tie policy (score desc, then doc id asc) before fusing, so the
    result does not depend on dict order.

    Args:
        runs: a list of runs, or ``{name: run}``.
        k: the RRF constant (60 in the paper); larger values flatten the rank discount.
        top_k: keep only the best ``top_k`` fused documents per query (None keeps all).

    Returns:
        The fused run; it holds every query that appears in any input run.
    """
    if k < 0:
        raise UsageError(f"rrf k must be >= 0, got {k} (setting: rrf_k)")
    run_list = list(runs.values()) if isinstance(runs, Mapping) else list(runs)
    fused: Run = {}
    for run in run_list:
        for qid, scores in run.items():
            out = fused.setdefault(qid, {})
            for rank, (docid, _) in enumerate(sorted_ranking(scores), start=1):
                out[docid] = out.get(docid, 0.0) + 1.0 / (k + rank)
    if top_k is not None:
        fused = {qid: dict(sorted_ranking(s)[:top_k]) for qid, s in fused.items()}
    return fused
