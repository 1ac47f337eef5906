"""Which documents get queries: all, a random sample, or a diverse sample.

Diverse sampling either clusters dense embeddings with KMeans (``diverse_by="embeddings"``) or
stratifies by a metadata field (``diverse_by="source"``); both then draw round-robin across the
groups in a seeded random order, so N >= number of groups covers every group.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Mapping

from relforge.errors import UsageError
from relforge.generate.config import SelectConfig
from relforge.retrieve.common import DocsLike, as_doc_list
from relforge.types import Document

MISSING = "<missing>"


def field_value(doc: Document, name: str) -> str | None:
    """A stratification key: a metadata field, or ``title`` / ``id``."""
    if name in doc.metadata:
        return str(doc.metadata[name])
    if name in ("title", "id"):
        return str(getattr(doc, name))
    return None


def round_robin(groups: Mapping[str, list[Document]], n: int, rng: random.Random) -> list[Document]:
    """Shuffle each group, then take one document per group in turn until ``n`` are taken."""
    queues = {k: rng.sample(v, len(v)) for k, v in sorted(groups.items())}
    order = rng.sample(sorted(queues), len(queues))
    out: list[Document] = []
    while len(out) < n and any(queues.values()):
        for k in order:
            if queues[k] and len(out) < n:
                out.append(queues[k].pop())
    return out


def cluster_groups(docs: list[Document], config: SelectConfig, n: int) -> dict[str, list[Document]]:
    """KMeans over (cached) dense embeddings: ``{cluster id: docs}``."""
    from sklearn.cluster import KMeans

    from relforge.retrieve.dense import encode_corpus

    _, emb = encode_corpus(docs, config.model, cache_dir=config.cache_dir)
    k = min(config.n_clusters or min(n, 20), len(docs))
    labels = KMeans(n_clusters=k, n_init=3, random_state=config.seed).fit_predict(emb)
    groups: dict[str, list[Document]] = defaultdict(list)
    for d, lab in zip(docs, labels, strict=True):
        groups[f"cluster-{int(lab)}"].append(d)
    return groups


def field_groups(docs: list[Document], name: str) -> dict[str, list[Document]]:
    groups: dict[str, list[Document]] = defaultdict(list)
    for d in docs:
        v = field_value(d, name)
        groups[MISSING if v is None else v].append(d)
    if set(groups) == {MISSING}:
        fields = sorted({k for d in docs[:1000] for k in d.metadata})
        raise UsageError(
            f"no document has the field {name!r} to stratify by; fields found: {fields} "
            "(setting: select.diverse_by / --diverse-by; use 'embeddings' for clusters)"
        )
    return groups


def select_documents(
    corpus: DocsLike, config: SelectConfig | None = None, *, stats: dict | None = None
) -> list[Document]:
    """Pick the documents to generate queries for.

    Args:
        corpus: ``{id: Document}`` or an iterable of documents.
        config: ``sample`` (None = all), ``diverse_by`` (None = uniform random, ``"embeddings"`` =
            KMeans clusters, else a metadata field), ``n_clusters``, ``model``, ``cache_dir``, ``seed``.
        stats: if given, receives ``{"groups": {group: n selected}}`` for diverse sampling.

    Returns:
        The selected documents, in a deterministic order for a given seed.
    """
    config = config or SelectConfig()
    docs = as_doc_list(corpus)
    n = len(docs) if config.sample is None else min(config.sample, len(docs))
    rng = random.Random(config.seed)
    if config.diverse_by is None:
        return docs if n == len(docs) else [docs[i] for i in sorted(rng.sample(range(len(docs)), n))]
    groups = (
        cluster_groups(docs, config, n)
        if config.diverse_by == "embeddings"
        else field_groups(docs, config.diverse_by)
    )
    chosen = round_robin(groups, n, rng)
    if stats is not None:
        where = {d.id: g for g, ds in groups.items() for d in ds}
        counts: dict[str, int] = defaultdict(int)
        for d in chosen:
            counts[where[d.id]] += 1
        stats["groups"] = dict(sorted(counts.items()))
        stats["n_groups"] = len(groups)
    return chosen
