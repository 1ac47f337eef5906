"""Paired significance tests between two systems' per-query values (scipy does the statistics)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from relforge.evaluate.config import DEFAULT_PERMUTATION_ROUNDS, DEFAULT_SEED


@dataclass(frozen=True)
class PairedTest:
    """Result of comparing system ``a`` with baseline ``b`` on the same queries.

    Attributes:
        delta: mean(a) - mean(b).
        t: paired t statistic (0.0 when every per-query difference is 0).
        ttest_p: two-sided p-value of the paired t-test (``scipy.stats.ttest_rel``).
        perm_p: two-sided p-value of the paired randomisation (sign-flip) test on the mean difference
            (``scipy.stats.permutation_test``, ``permutation_type="samples"``).
        n: number of paired queries.
    """

    delta: float
    t: float
    ttest_p: float
    perm_p: float
    n: int


def _mean_diff(x, y, axis=-1):
    # rounded so that float noise cannot split sign patterns whose mean difference is equal
    return (x - y).mean(axis=axis).round(12)


def paired_tests(
    a: Sequence[float],
    b: Sequence[float],
    *,
    rounds: int = DEFAULT_PERMUTATION_ROUNDS,
    seed: int = DEFAULT_SEED,
) -> PairedTest:
    """Paired t-test and paired randomisation test of ``a`` against ``b`` (same query order).

    The randomisation test flips the sign of each per-query difference at random ``rounds`` times with
    ``numpy.random.default_rng(seed)``; when ``2**n <= rounds`` scipy enumerates all sign patterns
    instead (an exact test). Identical inputs (every difference 0) give ``t = 0`` and both p-values 1.0:
    scipy's t-test would return NaN there, which says nothing more than "no difference".

    Args:
        a: per-query values of the system.
        b: per-query values of the baseline, aligned with ``a``.
        rounds: random sign flips (``n_resamples``).
        seed: seed of the random sign flips.

    Returns:
        A :class:`PairedTest`.
    """
    import numpy as np
    from scipy import stats

    x = np.asarray(a, dtype=float)
    y = np.asarray(b, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"paired tests need two 1-D sequences of equal length, got {x.shape} and {y.shape}")
    n = int(x.size)
    delta = float(np.mean(x - y)) if n else 0.0
    if n < 2:
        return PairedTest(delta=delta, t=float("nan"), ttest_p=float("nan"), perm_p=float("nan"), n=n)
    if np.all(x == y):
        return PairedTest(delta=0.0, t=0.0, ttest_p=1.0, perm_p=1.0, n=n)
    tt = stats.ttest_rel(x, y)
    perm = stats.permutation_test(
        (x, y),
        _mean_diff,
        permutation_type="samples",
        vectorized=True,
        n_resamples=rounds,
        alternative="two-sided",
        rng=np.random.default_rng(seed),
        batch=max(1, min(rounds, 2_000_000 // max(n, 1))),
    )
    return PairedTest(
        delta=delta, t=float(tt.statistic), ttest_p=float(tt.pvalue), perm_p=float(perm.pvalue), n=n
    )
