"""Agreement of the judge's probabilities with human grades, the per-epoch plot and the prediction files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from relforge.judge.finetune.encode import Encoded


def agreement_metrics(
    human: list[int], probs: list[list[float]], values: list[int], qids: list[str] | None = None
) -> dict[str, Any]:
    """Agreement of probability judgments with human grades, computed by the judge's own
    :func:`relforge.judge.agreement.pair_metrics`: the grade is the argmax (as ``judge_pairs`` does
    without thresholds), Kendall τ_b uses the expected grade ``sum(value * p)``.

    Args:
        human: human grades.
        probs: per pair, the probabilities of the scale's grades (scale order).
        values: grade values in scale order.
        qids: query of each pair (per-query τ_b).

    Returns:
        The :func:`pair_metrics` dict (``kendall_tau_b``, ``quadratic_kappa``, ``accuracy``, ``per_class``...).
    """
    from relforge.judge.agreement import pair_metrics

    expected = [sum(v * p for v, p in zip(values, row, strict=True)) for row in probs]
    pred = [values[max(range(len(row)), key=row.__getitem__)] for row in probs]
    return pair_metrics(human, pred, expected, qids or ["q"] * len(human), values)


def tau(m: dict[str, Any]) -> float:
    """The epoch-choice score: validation τ_b (-2 when undefined, so any defined τ_b wins)."""
    t = m.get("kendall_tau_b")
    return -2.0 if t is None else float(t)


def plot_metrics(rows: list[dict[str, Any]], path: Path, labels: list[str]) -> Path:
    """One panel per grade (precision, recall, F1 per epoch) plus an overall panel (τ_b, κ, accuracy)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in rows]
    fig, axes = plt.subplots(1, len(labels) + 1, figsize=(3.2 * (len(labels) + 1), 3.2), sharey=True)
    for ax, lab in zip(axes, labels, strict=False):
        for key, style in (("precision", "o-"), ("recall", "s-"), ("f1", "^-")):
            ax.plot(epochs, [r["per_class"][lab][key] or 0.0 for r in rows], style, label=key)
        ax.set_title(f"grade {lab}")
        ax.set_xlabel("epoch")
        ax.set_ylim(-0.05, 1.05)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    ax = axes[-1]
    for key, style in (("kendall_tau_b", "o-"), ("quadratic_kappa", "s-"), ("accuracy", "^-")):
        ax.plot(
            epochs, [r.get(key) if r.get(key) is not None else float("nan") for r in rows], style, label=key
        )
    ax.set_title("overall")
    ax.set_xlabel("epoch")
    ax.set_ylim(-1.05, 1.05)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.suptitle("judge agreement with human grades on validation queries (epoch 0 = zero-shot)", fontsize=9)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path


def write_val_predictions(
    path: Path,
    enc_val: list[Encoded],
    preds: dict[int, list[list[float]]],
    best_epoch: int,
    labels: list[str],
) -> None:
    """Per validation pair: human grade and label probabilities zero-shot and of the kept epoch."""

    def probs(epoch: int, i: int) -> dict[str, float] | None:
        if epoch not in preds:
            return None
        return dict(zip(labels, [round(p, 5) for p in preds[epoch][i]], strict=True))

    write_jsonl_atomic(
        path,
        [
            {
                "qid": x.ex.qid,
                "docid": x.ex.docid,
                "human": x.ex.grade,
                "zero_shot": probs(0, i),
                "tuned": probs(best_epoch, i),
            }
            for i, x in enumerate(enc_val)
        ],
    )


def write_test_predictions(path: Path, enc_test: list[Encoded], probs: list[list[float]]) -> None:
    write_jsonl_atomic(
        path,
        [
            {
                "qid": x.ex.qid,
                "docid": x.ex.docid,
                "human": x.ex.grade,
                "probs": [round(p, 6) for p in row],
            }
            for x, row in zip(enc_test, probs, strict=True)
        ],
    )


def public(m: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if m is None else {k: v for k, v in m.items() if not k.startswith("_")}


def write_jsonl_atomic(path: Path, rows: list[dict[str, Any]]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    tmp.replace(path)
