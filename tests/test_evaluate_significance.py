"""Paired significance tests: equal to scipy's t-test; the randomisation test is exact/deterministic."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from relforge.data import read_qrels, read_run
from relforge.evaluate import evaluate, paired_tests
from relforge.evaluate.significance import sign_flip_p

FIX = Path(__file__).parent / "fixtures" / "eval"


def _exact_sign_flip_p(a, b):
    """Brute force: fraction of all 2^n sign patterns with |mean diff| >= |observed|."""
    d = np.asarray(a) - np.asarray(b)
    obs = abs(d.mean())
    hits = sum(
        abs((d * np.array(s)).mean()) >= obs - 1e-12 for s in itertools.product([1, -1], repeat=len(d))
    )
    return hits / 2 ** len(d)


@pytest.fixture(scope="module")
def result():
    runs = {n: read_run(FIX / f"{n}.trec") for n in ("bm25", "dense", "reranker")}
    return evaluate(read_qrels(FIX / "qrels.tsv"), runs, permutation_rounds=5000, seed=7)


def test_ttest_matches_scipy_on_fixture(result):
    assert result.baseline == "bm25" and set(result.significance) == {"dense", "reranker"}
    for run in ("dense", "reranker"):
        for m in result.measures:
            a = [result.per_query[run][m][q] for q in result.queries]
            b = [result.per_query["bm25"][m][q] for q in result.queries]
            ref = stats.ttest_rel(a, b)
            test = result.significance[run][m]
            assert test.ttest_p == pytest.approx(ref.pvalue, rel=1e-12)
            assert test.t == pytest.approx(ref.statistic, rel=1e-12)
            assert test.delta == pytest.approx(result.aggregates[run][m] - result.aggregates["bm25"][m])
            assert test.n == len(result.queries) == 11


def test_randomisation_test_close_to_exact_enumeration_and_deterministic(result):
    # 11 queries: 2^11 = 2048 sign patterns; the brute force is the exact p-value
    run, m = "reranker", "nDCG@10"
    a = [result.per_query[run][m][q] for q in result.queries]
    b = [result.per_query["bm25"][m][q] for q in result.queries]
    exact = _exact_sign_flip_p(a, b)
    # rounds=5000 >= 2048: evaluate() used scipy's exact enumeration
    assert result.significance[run][m].perm_p == pytest.approx(exact, abs=1e-12)
    assert exact < 0.05 and "‡" in result.marks(run, m)
    # rounds=1000 < 2048: random sign flips (standard error ~0.006 at p ~0.03)
    p = paired_tests(a, b, rounds=1000, seed=7).perm_p
    assert p != exact and abs(p - exact) < 0.03
    assert paired_tests(a, b, rounds=1000, seed=7).perm_p == p  # same seed, same p
    others = {paired_tests(a, b, rounds=1000, seed=s).perm_p for s in range(4)}
    assert len(others) > 1  # the seed really drives the random flips


def test_random_sign_flips_match_scipy_permutation_test():
    rng = np.random.default_rng(3)
    a = rng.random(40)
    b = a - 0.03 + rng.normal(0, 0.15, 40)
    ours = paired_tests(a, b, rounds=20000, seed=1).perm_p
    ref = stats.permutation_test(
        (a, b),
        lambda x, y, axis: np.mean(x - y, axis=axis),
        permutation_type="samples",
        vectorized=True,
        n_resamples=20000,
        rng=np.random.default_rng(1),
    ).pvalue
    assert 0.01 < ref < 0.5 and abs(ours - ref) < 0.006  # two Monte Carlo estimates of the same p
    d = a[:12] - b[:12]  # 4096 patterns: compare with the exact value too
    assert abs(sign_flip_p(d, 20000, 0) - _exact_sign_flip_p(a[:12], b[:12])) < 0.01


def test_small_sample_is_exact():
    a = [0.9, 0.5, 0.7, 0.3, 0.8, 0.6, 0.4, 0.95]
    b = [0.5, 0.4, 0.72, 0.1, 0.6, 0.6, 0.2, 0.7]
    res = paired_tests(a, b, rounds=1000)  # 2^8 = 256 <= 1000 -> scipy enumerates all sign flips
    assert res.perm_p == pytest.approx(_exact_sign_flip_p(a, b), abs=1e-12)
    assert res.perm_p == paired_tests(a, b, rounds=1000, seed=123).perm_p
    assert res.ttest_p == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-12)


def test_identical_runs_and_tiny_samples():
    same = paired_tests([0.1, 0.5, 0.3], [0.1, 0.5, 0.3])
    assert (same.t, same.ttest_p, same.perm_p) == (0.0, 1.0, 1.0)
    one = paired_tests([0.5], [0.1])
    assert np.isnan(one.ttest_p) and np.isnan(one.perm_p) and one.delta == pytest.approx(0.4)
    with pytest.raises(ValueError, match="equal length"):
        paired_tests([1, 2], [1])


def test_baseline_choice_and_marks(result):
    runs = {n: read_run(FIX / f"{n}.trec") for n in ("bm25", "reranker")}
    res = evaluate(FIX / "qrels.trec", runs, baseline="reranker", measures=["nDCG@10"])
    assert res.baseline == "reranker" and list(res.significance) == ["bm25"]
    assert res.significance["bm25"]["nDCG@10"].delta < 0
    assert res.marks("reranker", "nDCG@10") == ""
    single = evaluate(FIX / "qrels.trec", {"bm25": runs["bm25"]})
    assert single.baseline is None and single.significance == {}
    # the legend names both marks
    assert "†" in result.legend() and "‡" in result.legend()


def test_pairwise_comparisons(result):
    runs = {n: read_run(FIX / f"{n}.trec") for n in ("bm25", "dense", "reranker")}
    res = evaluate(FIX / "qrels.trec", runs, pairs=[("reranker", "dense")], permutation_rounds=5000, seed=7)
    (c,) = res.pairwise
    assert (c["run"], c["versus"]) == ("reranker", "dense")
    for m in res.measures:
        a = [res.per_query["reranker"][m][q] for q in res.queries]
        b = [res.per_query["dense"][m][q] for q in res.queries]
        assert c["tests"][m] == paired_tests(a, b, rounds=5000, seed=7)
        assert c["tests"][m].ttest_p == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-12)
    with pytest.raises(Exception, match="--pair"):
        evaluate(FIX / "qrels.trec", runs, pairs=[("reranker", "nope")])
