"""Bucket rules of relforge.dataset.build_groups on hand-made judgments."""

from __future__ import annotations

import json

import pytest

from relforge.dataset import GroupConfig, build_groups, doc_text, load_groups, write_groups
from relforge.errors import DataError
from relforge.types import Document, Query


def _judgment(qid, docid, grade):
    """A Judgment when the judge stage has landed, else a plain dict (build_groups accepts both)."""
    try:
        from relforge.judge import Judgment  # type: ignore[attr-defined]
    except ImportError:
        return {"qid": qid, "docid": docid, "grade": grade}
    return Judgment(
        qid=qid,
        docid=docid,
        grade=grade,
        expected=None,
        probs=None,
        mode="generate",
        model="hand",
        template_hash="x",
        raw=None,
    )


@pytest.fixture()
def world():
    corpus = {
        f"d{i}": Document(f"d{i}", f"text of doc {i}", title=f"T{i}" if i % 2 else "") for i in range(40)
    }
    queries = {
        "q1": Query("q1", "query one"),
        "q2": Query("q2", "query two"),
        "q3": Query("q3", "query three"),
    }
    positives = {"q1": {"d0": 1}, "q2": {"d1": 1}, "q3": {"d2": 1}}
    # run order for q1: d10 > d11 > ... > d19 (scores descending)
    run = {q: {f"d{10 + i}": 100.0 - i for i in range(10)} for q in queries}
    run["q1"]["d0"] = 200.0  # the positive itself is retrieved: never a negative
    return corpus, queries, positives, run


def _js(grades: dict):
    return [_judgment(q, d, g) for (q, d), g in grades.items()]


def test_bad_positive_query_is_dropped_and_counted(world):
    corpus, queries, positives, run = world
    js = _js({("q1", "d0"): 3, ("q2", "d1"): 1, ("q3", "d2"): None})  # q3's judgment failed -> kept
    ds, summary = build_groups(queries, positives, run, corpus, js, GroupConfig(group_size=4))
    assert sorted(set(ds["qid"])) == ["q1", "q3"]
    assert summary["dropped_queries"]["bad_positive"] == 1
    assert summary["dropped_qids"]["bad_positive"] == ["q2"]
    assert summary["judgments"] == {
        "given": 3,
        "failed": 1,
        "duplicate": 0,
        "unknown_query": 0,
        "unknown_document": 0,
    }
    assert summary["positives"]["unjudged"] == 1
    # an unjudged/failed positive gets unjudged_positive_grade as label, never a made-up judge grade
    q3 = ds.filter(lambda r: r["qid"] == "q3")[0]
    assert q3["grades"][0] == 3 and q3["labels"][0] == 3.0


