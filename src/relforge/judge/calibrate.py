"""Calibration: cut points on the expected grade, fitted on labelled dev data.

A small judge's argmax is often skewed to one class (SmolLM2 zero-shot says "3" for nearly
everything) while its *expected* grade ``E[g] = sum_g g * p(g)`` still ranks pairs. Thresholds
``t_1 <= ... <= t_{k-1}`` turn the expected grade back into a grade:
``grade = values[#{i : E[g] >= t_i}]``.

:func:`fit_thresholds` chooses them to maximise an agreement metric with human grades on a dev
set: ``qwk`` (quadratic-weighted Cohen's kappa, the default: rewards getting close on an ordinal
scale) or ``macro_f1`` (every class counts equally). The search is deterministic coordinate
ascent: start at the quantiles of ``E[g]`` that reproduce the human class proportions, then
repeatedly move one cut point at a time to the best candidate between its neighbours (candidates:
midpoints between distinct expected grades, thinned to at most ``max_candidates`` quantiles),
until no move improves the metric.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

METRICS = ("qwk", "macro_f1")


def apply_thresholds(
    expected: Sequence[float], thresholds: Sequence[float], values: Sequence[int] | None = None
) -> list[int]:
    """Map expected grades to grades with cut points.

    Args:
        expected: expected grades.
        thresholds: non-decreasing cut points, one fewer than the number of grades.
        values: the grade values in scale order (default ``0..len(thresholds)``).

    Returns:
        One grade per expected grade: ``values[number of thresholds <= expected]``.
    """
    vals = list(values) if values is not None else list(range(len(thresholds) + 1))
    if len(vals) != len(thresholds) + 1:
        raise ValueError(f"{len(thresholds)} thresholds need {len(thresholds) + 1} grades, got values {vals}")
    idx = np.searchsorted(
        np.asarray(thresholds, dtype=float), np.asarray(expected, dtype=float), side="right"
    )
    return [vals[i] for i in idx]


def _confusion(h: np.ndarray, p: np.ndarray, k: int) -> np.ndarray:
    return np.bincount(h * k + p, minlength=k * k).reshape(k, k).astype(float)


def _score(cm: np.ndarray, metric: str) -> float:
    k = cm.shape[0]
    n = cm.sum()
    if metric == "qwk":
        i, j = np.indices((k, k))
        w = (i - j) ** 2 / max(1, (k - 1) ** 2)
        e = np.outer(cm.sum(1), cm.sum(0)) / n
        den = (w * e).sum()
        return 1.0 - (w * cm).sum() / den if den > 0 else 0.0
    tp = np.diag(cm)
    prec = np.divide(tp, cm.sum(0), out=np.zeros(k), where=cm.sum(0) > 0)
    rec = np.divide(tp, cm.sum(1), out=np.zeros(k), where=cm.sum(1) > 0)
    f1 = np.divide(2 * prec * rec, prec + rec, out=np.zeros(k), where=(prec + rec) > 0)
    present = cm.sum(1) > 0
    return float(f1[present].mean()) if present.any() else 0.0


def fit_thresholds(
    expected: Sequence[float],
    human_grades: Sequence[int],
    *,
    values: Sequence[int] | None = None,
    metric: str = "qwk",
    max_candidates: int = 200,
) -> list[float]:
    """Choose cut points on the expected grade that best agree with human grades.

    Args:
        expected: the judge's expected grade for each labelled pair.
        human_grades: the human grade of the same pairs.
        values: the grade values in scale order (default: ``0..max`` of the human grades and 3).
        metric: ``"qwk"`` (quadratic-weighted kappa) or ``"macro_f1"``.
        max_candidates: cap on candidate cut points per threshold (quantiles of the midpoints).

    Returns:
        ``len(values) - 1`` non-decreasing thresholds for :func:`apply_thresholds`.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {list(METRICS)}, got {metric!r}")
    e = np.asarray(expected, dtype=float)
    hv = np.asarray(human_grades, dtype=int)
    if len(e) != len(hv) or len(e) == 0:
        raise ValueError(f"need equally many expected and human grades (>0), got {len(e)} and {len(hv)}")
    vals = list(values) if values is not None else list(range(max(3, int(hv.max())) + 1))
    pos = {v: i for i, v in enumerate(vals)}
    unknown = sorted(set(hv.tolist()) - set(vals))
    if unknown:
        raise ValueError(f"human grades {unknown} are not on the scale {vals}")
    h = np.array([pos[v] for v in hv.tolist()])
    k = len(vals)

    u = np.unique(e)
    cands = np.concatenate([[u[0] - 1e-6], (u[:-1] + u[1:]) / 2, [u[-1] + 1e-6]])
    if len(cands) > max_candidates:
        cands = np.unique(np.quantile(cands, np.linspace(0, 1, max_candidates)))

    # start: quantiles reproducing the human class proportions
    cum = np.cumsum(np.bincount(h, minlength=k))[:-1] / len(h)
    t = np.sort(np.quantile(e, cum)) if k > 1 else np.array([])

    def score(th: np.ndarray) -> float:
        p = np.searchsorted(th, e, side="right")
        return _score(_confusion(h, p, k), metric)

    best = score(t)
    for _ in range(50):
        improved = False
        for i in range(k - 1):
            lo = t[i - 1] if i > 0 else -np.inf
            hi = t[i + 1] if i < k - 2 else np.inf
            for c in cands[(cands >= lo) & (cands <= hi)]:
                trial = t.copy()
                trial[i] = c
                s = score(trial)
                if s > best + 1e-12:
                    best, t, improved = s, trial, True
        if not improved:
            break
    return [float(x) for x in t]
