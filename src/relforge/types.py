"""Shared records. Everything inside relforge speaks these; formats are converted at the edges."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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


def doc_text(doc: Any) -> str:
    """The text every model sees for a document: retrievers (BM25, the dense encoder), the judge's
    features, groups, training and reranking alike. The title and the text on two lines, or the text alone
    without a (non-blank) title: one place, so that what a model was trained on is what it reranks."""
    title = (getattr(doc, "title", "") or "").strip()
    return f"{title}\n{doc.text}" if title else doc.text


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
