"""Live agreement on what is labelled so far, through :func:`relforge.judge.agreement.pair_metrics`
(Cohen's kappa, quadratic-weighted kappa, Krippendorff's ordinal alpha, accuracy, confusion matrix).

Raters are the annotators (their current labels) and the judge (its grade). Every pair of raters is
compared on the pairs both graded; Krippendorff's alpha over all human annotators at once uses every pair
with two or more human labels; "judge vs human" compares the judge with each pair's latest human label.
"""

from __future__ import annotations

import math
from itertools import combinations
from typing import Any

from relforge.review.store import Store

JUDGE = "judge model"  # cannot clash with an annotator name (those have no spaces)


def _metrics(a: list[int], b: list[int], score: list[float], qids: list[str], values: list[int]) -> dict:
    from relforge.judge.agreement import pair_metrics

    m = pair_metrics(a, b, score, qids, values)
    keep = ("n", "cohen_kappa", "quadratic_kappa", "krippendorff_alpha", "accuracy", "confusion")
    return {k: m.get(k) for k in keep}


def _alpha_all(human: dict[str, dict[int, int]], values: list[int]) -> tuple[float | None, int]:
    import krippendorff
    import numpy as np

    names = sorted(human)
    units = sorted({pid for g in human.values() for pid in g})
    units = [u for u in units if sum(u in human[n] for n in names) >= 2]
    if len(names) < 2 or not units:
        return None, len(units)
    data = np.array([[human[n].get(u, np.nan) for u in units] for n in names], dtype=float)
    try:
        a = krippendorff.alpha(reliability_data=data, level_of_measurement="ordinal", value_domain=values)
    except (ValueError, ZeroDivisionError):
        return None, len(units)
    return (None if math.isnan(a) else round(float(a), 4)), len(units)


def agreement_tables(store: Store, scale: list[dict[str, Any]]) -> dict[str, Any]:
    """Everything the agreement page shows: rater pairs, alpha over all annotators, judge vs human."""
    values = [s["value"] for s in scale]
    pairs = {p.id: p for p in store.pairs()}
    labels = store.current_labels()
    human: dict[str, dict[int, int]] = {}
    for pid, who in labels.items():
        for name, (grade, _) in who.items():
            human.setdefault(name, {})[pid] = grade
    raters = dict(human)
    judge = {pid: p.judge_grade for pid, p in pairs.items() if p.judge_grade is not None}
    if judge:
        raters[JUDGE] = judge
    rows = []
    for a, b in combinations(sorted(raters, key=lambda n: (n == JUDGE, n)), 2):
        common = sorted(set(raters[a]) & set(raters[b]))
        if not common:
            continue
        score = [_score(pairs[i], raters[b][i], b) for i in common]
        qids = [pairs[i].qid for i in common]
        m = _metrics([raters[a][i] for i in common], [raters[b][i] for i in common], score, qids, values)
        rows.append({"a": a, "b": b, "judge": JUDGE in (a, b), **m})
    alpha, n_units = _alpha_all(human, values)
    latest = {pid: max(who.values(), key=lambda ge: ge[1])[0] for pid, who in labels.items()}
    jv = None
    both = sorted(set(latest) & set(judge))
    if both:
        jv = _metrics(
            [latest[i] for i in both], [judge[i] for i in both],
            [_score(pairs[i], judge[i], JUDGE) for i in both], [pairs[i].qid for i in both], values,
        )  # fmt: skip
    return {
        "values": values,
        "labelled": len(labels),
        "doubly": sum(1 for who in labels.values() if len(who) >= 2),
        "annotators": {n: len(g) for n, g in sorted(human.items())},
        "pairs": [r for r in rows if not r["judge"]],
        "judge_pairs": [r for r in rows if r["judge"]],
        "alpha_all": alpha,
        "alpha_units": n_units,
        "judge_vs_human": jv,
        "has_judge": bool(judge),
    }


def _score(p, grade: int, rater: str) -> float:
    """The judge's expected grade (its continuous score) where it has one; else the grade."""
    if rater == JUDGE and p.judge_expected is not None:
        return float(p.judge_expected)
    return float(grade)
