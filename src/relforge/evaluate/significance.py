"""Paired significance tests between two systems' per-query values (t-test and randomisation test)."""

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
            (exact enumeration by ``scipy.stats.permutation_test`` for small n, else random sign flips).
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


def sign_flip_p(d, rounds: int, seed: int) -> float:
    """Monte Carlo paired randomisation test: p = (1 + #{|mean(s * d)| >= |mean(d)|}) / (rounds + 1).

    ``s`` are independent random signs (``numpy.random.default_rng(seed)``), ``rounds`` draws, two-sided.
    The same convention as ``scipy.stats.permutation_test(..., permutation_type="samples")`` (whose
    null distribution is symmetric here); it draws signs instead of permutations, ~11x less CPU than
    scipy at 1,000 queries x 10,000 rounds (0.05 s vs 0.58 s, measured once on this 2-core machine).
    """
    import numpy as np

    d = np.asarray(d, dtype=float)
    rng = np.random.default_rng(seed)
    observed = round(abs(float(d.mean())), 12)
    batch = max(1, 2_000_000 // d.size)
    hits, done = 0, 0
    while done < rounds:
        b = min(batch, rounds - done)
        signs = rng.integers(0, 2, size=(b, d.size), dtype=np.int8) * 2 - 1
        null = np.abs((signs * d).mean(axis=1)).round(12)
        hits += int(np.count_nonzero(null >= observed))
        done += b
    return (hits + 1) / (rounds + 1)


def paired_tests(
    a: Sequence[float],
    b: Sequence[float],
    *,
    rounds: int = DEFAULT_PERMUTATION_ROUNDS,
    seed: int = DEFAULT_SEED,
) -> PairedTest:
    """Paired t-test and paired randomisation test of ``a`` against ``b`` (same query order).

    t-test: ``scipy.stats.ttest_rel``. Randomisation test on the mean difference: when
    ``2**n <= rounds``, ``scipy.stats.permutation_test`` enumerates every sign pattern (exact test);
    otherwise :func:`sign_flip_p` draws ``rounds`` random sign patterns with
    ``numpy.random.default_rng(seed)`` (deterministic). Identical inputs (every difference 0) give
    ``t = 0`` and both p-values 1.0: scipy's t-test would return NaN there, which says nothing more
    than "no difference". Fewer than 2 queries: NaN p-values.

    Args:
        a: per-query values of the system.
        b: per-query values of the baseline, aligned with ``a``.
        rounds: random sign patterns of the randomisation test.
        seed: seed of the random sign patterns.

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
    if 2**n <= rounds:
        perm_p = stats.permutation_test(
            (x, y),
            _mean_diff,
            permutation_type="samples",
            vectorized=True,
            n_resamples=rounds,
            alternative="two-sided",
        ).pvalue
    else:
        perm_p = sign_flip_p(x - y, rounds, seed)
    return PairedTest(delta=delta, t=float(tt.statistic), ttest_p=float(tt.pvalue), perm_p=float(perm_p), n=n)