def test_buckets_false_negatives_dropped_and_mix_order(world):
    corpus, queries, positives, run = world
    grades = {
        ("q1", "d0"): 3,
        ("q1", "d10"): 3,
        ("q1", "d11"): 2,
        ("q1", "d12"): 0,
        ("q1", "d13"): 1,
        ("q1", "d14"): 1,
        ("q1", "d15"): 0,
    }
    ds, summary = build_groups(
        {"q1": queries["q1"]},
        {"q1": positives["q1"]},
        run,
        corpus,
        _js(grades),
        GroupConfig(group_size=8, mix=["hard", "soft", "unjudged", "random"]),
    )
    assert len(ds) == 1
    row = ds[0]
    # false negatives d10 (3) and d11 (2) never appear; hard first (run order), then soft, then unjudged
    assert row["doc_ids"] == ["d0", "d13", "d14", "d12", "d15", "d16", "d17", "d18"]
    assert row["buckets"] == ["positive", "hard", "hard", "soft", "soft", "unjudged", "unjudged", "unjudged"]
    assert row["grades"] == [3, 1, 1, 0, 0, -1, -1, -1]
    assert row["labels"] == [3.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    assert summary["candidates"] == {"hard": 2, "soft": 2, "false": 2, "unjudged": 4, "unjudged_dropped": 0}
    assert summary["negatives_drawn"] == {"hard": 2, "soft": 2, "unjudged": 3, "random": 0}
    assert row["negative_1"] == doc_text(corpus["d13"]) == "T13\ntext of doc 13"
    assert row["positive"] == "text of doc 0" and row["query"] == "query one"


def test_false_negatives_promoted_to_extra_positives(world):
    corpus, queries, positives, run = world
    grades = {("q1", "d0"): 3, ("q1", "d10"): 3, ("q1", "d11"): 2, ("q1", "d12"): 1}
    cfg = GroupConfig(group_size=3, false_negatives="promote", mix=["hard", "random"])
    ds, summary = build_groups({"q1": queries["q1"]}, {"q1": positives["q1"]}, run, corpus, _js(grades), cfg)
    assert ds["pos_id"] == ["d0", "d10", "d11"]
    assert [r[1] for r in ds["doc_ids"]] == ["d12", "d12", "d12"]  # the hard negative leads every group
    assert summary["positives"] == {"source": 1, "promoted": 2, "unjudged": 0}
    for ids in ds["doc_ids"]:  # random negatives never come from the run or the positives
        assert ids[2] not in run["q1"] and ids[2] != "d0"


def test_unjudged_option_and_caps(world):
    corpus, queries, positives, run = world
    grades = {("q1", "d0"): 2, ("q1", "d10"): 1, ("q1", "d11"): 1, ("q1", "d12"): 1, ("q1", "d13"): 0}
    cfg = GroupConfig(group_size=5, unjudged="drop", mix=["hard:2", "soft", "random"])
    ds, summary = build_groups({"q1": queries["q1"]}, {"q1": positives["q1"]}, run, corpus, _js(grades), cfg)
    assert ds[0]["buckets"] == ["positive", "hard", "hard", "soft", "random"]
    assert summary["candidates"]["unjudged_dropped"] == 6
    assert summary["candidates"]["unjudged"] == 0


def test_without_judgments_all_candidates_are_plain_negatives(world):
    corpus, queries, positives, run = world
    ds, summary = build_groups(queries, positives, run, corpus, None, GroupConfig(group_size=4))
    assert len(ds) == 3 and summary["judged"] is False
    assert all(set(b[1:]) == {"unjudged"} for b in ds["buckets"])
    assert ds[0]["doc_ids"] == ["d0", "d10", "d11", "d12"]
    assert summary["per_query"]["unjudged"]["p50"] == 10.0


def test_too_few_negatives_drops_query(world):
    corpus, queries, positives, run = world
    ds, summary = build_groups(
        queries, positives, run, corpus, None, GroupConfig(group_size=13, mix=["unjudged"])
    )
    assert len(ds) == 0 and summary["dropped_queries"]["too_few_negatives"] == 3


def test_random_sampling_is_deterministic_and_seeded(world):
    corpus, queries, positives, run = world
    cfg = GroupConfig(group_size=6, sampling="random", mix=["unjudged:3", "random"], seed=7)
    a, _ = build_groups(queries, positives, run, corpus, None, cfg)
    b, _ = build_groups(dict(reversed(list(queries.items()))), positives, run, corpus, None, cfg)
    c, _ = build_groups(queries, positives, run, corpus, None, cfg.model_copy(update={"seed": 8}))
    assert a["doc_ids"] == b["doc_ids"]
    assert a["doc_ids"] != c["doc_ids"]
    for ids, bk in zip(a["doc_ids"], a["buckets"], strict=True):
        assert bk == ["positive", "unjudged", "unjudged", "unjudged", "random", "random"]
        assert len(set(ids)) == 6


def test_bad_config_and_inputs_raise_clear_errors(world):
    corpus, queries, positives, run = world
    with pytest.raises(ValueError, match="unknown bucket 'nope'; allowed: hard, soft, unjudged, random"):
        GroupConfig(mix=["hard", "nope"])
    with pytest.raises(DataError, match="document 'zz'"):
        build_groups(queries, positives, {"q1": {"zz": 1.0}}, corpus, None)
    with pytest.raises(DataError, match="query 'q9'"):
        build_groups(queries, {"q9": {"d0": 1}}, run, corpus, None)


def test_write_and_load_roundtrip(world, tmp_path):
    corpus, queries, positives, run = world
    ds, summary = build_groups(queries, positives, run, corpus, None, GroupConfig(group_size=4))
    write_groups(ds, summary, tmp_path / "g")
    assert json.loads((tmp_path / "g" / "summary.json").read_text())["groups"] == 3
    assert len((tmp_path / "g" / "groups.jsonl").read_text().splitlines()) == 3
    back = load_groups(tmp_path / "g")
    assert back.column_names == ds.column_names and back["doc_ids"] == ds["doc_ids"]
    assert load_groups(tmp_path / "g" / "groups.jsonl")["doc_ids"] == ds["doc_ids"]


def test_random_bucket_is_minings_random_candidates(world):
    """With mining's random candidates the random bucket is exactly those (mined order), never a corpus
    draw; one the judge grades as relevant is a false negative; without them the corpus is drawn."""
    corpus, queries, positives, run = world
    q1 = {"q1": queries["q1"]}
    small_run = {"q1": {"d0": 200.0, "d10": 99.0, "d11": 98.0}}
    mined = {"q1": ["d30", "d31", "d32", "d33"]}
    cfg = GroupConfig(group_size=5, mix=["hard", "soft", "unjudged", "random"])
    ds, summary = build_groups(
        q1, {"q1": positives["q1"]}, small_run, corpus, None, cfg, random_negatives=mined
    )
    assert ds[0]["doc_ids"] == ["d0", "d10", "d11", "d30", "d31"]
    assert ds[0]["buckets"] == ["positive", "unjudged", "unjudged", "random", "random"]
    assert summary["candidates"]["random"] == 4 and summary["negatives_drawn"]["random"] == 2
    # judged: d30 is relevant (a false negative, dropped), d31 graded 0 keeps its grade for the teacher
    js = _js({("q1", "d0"): 3, ("q1", "d30"): 2, ("q1", "d31"): 0})
    ds, summary = build_groups(
        q1, {"q1": positives["q1"]}, small_run, corpus, js, cfg, random_negatives=mined
    )
    assert ds[0]["doc_ids"] == ["d0", "d10", "d11", "d31", "d32"]
    assert ds[0]["grades"] == [3, -1, -1, 0, -1]
    assert summary["candidates"]["false"] == 1
    # too few mined random candidates: the group is dropped, no corpus document fills it
    ds, summary = build_groups(
        q1, {"q1": positives["q1"]}, small_run, corpus, None, cfg, random_negatives={"q1": ["d30"]}
    )
    assert len(ds) == 0 and summary["dropped_queries"]["too_few_negatives"] == 1
    # no mining file: the random bucket draws from the corpus, outside the run
    ds, summary = build_groups(q1, {"q1": positives["q1"]}, small_run, corpus, None, cfg)
    assert len(ds) == 1 and "random" not in summary["candidates"]
    assert not set(ds[0]["doc_ids"][3:]) & {"d0", "d10", "d11"}
