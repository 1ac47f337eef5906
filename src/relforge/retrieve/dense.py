"""Dense retrieval with sentence-transformers; corpus embeddings cached on disk.

The cache file is ``<cache_dir>/<model slug>-<sha256(model, corpus)[:16]>.npy`` (normalised float32),
so a changed corpus or model never reuses stale vectors. Search is exact inner product (numpy, in
chunks); with ``use_faiss=True`` and faiss installed, a flat faiss index is used instead.

``precision`` (:mod:`relforge.precision`): ``fp32`` (the default: today's vectors and cache keys, exactly),
``bf16`` (bfloat16 weights: ~2x faster on a CPU with AVX-512 BF16, vectors differ by ~1e-3), ``int8`` (the
ONNX Runtime bi-encoder of :mod:`relforge.train.onnx_bi` with dynamic int8 weights) or ``auto`` (bf16 where
the CPU has it, else fp32). Non-fp32 precisions enter the cache key; every cache file gets a
``<file>.json`` beside it recording model, length limit and precision.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from relforge.errors import UsageError
from relforge.precision import PrecisionPlan, apply_precision, plan_precision
from relforge.retrieve.common import (
    DocsLike,
    QueriesLike,
    as_doc_list,
    as_query_pairs,
    corpus_fingerprint,
    doc_text,
)
from relforge.types import DOC_FIELDS, Document, Run, doc_fields_key

logger = logging.getLogger(__name__)
_MODELS: dict[str, object] = {}


def encoder_plan(precision: str | PrecisionPlan | None = "fp32") -> PrecisionPlan:
    """The resolved precision of the (CPU) dense encoder: ``fp32 | bf16 | int8`` (``auto`` by CPU flags)."""
    if isinstance(precision, PrecisionPlan):
        return precision
    return plan_precision(precision or "fp32", "cpu")


def load_encoder(
    model: str = "minilm", max_seq_length: int | None = None, precision: str | PrecisionPlan | None = "fp32"
):
    """A CPU ``SentenceTransformer`` for a named default (``minilm``), hub id or path (memoised), in
    ``precision``: fp32 as loaded, bf16 weights, or (int8) an :class:`~relforge.train.onnx_bi.OnnxBiEncoder`.

    ``max_seq_length`` truncates inputs (tokens) below the model's own limit: cost grows faster than
    linearly with length, so 128 is ~2-3x cheaper than MiniLM's 256 on long documents.
    """
    from relforge.models import resolve_model

    plan = encoder_plan(precision)
    path = resolve_model(model)
    key = f"{path}@{max_seq_length}" + ("" if plan.resolved == "fp32" else f"@{plan.key()}")
    if key not in _MODELS:
        from sentence_transformers import SentenceTransformer

        enc = SentenceTransformer(path, device="cpu")
        if max_seq_length is not None:
            enc.max_seq_length = max_seq_length
        if plan.resolved == "int8":
            from relforge.train.onnx_bi import OnnxBiEncoder

            enc = OnnxBiEncoder(enc, path, quantize="int8")
        elif plan.resolved != "fp32":
            enc, _ = apply_precision(enc, plan)
        _MODELS[key] = enc
    return _MODELS[key]


def encode_texts(enc: Any, texts: list[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
    """Normalised float32 embeddings of ``texts`` with an encoder from :func:`load_encoder`."""
    if hasattr(enc, "session"):  # OnnxBiEncoder
        return enc.encode(texts, batch_size)
    import torch

    if next(enc.parameters()).dtype == torch.float32:  # the fp32 path, exactly as before precision existed
        return enc.encode(
            texts,
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=progress,
        ).astype(np.float32)
    out = enc.encode(texts, batch_size=batch_size, convert_to_tensor=True, show_progress_bar=progress)
    return _normalized(out.float().cpu().numpy())


def _normalized(emb: np.ndarray) -> np.ndarray:
    """Row-normalised in float32 (bf16 models: normalising in bf16 leaves norms off by ~1e-3)."""
    return (emb / np.clip(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12, None)).astype(np.float32)


def _cache_file(
    cache_dir: str | Path,
    model: str,
    docs: list[Document],
    max_seq_length: int | None = None,
    plan: PrecisionPlan | None = None,
    doc_fields: Sequence[str] = DOC_FIELDS,
) -> Path:
    from relforge.models import resolve_model

    ident = resolve_model(model)
    text = f"{ident}\n{max_seq_length}\n{corpus_fingerprint(docs)}"
    if plan is not None and plan.resolved != "fp32":  # fp32 keeps the key of relforge before precision
        text += f"\nprecision={plan.key()}"
    if doc_fields_key(doc_fields):  # the default layout keeps the key of caches written before layouts
        text += f"\n{doc_fields_key(doc_fields)}"
    key = hashlib.sha256(text.encode()).hexdigest()[:16]
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
    precision: str | PrecisionPlan | None = "fp32",
    engine: Any = None,
    doc_fields: Sequence[str] = DOC_FIELDS,
) -> tuple[list[str], np.ndarray]:
    """Embed a corpus (title + text), normalised; reuse the cached matrix when there is one.

    ``precision``: ``fp32`` (default), ``bf16``, ``int8`` or ``auto`` (see the module doc); part of the
    cache key unless fp32.

    With ``cache_dir`` the work is resumable: every ``chunk_size`` documents are saved as a part file
    as soon as they are encoded, so an interrupted run continues where it stopped; the parts are
    merged into one ``.npy`` at the end. ``engine`` (an :class:`relforge.engine.EngineConfig`, None =
    local) with ``kind="ray"`` encodes the chunks on a Ray actor pool (:mod:`relforge.engine.ray_dense`;
    fp32 only).

    Returns:
        ``(doc_ids, embeddings)`` with ``embeddings.shape == (len(doc_ids), dim)``.
    """
    docs = as_doc_list(corpus)
    if not docs:
        raise UsageError("cannot embed an empty corpus")
    ids = [d.id for d in docs]
    plan = encoder_plan(precision)
    path = (
        _cache_file(cache_dir, model, docs, max_seq_length, plan, doc_fields)
        if cache_dir is not None
        else None
    )
    if path is not None and path.is_file():
        emb = np.load(path)
        if emb.shape[0] == len(ids):
            return ids, emb
        logger.warning(
            "embedding cache %s has %d rows for %d docs: recomputing", path, emb.shape[0], len(ids)
        )
    texts = [doc_text(d, doc_fields) for d in docs]
    parts_dir = path.with_suffix(".parts") if path is not None else None
    if engine is not None and engine.is_ray:
        if plan.resolved != "fp32":
            raise UsageError(
                f"dense encoding on Ray runs in fp32 only, got precision {plan.resolved!r}; use fp32 or a local engine"
            )
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
        return ids, _merge(chunks, path, parts_dir, model, max_seq_length, plan)
    enc = load_encoder(model, max_seq_length, plan)
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
        emb = encode_texts(enc, texts[start : start + chunk_size], batch_size, progress)
        if part is not None:
            part.parent.mkdir(parents=True, exist_ok=True)
            _save_npy(part, emb)
        chunks.append(emb)
    return ids, _merge(chunks, path, parts_dir, model, max_seq_length, plan)


def _merge(
    chunks: list[np.ndarray],
    path: Path | None,
    parts_dir: Path | None,
    model: str,
    max_seq_length: int | None,
    plan: PrecisionPlan,
) -> np.ndarray:
    """One matrix from the chunks; with a cache path, saved (plus its ``.json`` metadata) and the part
    files removed."""
    emb = np.concatenate(chunks, axis=0)
    if path is not None:
        _save_npy(path, emb)
        meta = {"model": model, "max_seq_length": max_seq_length, "docs": emb.shape[0], **plan.metadata()}
        path.with_name(path.name + ".json").write_text(json.dumps(meta, indent=2))
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
    precision: str | PrecisionPlan | None = "fp32",
    engine: Any = None,
    doc_fields: Sequence[str] = DOC_FIELDS,
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
        precision: ``fp32`` (default, exact), ``bf16``, ``int8`` or ``auto`` for corpus and queries alike.
        engine: an :class:`relforge.engine.EngineConfig`; ``kind="ray"`` encodes the corpus on Ray.
        doc_fields: the document layout encoded (:func:`relforge.types.doc_text`; part of the cache key).

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
        precision=precision,
        engine=engine,
        doc_fields=doc_fields,
    )
    pairs = as_query_pairs(queries)
    run: Run = {qid: {} for qid, _ in pairs}
    if not pairs:
        return run
    enc = load_encoder(model, max_seq_length, precision)
    q = encode_texts(enc, [t for _, t in pairs], batch_size)
    k = min(top_k, len(ids))
    idx, scores = _top_k_faiss(q, emb, k) if use_faiss else _top_k_numpy(q, emb, k)
    for row, (qid, _) in enumerate(pairs):
        run[qid] = {ids[int(i)]: float(s) for i, s in zip(idx[row], scores[row], strict=True) if i >= 0}
    return run
