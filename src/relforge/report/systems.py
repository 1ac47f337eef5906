"""One line per evaluated system of a pipeline run (the manifest's ``systems``: the report shows it under
each run name), from the run's settings."""

from __future__ import annotations

from collections.abc import Iterable

from relforge.config import PipelineConfig


def describe_systems(
    cfg: PipelineConfig, names: Iterable[str], labeller: str | None = None
) -> dict[str, str]:
    """``names`` (run names, in table order) -> their description under ``cfg``; ``labeller`` (who grades,
    in one line) is added to the judge-trained variants' (``judged``, ``soft``). A name this module does
    not know describes itself."""
    tr, rr = cfg.train, cfg.rerank
    model = "bi-encoder" if tr.kind == "bi" else "cross-encoder"
    trained = f"{model} from {tr.base}, loss {tr.loss}, reranking {rr.first_stage} top-{rr.top_k}"
    desc = {
        "bm25": f"BM25 ({cfg.retrieve.stemmer} stemming), top-{cfg.retrieve.top_k}",
        "dense": f"dense retrieval, {cfg.retrieve.model} cosine, top-{cfg.retrieve.top_k}",
        "hybrid": f"reciprocal-rank fusion of BM25 and dense (k={cfg.retrieve.rrf_k})",
        "backbone": f"untrained {tr.base} (cosine of its embeddings), reranking {rr.first_stage} top-{rr.top_k}",
        "plain": f"{trained}; groups of mined negatives, no judge labels",
        "judged": f"{trained}; groups re-bucketed by the judge's grades",
        "soft": f"{model} from {tr.base}, loss {tr.soft_loss} on the judge's expected grades "
        f"(soft labels), reranking {rr.first_stage} top-{rr.top_k}",
    }
    if labeller is not None:
        for v in ("judged", "soft"):
            desc[v] += f" (judge: {labeller})"
    return {name: desc.get(name, name) for name in names}
