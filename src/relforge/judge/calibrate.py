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

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

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


# --------------------------------------------------------------------------- calibration head

HEAD_KINDS = ("ordinal", "multinomial")


def _matrix(x: Any, features: Sequence[str]) -> np.ndarray:
    """A 2-D float array (n, d) from a 2-D array or a ``{feature: values}`` mapping (columns by ``features``)."""
    if isinstance(x, Mapping):
        missing = [f for f in features if f not in x]
        if missing:
            raise ValueError(f"features {missing} are missing (have {sorted(x)})")
        m = np.column_stack([np.asarray(x[f], dtype=float) for f in features])
    else:
        m = np.asarray(x, dtype=float)
        if m.ndim == 1:
            m = m[:, None]
    if m.ndim != 2 or m.shape[1] != len(features):
        raise ValueError(f"expected {len(features)} feature columns {list(features)}, got shape {m.shape}")
    if not np.isfinite(m).all():
        raise ValueError("features contain NaN or infinite values")
    return m


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _ordinal_probs(z: np.ndarray, cuts: np.ndarray) -> np.ndarray:
    """Proportional odds: ``P(y <= j) = sigmoid(cut_j - z)``; class probabilities as differences."""
    cdf = _sigmoid(cuts[None, :] - z[:, None])
    cdf = np.hstack([np.zeros((len(z), 1)), cdf, np.ones((len(z), 1))])
    return np.clip(np.diff(cdf, axis=1), 1e-12, 1.0)


