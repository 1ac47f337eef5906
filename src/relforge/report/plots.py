"""matplotlib figures for the report, returned as base64 PNG strings (Agg canvas, no pyplot state)."""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence

PALETTE = ["#3b6ea5", "#e08a3c", "#4f9d69", "#c0504d", "#8064a2", "#4bacc6", "#9b9b9b", "#d4a017"]
DPI = 110


def _figure(width: float, height: float):
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _style(ax) -> None:
    ax.spines["top"].set_visible(False)
    ax.spines["right"].set_visible(False)
    ax.grid(axis="y", color="#e5e5e5", linewidth=0.8)
    ax.set_axisbelow(True)
    ax.tick_params(labelsize=9)


def _int_locator():
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(integer=True)


def to_base64(fig) -> str:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=DPI)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def metrics_bars(values: Mapping[str, Mapping[str, float]], measures: Sequence[str]) -> str:
    """Grouped bars: one group per system, one bar per measure (``values[run][measure]``)."""
    runs = list(values)
    fig = _figure(max(5.5, 1.1 * len(runs) + 2.5), 3.4)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / max(len(measures), 1)
    for j, m in enumerate(measures):
        xs = [i + (j - (len(measures) - 1) / 2) * width for i in range(len(runs))]
        ys = [values[r][m] for r in runs]
        bars = ax.bar(xs, ys, width=width * 0.95, label=m, color=PALETTE[j % len(PALETTE)])
        ax.bar_label(bars, labels=[f"{y:.3f}" for y in ys], fontsize=7.5, padding=2)
    ax.set_xticks(range(len(runs)))
    ax.set_xticklabels(
        runs,
        rotation=15 if max(len(r) for r in runs) > 10 else 0,
        ha="right" if max(len(r) for r in runs) > 10 else "center",
    )
    top = max([values[r][m] for r in runs for m in measures] + [0.01])
    ax.set_ylim(0, top * 1.12)  # room for the value labels
    if top <= 1:
        ax.set_yticks([t for t in (0, 0.2, 0.4, 0.6, 0.8, 1.0) if t <= top * 1.12])
    # legend above the axes: never on top of a bar
    ax.legend(fontsize=8, frameon=False, ncols=len(measures), loc="lower left", bbox_to_anchor=(0, 1.0))
    _style(ax)
    return to_base64(fig)


def label_distribution(counts: Mapping[str, int], title: str = "") -> str:
    """Bars of judgment counts per grade (``"unparsed"`` drawn in grey)."""
    labels = list(counts)
    fig = _figure(5.0, 2.9)
    ax = fig.add_subplot(1, 1, 1)
    colors = ["#9b9b9b" if lab == "unparsed" else PALETTE[0] for lab in labels]
    bars = ax.bar(labels, [counts[k] for k in labels], color=colors, width=0.6)
    total = sum(counts.values()) or 1
    ax.bar_label(
        bars, labels=[f"{counts[k]} ({100 * counts[k] / total:.0f}%)" for k in labels], fontsize=8, padding=2
    )
    ax.set_xlabel("grade", fontsize=9)
    ax.set_ylabel("judgments", fontsize=9)
    ax.yaxis.set_major_locator(_int_locator())
    ax.set_ylim(0, max(list(counts.values()) + [1]) * 1.18)
    if title:
        ax.set_title(title, fontsize=10)
    _style(ax)
    return to_base64(fig)


def confusion_matrix(matrix: Sequence[Sequence[float]], labels: Sequence[str], title: str = "") -> str:
    """Heatmap with counts; rows = human label, columns = predicted label."""
    import numpy as np

    m = np.asarray(matrix, dtype=float)
    fig = _figure(3.6, 3.2)
    ax = fig.add_subplot(1, 1, 1)
    row_sums = m.sum(axis=1, keepdims=True)
    share = np.divide(m, row_sums, out=np.zeros_like(m), where=row_sums > 0)
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(
                j,
                i,
                f"{m[i, j]:g}",
                ha="center",
                va="center",
                fontsize=9,
                color="white" if share[i, j] > 0.6 else "#222",
            )
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels)
    ax.set_yticks(range(len(labels)))
    ax.set_yticklabels(labels)
    ax.set_xlabel("predicted", fontsize=9)
    ax.set_ylabel("human", fontsize=9)
    ax.tick_params(labelsize=9)
    if title:
        ax.set_title(title, fontsize=10)
    return to_base64(fig)


