"""Agreement between an LLM judge and human grades.

On the pairs both judged: pair-level Kendall tau_b (the judge's expected grade — or its grade when
there is no distribution — vs the human grade; scipy), the mean of per-query tau_b, Cohen's kappa,
quadratic-weighted kappa (scikit-learn), Krippendorff's alpha with the ordinal metric (krippendorff),
accuracy, per-class precision/recall/F1 and the confusion matrix; the same again on a class-balanced
subsample (every human class cut to the size of the rarest, fixed seed), because seed validation
sets are balanced and real data is not. Unlabelled judgments (``grade=None``) are counted, never
scored. Optionally: nDCG@10 of reranking each query's judged pool by the judge's expected grade,
and system-ranking agreement — Kendall tau between the orderings of several runs scored with the
human vs the LLM qrels (ir_measures).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from relforge.judge.judge import Judgment, judgments_to_qrels
from relforge.types import Qrels, Run, sorted_ranking


def _f(x: float | None) -> float | None:
    if x is None:
        return None
    x = float(x)
    return None if math.isnan(x) else round(x, 4)


def _tau(x: Sequence[float], y: Sequence[float]) -> float | None:
    from scipy.stats import kendalltau

    if len(x) < 2 or len(set(x)) < 2 or len(set(y)) < 2:
        return None
    return _f(kendalltau(x, y, variant="b").statistic)


def pair_metrics(
    human: Sequence[int],
    llm: Sequence[int],
    score: Sequence[float],
    qids: Sequence[str],
    values: Sequence[int],
) -> dict[str, Any]:
    """All pair-level agreement numbers for aligned arrays.

    Args:
        human: human grades.
        llm: the judge's grades.
        score: the judge's continuous score (expected grade) used for Kendall tau_b.
        qids: the query of each pair (for per-query tau_b).
        values: the grade values, in scale order (rows/columns of the confusion matrix).

    Returns:
        A dict: ``n``, ``kendall_tau_b``, ``per_query_tau_b`` (+ ``per_query_n``), ``cohen_kappa``,
        ``quadratic_kappa``, ``krippendorff_alpha``, ``accuracy``, ``macro_f1``, ``per_class``
        (precision/recall/F1/support by grade), ``confusion`` (rows human, columns LLM).
    """
    import krippendorff
    from sklearn.metrics import cohen_kappa_score, confusion_matrix, precision_recall_fscore_support

    h, p = np.asarray(human, dtype=int), np.asarray(llm, dtype=int)
    s = np.asarray(score, dtype=float)
    labels = list(values)
    out: dict[str, Any] = {"n": len(h)}
    if len(h) == 0:
        return out
    out["kendall_tau_b"] = _tau(s.tolist(), h.tolist())
    taus = []
    by_q: dict[str, list[int]] = {}
    for i, q in enumerate(qids):
        by_q.setdefault(q, []).append(i)
    for ix in by_q.values():
        t = _tau(s[ix].tolist(), h[ix].tolist())
        if t is not None:
            taus.append(t)
    out["per_query_tau_b"] = _f(np.mean(taus)) if taus else None
    out["per_query_n"] = len(taus)
    agree_possible = len(set(h.tolist()) | set(p.tolist())) > 1
    out["cohen_kappa"] = _f(cohen_kappa_score(h, p, labels=labels)) if agree_possible else None
    out["quadratic_kappa"] = (
        _f(cohen_kappa_score(h, p, labels=labels, weights="quadratic")) if agree_possible else None
    )
    try:
        alpha = krippendorff.alpha(
            reliability_data=np.vstack([h, p]).astype(float),
            level_of_measurement="ordinal",
            value_domain=labels,
        )
    except (ValueError, ZeroDivisionError):  # one value only: alpha undefined
        alpha = None
    out["krippendorff_alpha"] = _f(alpha)
    out["accuracy"] = _f((h == p).mean())
    prec, rec, f1, sup = precision_recall_fscore_support(h, p, labels=labels, zero_division=0)
    out["per_class"] = {
        str(v): {
            "precision": _f(prec[i]),
            "recall": _f(rec[i]),
            "f1": _f(f1[i]),
            "support": int(sup[i]),
            "predicted": int((p == v).sum()),
        }
        for i, v in enumerate(labels)
    }
    present = [i for i in range(len(labels)) if sup[i] > 0]
    out["macro_f1"] = _f(np.mean([f1[i] for i in present])) if present else None
    out["confusion"] = confusion_matrix(h, p, labels=labels).tolist()
    return out


def balanced_indices(human: Sequence[int], seed: int = 0) -> list[int]:
    """Indices of a class-balanced subsample: each human class cut to the rarest class's size."""
    rng = np.random.default_rng(seed)
    h = np.asarray(human)
    classes = sorted(set(h.tolist()))
    m = min(int((h == c).sum()) for c in classes)
    idx: list[int] = []
    for c in classes:
        where = np.flatnonzero(h == c)
        idx.extend(sorted(rng.choice(where, size=m, replace=False).tolist()))
    return sorted(idx)


