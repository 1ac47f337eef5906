"""CLI of relforge.judge: ``relforge judge`` (judging), ``relforge judge agreement``, ``relforge judge finetune``."""

from __future__ import annotations

from pathlib import Path

import typer

from relforge.cli_config import config_option, set_option
from relforge.judge.config import JudgeConfig, JudgmentsAgreementConfig
from relforge.llm.net_options import (
    llm_net_options,
    llm_precision_options,
    precision_option,
    retries_option,
    timeout_option,
)

_D = JudgeConfig()
_A = JudgmentsAgreementConfig()

judge_app = typer.Typer(
    name="judge",
    help="Judge query-document pairs with an LLM (graded labels with probabilities); agreement with humans.",
    invoke_without_command=True,
    add_completion=False,
)


def _thresholds(text: str | None) -> list[float] | None:
    from relforge.errors import UsageError

    if text is None:
        return None
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UsageError(
            f"--thresholds must be comma-separated numbers like 0.5,1.5,2.5, got {text!r}"
        ) from None


@judge_app.callback()
def judge(
    ctx: typer.Context,
    corpus: Path = typer.Option(None, "--corpus", help="BEIR corpus.jsonl."),
    queries: Path = typer.Option(None, "--queries", help="BEIR queries.jsonl."),
    pairs: Path = typer.Option(
        None, "--pairs", help="Pairs to judge: BEIR/TREC qrels, TREC run, or a qid<TAB>docid TSV."
    ),
    llm: list[str] = typer.Option(
        None,
        "--llm",
        help="LLM spec: smollm2, hf:<dir|file.gguf>, openai:<url>#<model>, ... Repeat it with --engine ray "
        "for several endpoints of one model.",
    ),
    out: Path = typer.Option(None, "--out", help="Output judgments.jsonl."),
    adapter: Path = typer.Option(
        None,
        "--adapter",
        help="LoRA adapter folder (e.g. from `relforge judge finetune`), or `auto` for the adapter shipped with relforge (v1's judge; --preset best agrees better with humans).",
    ),
    mode: str = typer.Option(
        _D.mode, "--mode", help="probs (distribution over grades) or generate (decode and parse)."
    ),
    template: str = typer.Option(_D.template, "--template", help="Built-in template id or a YAML path."),
    reasoning: bool = typer.Option(
        _D.reasoning, "--reasoning", help="Ask for reasoning before the grade (generate mode)."
    ),
    max_doc_tokens: int = typer.Option(
        _D.max_doc_tokens, "--max-doc-tokens", help="Document token budget (default: template's)."
    ),
    batch_size: int = typer.Option(_D.batch_size, "--batch-size", help="Pairs per backend call."),
    top_k: int = typer.Option(_D.top_k, "--top-k", help="For a TREC run: judge each query's top k."),
    thresholds: str = typer.Option(
        None, "--thresholds", help="Cut points on the expected grade, e.g. 0.5,1.5,2.5."
    ),
    calibrate_on: Path = typer.Option(
        None, "--calibrate-on", help="Human qrels: fit thresholds on the judged pairs they grade."
    ),
    calibrate_metric: str = typer.Option(_D.calibrate_metric, "--calibrate-metric", help="qwk or macro_f1."),
    on_missing: str = typer.Option(
        _D.on_missing, "--on-missing", help="Pairs with unknown ids: error or skip (counted)."
    ),
    qrels_out: Path = typer.Option(None, "--qrels-out", help="Also write the grades as TREC qrels."),
    cache: Path = typer.Option(
        None, "--cache", help="SQLite cache file of LLM calls (default: the LLM layer's)."
    ),
    no_cache: bool = typer.Option(False, "--no-cache", help="Do not cache LLM calls."),
    max_new_tokens: int = typer.Option(
        None,
        "--max-new-tokens",
        help=f"Generate mode: reply length (default {_D.max_new_tokens}; {_D.reasoning_max_new_tokens} with reasoning).",
    ),
    reasoning_max_new_tokens: int = typer.Option(
        _D.reasoning_max_new_tokens,
        "--reasoning-max-new-tokens",
        help="Generate mode with a reasoning template: reply length (unless --max-new-tokens is given).",
    ),
    retry_temperature: float = typer.Option(
        _D.retry_temperature,
        "--retry-temperature",
        help="Generate mode: sampling temperature of the one retry of an unparseable reply.",
    ),
    seed: int = typer.Option(_D.seed, "--seed"),
    no_progress: bool = typer.Option(False, "--no-progress", help="Hide the progress bar."),
    timeout: float = timeout_option(),
    retries: int = retries_option(),
    precision: str = precision_option(),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace existing output files"),
    engine: str = typer.Option(None, "--engine", help="local (default) or ray (Ray Data; see docs/ray.md)."),
    ray_address: str = typer.Option(
        None, "--ray-address", help="--engine ray: auto (default), local, or ray://HOST:PORT."
    ),
    preset: str = typer.Option(
        None,
        "--preset",
        help="A shipped labeller (`best`: a probe on the LLM's hidden states + MiniLM cosine + a calibration "
        "head fitted on human grades, docs/judge-probe.md; `ql`: LLM query likelihood instead of the probe; "
        "`qwen`: the best recipe on the optional qwen0.5b, `make qwen`) "
        "or a preset JSON; replaces --llm/--adapter/--template.",
    ),
    config_file: Path = config_option(
        "judge",
        "JudgeConfig",
        "; its preset and llm are read (a pipeline YAML's judge LLM: judge.llm, else llm.spec), "
        "--llm or --preset given win; --adapter, --precision are flags",
    ),
    sets: list[str] = set_option("batch_size=32"),
) -> None:
    """Judge pairs: writes judgments.jsonl (qid, docid, grade, expected, probs, ...) and optionally TREC qrels."""
    if ctx.invoked_subcommand is not None:
        return
    if config_file is not None:
        llm, preset = _config_labeller(config_file, llm, preset)
    flags = dict(locals())
    required = {
        "--corpus": corpus,
        "--queries": queries,
        "--pairs": pairs,
        "--llm": llm or None,
        "--out": out,
    }
    if all(v is None for v in required.values()) and preset is None and config_file is None and not sets:
        typer.echo(ctx.get_help())
        raise typer.Exit(0)
    files = dict(corpus=corpus, queries=queries, pairs=pairs, out=out, qrels_out=qrels_out)
    if preset is not None:
        _run_preset(ctx, preset, files, flags, overwrite=overwrite, progress=not no_progress)
        return
    _check_judge_flags(required, thresholds, calibrate_on)
    _guard_outputs(out, qrels_out, overwrite)
    if str(adapter) in ("auto", "shipped"):
        from relforge.judge.labeller import shipped_adapter_note

        typer.echo(shipped_adapter_note(), err=True)
    cfg = _judge_config(ctx, flags)
    eng = _engine(engine, ray_address)
    from relforge.judge import run

    summary = run.run(
        cfg,
        run.JudgeInputs(
            corpus=corpus, queries=queries, pairs=pairs, adapter=adapter, calibrate_on=calibrate_on
        ),
        run.JudgeOutputs(judgments=out, qrels=qrels_out),
        llm_spec=llm[0],
        extra_llms=llm[1:],
        engine=eng,
        cache=False if no_cache else cache,
        max_new_tokens=max_new_tokens,
        progress=not no_progress,
        llm_options=llm_net_options(llm[0], timeout, retries) | llm_precision_options(llm[0], precision),
    )
    _print_run_summary(summary.record, cfg.mode, out, qrels_out)


