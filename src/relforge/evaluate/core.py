"""``evaluate()``: runs x measures with ir_measures, per-query values, paired tests vs a baseline."""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from relforge.errors import DataError, UsageError
from relforge.evaluate.config import (
    DEFAULT_ALPHA,
    DEFAULT_MEASURES,
    DEFAULT_PERMUTATION_ROUNDS,
    DEFAULT_SEED,
)
from relforge.evaluate.measures import parse_measures
from relforge.evaluate.significance import PairedTest, paired_tests
from relforge.types import Qrels, Run, sorted_ranking

TIE_POLICY = "score desc, then doc id asc (relforge.types.sorted_ranking)"
T_MARK = "†"  # paired t-test p < alpha
P_MARK = "‡"  # randomisation test p < alpha


def _nan_to_none(x: float | None) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x


def _none_to_nan(x: float | None) -> float:
    return float("nan") if x is None else float(x)


@dataclass
class EvalResult:
    """Everything :func:`evaluate` measured.

    Attributes:
        runs: run names, in table order (the baseline first when it was the first run).
        measures: measure labels, in column order (keys of ``aggregates[run]``).
        canonical: label -> canonical ir_measures name (e.g. ``"MRR@10" -> "RR@10"``).
        providers: label -> ir_measures provider that computed it.
        aggregates: ``aggregates[run][measure]`` = mean over ``queries``.
        per_query: ``per_query[run][measure][qid]`` = value (every query in ``queries`` is present).
        baseline: the run the others are tested against (None with a single run).
        significance: ``significance[run][measure]`` = :class:`PairedTest` vs the baseline (non-baseline runs).
        pairwise: extra comparisons asked for with ``pairs=``: ``{"run", "versus", "tests": {measure: PairedTest}}``.
        queries: the evaluated query ids.
        skipped_queries: qrels queries with no judgment > 0, dropped (``empty_queries="skip"``).
        missing_queries: per run, evaluated queries the run does not contain (they score 0).
        extra_queries: per run, how many of its queries have no qrels (ignored).
        warnings: human-readable problems worth showing (e.g. a run sharing no query with the qrels).
        settings: rel, alpha, permutation rounds, seed, tie policy, library versions.
    """

    runs: list[str]
    measures: list[str]
    canonical: dict[str, str]
    providers: dict[str, str]
    aggregates: dict[str, dict[str, float]]
    per_query: dict[str, dict[str, dict[str, float]]]
    baseline: str | None
    significance: dict[str, dict[str, PairedTest]]
    queries: list[str]
    skipped_queries: list[str] = field(default_factory=list)
    missing_queries: dict[str, list[str]] = field(default_factory=dict)
    extra_queries: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    pairwise: list[dict[str, Any]] = field(default_factory=list)

    # ------------------------------------------------------------------ views

    @property
    def alpha(self) -> float:
        return float(self.settings.get("alpha", DEFAULT_ALPHA))

    def marks(self, run: str, measure: str) -> str:
        """Significance marks of ``run`` on ``measure``: † t-test p < alpha, ‡ randomisation p < alpha."""
        test = self.significance.get(run, {}).get(measure)
        if test is None:
            return ""
        out = ""
        if not math.isnan(test.ttest_p) and test.ttest_p < self.alpha:
            out += T_MARK
        if not math.isnan(test.perm_p) and test.perm_p < self.alpha:
            out += P_MARK
        return out

    def legend(self) -> str:
        if self.baseline is None:
            return "single run: no significance tests"
        return (
            f"{T_MARK} paired t-test p < {self.alpha:g}, {P_MARK} paired randomisation test p < {self.alpha:g} "
            f"(two-sided, paired over {len(self.queries)} queries, vs baseline {self.baseline!r})"
        )

    # ------------------------------------------------------------------ serialisation

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["significance"] = {
            run: {m: {k: _nan_to_none(v) for k, v in asdict(t).items()} for m, t in tests.items()}
            for run, tests in self.significance.items()
        }
        d["pairwise"] = [
            {
                "run": c["run"],
                "versus": c["versus"],
                "tests": {
                    m: {k: _nan_to_none(v) for k, v in asdict(t).items()} for m, t in c["tests"].items()
                },
            }
            for c in self.pairwise
        ]
        d["format"] = "relforge.eval/1"
        return d

    def to_json(self, path: str | os.PathLike | None = None, *, indent: int | None = 1) -> str:
        """Serialise (NaN p-values become ``null``); write atomically to ``path`` when given."""
        text = json.dumps(self.to_dict(), indent=indent, ensure_ascii=False, allow_nan=False)
        if path is not None:
            from relforge.data import atomic_write

            with atomic_write(path) as fh:
                fh.write(text + "\n")
        return text

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EvalResult:
        d = dict(d)
        d.pop("format", None)

        def test(t: dict) -> PairedTest:
            return PairedTest(**{k: (_none_to_nan(v) if k != "n" else int(v)) for k, v in t.items()})

        d["significance"] = {
            run: {m: test(t) for m, t in tests.items()} for run, tests in d.get("significance", {}).items()
        }
        d["pairwise"] = [
            {"run": c["run"], "versus": c["versus"], "tests": {m: test(t) for m, t in c["tests"].items()}}
            for c in d.get("pairwise", [])
        ]
        return cls(**d)

    @classmethod
    def from_json(cls, text_or_path: str | os.PathLike) -> EvalResult:
        """Load from a JSON string or a file path written by :meth:`to_json`."""
        if isinstance(text_or_path, os.PathLike) or (
            isinstance(text_or_path, str) and not text_or_path.lstrip().startswith("{")
        ):
            text = Path(text_or_path).read_text(encoding="utf-8")
        else:
            text = str(text_or_path)
        return cls.from_dict(json.loads(text))

    def csv_rows(self) -> list[dict[str, Any]]:
        """One row per run: ``run, n_queries, <m>, <m> ttest_p, <m> rand_p, ...`` (p empty for the baseline)."""
        rows = []
        for run in self.runs:
            row: dict[str, Any] = {"run": run, "n_queries": len(self.queries)}
            for m in self.measures:
                row[m] = self.aggregates[run][m]
                test = self.significance.get(run, {}).get(m)
                row[f"{m} ttest_p"] = "" if test is None or math.isnan(test.ttest_p) else test.ttest_p
                row[f"{m} rand_p"] = "" if test is None or math.isnan(test.perm_p) else test.perm_p
            rows.append(row)
        return rows

    def to_csv(self, path: str | os.PathLike | None = None) -> str:
        """Aggregates and p-values, one row per run (see :meth:`csv_rows`); written atomically to ``path``."""
        rows = self.csv_rows()
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["run"], lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: repr(v) if isinstance(v, float) else v for k, v in row.items()})
        return _maybe_write(buf.getvalue(), path)

    def per_query_csv(self, path: str | os.PathLike | None = None) -> str:
        """Per-query values: columns ``run, query_id, <measures...>``; written atomically to ``path``."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["run", "query_id", *self.measures])
        for run in self.runs:
            for qid in self.queries:
                writer.writerow([run, qid, *(repr(self.per_query[run][m][qid]) for m in self.measures)])
        return _maybe_write(buf.getvalue(), path)

    def to_table(self, *, title: str | None = "Evaluation"):
        """A rich Table: one row per run (means + marks), and below each non-baseline run two dim rows
        with the p-values of the paired t-test and the randomisation test."""
        from rich.table import Table

        table = Table(title=title, caption=self.legend(), caption_justify="left")
        table.add_column("run", style="bold", no_wrap=True)
        for m in self.measures:
            table.add_column(m, justify="right", no_wrap=True, min_width=len(m) + 2)
        for run in self.runs:
            label = f"{run} (baseline)" if run == self.baseline else run
            table.add_row(
                label, *(f"{self.aggregates[run][m]:.4f}{self.marks(run, m):<2}" for m in self.measures)
            )
            tests = self.significance.get(run)
            if tests:
                table.add_row(
                    "  p t-test", *(_fmt_p(tests[m].ttest_p) + "  " for m in self.measures), style="dim"
                )
                table.add_row(
                    "  p rand.", *(_fmt_p(tests[m].perm_p) + "  " for m in self.measures), style="dim"
                )
        return table

    def pairwise_table(self):
        """A rich Table of the extra ``pairs=`` comparisons (mean difference, then the two p-values)."""
        from rich.table import Table

        table = Table(title="Pairwise comparisons (mean difference)")
        table.add_column("comparison", style="bold", no_wrap=True)
        for m in self.measures:
            table.add_column(m, justify="right", no_wrap=True, min_width=len(m) + 2)
        for c in self.pairwise:
            tests = c["tests"]
            marks = {
                m: (T_MARK if tests[m].ttest_p < self.alpha else "")
                + (P_MARK if tests[m].perm_p < self.alpha else "")
                for m in self.measures
            }
            table.add_row(
                f"{c['run']} vs {c['versus']}",
                *(f"{tests[m].delta:+.4f}{marks[m]:<2}" for m in self.measures),
            )
            table.add_row(
                "  p t-test", *(_fmt_p(tests[m].ttest_p) + "  " for m in self.measures), style="dim"
            )
            table.add_row("  p rand.", *(_fmt_p(tests[m].perm_p) + "  " for m in self.measures), style="dim")
        return table

    def table_width(self) -> int:
        """Characters the table needs without squeezing (for consoles narrower than that)."""
        from rich.console import Console
        from rich.measure import Measurement

        console = Console(width=10_000)
        table = self.to_table()
        table.caption = None
        width = Measurement.get(console, console.options, table).maximum
        if self.pairwise:
            width = max(width, Measurement.get(console, console.options, self.pairwise_table()).maximum)
        return width


def _fmt_p(p: float) -> str:
    if math.isnan(p):
        return "n/a"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _maybe_write(text: str, path) -> str:
    if path is not None:
        from relforge.data import atomic_write

        with atomic_write(path) as fh:
            fh.write(text)
    return text


# ---------------------------------------------------------------------------- helpers


def strict_scores(scores: dict[str, float]) -> dict[str, float]:
    """Re-score one query's ranking as n, n-1, ..., 1 following relforge's tie policy.

    trec_eval (and pytrec_eval) orders tied scores by doc id *descending*; ranx and others have their
    own rules. Handing ir_measures strictly decreasing scores makes every provider see exactly the order
    of :func:`relforge.types.sorted_ranking` (score desc, then doc id asc).
    """
    ranked = sorted_ranking(scores)
    n = len(ranked)
    return {docid: float(n - i) for i, (docid, _) in enumerate(ranked)}


def _load_qrels(qrels) -> Qrels:
    if isinstance(qrels, (str, os.PathLike)):
        from relforge.data import read_qrels

        return read_qrels(qrels)
    if not isinstance(qrels, dict):
        raise UsageError(
            f"qrels must be a dict {{qid: {{docid: grade}}}} or a file path, got {type(qrels).__name__}"
        )
    return qrels


def _load_run(name: str, run) -> Run:
    if isinstance(run, (str, os.PathLike)):
        from relforge.data import read_run

        run = read_run(run)
    if not isinstance(run, dict):
        raise UsageError(
            f"run {name!r} must be a dict {{qid: {{docid: score}}}} or a file path, got {type(run).__name__}"
        )
    for qid, docs in run.items():
        for docid, score in docs.items():
            if isinstance(score, float) and math.isnan(score):
                raise DataError(
                    f"run {name!r}, query {qid!r}, document {docid!r}: score is NaN; "
                    "fix the scorer or drop the document"
                )
    return run


# ---------------------------------------------------------------------------- main entry


def _check_args(runs, measures, rel, baseline, empty_queries, pairs):
    """Parse the measures and validate runs, ``empty_queries``, baseline and pairs."""
    specs = parse_measures(measures, rel=rel)
    if not runs:
        raise UsageError("no runs to evaluate; pass at least one run (--run RUN)")
    if empty_queries not in ("skip", "zero"):
        raise UsageError(f"empty_queries must be 'skip' or 'zero', got {empty_queries!r}")
    names = [str(n) for n in runs]
    if baseline is None:
        baseline = names[0]
    elif baseline not in runs:
        raise UsageError(
            f"baseline {baseline!r} is not one of the runs {names}; set --baseline to one of them"
        )
    pairs = [tuple(p) for p in (pairs or [])]
    for pair in pairs:
        if len(pair) != 2 or pair[0] == pair[1] or any(p not in runs for p in pair):
            raise UsageError(
                f"pair {pair!r} must name two different runs among {names} (setting: --pair A:B)"
            )
    return specs, names, baseline, pairs


def _eval_qrels(qrels: Qrels, empty_queries: str) -> tuple[Qrels, list[str]]:
    """The qrels that are evaluated, and the queries skipped for having no grade > 0."""
    skipped = [q for q, docs in qrels.items() if not any(g > 0 for g in docs.values())]
    if empty_queries == "skip":
        eval_qrels = {q: docs for q, docs in qrels.items() if any(g > 0 for g in docs.values())}
    else:
        eval_qrels = {q: docs for q, docs in qrels.items() if docs}
        skipped = []
    if not eval_qrels:
        raise DataError(
            f"the qrels have no query with a relevant judgment (grade > 0) among {len(qrels)} queries; "
            "check the qrels file"
        )
    return eval_qrels, skipped


def _coverage_warning(name: str, missing: list[str], n_queries: int) -> str | None:
    """The warning for a run lacking some (or all) evaluated queries, else None."""
    if len(missing) == n_queries:
        return (
            f"run {name!r} contains none of the {n_queries} evaluated queries "
            "(check query ids); it scores 0 everywhere"
        )
    if missing:
        return f"run {name!r} lacks {len(missing)} of {n_queries} queries; they score 0"
    return None


def _measure_run(run: Run, queries: list[str], specs, evaluator):
    """Per-query values ``{measure: {qid: value}}`` (in ``queries`` order) and means of one run."""
    strict = {q: strict_scores(run[q]) for q in queries if q in run and run[q]}
    qset = set(queries)
    by_measure = {s.measure: s.name for s in specs}
    values: dict[str, dict[str, float]] = {s.name: {} for s in specs}
    aggs = {s.measure: s.measure.aggregator() for s in specs}
    for metric in evaluator.iter_calc(strict):
        if metric.query_id not in qset:
            continue
        values[by_measure[metric.measure]][metric.query_id] = float(metric.value)
        aggs[metric.measure].add(metric.value)
    for s in specs:
        got = values[s.name]
        if len(got) != len(queries):  # internal invariant: ir_measures fills missing queries with 0
            raise RuntimeError(f"{s.name}: {len(got)} per-query values for {len(queries)} queries")
        values[s.name] = {q: got[q] for q in queries}
    return strict, values, {s.name: float(aggs[s.measure].result()) for s in specs}


def _measure_runs(loaded: dict[str, Run], qrels: Qrels, queries: list[str], specs, evaluator):
    """EvalResult's ``aggregates, per_query, missing_queries, extra_queries, warnings`` of all runs."""
    aggregates: dict[str, dict[str, float]] = {}
    per_query: dict[str, dict[str, dict[str, float]]] = {}
    missing: dict[str, list[str]] = {}
    extra: dict[str, int] = {}
    warnings: list[str] = []
    for name, run in loaded.items():
        strict, per_query[name], aggregates[name] = _measure_run(run, queries, specs, evaluator)
        missing[name] = [q for q in queries if q not in strict]
        extra[name] = sum(1 for q in run if q not in qrels)
        warning = _coverage_warning(name, missing[name], len(queries))
        if warning is not None:
            warnings.append(warning)
    return {
        "aggregates": aggregates,
        "per_query": per_query,
        "missing_queries": missing,
        "extra_queries": extra,
        "warnings": warnings,
    }


