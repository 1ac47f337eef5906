"""Small shared helpers of the retrieval stage: input normalisation and corpus fingerprints."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

from relforge.types import Document, Query, doc_text  # noqa: F401  (re-exported: the one doc_text)

DocsLike = Mapping[str, Document] | Iterable[Document]
QueriesLike = Mapping[str, Query] | Mapping[str, str] | Iterable[Query]


def as_doc_list(corpus: DocsLike) -> list[Document]:
    """A corpus given as ``{id: Document}`` or an iterable of documents -> list (input order kept)."""
    if isinstance(corpus, Mapping):
        return list(corpus.values())
    return list(corpus)


def as_query_pairs(queries: QueriesLike) -> list[tuple[str, str]]:
    """Queries given as ``{id: Query}``, ``{id: text}`` or an iterable of :class:`Query` -> ``[(id, text)]``."""
    if isinstance(queries, Mapping):
        return [(qid, q.text if isinstance(q, Query) else str(q)) for qid, q in queries.items()]
    return [(q.id, q.text) for q in queries]


def corpus_fingerprint(docs: list[Document]) -> str:
    """SHA-256 over ids, titles and texts in order: the cache key of indexes and embeddings."""
    h = hashlib.sha256()
    for d in docs:
        for part in (d.id, d.title, d.text):
            h.update(part.encode("utf-8"))
            h.update(b"\x1f")
        h.update(b"\x1e")
    return h.hexdigest()
