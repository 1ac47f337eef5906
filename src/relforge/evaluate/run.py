"""Evaluation's one entry point: ``relforge evaluate`` and the pipeline's ``evaluate`` stage call :func:`run`.

:func:`run` scores TREC run files against qrels (:func:`relforge.evaluate.evaluate`), writes the
result (``metrics.json``: :class:`~relforge.evaluate.EvalResult`, ``metrics.csv``, per-query CSV) and
returns an :class:`EvalSummary`. :func:`comparison_pairs` names the comparisons a relforge comparison
table answers beyond "each system vs the baseline".
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from pydantic import BaseModel, Field

from relforge.artifacts import VARIANTS
from relforge.evaluate.config import EvalConfig


class EvalInputs(BaseModel):
    """What :func:`run` scores."""

    #: qrels file (BEIR TSV or TREC)
    qrels: Path
    #: run name -> TREC run file, in table order (the first is the baseline unless ``cfg.baseline``)
    runs: dict[str, Path]
    #: extra paired comparisons ``(run, versus)``
    pairs: list[tuple[str, str]] = Field(default_factory=list)


class EvalOutputs(BaseModel):
    """The files :func:`run` writes (None: not written)."""

    metrics_json: Path | None = None
    metrics_csv: Path | None = None
    per_query_csv: Path | None = None

    @classmethod
    def folder(cls, folder: Path) -> EvalOutputs:
        """``metrics.json`` and ``metrics.csv`` in ``folder``."""
        return cls(metrics_json=Path(folder) / "metrics.json", metrics_csv=Path(folder) / "metrics.csv")

    def files(self) -> list[Path]:
        return [p for p in (self.metrics_json, self.metrics_csv, self.per_query_csv) if p is not None]


class EvalSummary(BaseModel):
    """Every run's mean of the first measure (4 digits)."""

    measure: str
    #: run name -> mean of ``measure``, in table order
    scores: dict[str, float]

    def counts(self) -> dict[str, float]:
        """``{"<run>:<measure>": mean}``: the pipeline's ``evaluate`` stage record."""
        return {f"{name}:{self.measure}": v for name, v in self.scores.items()}


def comparison_pairs(runs: Iterable[str]) -> list[tuple[str, str]]:
    """The questions the comparison answers: what did the judge's labels buy over plain mined
    negatives (judged/soft vs plain), and did training beat the untrained backbone?"""
    names = set(runs)
    pairs = [(v, "plain") for v in ("judged", "soft") if {v, "plain"} <= names]
    pairs += [(v, "backbone") for v in VARIANTS if {v, "backbone"} <= names]
    return pairs


def summarize(result) -> EvalSummary:
    """The :class:`EvalSummary` of an :class:`~relforge.evaluate.EvalResult`."""
    first = result.measures[0]
    return EvalSummary(
        measure=first, scores={name: round(result.aggregates[name][first], 4) for name in result.runs}
    )


def write_result(result, out: EvalOutputs) -> None:
    """Write ``result`` to the files ``out`` names (each atomically)."""
    for path, write in (
        (out.metrics_json, result.to_json),
        (out.metrics_csv, result.to_csv),
        (out.per_query_csv, result.per_query_csv),
    ):
        if path is not None:
            write(path)


def run(
    cfg: EvalConfig,
    inputs: EvalInputs,
    out: Path | EvalOutputs,
    *,
    show: Callable[..., None] | None = None,
) -> EvalSummary:
    """Score ``inputs.runs`` against ``inputs.qrels`` with ``cfg`` and write the result to ``out`` (a folder:
    ``metrics.json`` + ``metrics.csv``, or :class:`EvalOutputs`).

    ``show(result)`` is called with the :class:`~relforge.evaluate.EvalResult` before anything is written
    (the CLI prints its tables).
    """
    from relforge.evaluate.core import evaluate

    outputs = out if isinstance(out, EvalOutputs) else EvalOutputs.folder(out)
    result = evaluate(inputs.qrels, dict(inputs.runs), pairs=list(inputs.pairs), **cfg.model_dump())
    if show is not None:
        show(result)
    write_result(result, outputs)
    return summarize(result)