def _tests(per_query, a: str, b: str, queries: list[str], specs, rounds: int, seed: int):
    """``{measure: PairedTest}`` of run ``a`` against run ``b``."""
    return {
        s.name: paired_tests(
            [per_query[a][s.name][q] for q in queries],
            [per_query[b][s.name][q] for q in queries],
            rounds=rounds,
            seed=seed,
        )
        for s in specs
    }


def _significance(per_query, names: list[str], baseline: str, queries, specs, rounds: int, seed: int):
    """Each non-baseline run vs the baseline, and the baseline (None with a single run)."""
    significance: dict[str, dict[str, PairedTest]] = {}
    if len(names) == 1:
        return significance, None
    for name in names:
        if name != baseline:
            significance[name] = _tests(per_query, name, baseline, queries, specs, rounds, seed)
    return significance, baseline


def _settings(rel, alpha, permutation_rounds, seed, empty_queries) -> dict[str, Any]:
    from importlib.metadata import version

    return {
        "rel": rel,
        "alpha": alpha,
        "permutation_rounds": permutation_rounds,
        "seed": seed,
        "empty_queries": empty_queries,
        "tie_policy": TIE_POLICY,
        "missing_query_value": 0.0,
        "ir_measures": version("ir-measures"),
        "scipy": version("scipy"),
    }