def finetune_curves(rows: Sequence[Mapping], labels: Sequence[str]) -> str:
    """Left: agreement metrics per epoch; right: per-class F1 per epoch."""
    epochs = [r["epoch"] for r in rows]
    fig = _figure(8.6, 3.2)
    left = fig.add_subplot(1, 2, 1)
    for j, key in enumerate(("tau_b", "weighted_kappa", "accuracy")):
        ys = [r.get(key) for r in rows]
        if any(y is not None for y in ys):
            left.plot(
                epochs,
                [float("nan") if y is None else y for y in ys],
                marker="o",
                ms=4,
                label=key,
                color=PALETTE[j],
            )
    left.set_xlabel("epoch", fontsize=9)
    left.axhline(0, color="#999999", linewidth=0.8)
    left.set_title("agreement with held-out human labels", fontsize=10)
    left.legend(fontsize=8, frameon=False)
    _style(left)
    right = fig.add_subplot(1, 2, 2)
    for j, lab in enumerate(labels):
        ys = [((r.get("per_class") or {}).get(lab) or {}).get("f1") for r in rows]
        right.plot(
            epochs,
            [float("nan") if y is None else y for y in ys],
            marker="o",
            ms=4,
            label=f"grade {lab}",
            color=PALETTE[j % len(PALETTE)],
        )
    right.set_xlabel("epoch", fontsize=9)
    right.set_title("F1 per class", fontsize=10)
    right.set_ylim(0, 1.02)
    if labels:
        right.legend(fontsize=8, frameon=False)
    _style(right)
    for ax in (left, right):
        if all(float(e).is_integer() for e in epochs):
            ax.set_xticks(epochs)
            ax.set_xticklabels([f"{e:g}\nzero-shot" if e == 0 else f"{e:g}" for e in epochs])
    return to_base64(fig)


def bucket_bars(buckets: Mapping[str, float]) -> str:
    """Horizontal bars of the dataset's bucket counts."""
    names = list(buckets)
    fig = _figure(5.0, max(1.6, 0.42 * len(names) + 0.8))
    ax = fig.add_subplot(1, 1, 1)
    bars = ax.barh(names[::-1], [buckets[n] for n in names[::-1]], color=PALETTE[2], height=0.6)
    ax.bar_label(bars, labels=[f"{buckets[n]:g}" for n in names[::-1]], fontsize=8, padding=3)
    ax.set_xlim(0, max(list(buckets.values()) + [1]) * 1.15)
    ax.xaxis.set_visible(False)  # every bar carries its count
    for side in ("top", "right", "bottom"):
        ax.spines[side].set_visible(False)
    ax.tick_params(labelsize=9)
    return to_base64(fig)


def ablation_curve(
    series: Mapping[str, Sequence[Mapping]],
    measure: str,
    reference: Mapping[str, float] | None = None,
    xlabel: str = "training entries",
) -> str:
    """``measure`` vs training size, one line per series (e.g. per training variant), log2 x axis when
    the sizes span 4x or more; reference systems as dashed horizontal lines."""
    fig = _figure(7.8, 3.4)
    ax = fig.add_subplot(1, 1, 1)
    all_sizes: set[float] = set()
    last = {name: rows[-1][measure] for name, rows in series.items() if rows}
    for j, (name, rows) in enumerate(series.items()):
        sizes = [r["size"] for r in rows]
        ys = [r[measure] for r in rows]
        all_sizes.update(sizes)
        color = PALETTE[j % len(PALETTE)]
        ax.plot(sizes, ys, marker="o", color=color, label=name)
        # the best series gets its labels above the points, the others below (numbers never collide)
        dy = 6 if last.get(name) == max(last.values()) else -13
        for x, y in zip(sizes, ys, strict=True):
            ax.annotate(
                f"{y:.3f}",
                (x, y),
                textcoords="offset points",
                xytext=(0, dy),
                ha="center",
                fontsize=8,
                color=color,
            )
    offset = len(series)
    for j, (name, val) in enumerate((reference or {}).items()):
        ax.axhline(
            val,
            linestyle="--",
            linewidth=1,
            color=PALETTE[(j + offset) % len(PALETTE)],
            label=f"{name} ({val:.3f})",
        )
    xs = sorted(all_sizes)
    if len(xs) > 1 and xs[0] > 0 and xs[-1] / xs[0] >= 4:
        ax.set_xscale("log", base=2)
    ax.set_xticks(xs)
    ax.set_xticklabels([f"{x:g}" for x in xs])
    ax.minorticks_off()
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylabel(measure, fontsize=9)
    ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.margins(y=0.12)
    _style(ax)
    return to_base64(fig)