def rerank_scores(judgments: Sequence[Judgment]) -> Run:
    """A run ranking each query's judged pool by expected grade (grade where there is none)."""
    run: Run = {}
    for j in judgments:
        s = j.expected if j.expected is not None else j.grade
        if s is not None:
            run.setdefault(j.qid, {})[j.docid] = float(s)
    return run


def _ranked(run: Run) -> Run:
    """Scores replaced by reverse ranks under relforge's tie policy, so no tool's tie rule matters."""
    out: Run = {}
    for q, scores in run.items():
        ranked = sorted_ranking(scores)
        out[q] = {d: float(len(ranked) - r) for r, (d, _) in enumerate(ranked)}
    return out


def evaluate_run(qrels: Qrels, run: Run, measures: Sequence[str] = ("nDCG@10",)) -> dict[str, float]:
    """Mean of ir_measures measures over the qrels' queries (a query missing from the run scores 0)."""
    import ir_measures

    ms = [ir_measures.parse_measure(m) for m in measures]
    agg = ir_measures.calc_aggregate(ms, qrels, _ranked(run))
    return {str(m): _f(agg.get(m, 0.0)) for m in ms}


def system_agreement(
    human: Qrels, llm_qrels: Qrels, runs: Mapping[str, Run], measure: str = "nDCG@10"
) -> dict[str, Any]:
    """Kendall tau between the orderings of runs scored with human vs LLM qrels.

    Args:
        human: human qrels.
        llm_qrels: the judge's qrels.
        runs: run name -> run (at least 2).
        measure: ir_measures measure string.

    Returns:
        ``{"measure", "runs": {name: {"human", "llm"}}, "kendall_tau", "n_runs"}``.
    """
    from scipy.stats import kendalltau

    scores = {
        name: {
            "human": evaluate_run(human, r, [measure])[measure],
            "llm": evaluate_run(llm_qrels, r, [measure])[measure],
        }
        for name, r in runs.items()
    }
    hs = [v["human"] for v in scores.values()]
    ls = [v["llm"] for v in scores.values()]
    tau = (
        _f(kendalltau(hs, ls).statistic) if len(runs) >= 2 and len(set(hs)) > 1 and len(set(ls)) > 1 else None
    )
    return {"measure": measure, "runs": scores, "kendall_tau": tau, "n_runs": len(runs)}


def agreement(
    human: Qrels,
    judgments: Sequence[Judgment],
    *,
    values: Sequence[int] | None = None,
    runs: Mapping[str, Run] | None = None,
    seed: int = 0,
    measure: str = "nDCG@10",
) -> dict[str, Any]:
    """The agreement report of a judge against human grades.

    Args:
        human: human qrels.
        judgments: the judge's judgments.
        values: the grade values in scale order (default: union of human and LLM grades, and 0..3).
        runs: optional runs (name -> run) for system-ranking agreement.
        seed: seed of the class-balanced subsample.
        measure: ir_measures measure of reranking each query's judged pool by expected grade, and of
            the system ranking.

    Returns:
        ``{"counts", "all", "balanced", "rerank", "system"?}``; see :func:`pair_metrics`.
    """
    jmap = {(j.qid, j.docid): j for j in judgments}
    hpairs = {(q, d): g for q, docs in human.items() for d, g in docs.items()}
    both = [k for k in hpairs if k in jmap]
    scored = [k for k in both if jmap[k].grade is not None]
    if values is None:
        values = sorted({*hpairs.values(), *(j.grade for j in judgments if j.grade is not None), 0, 1, 2, 3})
    h = [hpairs[k] for k in scored]
    p = [int(jmap[k].grade) for k in scored]
    s = [jmap[k].expected if jmap[k].expected is not None else float(jmap[k].grade) for k in scored]
    qids = [k[0] for k in scored]
    counts = {
        "human_pairs": len(hpairs),
        "llm_pairs": len(jmap),
        "matched": len(both),
        "scored": len(scored),
        "unlabelled": len(both) - len(scored),
        "human_only": len(hpairs) - len(both),
        "llm_only": len(jmap) - len(both),
        "human_grades": {str(v): sum(1 for x in h if x == v) for v in values},
        "llm_grades": {str(v): sum(1 for x in p if x == v) for v in values},
    }
    report: dict[str, Any] = {
        "counts": counts,
        "values": list(values),
        "all": pair_metrics(h, p, s, qids, values),
    }
    if scored:
        bi = balanced_indices(h, seed=seed)
        report["balanced"] = {
            "seed": seed,
            "per_class": len(bi) // max(1, len(set(h))),
            **pair_metrics(
                [h[i] for i in bi], [p[i] for i in bi], [s[i] for i in bi], [qids[i] for i in bi], values
            ),
        }
        matched = [jmap[k] for k in scored]
        hq = {q: docs for q, docs in human.items() if any(j.qid == q for j in matched)}
        report["rerank"] = evaluate_run(hq, rerank_scores(matched), [measure])
    if runs:
        report["system"] = system_agreement(human, judgments_to_qrels(judgments), runs, measure=measure)
    return report


