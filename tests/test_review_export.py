"""``relforge review export``: BEIR qrels (train/dev split by query) that ``relforge judge finetune`` takes
as is (run here on the tiny model), TREC qrels, Label Studio tasks; flags and label resolution."""

from __future__ import annotations

import json

import pytest

from relforge.cli import main
from relforge.data import read_beir, read_qrels
from relforge.review.config import ExportConfig, ReviewConfig
from relforge.review.export import export
from relforge.review.run import prepare
from relforge.review.store import Store
from test_review_store import make_inputs


def _labelled(tmp_path, n_queries: int):
    """A review database with every pair of ``n_queries`` queries labelled by "ann" (the human grade), one pair
    relabelled, one doubly labelled with a disagreement, one flagged."""
    inp = make_inputs(tmp_path / "in", n_queries=n_queries)
    db = tmp_path / "review.sqlite"
    prepare(
        ReviewConfig(val_fraction=0.25),
        db=db,
        **{k: inp[k] for k in ("corpus", "queries", "pairs", "judgments")},
    )
    store = Store(db)
    truth = read_qrels(inp["qrels"])
    pairs = [p for p in store.pairs() if p.qid != "xss-q"]
    store.add_labels([(p.id, truth[p.qid][p.docid]) for p in pairs], "ann", "random")
    store.add_event(
        pairs[0].id, "ann", "label", grade=3, seconds=4.0, note="changed my mind", queue="recheck"
    )
    store.add_event(pairs[1].id, "bea", "label", grade=0, seconds=2.0, queue="overlap")
    store.add_event(pairs[1].id, "bea", "label", grade=3, seconds=2.0, queue="overlap")
    store.add_event(pairs[2].id, "bea", "flag")
    return db, store, pairs, truth


@pytest.fixture()
def labelled(tmp_path):
    return _labelled(tmp_path, 8)


def test_export_writes_beir_trec_and_label_studio(labelled, tmp_path):
    db, store, pairs, truth = labelled
    out = tmp_path / "export"
    summary = export(ExportConfig(), db, out)
    corpus, queries, train = read_beir(out, "train")  # a valid BEIR folder: every id resolves
    _, _, dev = read_beir(out, "dev")
    assert train and dev and not set(train) & set(dev)  # split by query
    assert {q for q in train} | {q for q in dev} == {p.qid for p in pairs}
    p0, p1, p2 = pairs[:3]
    got = {**train, **dev}
    assert got[p0.qid][p0.docid] == 3  # the edit wins, the first label stays in the history
    assert [e.grade for e in store.events(pair_id=p0.id)] == [truth[p0.qid][p0.docid], 3]
    assert got[p1.qid][p1.docid] == 3  # latest label by anyone (bea's edit)
    assert p2.docid not in got.get(p2.qid, {})  # flagged: left out
    assert summary["left_out"]["flagged"] == 1
    n = sum(len(d) for d in got.values())
    assert (
        n == len(pairs) - 1 == summary["splits"]["train"]["pairs"] + summary["splits"]["validation"]["pairs"]
    )
    assert read_qrels(out / "qrels.trec") == got
    assert (out / "qrels" / "train.tsv").read_text().splitlines()[0] == "query-id\tcorpus-id\tscore"
    tasks = json.loads((out / "label-studio.json").read_text())
    t1 = next(t for t in tasks if t["data"]["pair_id"] == p1.id)
    assert t1["data"]["annotators"] == ["ann", "bea"] and len(t1["annotations"]) == 2
    assert {a["result"][0]["value"]["choices"][0] for a in t1["annotations"]} == {
        str(truth[p1.qid][p1.docid]),
        "3",
    }
    assert (
        t1["predictions"][0]["model_version"] == "synthetic-judge" and 0 < t1["predictions"][0]["score"] <= 1
    )
    assert (
        t1["data"]["text"] == store.doc(p1.docid)["text"]
        and "<Choices" in (out / "label-studio.xml").read_text()
    )
    median = export(ExportConfig(resolve="median", include_flagged=True), db, tmp_path / "m")
    m = read_qrels(tmp_path / "m" / "qrels.trec")
    assert m[p1.qid][p1.docid] == min(truth[p1.qid][p1.docid], 3) and p2.docid in m[p2.qid]
    assert median["left_out"]["flagged"] == 0
    only_bea = export(ExportConfig(annotators=["bea"]), db, tmp_path / "b")
    assert only_bea["splits"]["train"]["pairs"] + only_bea["splits"]["validation"]["pairs"] == 1


def test_export_then_judge_finetune_runs_on_it(tmp_path, tiny_llm_dir, capsys):
    db, *_ = _labelled(tmp_path, 3)
    out = tmp_path / "export"
    assert main(["review", "export", "--db", str(db), "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    adapter = tmp_path / "adapter"
    rc = main(["judge", "finetune", "--corpus", str(out / "corpus.jsonl"), "--queries", str(out / "queries.jsonl"),
               "--qrels", str(out / "qrels" / "train.tsv"), "--llm", f"hf:{tiny_llm_dir}", "--out", str(adapter),
               "--epochs", "1", "--max-doc-tokens", "16", "--lora-layers", "1", "--lora-r", "2", "--batch-size", "16",
               "--max-per-class", "4", "--no-judge-check", "--no-progress", "--folds", "1"])  # fmt: skip
    assert rc == 0
    meta = json.loads((adapter / "relforge.json").read_text())
    assert set(meta["split"]["train_queries"]) | set(meta["split"]["val_queries"]) == set(
        read_qrels(out / "qrels" / "train.tsv")
    )
    assert summary["splits"]["train"]["file"] == "qrels/train.tsv"


def test_export_of_a_missing_database_is_a_clear_error(tmp_path, capsys):
    assert (
        main(["review", "export", "--db", str(tmp_path / "nope.sqlite"), "--out", str(tmp_path / "o")]) == 4
    )
    assert "no such review database" in capsys.readouterr().err
