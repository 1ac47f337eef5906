"""Shared records. Everything inside relforge speaks these; formats are converted at the edges."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import AfterValidator

#: graded judgments: qrels[qid][docid] = grade (int)
Qrels = dict[str, dict[str, int]]
#: scored lists: run[qid][docid] = score (float, higher is better)
Run = dict[str, dict[str, float]]


@dataclass(frozen=True, slots=True)
class Document:
    id: str
    text: str
    title: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_beir(self) -> dict[str, Any]:
        out: dict[str, Any] = {"_id": self.id, "title": self.title, "text": self.text}
        if self.metadata:
            out["metadata"] = self.metadata
        return out


#: the field layout a model sees by default: the title, then the text (``doc_fields`` of the retrieve, groups
#: and rerank configs; :func:`doc_text`)
DOC_FIELDS = ("title", "text")


def doc_text(doc: Any, fields: Sequence[str] = DOC_FIELDS) -> str:
    """The text every model sees for a document: retrievers (BM25, the dense encoder), the judge's
    features, groups, training and reranking alike — one place, so that what a model was trained on is
    what it reranks.

    ``fields`` is the layout, one field per line in the given order: ``title`` (stripped), ``text`` (as
    is), or a metadata key, shown as ``key: value`` (``url: https://...``). A blank title or a missing or
    blank metadata value is left out, so the default gives the title and the text on two lines, or the
    text alone without a title.
    """
    parts: list[str] = []
    for f in fields:
        if f == "text":
            parts.append(doc.text)
        elif f == "title":
            title = (getattr(doc, "title", "") or "").strip()
            if title:
                parts.append(title)
        else:
            v = (getattr(doc, "metadata", None) or {}).get(f)
            v = "" if v is None else str(v).strip()
            if v:
                parts.append(f"{f}: {v}")
    return "\n".join(parts)


def check_doc_fields(fields: Sequence[str]) -> list[str]:
    """``fields`` validated for :func:`doc_text` (ValueError naming the problem): a non-empty list of
    distinct names with ``text`` among them."""
    out = [str(f).strip() for f in fields]
    if "text" not in out:
        raise ValueError(
            f"doc_fields must include 'text' (got {out}); e.g. [title, text] or [title, text, url]"
        )
    if any(not f for f in out) or len(set(out)) != len(out):
        raise ValueError(f"doc_fields must be distinct non-blank field names (got {out})")
    return out


#: a config field holding a :func:`doc_text` layout (validated by :func:`check_doc_fields`)
DocFields = Annotated[list[str], AfterValidator(check_doc_fields)]


def doc_fields_key(fields: Sequence[str]) -> str:
    """``""`` for the default layout, else a short tag naming it (for cache keys that predate layouts)."""
    return "" if tuple(fields) == DOC_FIELDS else "fields=" + ",".join(fields)


@dataclass(frozen=True, slots=True)
class Query:
    id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_beir(self) -> dict[str, Any]:
        out: dict[str, Any] = {"_id": self.id, "text": self.text}
        if self.metadata:
            out["metadata"] = self.metadata
        return out


def sorted_ranking(scores: dict[str, float]) -> list[tuple[str, float]]:
    """relforge's one tie policy: order by score descending, then doc id ascending.

    Every run relforge writes is ranked this way, so evaluation never depends on a tool's own
    tie rule (trec_eval breaks ties by doc id *descending*, which surprises people).
    """
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))