def _wrote(out: Path, qrels_out: Path | None) -> str:
    from relforge.judge.run import _summary_path

    return f"wrote {out}" + (f" and {qrels_out}" if qrels_out else "") + f" (summary: {_summary_path(out)})"


def _print_run_summary(rec, mode: str, out: Path, qrels_out: Path | None) -> None:
    """The three summary lines of ``relforge judge`` (stderr), from its :class:`JudgeRecord`."""
    from rich.console import Console

    console = Console(stderr=True)
    console.print(
        f"judged {rec.pairs} pairs of {rec.queries} queries with {rec.model} "
        f"({mode}) in {rec.seconds:.1f} s = {rec.pairs_per_s} pairs/s"
        f" ({rec.cache_hits} LLM calls answered from the cache)"
    )
    console.print(
        f"grades: {rec.grades}  unparsed: {rec.unparsed}  retried: {rec.retried}  "
        f"skipped (unknown ids): {rec.skipped_unknown}"
        + (f"  thresholds: {[round(t, 4) for t in rec.thresholds]}" if rec.thresholds else "")
    )
    console.print(_wrote(out, qrels_out))


def _check_judge_flags(
    required: dict[str, object], thresholds: str | None, calibrate_on: Path | None
) -> None:
    """UsageError for a missing input flag (``required``: flag -> value) or both ways of setting thresholds."""
    from relforge.errors import UsageError

    missing = [k for k, v in required.items() if v is None]
    if missing:
        raise UsageError(f"relforge judge needs {', '.join(missing)} (see relforge judge --help)")
    if thresholds is not None and calibrate_on is not None:
        raise UsageError("give either --thresholds or --calibrate-on, not both")


