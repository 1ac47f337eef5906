"""Each bucket policy of relforge.dataset.build_groups on one fixture, with its summary counts."""

from __future__ import annotations

import pytest

from relforge.dataset import GroupConfig, build_groups
from relforge.dataset.groups import policy_lines
from relforge.types import Document, Query


@pytest.fixture()
def world():
    """q1: own doc graded 1 (bad positive), candidates c1=3 (false negative), c2=1, c3=0, c4=2 (false).
    q2: own doc graded 3, candidates c1=0, c2=1, c3=2 (false), c4=1."""
    corpus = {d: Document(d, f"text {d}") for d in ("p1", "p2", "c1", "c2", "c3", "c4", "r1", "r2", "r3")}
    queries = {"q1": Query("q1", "query one"), "q2": Query("q2", "query two")}
    positives = {"q1": {"p1": 3}, "q2": {"p2": 3}}
    run = {q: {"c1": 4.0, "c2": 3.0, "c3": 2.0, "c4": 1.0} for q in queries}
    grades = {
        ("q1", "p1"): (1, 1.4),
        ("q1", "c1"): (3, 2.6),
        ("q1", "c2"): (1, 0.9),
        ("q1", "c3"): (0, 0.2),
        ("q1", "c4"): (2, 2.1),
        ("q2", "p2"): (3, 2.8),
        ("q2", "c1"): (0, 0.3),
        ("q2", "c2"): (1, 1.1),
        ("q2", "c3"): (2, 1.9),
        ("q2", "c4"): (1, 0.7),
    }
    js = [{"qid": q, "docid": d, "grade": g, "expected": e} for (q, d), (g, e) in grades.items()]
    return queries, positives, run, corpus, js


def _build(world, **kw):
    queries, positives, run, corpus, js = world
    cfg = GroupConfig(group_size=3, mix=["hard", "soft"], **kw)
    ds, summary = build_groups(queries, positives, run, corpus, js, cfg)
    return {r["qid"] + ":" + r["pos_id"]: r for r in ds.to_list()}, summary


def test_default_policies_are_todays_rules(world):
    rows, s = _build(world)
    assert list(rows) == ["q2:p2"]  # q1's own document graded 1 < 2: dropped
    assert rows["q2:p2"]["doc_ids"] == ["p2", "c2", "c4"]  # c3 (graded 2) removed, hard before soft
    assert rows["q2:p2"]["teacher"] == pytest.approx([2.8, 1.1, 0.7])  # expected grades
    assert rows["q2:p2"]["labels"] == [3.0, 1.0, 1.0]
    bp, fn = s["policies"]["bad_positive"], s["policies"]["false_negatives"]
    assert (bp["policy"], bp["queries_caught"], bp["queries_dropped"], bp["queries_kept"]) == (
        "drop",
        1,
        1,
        0,
    )
    assert (fn["policy"], fn["negatives_caught"], fn["negatives_removed"]) == ("drop", 1, 1)
    assert s["dropped_queries"]["bad_positive"] == 1


def test_bad_positive_keep_as_soft_keeps_the_query_with_its_low_grade(world):
    rows, s = _build(world, bad_positive="keep-as-soft")
    assert sorted(rows) == ["q1:p1", "q2:p2"]
    r = rows["q1:p1"]
    assert r["labels"][0] == 1.0 and r["teacher"][0] == pytest.approx(1.4)
    assert r["doc_ids"] == ["p1", "c2", "c3"]
    bp = s["policies"]["bad_positive"]
    assert (bp["queries_caught"], bp["queries_kept"], bp["queries_dropped"]) == (1, 1, 0)


def test_bad_positive_demote_makes_the_best_false_negative_the_positive(world):
    rows, s = _build(world, bad_positive="demote")
    r = rows["q1:c1"]  # c1 (graded 3) replaces p1, which becomes the first hard negative
    assert r["doc_ids"] == ["c1", "p1", "c2"]
    assert r["buckets"] == ["positive", "bad-positive-demoted", "hard"]
    assert r["teacher"] == pytest.approx([2.6, 1.4, 0.9])
    bp = s["policies"]["bad_positive"]
    assert (bp["queries_rescued"], bp["queries_kept"], bp["negatives_from_demoted_positives"]) == (1, 1, 1)


def test_bad_positive_demote_without_a_false_negative_drops_the_query(world):
    queries, positives, run, corpus, js = world
    js = [j for j in js if not (j["qid"] == "q1" and j["grade"] >= 2)]  # no rescue candidate for q1
    cfg = GroupConfig(group_size=3, mix=["hard", "soft"], bad_positive="demote")
    ds, s = build_groups(queries, positives, run, corpus, js, cfg)
    assert set(ds["qid"]) == {"q2"}
    assert s["policies"]["bad_positive"]["queries_dropped"] == 1


def test_false_negatives_promote_adds_groups(world):
    rows, s = _build(world, false_negatives="promote")
    assert sorted(rows) == ["q2:c3", "q2:p2"]
    assert s["policies"]["false_negatives"]["extra_positive_groups"] == 1
    assert s["policies"]["false_negatives"]["negatives_removed"] == 0


def test_false_negatives_demote_caps_label_and_teacher(world):
    rows, s = _build(world, false_negatives="demote", bad_positive="keep-as-soft")
    r = rows["q2:p2"]
    assert r["doc_ids"] == ["p2", "c2", "c3"]  # c3 is a hard negative now, in run order
    assert r["buckets"] == ["positive", "hard", "false-demoted"]
    assert r["labels"][2] == 1.0 and r["teacher"][2] == pytest.approx(1.0)  # capped at grade 2 - 1
    q1 = rows["q1:p1"]  # keep-as-soft positive (1.4) with demoted c1 (2.6 -> 1.0) and c2
    assert q1["doc_ids"] == ["p1", "c1", "c2"] and q1["teacher"][1] == pytest.approx(1.0)
    assert s["policies"]["false_negatives"]["negatives_demoted"] == 2


def test_false_negatives_keep_as_soft_keeps_the_judges_score(world):
    rows, s = _build(world, false_negatives="keep-as-soft")
    r = rows["q2:p2"]
    assert r["buckets"] == ["positive", "hard", "false-kept"]
    assert r["labels"][2] == 2.0 and r["teacher"][2] == pytest.approx(1.9)
    fn = s["policies"]["false_negatives"]
    assert (fn["negatives_caught"], fn["negatives_kept_as_soft"], fn["negatives_removed"]) == (1, 1, 0)
    lines = policy_lines(s)
    assert len(lines) == 2 and "false_negatives policy 'keep-as-soft'" in lines[1]
    assert "negatives_kept_as_soft 1" in lines[1]


def test_unknown_policy_is_a_validation_error():
    with pytest.raises(ValueError, match="bad_positive"):
        GroupConfig(bad_positive="promote")


def test_without_judgments_teacher_is_the_positive_grade_and_unjudged_fill(world):
    queries, positives, run, corpus, _ = world
    cfg = GroupConfig(group_size=3, teacher_unjudged=0.5)
    ds, s = build_groups(queries, positives, run, corpus, None, cfg)
    assert ds[0]["teacher"] == [3.0, 0.5, 0.5]
    assert s["policies"]["bad_positive"]["queries_caught"] == 0
