"""Dense retrieval with sentence-transformers; corpus embeddings cached on disk.

The cache file is ``<cache_dir>/<model slug>-<sha256(model, corpus)[:16]>.npy`` (normalised float32),
so a changed corpus or model never reuses stale vectors. Search is exact inner product (numpy, in
chunks); with ``use_faiss=True`` and faiss installed, a flat faiss index is used instead.
"""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np

from relforge.errors import UsageError
from relforge.retrieve.common import (
    DocsLike,
    QueriesLike,
    as_doc_list,
    as_query_pairs,
    corpus_fingerprint,
    doc_text,
)
from relforge.types import Document, Run

logger = logging.getLogger(__name__)
_MODELS: dict[str, object] = {}


def load_encoder(model: str = "minilm", max_seq_length: int | None = None):
    """A CPU ``SentenceTransformer`` for a named default (``minilm``), hub id or path (memoised).

    ``max_seq_length`` truncates inputs (tokens) below the model's own limit: cost grows faster than
    linearly with length, so 128 is ~2-3x cheaper than MiniLM's 256 on long documents.
    """
    from relforge.models import resolve_model

    path = resolve_model(model)
    key = f"{path}@{max_seq_length}"
    if key not in _MODELS:
        from sentence_transformers import SentenceTransformer

        enc = SentenceTransformer(path, device="cpu")
        if max_seq_length is not None:
            enc.max_seq_length = max_seq_length
        _MODELS[key] = enc
    return _MODELS[key]


def _cache_file(
    cache_dir: str | Path, model: str, docs: list[Document], max_seq_length: int | None = None
) -> Path:
    from relforge.models import resolve_model

    ident = resolve_model(model)
    key = hashlib.sha256(f"{ident}\n{max_seq_length}\n{corpus_fingerprint(docs)}".encode()).hexdigest()[:16]
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(ident).name or model)[-60:]
    return Path(cache_dir) / f"{slug}-{key}.npy"