def _guard_outputs(out: Path, qrels_out: Path | None, overwrite: bool) -> None:
    """Refuse to replace existing outputs (unless ``--overwrite``) before any work starts."""
    from relforge.outputs import guard_file

    guard_file(out, overwrite=overwrite)
    if qrels_out is not None:
        guard_file(qrels_out, overwrite=overwrite, flag="--qrels-out")


#: the judge section's pipeline-only keys that a flag (or command) of ``relforge judge`` does
_HINTS = {
    "adapter": "--adapter",
    "precision": "--precision",
    "agreement": "relforge judge agreement",
}
#: the judge section's pipeline-only keys ``relforge judge`` reads from ``--config`` (:func:`_config_labeller`)
_READS = ("llm", "preset")


def _config_labeller(
    config_file: Path, llm: list[str] | None, preset: str | None
) -> tuple[list[str] | None, str | None]:
    """``(--llm, --preset)`` with ``--config``'s judge preset and LLM filled in: a flag given wins (an
    explicit ``--llm`` replaces the file's preset, an explicit ``--preset`` its LLM); else the file's preset,
    else its LLM (a pipeline YAML's judge LLM is ``judge.llm``, else ``llm.spec``, as relforge run reads it)."""
    from relforge.cli_config import read_section

    if llm or preset is not None:
        if llm and _file_preset(config_file) is not None:
            typer.echo(f"note: --llm given: the preset of {config_file} is not used", err=True)
        return llm, preset
    section, pipeline, _ = read_section(Path(config_file), JudgeConfig, "judge")
    if section.preset is not None:
        return llm, section.preset
    if pipeline is not None:
        return [pipeline.llm_for("judge")], None
    return ([section.llm] if section.llm else llm), None


def _file_preset(config_file: Path) -> str | None:
    from relforge.cli_config import read_section

    return read_section(Path(config_file), JudgeConfig, "judge")[0].preset


def _max_new_tokens(value: int | None) -> object:
    from relforge.cli_config import SKIP

    return SKIP if value is None else value  # unset: the config's (or the reasoning one)


def _judge_config(ctx: typer.Context, flags: dict) -> JudgeConfig:
    """The ``JudgeConfig`` of ``--config``, ``--set`` and the flags given (each named after its field;
    ``--thresholds`` parsed, ``--max-new-tokens`` unset = the config's). An invalid value is a UsageError."""
    from relforge.cli_config import stage_config

    return stage_config(
        ctx,
        JudgeConfig,
        "judge",
        flags["config_file"],
        flags["sets"],
        flags,
        command="relforge judge",
        convert={"thresholds": _thresholds, "max_new_tokens": _max_new_tokens},
        hints=_HINTS,
        reads=_READS,
    )


def _engine(engine: str | None, ray_address: str | None):
    """``--engine`` / ``--ray-address`` as an EngineConfig (a UsageError if invalid)."""
    from relforge.engine.config import engine_from
    from relforge.errors import UsageError

    try:
        return engine_from(engine, ray_address)
    except ValueError as e:
        raise UsageError(f"invalid engine setting (--engine/--ray-address): {e}") from None


_PRESET_CONFLICTS = (
    "llm",
    "adapter",
    "mode",
    "template",
    "reasoning",
    "thresholds",
    "calibrate_on",
    "max_doc_tokens",
    "precision",
)


