"""``relforge run CONFIG.yaml`` and ``relforge demo`` (registered by relforge.cli)."""

from __future__ import annotations

from pathlib import Path

import typer

from relforge.errors import UsageError

FROM_HELP = "Force this stage and every later one to run (earlier ones must be up to date)."
ONLY_HELP = "Run only this stage (its inputs must exist)."
TO_HELP = "Stop after this stage."
DRY_HELP = "Print the plan (which stages run or skip, and why) and exit."
SIZES_HELP = "Dataset-size ablation: comma-separated numbers of training groups, e.g. 100,200,400,800."
OVERWRITE_HELP = "Use a non-empty --out folder that relforge did not create (its other files are kept)."


def _parse_sizes(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        sizes = [int(s) for s in text.replace(" ", "").split(",") if s]
    except ValueError:
        raise UsageError(
            f"--sizes must be comma-separated whole numbers, e.g. 100,200,400; got {text!r}"
        ) from None
    if not sizes or any(s < 1 for s in sizes):
        raise UsageError(f"--sizes must list positive numbers of groups, got {text!r}")
    return sizes


def print_plan(items, out_dir: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"plan for {out_dir}")
    t.add_column("stage")
    t.add_column("action")
    t.add_column("why")
    colour = {"run": "yellow", "skip": "green", "disabled": "dim", "not selected": "dim"}
    for it in items:
        t.add_row(it.stage, f"[{colour.get(it.action, '')}]{it.action}[/]", it.reason)
    Console().print(t)


def print_summary(out_dir: Path, manifest: dict) -> None:
    """The comparison table, the judge's agreement, wall time per stage and the report's path."""
    from rich.console import Console

    con = Console()
    _print_metrics(con, out_dir)
    _print_agreement(con, out_dir)
    _print_stage_times(con, manifest)
    if manifest.get("reranker_model"):
        con.print(f"reranker: {out_dir / manifest['reranker_model']}")
    report = out_dir / "report.html"
    if report.exists():
        con.print(f"report: {report.resolve()}")


def _print_metrics(con, out_dir: Path) -> None:
    """The held-out comparison table and its pairwise tests (``eval/metrics.json``)."""
    from relforge.pipeline.stages import SYSTEMS

    metrics = out_dir / "eval" / "metrics.json"
    if metrics.exists():
        from relforge.evaluate import EvalResult

        res = EvalResult.from_json(metrics)
        con.print(
            res.to_table(
                title="Held-out human questions: "
                + ", ".join(
                    f"{k} = {SYSTEMS.get(k, k)}" for k in res.runs if k in SYSTEMS and k not in ("bm25",)
                )
            )
        )
        if res.pairwise:
            con.print(res.pairwise_table())


def _print_agreement(con, out_dir: Path) -> None:
    """Judge vs human labels (``judge/agreement.json``), with the cross-validated rows if any."""
    from rich.table import Table

    from relforge.judge.agreement_run import AgreementReport

    agree = out_dir / "judge" / "agreement.json"
    if agree.exists():
        a = AgreementReport.read(agree).entries()
        first = next(iter(a.values()), {})
        held = "fitted-on (not held out)" if a.get("judge", {}).get("held_out") is False else "held-out"
        t = Table(
            title=f"Judge vs {held} human labels ({first.get('pairs')} pairs, "
            f"{len(first.get('queries', []))} queries)"
        )
        for c in ("scorer", "pair tau_b", "per-query tau_b", "weighted kappa", "accuracy"):
            t.add_column(c)
        labels = {
            "judge_zero_shot": "judge zero-shot",
            "judge": _judge_label(a.get("judge", {})),
            "minilm_cosine": "MiniLM cosine",
        }
        for key, label in labels.items():
            if key in a:
                al = a[key]
                t.add_row(
                    label,
                    _f(al.get("tau_b")),
                    _f(al.get("per_query_tau_b")),
                    _f(al.get("weighted_kappa")),
                    _f(al.get("accuracy")),
                )
        con.print(t)
        cv = (a.get("judge") or {}).get("cv")
        if cv and cv.get("rows"):
            rows = "; ".join(
                f"{name}: {r['kendall_tau_b'][0]:.3f} ± {r['kendall_tau_b'][1]:.3f}"
                for name, r in cv["rows"].items()
                if isinstance(r, dict) and isinstance(r.get("kendall_tau_b"), list)
            )
            con.print(
                f"held-out {cv.get('folds')}-fold pair tau_b (mean ± sd over folds): {rows} ({cv['source']})"
            )


def _print_stage_times(con, manifest: dict) -> None:
    """Wall time, CPU time and LLM calls per stage (the manifest)."""
    from rich.table import Table

    t = Table(title="Wall time per stage")
    t.add_column("stage")
    t.add_column("status")
    t.add_column("wall s", justify="right")
    t.add_column("CPU s", justify="right")
    t.add_column("LLM calls (cached)", justify="right")
    total = cpu_total = 0.0
    for name in manifest.get("stage_order", []):
        rec = manifest["stages"].get(name, {})
        w = rec.get("wall_s") or 0.0
        c = rec.get("cpu_s") or 0.0
        total += w
        cpu_total += c
        llm = rec.get("llm") or {}
        calls = (
            f"{llm.get('cache_misses', 0) + llm.get('cache_hits', 0)} ({llm.get('cache_hits', 0)})"
            if llm
            else ""
        )
        status = rec.get("status", "-") + (" (skipped)" if rec.get("skipped_last_run") else "")
        t.add_row(name, status, f"{w:.1f}", f"{c:.1f}", calls)
    t.add_row("total", "", f"{total:.1f}", f"{cpu_total:.1f}", "")
    con.print(t)


def _judge_label(j: dict) -> str:
    if j.get("preset"):
        return f"judge (preset {j['preset']})"
    return "judge" + (" + adapter" if j.get("adapter") else "")


def _f(x) -> str:
    return "-" if x is None else f"{x:.3f}"


def _run(
    config,
    out: Path,
    from_stage,
    only,
    to_stage,
    dry_run,
    sizes,
    quiet: bool = False,
    overwrite: bool = False,
) -> None:
    from rich.console import Console

    from relforge.outputs import guard_dir
    from relforge.pipeline.api import plan_pipeline, run_pipeline

    guard_dir(out, overwrite=overwrite)

    sz = _parse_sizes(sizes)
    if dry_run:
        print_plan(
            plan_pipeline(config, out, from_stage=from_stage, only=only, to_stage=to_stage, sizes=sz), out
        )
        return
    err = Console(stderr=True)
    manifest = run_pipeline(
        config,
        out,
        from_stage=from_stage,
        only=only,
        to_stage=to_stage,
        sizes=sz,
        log=None if quiet else (lambda m: err.print(f"[dim]{m}[/]")),
    )
    print_summary(out, manifest)


def register(app: typer.Typer) -> None:
    """Add ``run`` and ``demo`` to the root app."""

    @app.command("run")
    def run_cmd(
        config: Path = typer.Argument(..., help="Pipeline YAML (see configs/)."),
        out: Path = typer.Option(None, "--out", "-o", help="Artifacts folder (default: runs/<config name>)."),
        from_stage: str = typer.Option(None, "--from", help=FROM_HELP),
        only: str = typer.Option(None, "--only", help=ONLY_HELP),
        to_stage: str = typer.Option(None, "--to", help=TO_HELP),
        dry_run: bool = typer.Option(False, "--dry-run", help=DRY_HELP),
        sizes: str = typer.Option(None, "--sizes", help=SIZES_HELP),
        overwrite: bool = typer.Option(False, "--overwrite", help=OVERWRITE_HELP),
    ) -> None:
        """Run the whole pipeline from one config; unchanged stages are skipped, interrupted ones resume."""
        if from_stage and only:
            raise UsageError("--from and --only exclude each other; give one")
        out = out or Path("runs") / config.stem
        _run(config, out, from_stage, only, to_stage, dry_run, sizes, overwrite=overwrite)

    @app.command("demo")
    def demo_cmd(
        out: Path = typer.Option(Path("relforge-demo"), "--out", "-o", help="Artifacts folder."),
        from_stage: str = typer.Option(None, "--from", help=FROM_HELP),
        only: str = typer.Option(None, "--only", help=ONLY_HELP),
        to_stage: str = typer.Option(None, "--to", help=TO_HELP),
        dry_run: bool = typer.Option(False, "--dry-run", help=DRY_HELP),
        sizes: str = typer.Option(None, "--sizes", help=SIZES_HELP),
        overwrite: bool = typer.Option(False, "--overwrite", help=OVERWRITE_HELP),
    ) -> None:
        """The pipeline on the bundled MedQuAD sample, offline (SmolLM2 queries, judge preset best, MiniLM)."""
        from relforge.pipeline.api import demo_config_path, set_offline

        set_offline()  # before anything imports transformers / huggingface_hub
        if from_stage and only:
            raise UsageError("--from and --only exclude each other; give one")
        _run(demo_config_path(), out, from_stage, only, to_stage, dry_run, sizes, overwrite=overwrite)
