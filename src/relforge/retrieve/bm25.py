"""BM25 retrieval with ``bm25s`` (Lù, 2024), index saved to disk and reused.

The index folder holds bm25s's own files plus ``relforge-index.json`` (corpus fingerprint, doc ids,
tokenizer settings). A saved index is reused only when the fingerprint and settings match; otherwise
it is rebuilt and overwritten, so a stale index can never answer for a different corpus.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from relforge.errors import UsageError
from relforge.retrieve.common import (
    DocsLike,
    QueriesLike,
    as_doc_list,
    as_query_pairs,
    corpus_fingerprint,
    doc_text,
)
from relforge.types import DOC_FIELDS, Run, doc_fields_key

logger = logging.getLogger(__name__)
META_FILE = "relforge-index.json"
STEMMERS = ("auto", "none")


def get_stemmer(stemmer: str = "auto"):
    """``"auto"``: an English Snowball stemmer if PyStemmer is installed, else None; ``"none"``: None."""
    if stemmer not in STEMMERS:
        raise UsageError(f"unknown stemmer {stemmer!r}; allowed: {list(STEMMERS)} (setting: stemmer)")
    if stemmer == "none":
        return None
    try:
        import Stemmer  # PyStemmer, optional
    except ImportError:
        return None
    return Stemmer.Stemmer("english").stemWord


def _settings(stemmer_fn) -> dict[str, Any]:
    return {"stopwords": "en", "stemmer": "snowball-english" if stemmer_fn else None, "method": "lucene"}


def _tokenize(texts: list[str], stemmer_fn, *, return_ids: bool):
    import bm25s

    return bm25s.tokenize(
        texts, stopwords="en", stemmer=stemmer_fn, return_ids=return_ids, show_progress=False
    )


def build_bm25_index(
    corpus: DocsLike,
    index_dir: str | Path | None = None,
    *,
    stemmer: str = "auto",
    doc_fields: Sequence[str] = DOC_FIELDS,
):
    """Index a corpus (or load the matching saved index from ``index_dir``).

    Args:
        corpus: ``{id: Document}`` or an iterable of documents; title and text are indexed.
        index_dir: folder to save the index in and reuse it from; None keeps it in memory only.
        stemmer: ``"auto"`` (PyStemmer if installed) or ``"none"``.

    Returns:
        ``(retriever, doc_ids, reused)``: the ``bm25s.BM25`` object, the doc id of each index row,
        and whether a saved index was reused.
    """
    import bm25s

    docs = as_doc_list(corpus)
    if not docs:
        raise UsageError("cannot build a BM25 index over an empty corpus")
    stem = get_stemmer(stemmer)
    settings = _settings(stem)
    if doc_fields_key(doc_fields):  # the default layout keeps the key of indexes saved before layouts
        settings["doc_fields"] = list(doc_fields)
    meta = {"fingerprint": corpus_fingerprint(docs), "settings": settings, "n_docs": len(docs)}
    if index_dir is not None:
        folder = Path(index_dir)
        meta_path = folder / META_FILE
        if meta_path.is_file():
            saved = json.loads(meta_path.read_text(encoding="utf-8"))
            if {k: saved.get(k) for k in meta} == meta:
                retriever = bm25s.BM25.load(str(folder), show_progress=False)
                return retriever, saved["doc_ids"], True
            logger.warning("BM25 index in %s was built for another corpus or settings: rebuilding", folder)
    retriever = bm25s.BM25(method="lucene")
    texts = [doc_text(d, doc_fields) for d in docs]
    retriever.index(_tokenize(texts, stem, return_ids=True), show_progress=False)
    doc_ids = [d.id for d in docs]
    if index_dir is not None:
        folder = Path(index_dir)
        folder.mkdir(parents=True, exist_ok=True)
        retriever.save(str(folder), show_progress=False)
        tmp = folder / (META_FILE + ".tmp")
        tmp.write_text(json.dumps({**meta, "doc_ids": doc_ids}), encoding="utf-8")
        tmp.replace(folder / META_FILE)  # written last: a half-saved index is never reused
    return retriever, doc_ids, False


def bm25_search(
    corpus: DocsLike,
    queries: QueriesLike,
    top_k: int = 100,
    index_dir: str | Path | None = None,
    *,
    stemmer: str = "auto",
    n_threads: int = 0,
    doc_fields: Sequence[str] = DOC_FIELDS,
) -> Run:
    """Retrieve the ``top_k`` BM25 documents for each query.

    Documents scoring 0 (no query term in common) are left out of the run: their order would be arbitrary.

    Args:
        corpus: ``{id: Document}`` or an iterable of documents.
        queries: ``{id: Query}``, ``{id: text}`` or an iterable of :class:`Query`.
        top_k: documents kept per query (clamped to the corpus size).
        index_dir: save the index here, or reuse the one saved there for the same corpus.
        stemmer: ``"auto"`` or ``"none"``.
        n_threads: bm25s retrieval threads (0 = single process).
        doc_fields: the document layout indexed (:func:`relforge.types.doc_text`).

    Returns:
        Run ``{qid: {docid: score}}``; every query appears, possibly with an empty dict.
    """
    if top_k < 1:
        raise UsageError(f"top_k must be >= 1, got {top_k} (setting: top_k / --top-k)")
    retriever, doc_ids, _ = build_bm25_index(corpus, index_dir, stemmer=stemmer, doc_fields=doc_fields)
    pairs = as_query_pairs(queries)
    run: Run = {qid: {} for qid, _ in pairs}
    if not pairs:
        return run
    k = min(top_k, len(doc_ids))
    q_tokens = _tokenize([t for _, t in pairs], get_stemmer(stemmer), return_ids=False)
    idx, scores = retriever.retrieve(q_tokens, k=k, show_progress=False, n_threads=n_threads)
    for row, (qid, _) in enumerate(pairs):
        hits = run[qid]
        for j in range(k):
            s = float(scores[row, j])
            if s > 0:
                hits[doc_ids[int(idx[row, j])]] = s
    return run
