"""Agreement numbers against hand-computed values; calibration thresholds; the agreement report."""

from __future__ import annotations

import math

import numpy as np
import pytest

from relforge.judge import Judgment, apply_thresholds, fit_thresholds
from relforge.judge.agreement import (
    agreement,
    balanced_indices,
    pair_metrics,
    plot_confusion,
    system_agreement,
)
from relforge.judge.calibrate import _confusion, _score


def _j(q, d, grade, expected=None):
    return Judgment(q, d, grade, expected, None, "probs", "m", "h")


def test_cohen_kappa_hand_computed():
    # po = 3/4; marginals human (2, 2), llm (1, 3): pe = (2*1 + 2*3) / 16 = 1/2; kappa = (3/4 - 1/2) / (1/2)
    m = pair_metrics([0, 0, 1, 1], [0, 1, 1, 1], [0, 1, 1, 1], ["a"] * 4, [0, 1])
    assert m["cohen_kappa"] == 0.5
    assert m["accuracy"] == 0.75
    assert m["confusion"] == [[1, 1], [0, 2]]


def test_quadratic_kappa_and_krippendorff_alpha_hand_computed():
    h, p = [0, 1, 2], [0, 2, 2]
    m = pair_metrics(h, p, p, ["a", "a", "a"], [0, 1, 2])
    # w_ij = (i-j)^2/4; sum w*O = w_12 = 1/4; E = outer((1,1,1), (1,0,2))/3 -> sum w*E = 2/3 + 1/4 + 1/3 = 5/4
    assert m["quadratic_kappa"] == pytest.approx(1 - 0.25 / 1.25, abs=1e-4)  # 0.8
    # ordinal alpha: n = (2, 1, 3); delta^2_12 = ((1+3) - 2)^2 = 4, delta^2_01 = 1.5^2, delta^2_02 = 3.5^2;
    # D_o ~ o_12+o_21 = 2 * 4 = 8; D_e ~ 2 * (2*1*2.25 + 1*3*4 + 2*3*12.25) = 180; alpha = 1 - 5 * 8 / 180 = 7/9
    assert m["krippendorff_alpha"] == pytest.approx(7 / 9, abs=1e-4)
    # per-class: grade 1 never predicted -> precision 0 (zero_division), recall 0; grade 2: P = 1/2, R = 1
    assert m["per_class"]["1"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1, "predicted": 0}
    assert m["per_class"]["2"]["precision"] == 0.5 and m["per_class"]["2"]["recall"] == 1.0
    assert m["macro_f1"] == pytest.approx((1 + 0 + 2 / 3) / 3, abs=1e-4)


def test_kendall_tau_b_hand_computed_with_ties():
    # pairs: 4 concordant, 0 discordant, one tie in x, one tie in y: tau_b = 4 / sqrt(5 * 5) = 0.8
    m = pair_metrics([1, 2, 3, 3], [0, 0, 0, 0], [1.0, 2.0, 2.0, 3.0], ["a"] * 4, [0, 1, 2, 3])
    assert m["kendall_tau_b"] == 0.8
    # per-query: q1 (1 discordant of 1 pair) = -1; q2 (1 concordant) = +1; q3 has one pair only: no tau
    m = pair_metrics(
        [1, 2, 1, 3, 2], [0] * 5, [2.0, 1.0, 0.1, 0.9, 5.0], ["q1", "q1", "q2", "q2", "q3"], [0, 1, 2, 3]
    )
    assert m["per_query_tau_b"] == 0.0
    assert m["per_query_n"] == 2


def test_balanced_subsample_is_deterministic_and_balanced():
    h = [0] * 50 + [1] * 10 + [2] * 5 + [3] * 7
    a, b = balanced_indices(h, seed=3), balanced_indices(h, seed=3)
    assert a == b and len(a) == 20
    assert sorted(np.bincount([h[i] for i in a]).tolist()) == [5, 5, 5, 5]
    assert balanced_indices(h, seed=4) != a