def _fit_ordinal(x: np.ndarray, h: np.ndarray, k: int, c: float) -> tuple[np.ndarray, np.ndarray]:
    """Maximum-likelihood proportional-odds model with an L2 penalty ``|w|^2 / (2 C n)`` per pair.
    Cut points are parametrised as a first value plus positive (softplus) increments, so they stay ordered."""
    from scipy.optimize import minimize

    n, d = x.shape
    counts = np.bincount(h, minlength=k) + 0.5
    cum = np.cumsum(counts)[:-1] / counts.sum()
    start_cuts = np.log(cum / (1 - cum))
    inc0 = np.log(np.expm1(np.maximum(np.diff(start_cuts), 1e-3)))
    p0 = np.concatenate([np.zeros(d), start_cuts[:1], inc0])

    def unpack(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        w, first, inc = p[:d], p[d], p[d + 1 :]
        return w, np.concatenate([[first], first + np.cumsum(np.logaddexp(0.0, inc))])

    def loss(p: np.ndarray) -> float:
        w, cuts = unpack(p)
        probs = _ordinal_probs(x @ w, cuts)
        return float(-np.log(probs[np.arange(n), h]).mean() + (w @ w) / (2 * c * n))

    res = minimize(loss, p0, method="L-BFGS-B")
    return unpack(res.x)


class CalibrationHead(BaseModel):
    """A small model from judge features to grade probabilities, fitted on human-labelled pairs.

    ``ordinal``: proportional-odds logistic regression (one weight per feature, ordered cut points;
    ``P(grade <= j) = sigmoid(cut_j - w . x)``). ``multinomial``: scikit-learn's multinomial
    ``LogisticRegression`` (one weight vector per grade). Features are standardised with the training
    mean/scale stored here. The grade is the argmax of the probabilities, or (``grade_rule="thresholds"``)
    cut points on the expected grade fitted with :func:`fit_thresholds` on the training pairs — argmax
    rarely predicts a rare grade. Saved as a small JSON file and loaded back by :meth:`load`.
    """

    model_config = ConfigDict(extra="forbid")

    kind: Literal["ordinal", "multinomial"]
    features: list[str]
    values: list[int]
    mean: list[float]
    scale: list[float]
    #: ordinal: one row (d weights); multinomial: one row per grade
    coef: list[list[float]]
    #: ordinal: the k-1 ordered cut points; multinomial: one intercept per grade
    intercept: list[float]
    grade_rule: Literal["argmax", "thresholds"] = "thresholds"
    thresholds: list[float] | None = None
    #: free-form provenance (training data, fold numbers, ...)
    meta: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def fit(
        cls,
        x: Any,
        human_grades: Sequence[int],
        features: Sequence[str],
        *,
        kind: str = "ordinal",
        values: Sequence[int] | None = None,
        c: float = 1.0,
        grade_rule: str = "thresholds",
        metric: str = "qwk",
        meta: dict[str, Any] | None = None,
    ) -> CalibrationHead:
        """Fit on labelled pairs.

        Args:
            x: features, a ``{name: values}`` mapping or an (n, d) array with columns in ``features`` order.
            human_grades: the human grade of each pair.
            features: feature names (the columns used, in order).
            kind: ``ordinal`` or ``multinomial``.
            values: the grade scale (default ``0..max(3, max grade)``).
            c: inverse L2 regularisation strength (as scikit-learn's ``C``).
            grade_rule: ``thresholds`` (fit cut points on the expected grade, maximising ``metric``) or ``argmax``.
            metric: ``qwk`` or ``macro_f1`` for the thresholds.
        """
        if kind not in HEAD_KINDS:
            raise ValueError(f"kind must be one of {list(HEAD_KINDS)}, got {kind!r}")
        m = _matrix(x, list(features))
        hv = np.asarray(human_grades, dtype=int)
        if len(hv) != len(m) or len(m) < 2:
            raise ValueError(f"need equally many feature rows and grades (>= 2), got {len(m)} and {len(hv)}")
        vals = list(values) if values is not None else list(range(max(3, int(hv.max())) + 1))
        unknown = sorted(set(hv.tolist()) - set(vals))
        if unknown:
            raise ValueError(f"human grades {unknown} are not on the scale {vals}")
        h = np.array([vals.index(v) for v in hv.tolist()])
        mu, sd = m.mean(0), m.std(0)
        sd[sd == 0] = 1.0
        z = (m - mu) / sd
        if kind == "ordinal":
            w, cuts = _fit_ordinal(z, h, len(vals), c)
            coef, intercept = [w.tolist()], cuts.tolist()
        else:
            from sklearn.linear_model import LogisticRegression

            lr = LogisticRegression(C=c, max_iter=2000).fit(z, h)
            coef_full = np.zeros((len(vals), m.shape[1]))
            int_full = np.full(len(vals), -30.0)  # grades absent from training: probability ~0
            coef_full[lr.classes_] = (
                lr.coef_ if len(lr.classes_) > 2 else np.vstack([-lr.coef_, lr.coef_]) / 2
            )
            int_full[lr.classes_] = (
                lr.intercept_ if len(lr.classes_) > 2 else np.array([-lr.intercept_[0], lr.intercept_[0]]) / 2
            )
            coef, intercept = coef_full.tolist(), int_full.tolist()
        head = cls(
            kind=kind,
            features=list(features),
            values=vals,
            mean=mu.tolist(),
            scale=sd.tolist(),
            coef=coef,
            intercept=intercept,
            grade_rule="argmax",
            meta=dict(meta or {}, n_train=len(h)),
        )
        if grade_rule == "thresholds":
            exp = head.expected(m)
            th = fit_thresholds(exp, hv.tolist(), values=vals, metric=metric)
            head = head.model_copy(update={"grade_rule": "thresholds", "thresholds": th})
        return head

    def predict_proba(self, x: Any) -> np.ndarray:
        """Grade probabilities, shape (n, len(values)), columns in ``values`` order."""
        z = (_matrix(x, self.features) - np.asarray(self.mean)) / np.asarray(self.scale)
        coef = np.asarray(self.coef, dtype=float)
        if self.kind == "ordinal":
            p = _ordinal_probs(z @ coef[0], np.asarray(self.intercept, dtype=float))
        else:
            logits = z @ coef.T + np.asarray(self.intercept, dtype=float)
            logits -= logits.max(1, keepdims=True)
            p = np.exp(logits)
        return p / p.sum(1, keepdims=True)

    def expected(self, x: Any) -> np.ndarray:
        """Expected grade ``sum_g g * p(g)`` per row."""
        return self.predict_proba(x) @ np.asarray(self.values, dtype=float)

    def predict(self, x: Any) -> tuple[np.ndarray, np.ndarray, list[int]]:
        """``(probs, expected, grades)`` for the rows of ``x``."""
        p = self.predict_proba(x)
        e = p @ np.asarray(self.values, dtype=float)
        if self.grade_rule == "thresholds" and self.thresholds is not None:
            grades = apply_thresholds(e.tolist(), self.thresholds, self.values)
        else:
            grades = [self.values[i] for i in p.argmax(1)]
        return p, e, grades

    def save(self, path: str | Path) -> None:
        """Write the head as JSON (atomically)."""
        from relforge.data.io import atomic_write

        with atomic_write(Path(path)) as fh:
            fh.write(self.model_dump_json(indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> CalibrationHead:
        """Read a head written by :meth:`save`; a broken file raises a ``DataError`` naming it."""
        from pydantic import ValidationError

        from relforge.errors import DataError

        try:
            return cls.model_validate_json(Path(path).read_text(encoding="utf-8"))
        except (ValidationError, ValueError) as e:
            raise DataError(f"not a calibration head: {str(e).splitlines()[0]}", path=path) from None
