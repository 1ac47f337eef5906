"""``relforge review export``: the review database -> files the rest of relforge (and Label Studio) read.

``OUT/`` becomes a BEIR folder: ``corpus.jsonl`` and ``queries.jsonl`` (the labelled pairs' texts),
``qrels/train.tsv`` and ``qrels/dev.tsv`` (the validation split, held apart by query), what
``relforge judge finetune --corpus OUT/corpus.jsonl --queries OUT/queries.jsonl --qrels OUT/qrels/train.tsv``
takes as is; plus ``qrels.trec`` (both splits, TREC format), ``label-studio.json`` (one task per pair:
data, the judge's prediction, every annotator's current annotation) with its labelling config
``label-studio.xml``, and ``export.json`` (counts). Every file is written atomically.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from relforge.data import atomic_write, write_jsonl, write_qrels
from relforge.review.config import ExportConfig
from relforge.review.store import Store
from relforge.types import Qrels

SPLIT_FILES = {"train": "train.tsv", "validation": "dev.tsv"}


def resolve(grades: dict[str, tuple[int, int]], how: str) -> int:
    """One grade from ``{annotator: (grade, event_id)}``: the latest label, or the (lower) median."""
    if how == "latest":
        return max(grades.values(), key=lambda ge: ge[1])[0]
    return int(statistics.median_low(g for g, _ in grades.values()))


def resolved_labels(store: Store, cfg: ExportConfig) -> tuple[dict[int, int], dict[str, int]]:
    """``{pair_id: grade}`` under ``cfg``, and the counts of what was left out."""
    labels = store.current_labels()
    flags = store.flags()
    out, left = {}, {"flagged": 0, "other_annotators": 0}
    for pid, who in labels.items():
        if cfg.annotators is not None:
            who = {n: g for n, g in who.items() if n in cfg.annotators}
            if not who:
                left["other_annotators"] += 1
                continue
        if flags.get(pid) and not cfg.include_flagged:
            left["flagged"] += 1
            continue
        out[pid] = resolve(who, cfg.resolve)
    return out, left


def _label_studio_task(store: Store, p, labels: dict[str, tuple[int, int]], events, scale) -> dict[str, Any]:
    q, d = store.query(p.qid), store.doc(p.docid)
    by_value = {s["value"]: s["label"] for s in scale}

    def result(grade: int) -> list[dict[str, Any]]:
        choice = by_value[grade]
        return [
            {"from_name": "grade", "to_name": "document", "type": "choices", "value": {"choices": [choice]}}
        ]

    by_id = {e.id: e for e in events}
    anns = []
    for _, (grade, eid) in sorted(labels.items()):
        e = by_id[eid]
        anns.append({"result": result(grade), "created_at": e.created_at, "lead_time": e.seconds,
                     "ground_truth": False, "was_cancelled": False})  # fmt: skip
    task: dict[str, Any] = {
        "data": {
            "pair_id": p.id, "qid": p.qid, "docid": p.docid, "split": p.split, "query": q["text"],
            "title": d["title"], "text": d["text"], "url": d["metadata"].get("url"),
            "annotators": sorted(labels),
        },
        "annotations": anns,
    }  # fmt: skip
    if p.judge_grade is not None:
        conf = (p.judge_probs or {}).get(p.judge_grade)
        pred = {"model_version": p.judge_model or "judge", "result": result(p.judge_grade)}
        if conf is not None:
            pred["score"] = round(conf, 6)
        task["predictions"] = [pred]
    return task


def label_studio_config(scale: list[dict[str, Any]]) -> str:
    """A Label Studio labelling config for the tasks (query, document, one choice per grade)."""
    from markupsafe import escape

    choices = "\n".join(
        f'    <Choice value="{escape(s["label"])}" hint="{escape(s["name"] + ": " + s["definition"])}"/>'
        for s in scale
    )
    return (
        '<View>\n  <Header value="$query"/>\n  <Header value="$title" size="5"/>\n'
        '  <Text name="document" value="$text"/>\n'
        f'  <Choices name="grade" toName="document" choice="single" showInline="true">\n{choices}\n'
        "  </Choices>\n</View>\n"
    )


def export(cfg: ExportConfig, db: Path, out: Path) -> dict[str, Any]:
    """Write the export folder ``out`` from the review database ``db``; returns the counts."""
    store = Store(db)
    scale = store.get_meta("scale")
    pairs = {p.id: p for p in store.pairs()}
    grades, left = resolved_labels(store, cfg)
    qrels: dict[str, Qrels] = {s: {} for s in SPLIT_FILES}
    for pid, g in sorted(grades.items()):
        p = pairs[pid]
        qrels[p.split].setdefault(p.qid, {})[p.docid] = g
    out = Path(out)
    for split, name in SPLIT_FILES.items():
        write_qrels(out / "qrels" / name, qrels[split], format="beir")
    both: Qrels = {}
    for split in SPLIT_FILES:
        for q, docs in qrels[split].items():
            both.setdefault(q, {}).update(docs)
    write_qrels(out / "qrels.trec", both, format="trec")
    qids = sorted({pairs[i].qid for i in grades})
    docids = sorted({pairs[i].docid for i in grades})
    write_jsonl(out / "queries.jsonl", (_beir_query(store.query(q)) for q in qids))
    write_jsonl(out / "corpus.jsonl", (_beir_doc(store.doc(d)) for d in docids))
    labels = store.current_labels()
    tasks = [
        _label_studio_task(store, pairs[pid], labels.get(pid, {}), store.events(pair_id=pid), scale)
        for pid in sorted(pairs)
        if pid in labels or pairs[pid].judge_grade is not None
    ]
    with atomic_write(out / "label-studio.json") as fh:
        json.dump(tasks, fh, ensure_ascii=False, indent=1)
    with atomic_write(out / "label-studio.xml") as fh:
        fh.write(label_studio_config(scale))
    summary = _summary(cfg, db, out, qrels, scale, left, len(tasks))
    with atomic_write(out / "export.json") as fh:
        json.dump(summary, fh, indent=2)
    return summary


def _summary(cfg, db, out, qrels, scale, left, n_tasks) -> dict[str, Any]:
    def counts(q: Qrels) -> dict[str, int]:
        return {str(s["value"]): sum(g == s["value"] for d in q.values() for g in d.values()) for s in scale}

    return {
        "db": str(db),
        "out": str(out),
        "resolve": cfg.resolve,
        "splits": {
            s: {
                "file": f"qrels/{SPLIT_FILES[s]}",
                "queries": len(qrels[s]),
                "pairs": sum(len(d) for d in qrels[s].values()),
                "grades": counts(qrels[s]),
            }
            for s in SPLIT_FILES
        },  # fmt: skip
        "left_out": left,
        "label_studio_tasks": n_tasks,
    }


def _beir_query(q: dict[str, Any]) -> dict[str, Any]:
    row = {"_id": q["id"], "text": q["text"]}
    if q["metadata"]:
        row["metadata"] = q["metadata"]
    return row


def _beir_doc(d: dict[str, Any]) -> dict[str, Any]:
    row = {"_id": d["id"], "title": d["title"], "text": d["text"]}
    if d["metadata"]:
        row["metadata"] = d["metadata"]
    return row
