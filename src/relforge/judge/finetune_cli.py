"""`relforge judge finetune` (registered on the judge sub-app by relforge.judge.cli).

The command is a thin adapter: its flags come from :mod:`relforge.judge.finetune_flags` (defaults read
from :class:`FinetuneConfig` / :class:`CVConfig`), ``--config`` / ``--set`` (the pipeline's
``judge_finetune:`` section works as is) and the flags given build a :class:`FinetuneCommandConfig`
(:func:`relforge.cli_config.stage_config`), and :func:`run_finetune` does the work.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Any

import typer

from relforge.cli_config import config_option, set_option
from relforge.judge.finetune_flags import option, stage_flags

#: the agreement numbers printed for the zero-shot and the tuned judge
_PRINTED_METRICS = ("kendall_tau_b", "quadratic_kappa", "accuracy", "macro_f1")


def register_finetune(judge_app: typer.Typer) -> None:
    """Add the `finetune` command to the `relforge judge` sub-app."""
    judge_app.command("finetune")(finetune)


def finetune(
    ctx: typer.Context,
    corpus: Path = typer.Option(..., "--corpus", help="BEIR corpus.jsonl."),
    queries: Path = typer.Option(..., "--queries", help="BEIR queries.jsonl."),
    qrels: Path = typer.Option(..., "--qrels", help="Human grades (BEIR TSV or TREC qrels)."),
    llm: str = typer.Option(..., "--llm", help="Base model: smollm2, hf:<dir|file.gguf|hub id>."),
    out: Path = typer.Option(..., "--out", help="Output adapter folder."),
    epochs: int = option("epochs"),
    max_doc_tokens: int = option("max_doc_tokens"),
    lr: float = option("lr"),
    lora_r: int = option("lora_r"),
    lora_alpha: int = option("lora_alpha"),
    lora_layers: int = option("lora_layers"),
    balance: str = option("balance"),
    max_per_class: int = option("max_per_class"),
    loss: str = option("loss"),
    val_fraction: float = option("val_fraction"),
    query_field: str = option("query_field"),
    template: str = option("template"),
    batch_size: int = option("batch_size"),
    grad_accum: int = option("grad_accum"),
    seed: int = option("seed"),
    merge: bool = option("merge"),
    qlora: bool = option("qlora"),
    no_judge_check: bool = option("no_judge_check"),
    no_progress: bool = typer.Option(False, "--no-progress", help="Hide progress bars."),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="write into a non-empty folder relforge did not create"
    ),
    folds: int = option("folds"),
    no_final_adapter: bool = option("no_final_adapter"),
    # the settings that had no flag (help panel "Advanced settings")
    max_seq_len: int = option("max_seq_len"),
    val_queries: str | None = option("val_queries"),
    max_val_pairs: int = option("max_val_pairs"),
    test_queries: str | None = option("test_queries"),
    lora_dropout: float = option("lora_dropout"),
    target_modules: str = option("target_modules"),
    cache_frozen: bool = option("cache_frozen"),
    weight_decay: float = option("weight_decay"),
    warmup_ratio: float = option("warmup_ratio"),
    max_grad_norm: float = option("max_grad_norm"),
    eval_batch_size: int = option("eval_batch_size"),
    bf16: bool | None = option("bf16"),
    gradient_checkpointing: bool | None = option("gradient_checkpointing"),
    threads: int = option("threads"),
    adapter_dtype: str = option("adapter_dtype"),
    threshold_metric: str = option("threshold_metric"),
    cosine_model: str = option("cosine_model"),
    config_file: Path = config_option(
        "judge_finetune",
        "FinetuneConfig",
        "; --llm, --corpus, --queries, --qrels are flags; CV settings under cv:",
    ),
    sets: list[str] = set_option("epochs=3 (CV: --set cv.folds=5)"),
) -> None:
    """LoRA fine-tune an LLM judge on human grades (split by query, class balanced, per-epoch agreement)."""
    run_finetune(ctx, dict(locals()))  # every parameter, by name


#: the judge_finetune section's pipeline-only keys and the flags that do them
_HINTS = {"base": "--llm", "data": "--corpus, --queries, --qrels"}


def finetune_settings(ctx: typer.Context, args: dict[str, Any]) -> Any:
    """The :class:`FinetuneCommandConfig` of ``--config``, ``--set`` and the flags given (a bad value is a
    UsageError naming the flag, key or file)."""
    from relforge.cli_config import stage_config
    from relforge.judge.finetune_config import FinetuneCommandConfig

    fields, convert = stage_flags()
    return stage_config(
        ctx,
        FinetuneCommandConfig,
        "judge_finetune",
        args["config_file"],
        args["sets"],
        args,
        command="relforge judge finetune",
        flags=fields,
        convert=convert,
        hints=_HINTS,
    )


def run_finetune(ctx: typer.Context, args: dict[str, Any]) -> None:
    """Check the inputs, build the settings, then k-fold CV (``cv.folds`` K>1) and/or the final adapter.

    ``args``: the parameters of :func:`finetune` by name (flag values as parsed).
    """
    from relforge.data import read_corpus, read_qrels, read_queries
    from relforge.judge.finetune import finetune_judge
    from relforge.outputs import claim_dir, guard_dir

    _check_inputs(args)
    guard_dir(args["out"], overwrite=args["overwrite"])
    settings = finetune_settings(ctx, args)
    cfg = settings.recipe()
    cv = settings.cv if settings.cv.folds > 1 else None
    cmd = _command_line()
    data = (read_corpus(args["corpus"]), read_queries(args["queries"]), read_qrels(args["qrels"]))
    out = claim_dir(args["out"])
    progress = not args["no_progress"]
    if cv is not None:
        from relforge.judge.cv import run_cv

        res = run_cv(args["llm"], *data, out / "cv", cfg, cv, progress=progress, command=cmd)
        _echo_json(_cv_summary(res, out / "cv"))
        if not cv.final_adapter:
            return
    summary = finetune_judge(args["llm"], *data, out, cfg, progress=progress, command=cmd)
    _echo_json(_adapter_summary(summary, out))


def _check_inputs(args: dict[str, Any]) -> None:
    """Every input file exists (else a missing-input error naming the flag)."""
    from relforge.errors import MissingInputError

    for flag in ("corpus", "queries", "qrels"):
        if not args[flag].exists():
            raise MissingInputError(f"--{flag} {args[flag]} does not exist")


def _command_line() -> str:
    """The command that ran, as recorded in the adapter's README (``relforge judge finetune ...``)."""
    argv = sys.argv[1:]
    ctx_args = argv[argv.index("judge") :] if "judge" in argv else ["judge", "finetune", "..."]
    return "relforge " + " ".join(shlex.quote(str(a)) for a in ctx_args)


def _cv_summary(res: Any, cv_dir: Path) -> dict[str, Any]:
    """What ``--folds K>1`` prints: mean and sd of every judge's held-out numbers, and the CV folder."""
    return {j.name: {"mean": j.mean, "sd": j.sd} for j in res.judges} | {"cv": str(cv_dir)}


def _adapter_summary(summary: dict[str, Any], out: Path) -> dict[str, Any]:
    """What the final adapter prints: its folder, best epoch, class counts and zero-shot vs tuned."""
    zs, best = summary.get("zero_shot") or {}, summary.get("best") or {}
    return {
        "out": str(out),
        "best_epoch": summary["best_epoch"],
        "class_counts": summary["class_counts"],
        "zero_shot": {k: zs.get(k) for k in _PRINTED_METRICS},
        "tuned": {k: best.get(k) for k in _PRINTED_METRICS},
        "epoch_seconds": summary["timing"]["epoch_seconds"],
    }


def _echo_json(obj: dict[str, Any]) -> None:
    typer.echo(json.dumps(obj, indent=2))