def test_agreement_report_counts_unlabelled_and_reranks():
    human = {"q1": {"d1": 3, "d2": 0, "d3": 1}, "q2": {"d4": 2, "d5": 0}}
    js = [
        _j("q1", "d1", 3, 2.9),
        _j("q1", "d2", 0, 0.2),
        _j("q1", "d3", None),
        _j("q2", "d4", 1, 1.4),
        _j("q2", "d5", 1, 1.1),
        _j("q3", "dx", 2, 2.0),
    ]
    js[2].parse_ok = False
    r = agreement(human, js)
    c = r["counts"]
    assert (c["matched"], c["scored"], c["unlabelled"], c["human_only"], c["llm_only"]) == (5, 4, 1, 0, 1)
    assert r["all"]["n"] == 4
    # no discordant pair among the 4 scored ones, one human tie (d2, d5): tau_b = 5 / sqrt(6 * 5)
    assert r["all"]["kendall_tau_b"] == pytest.approx(5 / math.sqrt(30), abs=1e-4)
    # rerank by expected grade; the unlabelled d3 (human 1) is missing from q1's ranking:
    # q1 = 3 / (3 + 1/log2(3)), q2 = 1 (linear gains, as trec_eval)
    assert r["rerank"]["nDCG@10"] == pytest.approx((3 / (3 + 1 / math.log2(3)) + 1) / 2, abs=1e-4)
    assert r["balanced"]["n"] == 3  # scored human classes 0, 2, 3: one pair each


def test_system_agreement_orders_runs():
    human = {"q1": {"a": 3, "b": 1, "c": 0}}
    llm = {"q1": {"a": 2, "b": 2, "c": 0}}
    runs = {
        "good": {"q1": {"a": 3.0, "b": 2.0, "c": 1.0}},
        "mid": {"q1": {"b": 3.0, "a": 2.0, "c": 1.0}},
        "bad": {"q1": {"c": 3.0, "b": 2.0, "a": 1.0}},
    }
    s = system_agreement(human, llm, runs)
    assert s["n_runs"] == 3
    assert s["runs"]["good"]["human"] > s["runs"]["mid"]["human"] > s["runs"]["bad"]["human"]
    # the LLM cannot separate good from mid (a, b both 2): tau_b with one tie = 2 / sqrt(3 * 2)
    assert s["kendall_tau"] == pytest.approx(2 / math.sqrt(6), abs=1e-4)


def test_confusion_png(tmp_path):
    p = plot_confusion([[5, 1], [2, 7]], [0, 1], tmp_path / "cm.png")
    assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_apply_thresholds():
    assert apply_thresholds([0.1, 0.5, 1.49, 2.6, 3.0], [0.5, 1.5, 2.5]) == [0, 1, 1, 3, 3]
    assert apply_thresholds([0.3, 0.9], [0.5], values=[0, 3]) == [0, 3]
    with pytest.raises(ValueError, match="2 thresholds need 3 grades"):
        apply_thresholds([1.0], [0.5, 1.5], values=[0, 1])


def test_fit_thresholds_recovers_a_monotone_mapping():
    rng = np.random.default_rng(0)
    human = rng.integers(0, 4, size=300)
    # expected grades squeezed into [2.2, 2.8] (a skewed judge) but perfectly ordered by the human grade
    expected = 2.2 + 0.15 * human + rng.uniform(0, 0.1, size=300)
    th = fit_thresholds(expected, human)
    assert len(th) == 3 and th == sorted(th)
    assert apply_thresholds(expected, th) == human.tolist()
    assert fit_thresholds(expected, human, metric="macro_f1") is not None


def test_fast_qwk_matches_sklearn():
    from sklearn.metrics import cohen_kappa_score, f1_score

    rng = np.random.default_rng(1)
    h, p = rng.integers(0, 4, 200), rng.integers(0, 4, 200)
    cm = _confusion(h, p, 4)
    assert _score(cm, "qwk") == pytest.approx(cohen_kappa_score(h, p, weights="quadratic"), abs=1e-9)
    assert _score(cm, "macro_f1") == pytest.approx(f1_score(h, p, average="macro"), abs=1e-9)
