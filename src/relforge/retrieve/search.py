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
    docs = as_doc_list(corpus)

    def _bm25() -> Run:
        return bm25_search(docs, queries, config.top_k, config.index_dir, stemmer=config.stemmer)

    def _dense() -> Run:
        return dense_search(
            docs,
            queries,
            config.top_k,
            config.model,
            config.cache_dir,
            batch_size=config.batch_size,
            max_seq_length=config.max_seq_length,
            use_faiss=config.use_faiss,
            precision=config.precision,
        )

    if config.method == "bm25":
        return _bm25()
    if config.method == "dense":
        return _dense()
    if config.method == "hybrid":
        return rrf([_bm25(), _dense()], k=config.rrf_k, top_k=config.top_k)
    raise UsageError(f"unknown retrieval method {config.method!r}; allowed: {list(METHODS)} (--method)")