# --------------------------------------------------------------------------- presentation


def render_agreement(report: dict[str, Any], console: Any = None) -> None:
    """Print the report as rich tables: headline numbers, per-class scores, confusion matrix."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    c = report["counts"]
    console.print(
        f"pairs: {c['matched']} matched of {c['human_pairs']} human / {c['llm_pairs']} LLM; "
        f"scored {c['scored']}, unlabelled {c['unlabelled']}"
    )
    t = Table(title="agreement (LLM vs human)")
    t.add_column("metric")
    t.add_column("all", justify="right")
    t.add_column("balanced", justify="right")
    bal = report.get("balanced", {})
    for key in (
        "n",
        "kendall_tau_b",
        "per_query_tau_b",
        "cohen_kappa",
        "quadratic_kappa",
        "krippendorff_alpha",
        "accuracy",
        "macro_f1",
    ):
        t.add_row(key, _cell(report["all"].get(key)), _cell(bal.get(key)))
    for m, v in report.get("rerank", {}).items():
        t.add_row(f"rerank {m}", _cell(v), "")
    console.print(t)
    pc = Table(title="per class (all pairs)")
    for col in ("grade", "precision", "recall", "F1", "support", "predicted"):
        pc.add_column(col, justify="right")
    for g, r in report["all"].get("per_class", {}).items():
        pc.add_row(
            g,
            _cell(r["precision"]),
            _cell(r["recall"]),
            _cell(r["f1"]),
            str(r["support"]),
            str(r["predicted"]),
        )
    console.print(pc)
    if "confusion" in report["all"]:
        cm = Table(title="confusion (rows human, columns LLM)")
        cm.add_column("human \\ LLM")
        for v in report["values"]:
            cm.add_column(str(v), justify="right")
        for v, row in zip(report["values"], report["all"]["confusion"], strict=True):
            cm.add_row(str(v), *[str(x) for x in row])
        console.print(cm)
    if "system" in report:
        s = report["system"]
        st = Table(title=f"system ranking ({s['measure']}); Kendall tau = {_cell(s['kendall_tau'])}")
        for col in ("run", "human qrels", "LLM qrels"):
            st.add_column(col)
        for name, v in s["runs"].items():
            st.add_row(name, _cell(v["human"]), _cell(v["llm"]))
        console.print(st)


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def plot_confusion(
    confusion: Sequence[Sequence[int]],
    labels: Sequence[Any],
    path: str | Path,
    title: str = "LLM judge vs human",
) -> Path:
    """Save a confusion-matrix heatmap (rows human, columns LLM; counts in the cells) as PNG, atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from relforge.data.io import atomic_write

    cm = np.asarray(confusion)
    fig, ax = plt.subplots(figsize=(1.2 * len(labels) + 2, 1.1 * len(labels) + 1.5))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(labels)), [str(x) for x in labels])
    ax.set_yticks(range(len(labels)), [str(x) for x in labels])
    ax.set_xlabel("LLM grade")
    ax.set_ylabel("human grade")
    ax.set_title(title)
    vmax = cm.max() if cm.size else 0
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(
                j,
                i,
                str(cm[i, j]),
                ha="center",
                va="center",
                color="white" if cm[i, j] > vmax / 2 else "black",
            )
    fig.tight_layout()
    path = Path(path)
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=120)
    plt.close(fig)
    return path
