"""Mined candidates as records: one :class:`Candidate` per (query, document), in the mined order.

``relforge retrieve mine`` and the pipeline's stage retrieve both write them with :func:`write_candidates`
(JSONL, one record per line); :func:`read_candidates` reads that file and, for cached runs and old files,
the two formats before it: a pipeline run's ``negatives.json`` (``{qid: [docid, ...]}``) and the old
``retrieve mine`` JSONL (``query_id``, ``negatives``, ``random_negatives``). Records from those old files
have no rank or score, and their retrieved ones the source :data:`UNKNOWN`.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from relforge.types import Run, sorted_ranking

#: the source of a negative drawn at random from the corpus
RANDOM = "random"
#: the source of a retrieved negative read from an old file (which did not record the retriever)
UNKNOWN = "unknown"
#: the source of a query's own document among the judged pairs (the judge summary's ``sources``)
POSITIVE = "positive"


class Candidate(BaseModel):
    """One mined candidate of a query.

    Attributes:
        query_id, doc_id: the pair.
        rank: 1-based rank in the source run (positives included, relforge tie policy); None: random.
        score: the source run's score (at the TREC run's precision, ``%.10g``); None: random.
        source: the retrieval method whose run it came from (``bm25``, ``dense``, ``hybrid``, ...), or
            ``random`` (drawn from the corpus).
    """

    model_config = ConfigDict(extra="forbid")

    query_id: str
    doc_id: str
    rank: int | None = None
    score: float | None = None
    source: str


def trec_score(score: float) -> float:
    """``score`` as a TREC run written by :func:`relforge.data.io.write_run` holds it (``%.10g``)."""
    return float(f"{float(score):.10g}")


def mined_candidates(split: dict[str, tuple[list[str], list[str]]], run: Run, source: str) -> list[Candidate]:
    """The records of :func:`relforge.retrieve.mining.mine_negatives_split`'s ``{qid: (hard, random)}``:
    hard ones with their rank and score in ``run`` and ``source``, then the random ones, in mined order."""
    out: list[Candidate] = []
    for qid, (hard, rand) in split.items():
        ranks = {d: r for r, (d, _) in enumerate(sorted_ranking(run.get(qid, {})), start=1)}
        scores = run.get(qid, {})
        out += [
            Candidate(query_id=qid, doc_id=d, rank=ranks[d], score=trec_score(scores[d]), source=source)
            for d in hard
        ]
        out += [Candidate(query_id=qid, doc_id=d, source=RANDOM) for d in rand]
    return out


def write_candidates(path: str | os.PathLike, records: Iterable[Candidate]) -> int:
    """Write the records, one JSON object per line, in the given order; returns the count."""
    from relforge.data.io import write_jsonl

    return write_jsonl(path, (r.model_dump() for r in records))


def read_candidates(path: str | os.PathLike) -> list[Candidate]:
    """The records of a candidates file, or of the old formats (``negatives.json``, old mine JSONL)."""
    from relforge.data import iter_jsonl
    from relforge.errors import DataError

    p = Path(path)
    if p.suffix == ".json":  # a pipeline run's retrieve/negatives.json (before candidates.jsonl)
        data = json.loads(p.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise DataError(f"{p}: expected a JSON object {{query id: [doc ids]}}")
        return [
            Candidate(query_id=str(q), doc_id=str(d), source=UNKNOWN) for q, ds in data.items() for d in ds
        ]
    out: list[Candidate] = []
    for lineno, row in iter_jsonl(p):
        if "negatives" in row and "query_id" in row:  # the old `retrieve mine` JSONL: one line per query
            rand = {str(d) for d in row.get("random_negatives", [])}
            out += [
                Candidate(
                    query_id=str(row["query_id"]), doc_id=str(d), source=RANDOM if str(d) in rand else UNKNOWN
                )
                for d in row["negatives"]
            ]
            continue
        try:
            out.append(Candidate.model_validate(row))
        except ValidationError as e:
            raise DataError(
                f"{p}:{lineno}: expected a candidate (query_id, doc_id, rank, score, source) or an old "
                f"`relforge retrieve mine` line (query_id, negatives): {e.errors()[0]['msg']}"
            ) from None
    return out


def negatives_by_query(records: Iterable[Candidate]) -> dict[str, list[str]]:
    """``{qid: [docid, ...]}`` in file order (what the judge and the groups take)."""
    out: dict[str, list[str]] = {}
    for r in records:
        out.setdefault(r.query_id, []).append(r.doc_id)
    return out


def sources(records: Iterable[Candidate]) -> dict[str, dict[str, str]]:
    """``{qid: {docid: source}}``."""
    out: dict[str, dict[str, str]] = {}
    for r in records:
        out.setdefault(r.query_id, {})[r.doc_id] = r.source
    return out


def count_by_source(records: Iterable[Candidate]) -> dict[str, int]:
    """Records per source, sources sorted."""
    return dict(sorted(Counter(r.source for r in records).items()))


def run_source(path: str | os.PathLike) -> str:
    """The method named in a TREC run's tag column (first line; ``relforge-bm25`` -> ``bm25``)."""
    from relforge.data.io import iter_lines

    for _, line in iter_lines(path):
        parts = line.split()
        if len(parts) == 6:
            return parts[5].removeprefix("relforge-")
    return UNKNOWN