def _save_npy(path: Path, arr: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp.npy")
    np.save(tmp, arr)
    tmp.replace(path)


def encode_corpus(
    corpus: DocsLike,
    model: str = "minilm",
    *,
    cache_dir: str | Path | None = None,
    batch_size: int = 64,
    max_seq_length: int | None = None,
    chunk_size: int = 2048,
    progress: bool = True,
    engine: Any = None,
) -> tuple[list[str], np.ndarray]:
    """Embed a corpus (title + text), normalised; reuse the cached matrix when there is one.

    With ``cache_dir`` the work is resumable: every ``chunk_size`` documents are saved as a part file
    as soon as they are encoded, so an interrupted run continues where it stopped; the parts are
    merged into one ``.npy`` at the end. ``engine`` (an :class:`relforge.engine.EngineConfig`, None =
    local) with ``kind="ray"`` encodes the chunks on a Ray actor pool (:mod:`relforge.engine.ray_dense`).

    Returns:
        ``(doc_ids, embeddings)`` with ``embeddings.shape == (len(doc_ids), dim)``.
    """
    docs = as_doc_list(corpus)
    if not docs:
        raise UsageError("cannot embed an empty corpus")
    ids = [d.id for d in docs]
    path = _cache_file(cache_dir, model, docs, max_seq_length) if cache_dir is not None else None
    if path is not None and path.is_file():
        emb = np.load(path)
        if emb.shape[0] == len(ids):
            return ids, emb
        logger.warning(
            "embedding cache %s has %d rows for %d docs: recomputing", path, emb.shape[0], len(ids)
        )
    texts = [doc_text(d) for d in docs]
    parts_dir = path.with_suffix(".parts") if path is not None else None
    if engine is not None and engine.is_ray:
        from relforge.engine.ray_dense import encode_chunks_ray

        chunks = encode_chunks_ray(
            texts,
            chunk_size,
            parts_dir,
            model,
            engine=engine,
            batch_size=batch_size,
            max_seq_length=max_seq_length,
        )
        return ids, _merge(chunks, path, parts_dir)
    enc = load_encoder(model, max_seq_length)
    chunks = []
    starts = range(0, len(texts), chunk_size)
    for start in starts:
        part = parts_dir / f"{start:09d}.npy" if parts_dir is not None else None
        if part is not None and part.is_file():
            chunks.append(np.load(part))
            continue
        if progress and len(starts) > 1:
            logger.info(
                "encoding documents %d-%d of %d", start, min(start + chunk_size, len(texts)), len(texts)
            )
        emb = enc.encode(
            texts[start : start + chunk_size],
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=progress,
        ).astype(np.float32)
        if part is not None:
            part.parent.mkdir(parents=True, exist_ok=True)
            _save_npy(part, emb)
        chunks.append(emb)
    return ids, _merge(chunks, path, parts_dir)


def _merge(chunks: list[np.ndarray], path: Path | None, parts_dir: Path | None) -> np.ndarray:
    """One matrix from the chunks; with a cache path, saved and the part files removed."""
    emb = np.concatenate(chunks, axis=0)
    if path is not None:
        _save_npy(path, emb)
        if parts_dir is not None and parts_dir.is_dir():
            for f in sorted(parts_dir.glob("*.npy")):
                f.unlink()
            parts_dir.rmdir()
    return emb


def _top_k_numpy(q: np.ndarray, d: np.ndarray, k: int, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    idx_out = np.empty((q.shape[0], k), dtype=np.int64)
    sc_out = np.empty((q.shape[0], k), dtype=np.float32)
    for start in range(0, q.shape[0], chunk):
        s = q[start : start + chunk] @ d.T
        part = (
            np.argpartition(-s, k - 1, axis=1)[:, :k]
            if k < s.shape[1]
            else np.tile(np.arange(s.shape[1]), (s.shape[0], 1))
        )
        ps = np.take_along_axis(s, part, axis=1)
        order = np.argsort(-ps, axis=1, kind="stable")
        idx_out[start : start + chunk] = np.take_along_axis(part, order, axis=1)
        sc_out[start : start + chunk] = np.take_along_axis(ps, order, axis=1)
    return idx_out, sc_out


def _top_k_faiss(q: np.ndarray, d: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        import faiss
    except ImportError:
        raise UsageError("use_faiss needs faiss: pip install faiss-cpu (or set use_faiss false)") from None
    index = faiss.IndexFlatIP(d.shape[1])
    index.add(np.ascontiguousarray(d, dtype=np.float32))
    scores, idx = index.search(np.ascontiguousarray(q, dtype=np.float32), k)
    return idx, scores


def dense_search(
    corpus: DocsLike,
    queries: QueriesLike,
    top_k: int = 100,
    model: str = "minilm",
    cache_dir: str | Path | None = None,
    *,
    batch_size: int = 64,
    max_seq_length: int | None = None,
    use_faiss: bool = False,
    progress: bool = True,
    engine: Any = None,
) -> Run:
    """Retrieve the ``top_k`` documents by cosine similarity of sentence-transformers embeddings.

    Args:
        corpus: ``{id: Document}`` or an iterable of documents.
        queries: ``{id: Query}``, ``{id: text}`` or an iterable of :class:`Query`.
        top_k: documents kept per query (clamped to the corpus size).
        model: ``"minilm"`` (offline default), a hub id or a local folder.
        cache_dir: folder where corpus embeddings are cached (keyed by model + corpus hash).
        batch_size: encoding batch size.
        max_seq_length: truncate texts to this many tokens (None = the model's limit; part of the cache key).
        use_faiss: search with a faiss flat index (needs ``faiss-cpu``) instead of numpy.
        progress: show a progress bar while embedding the corpus.
        engine: an :class:`relforge.engine.EngineConfig`; ``kind="ray"`` encodes the corpus on Ray.

    Returns:
        Run ``{qid: {docid: cosine}}``.
    """
    if top_k < 1:
        raise UsageError(f"top_k must be >= 1, got {top_k} (setting: top_k / --top-k)")
    ids, emb = encode_corpus(
        corpus,
        model,
        cache_dir=cache_dir,
        batch_size=batch_size,
        max_seq_length=max_seq_length,
        progress=progress,
        engine=engine,
    )
    pairs = as_query_pairs(queries)
    run: Run = {qid: {} for qid, _ in pairs}
    if not pairs:
        return run
    q = (
        load_encoder(model, max_seq_length)
        .encode(
            [t for _, t in pairs],
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        .astype(np.float32)
    )
    k = min(top_k, len(ids))
    idx, scores = _top_k_faiss(q, emb, k) if use_faiss else _top_k_numpy(q, emb, k)
    for row, (qid, _) in enumerate(pairs):
        run[qid] = {ids[int(i)]: float(s) for i, s in zip(idx[row], scores[row], strict=True) if i >= 0}
    return run
