"""``generate_queries``: documents -> LLM -> cleaned, filtered synthetic queries + positive qrels."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any

from relforge.errors import UsageError
from relforge.generate.config import GenerateConfig
from relforge.generate.filters import FILTERS, clean_output, first_failure, normalize
from relforge.generate.prompts import QueryPrompt
from relforge.llm.base import LLM, GenParams
from relforge.retrieve.common import DocsLike, as_doc_list
from relforge.types import Document, Qrels, Query, doc_text

logger = logging.getLogger(__name__)


@dataclass
class GenerateResult:
    """Kept queries, their source-document qrels (positives), the per-filter summary and every rejected query."""

    queries: list[Query]
    qrels: Qrels
    summary: dict[str, Any]
    rejected: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Candidate:
    doc: Document
    sample: int
    raw: str
    text: str
    finish_reason: str
    reason: str | None = None


def query_id(prefix: str, doc_id: str, sample: int) -> str:
    """``<prefix>-<doc id>-<n>`` with whitespace replaced (TREC files split on it)."""
    safe = re.sub(r"\s+", "_", doc_id)
    return f"{prefix}-{safe}-{sample}"


def load_prompt(config: GenerateConfig) -> QueryPrompt:
    return QueryPrompt.load(
        config.prompt,
        style=config.style,
        examples=config.examples,
        n_examples=config.n_examples,
        domain=config.domain,
        seed=config.seed,
        selection=config.example_selection,
        max_example_words=config.max_example_words,
    )


def sample_candidates(
    llm: LLM, prompt: QueryPrompt, docs: list[Document], config: GenerateConfig
) -> list[Candidate]:
    """``per_doc`` completions per document; sample ``i`` uses seed ``config.seed + i`` (cached by the LLM layer)."""
    if prompt.selection == "nearest":
        from relforge.retrieve.dense import encode_texts, load_encoder

        enc = load_encoder(config.example_model)
        picks = prompt.nearest_examples(docs, lambda texts: encode_texts(enc, texts))
        chats = [prompt.build_chat(d, ex) for d, ex in zip(docs, picks, strict=True)]
    else:
        chats = [prompt.build_chat(d) for d in docs]
    out: list[Candidate] = []
    for i in range(config.per_doc):
        params = GenParams(
            max_new_tokens=config.max_new_tokens,
            temperature=config.temperature,
            top_p=config.top_p,
            seed=config.seed + i,
        )
        comps = llm.generate(chats, params)
        if len(comps) != len(chats):
            raise RuntimeError(f"LLM {llm.name!r} returned {len(comps)} completions for {len(chats)} chats")
        out += [
            Candidate(d, i, c.text, clean_output(c.text), c.finish_reason)
            for d, c in zip(docs, comps, strict=True)
        ]
    pos = {d.id: i for i, d in enumerate(docs)}
    return sorted(out, key=lambda c: (pos[c.doc.id], c.sample))


def apply_filters(cands: list[Candidate], prompt: QueryPrompt, config: GenerateConfig) -> None:
    """Set ``reason`` on each rejected candidate (first failing filter; duplicates keep the first seen)."""
    example_keys = {normalize(q) for q in prompt.example_queries}
    seen: set[str] = set()
    for c in cands:
        if c.finish_reason == "error":
            c.reason = "llm_error"
            continue
        c.reason = first_failure(c.text, doc_text(c.doc), config.style, config.filters, example_keys)
        if c.reason is None:
            key = normalize(c.text)
            if key in seen:
                c.reason = "duplicate"
            seen.add(key)


def round_trip(cands: list[Candidate], corpus: list[Document], config: GenerateConfig) -> None:
    """Reject kept candidates whose source document is not in the top ``round_trip_k`` of the retriever."""
    f = config.filters
    kept = [c for c in cands if c.reason is None]
    if f.round_trip is None or not kept:
        return
    qs = {f"c{i}": c.text for i, c in enumerate(kept)}
    if f.round_trip == "bm25":
        from relforge.retrieve.bm25 import bm25_search

        run = bm25_search(corpus, qs, top_k=f.round_trip_k, stemmer="auto")
    else:
        from relforge.retrieve.dense import dense_search

        run = dense_search(corpus, qs, top_k=f.round_trip_k, model=f.round_trip_model, progress=False)
    for i, c in enumerate(kept):
        if c.doc.id not in run.get(f"c{i}", {}):
            c.reason = "round_trip"


def generate_queries(
    llm: LLM, docs: DocsLike, config: GenerateConfig | None = None, *, corpus: DocsLike | None = None
) -> GenerateResult:
    """Write synthetic queries for documents, filter them, and pair each kept query with its document.

    Args:
        llm: any :class:`relforge.llm.base.LLM` (``relforge.llm.load_llm("smollm2")``).
        docs: the documents to write queries for (see :func:`relforge.generate.select_documents`).
        config: prompt, style, sampling and filters (:class:`GenerateConfig`).
        corpus: the collection the round-trip filter retrieves from (default: ``docs``).

    Returns:
        :class:`GenerateResult`: ``queries`` (metadata: doc_id, prompt_id, prompt_hash, model, style,
        sample), ``qrels`` ``{qid: {doc_id: config.grade}}``, ``summary`` (counts per filter, in
        :data:`FILTERS` order) and ``rejected`` (each dropped query with its reason).
    """
    config = config or GenerateConfig()
    docs = as_doc_list(docs)
    prompt = load_prompt(config)  # all checks before the first LLM call
    if config.per_doc > 1 and config.temperature == 0:
        logger.warning(
            "per_doc=%d with temperature 0: greedy samples repeat and will be dropped as duplicates",
            config.per_doc,
        )
    ids = [d.id for d in docs]
    if len(set(ids)) != len(ids):
        raise UsageError("generate_queries got duplicate document ids; pass each document once")
    cands = sample_candidates(llm, prompt, docs, config) if docs else []
    apply_filters(cands, prompt, config)
    round_trip(cands, as_doc_list(corpus) if corpus is not None else docs, config)
    queries, qrels = [], {}
    meta = {"prompt_id": prompt.id, "prompt_hash": prompt.hash, "model": llm.name, "style": config.style}
    for c in cands:
        if c.reason is None:
            qid = query_id(config.id_prefix, c.doc.id, c.sample)
            queries.append(Query(qid, c.text, {"doc_id": c.doc.id, **meta, "sample": c.sample}))
            qrels[qid] = {c.doc.id: config.grade}
    dropped = {name: sum(c.reason == name for c in cands) for name in FILTERS}
    summary = {
        "documents": len(docs),
        "generated": len(cands),
        "kept": len(queries),
        "dropped": dropped,
        "truncated_outputs": sum(c.finish_reason == "length" for c in cands),
        **meta,
    }
    rejected = [
        {"doc_id": c.doc.id, "sample": c.sample, "reason": c.reason, "text": c.text, "raw": c.raw}
        for c in cands
        if c.reason is not None
    ]
    return GenerateResult(queries, qrels, summary, rejected)