def _run_preset(
    ctx: typer.Context, preset: str, files: dict, flags: dict, *, overwrite: bool, progress: bool
) -> None:
    """``--preset`` (``--out`` guarded first): the preset fixes model, features and calibration; flags that
    would change them are refused. ``--top-k``, ``--on-missing`` and ``--batch-size`` apply."""
    from relforge.errors import UsageError
    from relforge.outputs import guard_file

    if files["out"] is not None:
        guard_file(files["out"], overwrite=overwrite)

    clash = [
        "--" + n.replace("_", "-")
        for n in _PRESET_CONFLICTS
        if getattr(ctx.get_parameter_source(n), "name", "DEFAULT") not in ("DEFAULT", "DEFAULT_MAP")
    ]
    if clash:
        given = getattr(ctx.get_parameter_source("preset"), "name", "") == "COMMANDLINE"
        what = "--preset" if given else f"the preset of --config {flags['config_file']} (judge.preset)"
        raise UsageError(f"{what} fixes the model, features and calibration; drop {', '.join(clash)}")
    missing = [f"--{k}" for k in ("corpus", "queries", "pairs", "out") if files[k] is None]
    if missing:
        raise UsageError(f"relforge judge --preset needs {', '.join(missing)} (see relforge judge --help)")
    from rich.console import Console

    from relforge.judge import run

    inputs = run.JudgeInputs(corpus=files["corpus"], queries=files["queries"], pairs=files["pairs"])
    outs = run.JudgeOutputs(judgments=files["out"], qrels=files["qrels_out"])
    summary = run.run(_judge_config(ctx, flags), inputs, outs, preset=preset, progress=progress)
    rec = summary.record
    console = Console(stderr=True)
    console.print(
        f"judged {rec.pairs} pairs of {rec.queries} queries with {summary.model} in "
        f"{rec.seconds:.1f} s = {rec.pairs_per_s} pairs/s; grades: {rec.grades}; "
        f"skipped (unknown ids): {rec.skipped_unknown}"
    )
    console.print(_wrote(files["out"], files["qrels_out"]))


#: the judge.agreement section's pipeline-only keys and what does them for ``relforge judge agreement``
_AGREEMENT_HINTS = {"human": "--human (a qrels file)"}


@judge_app.command("agreement", context_settings={"allow_extra_args": True, "ignore_unknown_options": False})
def agreement_cmd(
    ctx: typer.Context,
    human: Path = typer.Option(..., "--human", help="Human qrels (BEIR TSV or TREC)."),
    llm: Path = typer.Option(..., "--llm", help="judgments.jsonl from `relforge judge`."),
    out: Path = typer.Option(None, "--out", help="Write the report as JSON."),
    png: Path = typer.Option(None, "--png", help="Write the confusion matrix as PNG."),
    runs: list[Path] = typer.Option(
        None, "--runs", help="TREC runs for system-ranking agreement: --runs R1 R2 ... (>= 2)."
    ),
    measure: str = typer.Option(
        _A.measure, "--measure", help="ir_measures measure (reranking, system ranking)."
    ),
    seed: int = typer.Option(_A.seed, "--seed", help="Seed of the class-balanced subsample."),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace existing output files"),
    config_file: Path = config_option("judge.agreement", "JudgmentsAgreementConfig"),
    sets: list[str] = set_option("measure=nDCG@5"),
) -> None:
    """Agreement of LLM judgments with human grades: tau_b, kappa, weighted kappa, alpha, F1, confusion."""
    from relforge.cli_config import stage_config
    from relforge.errors import UsageError
    from relforge.judge.run import run_agreement
    from relforge.outputs import guard_file

    cfg = stage_config(
        ctx,
        JudgmentsAgreementConfig,
        "judge.agreement",
        config_file,
        sets,
        dict(locals()),
        command="relforge judge agreement",
        hints=_AGREEMENT_HINTS,
    )
    for flag, path in (("--out", out), ("--png", png)):
        if path is not None:
            guard_file(path, overwrite=overwrite, flag=flag)
    extra = list(ctx.args)
    if extra and not runs:
        raise UsageError(f"unexpected arguments {extra} (runs go after --runs)")
    run_paths = [*(runs or []), *(Path(x) for x in extra)]
    run_agreement(human=human, llm=llm, out=out, png=png, runs=run_paths, measure=cfg.measure, seed=cfg.seed)


from relforge.judge.finetune_cli import register_finetune  # noqa: E402

register_finetune(judge_app)


def register(app: typer.Typer) -> None:
    """Add ``relforge judge`` (and its subcommands) to the root app."""
    app.add_typer(judge_app, name="judge")
