"""One entry point over the retrievers: ``retrieve(corpus, queries, config)``."""

from __future__ import annotations

from relforge.errors import UsageError
from relforge.retrieve.bm25 import bm25_search
from relforge.retrieve.common import DocsLike, QueriesLike, as_doc_list
from relforge.retrieve.config import METHODS, RetrieveConfig
from relforge.retrieve.dense import dense_search
from relforge.retrieve.fusion import rrf
from relforge.types import Run


def retrieve(corpus: DocsLike, queries: QueriesLike, config: RetrieveConfig | None = None) -> Run:
    """Run the configured method (``bm25``, ``dense`` or ``hybrid`` = RRF of both) and keep ``top_k``.

    Hybrid fuses the top ``top_k`` of each retriever.
    """
    config = config or RetrieveConfig()
    return retrieve_methods(corpus, queries, config, [config.method])[config.method]


def retrieve_methods(
    corpus: DocsLike, queries: QueriesLike, config: RetrieveConfig, methods: list[str], engine=None
) -> dict[str, Run]:
    """The runs of several methods at once, each retriever run once (hybrid reuses BM25's and dense's).

    The one place retrieval settings reach the retrievers: ``relforge retrieve`` and the pipeline's
    retrieve stage both call it.
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise UsageError(f"unknown retrieval method {unknown[0]!r}; allowed: {list(METHODS)} (--method)")
    docs = as_doc_list(corpus)
    need = set(methods) | ({"bm25", "dense"} if "hybrid" in methods else set())
    runs: dict[str, Run] = {}
    if "bm25" in need:
        runs["bm25"] = bm25_search(
            docs,
            queries,
            config.top_k,
            config.index_dir,
            stemmer=config.stemmer,
            doc_fields=config.doc_fields,
        )
    if "dense" in need:
        runs["dense"] = dense_search(
            docs,
            queries,
            config.top_k,
            config.model,
            config.cache_dir,
            batch_size=config.batch_size,
            max_seq_length=config.max_seq_length,
            use_faiss=config.use_faiss,
            engine=engine,
            precision=config.precision,
            doc_fields=config.doc_fields,
        )
    if "hybrid" in need:
        runs["hybrid"] = rrf([runs["bm25"], runs["dense"]], k=config.rrf_k, top_k=config.top_k)
    return {m: runs[m] for m in methods}
