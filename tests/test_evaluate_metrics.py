"""relforge.evaluate metric values: equal to pytrec_eval (trec_eval's code), tie policy, missing queries."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import pytrec_eval

from relforge.data import read_qrels, read_run
from relforge.errors import DataError, UsageError
from relforge.evaluate import evaluate, parse_measures, split_measures, strict_scores

FIX = Path(__file__).parent / "fixtures" / "eval"


@pytest.fixture(scope="module")
def qrels():
    return read_qrels(FIX / "qrels.trec")


@pytest.fixture(scope="module")
def runs():
    return {name: read_run(FIX / f"{name}.trec") for name in ("bm25", "dense", "reranker")}


def _top(run, k):
    """Truncate each query to its top k (fixture scores are distinct, so the order is unambiguous)."""
    return {q: dict(sorted(d.items(), key=lambda kv: -kv[1])[:k]) for q, d in run.items()}


def _pytrec(qrels, run, measure, rel=1):
    ev = pytrec_eval.RelevanceEvaluator(qrels, {measure}, relevance_level=rel)
    return {q: v[measure] for q, v in ev.evaluate(run).items()}


def test_fixture_scores_are_distinct(runs):
    for run in runs.values():
        for docs in run.values():
            assert len(set(docs.values())) == len(docs)


@pytest.mark.parametrize("name", ["bm25", "dense", "reranker"])
def test_values_equal_pytrec_eval(qrels, runs, name):
    run = runs[name]
    measures = [
        "nDCG@10",
        "MRR@10",
        "MAP@100",
        "R@100",
        "P@10",
        "nDCG@20",
        "P(rel=2)@10",
        "RR(rel=2)@10",
        "R(rel=2)@100",
        "AP(rel=2)@100",
    ]
    res = evaluate(qrels, {name: run}, measures=measures, empty_queries="zero")
    assert res.queries == list(qrels)  # every qrels query evaluated, in qrels order
    ref = {
        "nDCG@10": _pytrec(qrels, run, "ndcg_cut_10"),
        "nDCG@20": _pytrec(qrels, run, "ndcg_cut_20"),
        "MAP@100": _pytrec(qrels, run, "map_cut_100"),
        "R@100": _pytrec(qrels, run, "recall_100"),
        "P@10": _pytrec(qrels, run, "P_10"),
        # trec_eval's recip_rank has no cutoff: RR@10 == recip_rank of the top-10 run
        "MRR@10": _pytrec(qrels, _top(run, 10), "recip_rank"),
        "P(rel=2)@10": _pytrec(qrels, run, "P_10", rel=2),
        "RR(rel=2)@10": _pytrec(qrels, _top(run, 10), "recip_rank", rel=2),
        "R(rel=2)@100": _pytrec(qrels, run, "recall_100", rel=2),
        "AP(rel=2)@100": _pytrec(qrels, run, "map_cut_100", rel=2),
    }
    for m, per_q in ref.items():
        ours = res.per_query[name][m]
        for q in qrels:
            # pytrec_eval only reports queries present in the run; ir_measures (and relforge) score the others 0
            assert ours[q] == pytest.approx(per_q.get(q, 0.0), abs=1e-12), (m, q)
        assert res.aggregates[name][m] == pytest.approx(
            sum(per_q.get(q, 0.0) for q in qrels) / len(qrels), abs=1e-12
        )
    # the values are not trivially equal across measures (the comparison above has teeth)
    assert len({round(v, 6) for v in res.aggregates[name].values()}) >= 6


def test_beir_and_trec_qrels_give_the_same_result(runs):
    a = evaluate(FIX / "qrels.trec", {"dense": runs["dense"]})
    b = evaluate(str(FIX / "qrels.tsv"), {"dense": FIX / "dense.trec"})
    assert a.aggregates == b.aggregates and a.per_query == b.per_query


def test_tie_policy_score_desc_then_docid_asc():
    qrels = {"q1": {"c": 1}, "q2": {"a": 2, "z": 1}}
    run = {"q1": {"a": 1.0, "b": 1.0, "c": 1.0, "d": 0.5}, "q2": {"z": 0.7, "a": 0.7, "m": 0.9}}
    assert list(strict_scores(run["q1"])) == ["a", "b", "c", "d"]
    assert strict_scores(run["q2"]) == {"m": 3.0, "a": 2.0, "z": 1.0}
    res = evaluate(qrels, {"tied": run}, measures=["MRR@10", "P@1", "nDCG@3"])
    # relforge's order: q1 -> a, b, c (c at rank 3); q2 -> m, a, z
    assert res.per_query["tied"]["MRR@10"] == {"q1": pytest.approx(1 / 3), "q2": pytest.approx(1 / 2)}
    assert res.per_query["tied"]["P@1"] == {"q1": 0.0, "q2": 0.0}
    # trec_eval's nDCG: linear gains (the grade), discount log2(rank + 1)
    assert res.per_query["tied"]["nDCG@3"]["q2"] == pytest.approx(
        (2 / math.log2(3) + 1 / 2) / (2 + 1 / math.log2(3))
    )
    # raw trec_eval breaks the tie by doc id descending (c first): that is what relforge avoids
    raw = _pytrec(qrels, run, "recip_rank")
    assert raw["q1"] == 1.0


def test_missing_query_scores_zero_and_counts_in_the_mean(qrels, runs):
    res = evaluate(qrels, {"reranker": runs["reranker"]})
    assert "q5" not in runs["reranker"]
    assert res.missing_queries["reranker"] == ["q5"]
    for m in res.measures:
        assert res.per_query["reranker"][m]["q5"] == 0.0
        vals = res.per_query["reranker"][m]
        assert res.aggregates["reranker"][m] == pytest.approx(sum(vals.values()) / len(res.queries))
    assert any("lacks 1 of" in w for w in res.warnings)


def test_queries_without_relevant_docs_are_skipped_by_default(qrels, runs):
    assert all(g == 0 for g in qrels["q11"].values())
    res = evaluate(qrels, {"dense": runs["dense"]})
    assert res.skipped_queries == ["q11"] and "q11" not in res.queries and len(res.queries) == 11
    # q12 has only grade-1 documents: kept, and 0 on the rel=2 measure
    res2 = evaluate(qrels, {"dense": runs["dense"]}, measures=["RR(rel=2)@10", "nDCG@10"])
    assert "q12" in res2.queries and res2.per_query["dense"]["RR(rel=2)@10"]["q12"] == 0.0
    zero = evaluate(qrels, {"dense": runs["dense"]}, empty_queries="zero")
    assert zero.skipped_queries == [] and zero.per_query["dense"]["nDCG@10"]["q11"] == 0.0
    n = len(zero.queries)
    assert zero.aggregates["dense"]["nDCG@10"] == pytest.approx(
        res.aggregates["dense"]["nDCG@10"] * (n - 1) / n
    )


def test_run_queries_not_in_qrels_are_ignored(qrels, runs):
    run = dict(runs["dense"])
    run["unjudged"] = {"d01": 1.0}
    res = evaluate(qrels, {"dense": run})
    assert res.extra_queries["dense"] == 1 and "unjudged" not in res.queries
    assert res.aggregates == evaluate(qrels, {"dense": runs["dense"]}).aggregates


def test_rel_threshold_applies_to_binary_measures_only(qrels, runs):
    res = evaluate(qrels, {"dense": runs["dense"]}, measures=["nDCG@10", "MRR@10", "RR(rel=3)@10"], rel=2)
    assert res.measures == ["nDCG@10", "RR(rel=2)@10", "RR(rel=3)@10"]
    assert res.canonical["nDCG@10"] == "nDCG@10"
    explicit = evaluate(qrels, {"dense": runs["dense"]}, measures=["RR(rel=2)@10"])
    assert res.per_query["dense"]["RR(rel=2)@10"] == explicit.per_query["dense"]["RR(rel=2)@10"]
    plain = evaluate(qrels, {"dense": runs["dense"]}, measures=["MRR@10"])
    assert plain.aggregates["dense"]["MRR@10"] != res.aggregates["dense"]["RR(rel=2)@10"]


def test_measure_parsing():
    specs = parse_measures("nDCG@10, MRR@10,P(rel=2)@10,Judged@10")
    assert [s.canonical for s in specs] == ["nDCG@10", "RR@10", "P(rel=2)@10", "Judged@10"]
    assert [s.provider for s in specs] == ["pytrec_eval", "msmarco", "pytrec_eval", "judged"]
    assert split_measures("nDCG(gains={0:0,1:1})@10,P@5") == ["nDCG(gains={0:0,1:1})@10", "P@5"]
    with pytest.raises(UsageError) as e:
        parse_measures(["nDCG@10", "Bogus@3", "P(rel=@10"])
    msg = str(e.value)
    assert "'Bogus@3'" in msg and "'P(rel=@10'" in msg and "--measures" in msg
    with pytest.raises(UsageError, match="same measure"):
        parse_measures(["MRR@10", "RR@10"])


def test_bad_inputs(qrels, runs):
    with pytest.raises(UsageError, match="baseline 'nope'"):
        evaluate(qrels, {"dense": runs["dense"]}, baseline="nope")
    with pytest.raises(UsageError, match="no runs"):
        evaluate(qrels, {})
    with pytest.raises(DataError, match="NaN"):
        evaluate(qrels, {"x": {"q1": {"d01": float("nan")}}})
    with pytest.raises(DataError, match="no query with a relevant judgment"):
        evaluate({"q1": {"d1": 0}}, {"x": {"q1": {"d1": 1.0}}})
    res = evaluate(qrels, {"x": {"other": {"d01": 1.0}}})
    assert all(v == 0.0 for v in res.aggregates["x"].values())
    assert "none of the 11 evaluated queries" in res.warnings[0]
