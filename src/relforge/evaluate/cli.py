"""CLI commands of relforge.evaluate (registered by relforge.cli)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from relforge.cli_config import config_option, set_option, stage_config
from relforge.evaluate.config import EvalConfig

_D = EvalConfig()


def _run_names(runs: list[Path], names: str | None) -> list[str]:
    from relforge.errors import UsageError

    if names:
        out = [n.strip() for n in names.split(",")]
        if len(out) != len(runs) or any(not n for n in out):
            raise UsageError(
                f"--names has {len(out)} name(s) for {len(runs)} --run file(s); give one per run"
            )
        if len(set(out)) != len(out):
            raise UsageError(f"--names must be unique, got {out}")
        return out

    def stem(p: Path) -> str:
        name = p.name
        for suffix in (".gz", ".trec", ".run", ".txt", ".tsv"):
            name = name.removesuffix(suffix)
        return name or p.name

    out = [stem(p) for p in runs]
    if len(set(out)) != len(out):
        out = [f"{p.parent.name}/{stem(p)}" for p in runs]
    if len(set(out)) != len(out):
        raise UsageError("two --run files have the same name; set --names A,B,...")
    return out


def _pairs(pair: list[str] | None, run_names: list[str]) -> list[tuple[str, str]]:
    from relforge.errors import UsageError

    pairs = []
    for p in pair or []:
        a, sep, b = p.partition(":")
        if not sep:
            raise UsageError(f"--pair {p!r}: expected two run names as A:B (names: {run_names})")
        pairs.append((a.strip(), b.strip()))
    return pairs


def _print(result, title: str) -> None:
    from rich.console import Console

    console = Console(width=max(Console().width, result.table_width()))
    console.print(result.to_table(title=title))
    if result.pairwise:
        console.print(result.pairwise_table())
    err = Console(stderr=True)
    if result.skipped_queries:
        err.print(
            f"[yellow]note:[/yellow] {len(result.skipped_queries)} qrels queries have no grade > 0 and were "
            "skipped (--empty-queries zero keeps them)"
        )
    for w in result.warnings:
        err.print(f"[yellow]warning:[/yellow] {w}")


def evaluate_cmd(
    ctx: typer.Context,
    qrels: Path = typer.Option(
        ..., "--qrels", help="Qrels file: BEIR TSV (query-id corpus-id score) or TREC."
    ),
    run: list[Path] = typer.Option(
        ..., "--run", help="TREC run file; repeat for more runs (first = baseline)."
    ),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the full result as JSON here."),
    csv_out: Optional[Path] = typer.Option(
        None, "--csv", help="Write means and p-values (one row per run) here."
    ),
    per_query: Optional[Path] = typer.Option(None, "--per-query", help="Write per-query values (CSV) here."),
    measures: str = typer.Option(
        ",".join(_D.measures),
        "--measures",
        help='Comma-separated ir_measures names, e.g. "nDCG@10,RR(rel=2)@10".',
    ),
    rel: Optional[int] = typer.Option(
        _D.rel, "--rel", help="Min grade counted relevant by P/R/RR/AP (nDCG stays graded)."
    ),
    baseline: Optional[str] = typer.Option(
        _D.baseline, "--baseline", help="Run name to test against (default: first)."
    ),
    names: Optional[str] = typer.Option(
        None, "--names", help="Comma-separated run names (default: file names)."
    ),
    pair: Optional[list[str]] = typer.Option(
        None, "--pair", help="Extra paired comparison A:B (run names); repeatable."
    ),
    alpha: float = typer.Option(_D.alpha, "--alpha", help="Significance level of the marks."),
    rounds: int = typer.Option(
        _D.permutation_rounds, "--rounds", help="Sign flips of the randomisation test."
    ),
    seed: int = typer.Option(_D.seed, "--seed", help="Seed of the randomisation test."),
    empty_queries: str = typer.Option(
        _D.empty_queries, "--empty-queries", help="Queries without a grade > 0: 'skip' (default) or 'zero'."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace existing output files"),
    config_file: Optional[Path] = config_option("evaluate", "EvalConfig", "; extra is relforge run's"),
    sets: list[str] = set_option("permutation_rounds=5000"),
) -> None:
    """Evaluate TREC runs against qrels: ir_measures metrics, paired t-test and randomisation test."""
    from relforge.evaluate.measures import split_measures

    cfg = stage_config(
        ctx,
        EvalConfig,
        "evaluate",
        config_file,
        sets,
        dict(locals()),
        command="relforge evaluate",
        flags={"rounds": "permutation_rounds"},
        convert={"measures": split_measures},
    )
    from relforge.evaluate.run import EvalInputs, EvalOutputs
    from relforge.evaluate.run import run as evaluate_run
    from relforge.outputs import guard_file

    for flag, path in (("--json", json_out), ("--csv", csv_out), ("--per-query", per_query)):
        if path is not None:
            guard_file(path, overwrite=overwrite, flag=flag)
    run_names = _run_names(run, names)
    inputs = EvalInputs(
        qrels=qrels, runs=dict(zip(run_names, run, strict=True)), pairs=_pairs(pair, run_names)
    )
    out = EvalOutputs(metrics_json=json_out, metrics_csv=csv_out, per_query_csv=per_query)
    evaluate_run(
        cfg, inputs, out, show=lambda result: _print(result, title=f"relforge evaluate — {qrels.name}")
    )
    for path in out.files():
        typer.echo(f"wrote {path}", err=True)


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the root app."""
    app.command("evaluate")(evaluate_cmd)