def evaluate(
    qrels: Qrels | str | os.PathLike,
    runs: dict[str, Run | str | os.PathLike],
    measures=DEFAULT_MEASURES,
    rel: int | None = None,
    baseline: str | None = None,
    *,
    alpha: float = DEFAULT_ALPHA,
    permutation_rounds: int = DEFAULT_PERMUTATION_ROUNDS,
    seed: int = DEFAULT_SEED,
    empty_queries: str = "skip",
    pairs: list[tuple[str, str]] | None = None,
) -> EvalResult:
    """Evaluate runs against qrels with ir_measures and test each run against a baseline.

    Args:
        qrels: ``{qid: {docid: grade}}`` or a qrels file (BEIR TSV or TREC, autodetected).
        runs: ``{name: run}``; a run is ``{qid: {docid: score}}`` or a TREC run file. Order = table order.
        measures: ir_measures names (list or comma-separated string), parsed once.
        rel: minimum grade counted as relevant for binary measures that do not set ``rel`` themselves
            (e.g. ``rel=2`` turns ``MRR@10`` into ``RR(rel=2)@10``); nDCG stays graded.
        baseline: run the others are tested against; default the first run.
        alpha: significance level of the marks.
        permutation_rounds: sign flips of the randomisation test.
        seed: seed of the randomisation test.
        empty_queries: ``"skip"`` (default) drops qrels queries without any grade > 0 and lists them in
            ``skipped_queries``; ``"zero"`` keeps them (they score 0, as in trec_eval).
        pairs: extra paired comparisons ``(run, versus)`` beyond "each run vs the baseline", e.g.
            ``[("reranker-judge", "reranker-plain")]``; results in ``EvalResult.pairwise``.

    Returns:
        An :class:`EvalResult`.

    Raises:
        UsageError: bad measure names, unknown baseline, no runs, bad ``empty_queries``.
        DataError: qrels with no evaluable query, NaN scores.
    """
    import ir_measures

    specs, names, baseline, pairs = _check_args(runs, measures, rel, baseline, empty_queries, pairs)
    qrels = _load_qrels(qrels)
    loaded = {name: _load_run(name, run) for name, run in runs.items()}
    eval_qrels, skipped = _eval_qrels(qrels, empty_queries)
    queries = list(eval_qrels)
    evaluator = ir_measures.evaluator([s.measure for s in specs], eval_qrels)

    measured = _measure_runs(loaded, qrels, queries, specs, evaluator)
    per_query = measured["per_query"]
    significance, baseline = _significance(
        per_query, names, baseline, queries, specs, permutation_rounds, seed
    )
    pairwise = [
        {"run": a, "versus": b, "tests": _tests(per_query, a, b, queries, specs, permutation_rounds, seed)}
        for a, b in pairs
    ]
    return EvalResult(
        runs=names,
        measures=[s.name for s in specs],
        canonical={s.name: s.canonical for s in specs},
        providers={s.name: s.provider for s in specs},
        baseline=baseline,
        significance=significance,
        queries=queries,
        skipped_queries=skipped,
        **measured,
        settings=_settings(rel, alpha, permutation_rounds, seed, empty_queries),
        pairwise=pairwise,
    )
