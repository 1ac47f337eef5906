"""Entry points of the review step: :func:`prepare` (inputs -> review database), :func:`serve` (the web
app) and :func:`run` (both, what ``relforge review`` does). The export lives in :mod:`relforge.review.export`."""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
from pathlib import Path
from typing import Any

from relforge.errors import DataError, UsageError
from relforge.review.config import ReviewConfig
from relforge.review.store import Store


def query_split(qid: str, val_fraction: float, seed: int = 0) -> str:
    """``validation`` for a fixed share of queries (by ``sha256(seed:qid)``), else ``train``.

    Order-free and stable: a query keeps its side when other queries are added.
    """
    h = int(hashlib.sha256(f"{seed}:{qid}".encode()).hexdigest()[:12], 16) / float(16**12)
    return "validation" if h < val_fraction else "train"


def _scale(template: str) -> list[dict[str, Any]]:
    from relforge.judge.prompt import JudgeTemplate

    tpl = JudgeTemplate.load(template)
    return [
        {"label": g.label, "name": g.name, "definition": g.definition, "value": g.value} for g in tpl.scale
    ]


def _retriever_ranks(path: Path) -> dict[tuple[str, str], tuple[int, float]]:
    """Rank and score of each pair when ``path`` is a TREC run (6 columns), else nothing."""
    from relforge.data import iter_lines, read_run
    from relforge.types import sorted_ranking

    first = next((line for _, line in iter_lines(path) if line.strip()), "")
    if len(first.split()) != 6:
        return {}
    out = {}
    for qid, scores in read_run(path).items():
        for rank, (docid, score) in enumerate(sorted_ranking(scores), start=1):
            out[(qid, docid)] = (rank, score)
    return out


def _judge_fields(path: Path, scale: list[dict[str, Any]]) -> tuple[dict[tuple[str, str], dict], int]:
    """Judge grade, expected grade and distribution (keyed by grade value) per pair; unparsed judgments
    (``grade: null``) are kept without a grade and counted."""
    from relforge.judge.judge import read_judgments

    by_label = {s["label"]: s["value"] for s in scale}
    values = set(by_label.values())
    out, unparsed = {}, 0
    for j in read_judgments(path):
        if j.grade is not None and j.grade not in values:
            raise DataError(
                f"judgment of ({j.qid}, {j.docid}) has grade {j.grade} off the scale {sorted(values)}",
                path=path,
            )
        probs = {by_label[k]: float(v) for k, v in (j.probs or {}).items() if k in by_label} or None
        unparsed += j.grade is None
        out[(j.qid, j.docid)] = {
            "judge_grade": j.grade,
            "judge_expected": j.expected,
            "judge_probs": probs,
            "judge_model": j.model or None,
        }
    return out, unparsed


def _read_inputs(cfg: ReviewConfig, corpus: Path, queries: Path, pairs: Path, qrels: Path | None):
    from relforge.data import read_corpus, read_qrels, read_queries
    from relforge.judge.judge import check_pairs, read_pairs

    docs, qs = read_corpus(corpus, allow_empty=True), read_queries(queries)
    todo = read_pairs(pairs, top_k=cfg.top_k)
    check_pairs(todo, qs, docs, on_missing="error", source=str(pairs))
    human = read_qrels(qrels) if qrels is not None else {}
    hpairs = [(q, d) for q in human for d in human[q]]
    check_pairs(hpairs, qs, docs, on_missing="error", source=str(qrels))
    seen, ordered = set(), []
    for pair in [*todo, *hpairs]:
        if pair not in seen:
            seen.add(pair)
            ordered.append(pair)
    return docs, qs, ordered, human


def prepare(
    cfg: ReviewConfig,
    *,
    db: Path,
    corpus: Path | None = None,
    queries: Path | None = None,
    pairs: Path | None = None,
    judgments: Path | None = None,
    qrels: Path | None = None,
) -> dict[str, Any]:
    """Create or extend the review database from the inputs (all optional when ``db`` exists).

    Pairs (from ``pairs`` and ``qrels``) are added with their split (by query), the judge's
    distribution (``judgments``) and the retriever's rank (when ``pairs`` is a TREC run); ``qrels``
    grades become labels by ``cfg.prefill_annotator`` (once: a rerun adds none twice).

    Returns:
        A summary: pairs, new pairs, judged pairs, pre-filled labels, per-split pair and query counts.
    """
    given = {"--corpus": corpus, "--queries": queries, "--pairs": pairs}
    if any(v is not None for v in given.values()) and any(v is None for v in given.values()):
        missing = [k for k, v in given.items() if v is None]
        raise UsageError(
            f"relforge review needs --corpus, --queries and --pairs together (missing {missing})"
        )
    if pairs is None and (judgments is not None or qrels is not None):
        raise UsageError("--judgments and --qrels need --corpus, --queries and --pairs")
    store = Store(db, create=pairs is not None)
    scale = _scale(cfg.template)
    old = store.get_meta("scale")
    if old is not None and [s["value"] for s in old] != [s["value"] for s in scale]:
        raise UsageError(
            f"{db} was made with the scale {[s['value'] for s in old]}; --template gives "
            f"{[s['value'] for s in scale]} (use the same template or a new --db)"
        )
    store.set_meta("scale", scale)
    store.set_meta("template", cfg.template)
    summary: dict[str, Any] = {"db": str(db), "new_pairs": 0, "prefilled": 0, "unparsed_judgments": 0}
    if pairs is not None:
        summary.update(_load(cfg, store, scale, corpus, queries, pairs, judgments, qrels))
    store.write_token()
    ps = store.pairs()
    if not ps:
        raise DataError("the review database has no pairs", path=db)
    summary["pairs"] = len(ps)
    summary["judged"] = sum(p.judge_grade is not None for p in ps)
    summary["splits"] = {
        s: {"pairs": sum(p.split == s for p in ps), "queries": len({p.qid for p in ps if p.split == s})}
        for s in ("train", "validation")
    }
    return summary


