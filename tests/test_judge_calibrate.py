"""The calibration head (judge features -> grade probabilities) on fixtures with a known answer."""

from __future__ import annotations

import numpy as np
import pytest

from relforge.errors import DataError
from relforge.judge.calibrate import CalibrationHead, apply_thresholds, fit_thresholds

CUTS = np.array([-2.0, 0.5, 2.5])
W = np.array([2.0, -1.0])


def _ordinal_data(n: int, seed: int = 0):
    """Grades drawn from a known proportional-odds model: latent = 2 a - b + logistic noise, cut at CUTS."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    latent = x @ W + rng.logistic(size=n)
    return x, np.searchsorted(CUTS, latent)


def test_ordinal_head_recovers_the_generating_model():
    x, y = _ordinal_data(4000)
    head = CalibrationHead.fit({"a": x[:, 0], "b": x[:, 1]}, y, ["a", "b"], kind="ordinal")
    # weights are stored on standardised features: back to raw units
    w = np.asarray(head.coef[0]) / np.asarray(head.scale)
    assert w == pytest.approx(W, abs=0.2)
    cuts = np.asarray(head.intercept) + w @ np.asarray(head.mean)
    assert cuts == pytest.approx(CUTS, abs=0.25)
    # on fresh data from the same model its probabilities are (close to) the true ones
    xt, _ = _ordinal_data(2000, seed=1)
    true_cdf = 1 / (1 + np.exp(-(CUTS[None, :] - (xt @ W)[:, None])))
    true_p = np.diff(np.hstack([np.zeros((2000, 1)), true_cdf, np.ones((2000, 1))]), axis=1)
    assert np.abs(head.predict_proba(xt) - true_p).max() < 0.06


def test_heads_beat_the_majority_class_and_rank_like_the_latent():
    from scipy.stats import kendalltau

    x, y = _ordinal_data(3000)
    xt, yt = _ordinal_data(2000, seed=2)
    majority = np.bincount(yt).max() / len(yt)
    for kind in ("ordinal", "multinomial"):
        head = CalibrationHead.fit(x, y, ["a", "b"], kind=kind, grade_rule="argmax")
        probs, expected, grades = head.predict(xt)
        assert probs.shape == (2000, 4) and np.allclose(probs.sum(1), 1)
        assert np.allclose(expected, probs @ np.arange(4))
        acc = (np.asarray(grades) == yt).mean()
        assert acc > majority + 0.2, (kind, acc, majority)
        assert kendalltau(expected, xt @ W).statistic > 0.95  # monotone in the true latent


def test_thresholds_rule_predicts_a_rare_grade_argmax_never_does():
    rng = np.random.default_rng(0)
    x = rng.normal(size=3000)
    y = (x + 0.3 * rng.normal(size=3000) > 1.9).astype(int)  # grade 1 is ~3%: argmax says 0 almost always
    arg = CalibrationHead.fit(x, y, ["s"], values=[0, 1], grade_rule="argmax")
    thr = CalibrationHead.fit(x, y, ["s"], values=[0, 1], grade_rule="thresholds", metric="macro_f1")
    _, e, g_thr = thr.predict(x)
    assert thr.thresholds is not None and g_thr == apply_thresholds(e, thr.thresholds, [0, 1])
    recall = lambda g: (np.asarray(g)[y == 1] == 1).mean()  # noqa: E731
    assert recall(g_thr) > recall(arg.predict(x)[2]) and recall(g_thr) > 0.6


def test_save_load_round_trip_is_tiny_json(tmp_path):
    x, y = _ordinal_data(500)
    for kind in ("ordinal", "multinomial"):
        head = CalibrationHead.fit(x, y, ["a", "b"], kind=kind, meta={"data": "fixture"})
        path = tmp_path / f"{kind}.json"
        head.save(path)
        assert path.stat().st_size < 3000
        back = CalibrationHead.load(path)
        assert back == head and back.meta["n_train"] == 500
        assert np.array_equal(back.predict_proba(x), head.predict_proba(x))


def test_grade_missing_from_training_gets_no_probability():
    x, y = _ordinal_data(800)
    y = np.where(y == 3, 2, y)  # no grade 3 in training
    head = CalibrationHead.fit(x, y, ["a", "b"], kind="multinomial", values=[0, 1, 2, 3])
    assert head.predict_proba(x)[:, 3].max() < 1e-6


def test_bad_inputs_are_clear(tmp_path):
    x, y = _ordinal_data(50)
    with pytest.raises(ValueError, match="kind must be one of"):
        CalibrationHead.fit(x, y, ["a", "b"], kind="tree")
    with pytest.raises(ValueError, match=r"features \['c'\] are missing"):
        CalibrationHead.fit({"a": x[:, 0], "b": x[:, 1]}, y, ["a", "c"])
    with pytest.raises(ValueError, match=r"human grades \[7\]"):
        CalibrationHead.fit(x, np.r_[y[:-1], 7], ["a", "b"], values=[0, 1, 2, 3])
    head = CalibrationHead.fit(x, y, ["a", "b"])
    with pytest.raises(ValueError, match="NaN"):
        head.predict(np.array([[np.nan, 0.0]]))
    bad = tmp_path / "bad.json"
    bad.write_text('{"kind": "ordinal"}')
    with pytest.raises(DataError, match=str(bad)):
        CalibrationHead.load(bad)


def test_existing_threshold_functions_still_work():
    th = fit_thresholds([0.1, 0.2, 1.1, 1.2, 2.1, 2.9], [0, 0, 1, 1, 2, 3])
    assert apply_thresholds([0.1, 0.2, 1.1, 1.2, 2.1, 2.9], th) == [0, 0, 1, 1, 2, 3]