def _load(cfg, store, scale, corpus, queries, pairs, judgments, qrels) -> dict[str, Any]:
    docs, qs, ordered, human = _read_inputs(cfg, corpus, queries, pairs, qrels)
    ranks = _retriever_ranks(pairs)
    judged, unparsed = _judge_fields(judgments, scale) if judgments is not None else ({}, 0)
    values = {s["value"] for s in scale}
    for q in human:
        for d, g in human[q].items():
            if g not in values:
                raise DataError(f"grade {g} of ({q}, {d}) is off the scale {sorted(values)}", path=qrels)
    qids = sorted({q for q, _ in ordered})
    docids = sorted({d for _, d in ordered})
    store.put_texts(
        ((q, qs[q].text, qs[q].metadata) for q in qids),
        ((d, docs[d].title, docs[d].text, docs[d].metadata) for d in docids),
    )
    rows = []
    for q, d in ordered:
        row: dict[str, Any] = {"qid": q, "docid": d, "split": query_split(q, cfg.val_fraction, cfg.seed)}
        row.update(judged.get((q, d), {}))
        if (q, d) in ranks:
            row["retriever_rank"], row["retriever_score"] = ranks[(q, d)]
        rows.append(row)
    new = store.add_pairs(rows)
    prefilled = _prefill(store, human, cfg.prefill_annotator) if human else 0
    store.set_meta(
        "sources",
        {
            "corpus": str(corpus),
            "queries": str(queries),
            "pairs": str(pairs),
            "judgments": str(judgments) if judgments else None,
            "qrels": str(qrels) if qrels else None,
        },
    )
    return {
        "new_pairs": new,
        "prefilled": prefilled,
        "unparsed_judgments": unparsed,
        "judgments_outside_pairs": len(set(judged) - set(ordered)),
    }


def _prefill(store: Store, human: dict[str, dict[str, int]], annotator: str) -> int:
    ids = {(p.qid, p.docid): p.id for p in store.pairs()}
    have = store.last_events(annotator, ("label",))
    rows = [(ids[(q, d)], g) for q in human for d, g in human[q].items() if ids[(q, d)] not in have]
    return store.add_labels(rows, annotator, "prefill")


def _warm_up() -> None:
    """Import the agreement page's libraries (scipy, scikit-learn, krippendorff: ~2-3 s) in the background."""
    import krippendorff  # noqa: F401
    import sklearn.metrics  # noqa: F401

    import relforge.judge.agreement  # noqa: F401


def serve(cfg: ReviewConfig, db: Path, *, echo=print) -> None:
    """Run the web app until Ctrl-C (uvicorn, one process)."""
    try:
        import uvicorn
    except ImportError:
        raise UsageError("relforge review needs the web extra: pip install 'relforge[review]'") from None
    from relforge.review.app import create_app

    threading.Thread(target=_warm_up, daemon=True).start()
    token = cfg.token or (secrets.token_urlsafe(18) if cfg.needs_token() else None)
    app = create_app(Store(db), cfg.model_copy(update={"token": token}))
    url = f"http://{cfg.host if ':' not in cfg.host else '[' + cfg.host + ']'}:{cfg.port}/"
    echo(f"relforge review: {url}" + (f"?token={token}" if token else ""))
    echo("every label is saved the moment it is given; Ctrl-C stops the server")
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level="warning", access_log=False)


def run(cfg: ReviewConfig, inputs: dict[str, Path | None], db: Path, *, echo=print) -> dict[str, Any]:
    """``relforge review``: prepare the database from ``inputs`` (corpus, queries, pairs, judgments,
    qrels), print its summary, then serve it. Returns the summary when the server stops."""
    summary = prepare(cfg, db=db, **inputs)
    echo(json.dumps(summary))
    serve(cfg, db, echo=echo)
    return summary
